"""The engine: what compiles (the population's step and scan, its layout, optimizers,
schedules, models, tasks, data). It needs nothing of a sweep's config, state or files; of the
search layer it reads only the sampled hyperparameters (`sweepjax.search.space.HParams`).
Module by module: the map in `docs/architecture.md`.
"""
