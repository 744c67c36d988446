"""A sweep's results as pandas DataFrames: the trial table, the curves, seeds aggregated.

pandas is optional (`pip install 'sweepjax[pandas]'`); it is imported when a frame is made.
`sweepjax.Result` has these as methods: `to_pandas()`, `curves_frame()` and `summarize_by()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweepjax.sweep.columns import METRIC_PREFIXES, STATUS, hyperparameter_columns

if TYPE_CHECKING:
    import pandas as pd

CURVE_DTYPES = {"member": "int64", "step": "int64", "metric": "str", "value": "float64"}


def _pandas() -> Any:
    """The pandas module, or an ImportError that says how to install it."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(
            "pandas is not installed; sweepjax's DataFrames need it: pip install 'sweepjax[pandas]'"
        ) from err
    return pd


def results_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The trial table: one row per trial, the columns of `results.csv` in its order.

    Numbers are numeric columns (`member` and `seed` integers, metrics floats), `status`
    strings; the index is a plain range (the trial's number is the `member` column).

    >>> row = {"member": 0, "lr": 0.1, "seed": 0, "status": "ok", "final_val_mse": 0.25}
    >>> frame = results_frame([row])
    >>> list(frame.columns), frame["seed"].dtype, frame["final_val_mse"].dtype
    (['member', 'lr', 'seed', 'status', 'final_val_mse'], dtype('int64'), dtype('float64'))
    """
    pd = _pandas()
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def curves_frame(
    curves: Mapping[str, np.ndarray], metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """The curves in long format: columns `member`, `step`, `metric`, `value`.

    Rows go by metric (in the order of `curves.npz`), then member, then step; a step at which a
    trial held no slot (NaN) has no row. Column t of a curve is member t of `results.csv`.

    Args:
      curves: the sweep's curves (`Result.curves`, `curves.npz`).
      metrics: the curves to include (`train_loss`, `val_<metric>`, ...); None: all.

    Raises:
      ValueError: a name in `metrics` is not a curve of the sweep.

    >>> curves = {"steps": np.array([10, 20]), "train_loss": np.array([[0.5, 0.9], [0.4, np.nan]])}
    >>> curves_frame(curves).values.tolist()
    [[0, 10, 'train_loss', 0.5], [0, 20, 'train_loss', 0.4], [1, 10, 'train_loss', 0.9]]
    """
    pd = _pandas()
    available = [k for k, v in curves.items() if k != "steps" and np.ndim(v) == 2]
    for name in metrics or ():
        if name not in available:
            raise ValueError(
                f"metrics: {name!r} is not a curve of this sweep; allowed: {available}"
            )
    steps = np.asarray(curves.get("steps", []), np.int64)
    parts = []
    for name in available if metrics is None else metrics:
        values = np.asarray(curves[name], np.float64).T  # [members, steps]: member-major rows
        member, step = np.indices(values.shape)
        kept = ~np.isnan(values)
        parts.append(
            pd.DataFrame(
                {
                    "member": member[kept].astype(np.int64),
                    "step": steps[step[kept]],
                    "metric": name,
                    "value": values[kept],
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CURVE_DTYPES.items()})
    return pd.concat(parts, ignore_index=True)


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric metric columns of a trial table: `final_*`, `best_*` and `test_*`."""
    pd = _pandas()
    return [
        c
        for c in frame.columns
        if c.startswith(METRIC_PREFIXES) and pd.api.types.is_numeric_dtype(frame[c])
    ]


def summarize_by(
    rows: Sequence[Mapping[str, Any]], by: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Trials grouped by the columns `by`, each metric's mean and standard deviation over them.

    One row per distinct combination of `by` (in order of first appearance): the `by` columns,
    `n` (the group's trials), `n_diverged` (those that diverged), then `<metric>_mean` and
    `<metric>_std` for each metric column. Diverged trials are counted in `n` and `n_diverged`
    but kept out of the means and deviations (their metrics are inf, NaN or meaningless), and
    so are trials an adaptive scheduler stopped early (their metrics are from fewer steps), as
    in the summary's `mean_val_*`; a group with no finished trial has NaN there. NaN values are
    skipped. The deviation is the sample one (ddof=1): NaN for a single trial.

    Args:
      rows: the trial table (`Result.rows`, `results.csv`).
      by: the column or columns to group by; None: every hyperparameter column but `seed`,
        so the seeds of each configuration are aggregated. `[]` makes one group of all trials.

    Raises:
      ValueError: a name in `by` is not a column of the table, or is a metric column.

    >>> rows = [{"member": i, "lr": lr, "seed": i % 2, "status": s, "final_val_mse": v}
    ...         for i, (lr, s, v) in enumerate([(0.1, "ok", 1.0), (0.1, "ok", 3.0),
    ...                                         (9.0, "ok", 2.0), (9.0, "diverged", np.inf)])]
    >>> for group in summarize_by(rows).to_dict("records"):
    ...     print(group)
    {'lr': 0.1, 'n': 2, 'n_diverged': 0, 'final_val_mse_mean': 2.0, 'final_val_mse_std': 1.4142135623730951}
    {'lr': 9.0, 'n': 2, 'n_diverged': 1, 'final_val_mse_mean': 2.0, 'final_val_mse_std': nan}
    """
    frame = results_frame(rows)
    metrics = _metric_columns(frame)
    allowed = [c for c in frame.columns if c not in metrics]
    if by is None:
        keys = [c for c in hyperparameter_columns(rows) if c != "seed"]
    else:
        keys = [by] if isinstance(by, str) else list(by)
    for name in keys:
        if name not in allowed:
            raise ValueError(f"by: {name!r} is not a column to group by; allowed: {allowed}")
    grouped = _groups(frame, keys, metrics)
    aggregations: dict[str, tuple[str, str]] = {
        "n": ("_diverged", "size"),
        "n_diverged": ("_diverged", "sum"),
    }
    for m in metrics:
        aggregations[f"{m}_mean"] = (m, "mean")
        aggregations[f"{m}_std"] = (m, "std")
    out = grouped.agg(**aggregations)
    out["n_diverged"] = out["n_diverged"].astype(np.int64)
    return out.reset_index(drop=not keys)


def _groups(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> Any:
    """`frame`'s groups by `keys` (one group if none), with a `_diverged` column and the
    metrics of every trial that did not finish (diverged, stopped) as NaN."""
    pd = _pandas()
    status = frame.get(STATUS[0], pd.Series("ok", index=frame.index))
    diverged = status.eq("diverged")
    masked = frame[metrics].where(status.eq("ok"))
    data = pd.concat([frame[keys], masked, diverged.rename("_diverged")], axis=1)
    # dropna=False: trials whose key is NaN make a group of their own rather than vanish
    grouping = keys or np.zeros(len(data), np.int64)
    return data.groupby(grouping, sort=False, dropna=False)
