"""Bridges to other tools: trackers that log each trial between chunks, and a sweep as an
Optuna study. Module by module: the map in `docs/architecture.md`.
"""
