"""A sweep on the host, on top of the engine and the search.

The config and its keys (`config.py`, `keys.py`, `validation.py`), the sweep state (`sweep_state.py`:
slots, trials in `trials.py`, curves), the policies it builds (`policies.py`), the loop over
chunks (`loop.py`), checkpoints with their metadata record (`checkpoint.py`, `metadata.py`,
`restore.py`, `export.py`), the folder and its lock (`out_dir.py`, `lock.py`, `same_sweep.py`),
signals and progress (`signals.py`, `progress.py`), and the result files (`trial_results.py`,
`results.py`, `read_results.py`, `frames.py`).
"""
