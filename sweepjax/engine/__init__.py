"""The engine: what compiles.

The population and its vmapped step and chunked scan (`population.py`), where and how wide it
runs (`placement.py`, `widths.py`, `layout.py`, `distributed.py`), optimizers and schedules
(`optim.py`, `schedules.py`), models and their adapters (`models.py`, `adapters.py`,
`transformer.py`, `dropout.py`), tasks (`tasks.py`), data and its loading or streaming
(`data.py`, `loaders.py`, `text.py`, `stream.py`), the gathers that reassign slots
(`reassign.py`) and compile counting and caching (`compiling.py`). It needs nothing of a
sweep's config, state or files; of the search layer it reads only the sampled hyperparameters
(`sweepjax.search.space.HParams`).
"""
