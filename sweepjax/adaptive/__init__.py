"""Adaptive sweeps: the schedulers and searchers that act between chunks.

`protocol.py` says what they exchange with the chunk loop; `schedulers.py` and `pbt.py` decide
which trials stop or copy others; `searchers.py` and `optuna_search.py` propose new trials;
`factory.py` builds a sweep's pair from its config. See `docs/adaptive.md`.
"""
