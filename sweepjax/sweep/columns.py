"""The columns of `results.csv`: a member's number, its hyperparameters, its status, then the
task's metrics. The result files, the frames and the report read a table through these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATUS = ("status", "diverged_at_step")  # the columns every row has after its hyperparameters
METRIC_PREFIXES = ("final_", "best_", "test_")  # the metric columns of results.csv


def hyperparameter_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hyperparameter columns of a results table: those between `member` and `status` (the
    metric columns after `status` depend on the task).

    >>> hyperparameter_columns([{"member": 0, "learning_rate": 0.1, "seed": 0, "status": "ok",
    ...                          "final_val_mse": 0.2}])
    ['learning_rate', 'seed']
    """
    if not rows:
        return []
    columns = list(rows[0])
    end = columns.index(STATUS[0]) if STATUS[0] in columns else len(columns)
    return [c for c in columns[:end] if c != "member"]


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metric columns of a results table: its `final_`, `best_` and `test_` columns.

    >>> metric_columns([{"member": 0, "lr": 0.1, "status": "ok", "final_val_mse": 0.2,
    ...                  "test_mse": 0.3}])
    ['final_val_mse', 'test_mse']
    """
    return [c for c in (rows[0] if rows else ()) if c.startswith(METRIC_PREFIXES)]
