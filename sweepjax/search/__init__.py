"""The search: the space and the policies that decide between chunks.

Distributions and sampling (`distributions.py`, `space.py`); what a policy exchanges with the
chunk loop (`protocol.py`); schedulers that stop or copy trials (`schedulers.py`, `pbt.py`);
searchers that propose them (`searchers.py`, `optuna_search.py`). Each checks its own options.
They take plain values (a direction, budgets, rows) and need nothing above this layer: never
the engine, the config object, the sweep state or a results file. See `docs/adaptive.md`.
"""
