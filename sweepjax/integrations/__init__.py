"""Bridges to other tools: the trackers (`tensorboard_log.py`, `mlflow_log.py`,
`wandb_log.py`, sharing `trial_log.py`) that log each trial between chunks, and a sweep as an
Optuna study (`optuna_study.py`).
"""
