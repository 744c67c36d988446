"""An earlier sweep's results as rows a searcher starts from (the config key `warm_start`).

The searchers take the rows, never the folder: reading `results.csv` and `sweep.json` is the
sweep's business.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sweepjax.search.checks import finite
from sweepjax.sweep.columns import hyperparameter_columns
from sweepjax.sweep.read_results import read_rows, read_summary
from sweepjax.sweep.results import ranking


def warm_start_rows(
    out_dir: str | os.PathLike, *, rank_by: str | None = None, direction: str | None = None
) -> list[dict[str, Any]]:
    """An earlier sweep's healthy members as `{"params", "value", "steps"}` rows.

    `params` holds the hyperparameter columns of `results.csv` (those between `member` and
    `status`), `value` the sweep's ranking column and `steps` the steps the trial trained: its
    `steps_trained` (an adaptive sweep, whose global `steps_done` may run past a trial's
    budget), else the sweep's `steps_done`. Rows that are not `ok` or have no finite value
    are left out. Given `rank_by` or `direction`, an earlier
    sweep that ranks otherwise is a `ValueError` naming `warm_start`.

    >>> import tempfile; tmp = tempfile.TemporaryDirectory(); out = Path(tmp.name)
    >>> _ = (out / "results.csv").write_text(
    ...     "member,lr,seed,status,final_val_accuracy\\n0,0.1,0,ok,0.9\\n1,1.0,1,diverged,nan\\n")
    >>> warm_start_rows(out)
    [{'params': {'lr': 0.1, 'seed': 0}, 'value': 0.9, 'steps': 0}]
    >>> tmp.cleanup()
    """
    summary = read_summary(out_dir)
    column, order = ranking(summary)
    if rank_by not in (None, column) or direction not in (None, order):
        raise ValueError(
            f"warm_start: {out_dir} ranks by {column} ({order}), this sweep by {rank_by} "
            f"({direction}); allowed: an earlier sweep of the same task and ranking."
        )
    try:
        rows = read_rows(Path(out_dir) / "results.csv")
    except FileNotFoundError:
        raise ValueError(
            f"warm_start: {out_dir} holds no results.csv; allowed: the out_dir of a sweep."
        ) from None
    steps = summary.get("steps_done", summary.get("config", {}).get("steps", 0))
    names = hyperparameter_columns(rows)
    return [
        {
            "params": {k: r[k] for k in names},
            "value": float(r[column]),
            "steps": int(r.get("steps_trained", steps) or 0),
        }
        for r in rows
        if r.get("status") == "ok" and finite(r.get(column))
    ]
