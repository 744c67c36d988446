"""The result of a sweep: the per-member table, the curves, and the files they are written to.

Files in `out_dir` (each written atomically: a temporary file, then a rename):
  * `results.csv`: one row per member (hyperparameters, status, the task's final, best and
    test metrics);
  * `curves.npz`: `steps [C]`, `train_loss` and `val_<metric>` for each task metric (`[C, P]`);
  * `sweep.json`: the config, library versions, device, timings and a summary.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweepjax.errors import StorageError, describe_os_error
from sweepjax.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

RANK_BY = "final_val_accuracy"  # what results without a recorded ranking (classification) rank by


def curve_names(metrics: tuple[str, ...]) -> list[str]:
    """The curves of a task with `metrics`: `train_loss`, then `val_<metric>` for each.

    >>> curve_names(("loss", "accuracy"))
    ['train_loss', 'val_loss', 'val_accuracy']
    """
    return ["train_loss", *(f"val_{m}" for m in metrics)]


def ranking(summary: dict[str, Any]) -> tuple[str, str]:
    """The column results rank by and its direction (`"max"` or `"min"`), from `sweep.json`.

    >>> ranking({}), ranking({"rank_by": "final_val_mse", "rank_direction": "min"})
    (('final_val_accuracy', 'max'), ('final_val_mse', 'min'))
    """
    return summary.get("rank_by", RANK_BY), summary.get("rank_direction", "max")


def metric_of(column: str) -> str:
    """The task metric a ranking column reports: `final_val_accuracy` -> `accuracy`."""
    return column.removeprefix("final_val_")


def finished_rows(rows: Sequence[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """The members that trained their whole budget (neither diverged nor stopped early) and
    have a finite `column`: those a ranking or a statistic of the sweep counts.

    >>> rows = [{"member": i, "status": s, "mse": v}
    ...         for i, (s, v) in enumerate([("ok", 0.3), ("stopped", 0.1), ("ok", None)])]
    >>> [r["member"] for r in finished_rows(rows, "mse")]
    [0]
    """
    return [r for r in rows if r.get("status") == "ok" and is_finite_number(r.get(column))]


def rank_rows(rows: Sequence[dict[str, Any]], column: str, direction: str) -> list[dict[str, Any]]:
    """Healthy members with a finite `column`, best first.

    Ties break by the best validation value of the same metric (`best_val_<metric>`, in the
    same direction), then by the member order.

    >>> rows = [{"member": i, "status": "ok", "mse": v} for i, v in enumerate([0.3, 0.1, 0.2])]
    >>> [r["member"] for r in rank_rows(rows, "mse", "min")]
    [1, 2, 0]
    >>> tied = [{"member": i, "status": "ok", "final_val_accuracy": 0.9,
    ...          "best_val_accuracy": b} for i, b in enumerate([0.91, 0.95])]
    >>> [r["member"] for r in rank_rows(tied, "final_val_accuracy", "max")]
    [1, 0]
    """
    sign = -1.0 if direction == "max" else 1.0
    second = f"best_val_{metric_of(column)}"
    return sorted(
        finished_rows(rows, column),
        key=lambda r: (
            sign * r[column],
            sign * r[second] if is_finite_number(r.get(second)) else math.inf,
        ),
    )


def is_finite_number(value: Any) -> bool:
    """Whether `value` is a finite real number (numpy's included; not None, NaN or inf).

    >>> is_finite_number(0.5), is_finite_number(float("nan")), is_finite_number("0.5")
    (True, False, False)
    """
    return isinstance(value, numbers.Real) and math.isfinite(value)


@dataclasses.dataclass
class Result:
    """A finished (or interrupted) sweep.

    Attributes:
      rows: one dict per trial (a member of a fixed population): `member` (the trial's
        number), its hyperparameters, `status` (`ok`, `stopped` or `diverged`),
        `diverged_at_step` (an adaptive sweep's rows add `start_step`, `steps_trained`, `rung`,
        `parent` and `stop_reason`), `final_train_loss`, then the task's metrics
        (`final_val_<m>`, `best_val_<m>` of the ranking metric, `test_<m>`).
      curves: `steps [C]`, `train_loss [C, T]` and `val_<m> [C, T]` for each task metric, NaN
        where a trial held no slot.
      summary: what `sweep.json` holds; `rank_by` and `rank_direction` say how members rank.
      out_dir: where the files are, or None if nothing was written.
    """

    rows: list[dict[str, Any]]
    curves: dict[str, np.ndarray]
    summary: dict[str, Any]
    out_dir: Path | None = None

    def ranked(self) -> list[dict[str, Any]]:
        """Healthy members, best first by the task's ranking metric on the validation split."""
        return rank_rows(self.rows, *ranking(self.summary))

    @property
    def best(self) -> dict[str, Any] | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def leaderboard(self, top: int = 10) -> str:
        return leaderboard(self.rows, top, *ranking(self.summary))

    # DataFrames (pandas is optional: `pip install 'sweepjax[pandas]'`); see sweepjax.sweep.frames.
    def to_pandas(self) -> pd.DataFrame:
        """The trial table, one row per trial, the columns of `results.csv` in its order.

        >>> Result([{"member": 0, "seed": 0, "status": "ok"}], {}, {}).to_pandas().shape
        (1, 3)
        """
        from sweepjax.sweep.frames import results_frame

        return results_frame(self.rows)

    def curves_frame(self, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """The curves in long format: `member`, `step`, `metric`, `value`, no NaN rows."""
        from sweepjax.sweep.frames import curves_frame

        return curves_frame(self.curves, metrics)

    def summarize_by(self, by: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Trials grouped by `by` (default: the hyperparameters but `seed`): `n`,
        `n_diverged`, and each metric's `_mean` and `_std` over the trials that finished."""
        from sweepjax.sweep.frames import summarize_by

        return summarize_by(self.rows, by)


def member_rows(hparams: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Rows of the results table from per-member hyperparameters and metrics arrays (in order)."""
    size = len(metrics["status"])
    rows = []
    for i in range(size):
        row: dict[str, Any] = {"member": i}
        row.update({k: np.asarray(v)[i].item() for k, v in hparams.items()})
        row.update({k: np.asarray(v)[i].item() for k, v in metrics.items()})
        rows.append(row)
    return rows


def summarize(
    rows: Sequence[dict[str, Any]], rank_by: str = RANK_BY, direction: str = "max"
) -> dict[str, Any]:
    """Cross-member statistics over healthy members only (diverged members never enter).

    `rank_by` is a `final_val_<m>` column; the statistics are named after `m`.
    """
    ranked = rank_rows(rows, rank_by, direction)
    values = np.array([r[rank_by] for r in ranked], dtype=float)
    best = ranked[0] if ranked else None
    metric = metric_of(rank_by)
    return {
        "members": len(rows),
        "diverged": sum(r["status"] == "diverged" for r in rows),
        "rank_by": rank_by,
        "rank_direction": direction,
        "best_member": best["member"] if best else None,
        f"best_val_{metric}": best[rank_by] if best else None,
        f"best_test_{metric}": best.get(f"test_{metric}") if best else None,
        f"mean_val_{metric}": float(values.mean()) if ranked else None,
        f"median_val_{metric}": float(np.median(values)) if ranked else None,
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def leaderboard(
    rows: Sequence[dict[str, Any]], top: int = 10, rank_by: str = RANK_BY, direction: str = "max"
) -> str:
    """A text leaderboard: what it ranks by, the best healthy members (trials stopped early
    are counted, diverged ones listed, apart).

    Shown: the hyperparameters and the ranking metric's final, best and test values.
    """
    ok = rank_rows(rows, rank_by, direction)
    diverged = [r for r in rows if r["status"] == "diverged"]
    stopped = sum(r["status"] == "stopped" for r in rows)
    metric = metric_of(rank_by)
    shown = {rank_by, f"best_val_{metric}", f"test_{metric}"}
    first_metric = list(rows[0]).index("status") if rows else 0
    columns = [c for i, c in enumerate(rows[0]) if i < first_metric or c in shown] if rows else []
    order = "highest" if direction == "max" else "lowest"
    lines = [f"ranked by {rank_by} ({order} first; ties by best_val_{metric}, then member)"]
    lines.append(_table([[_format(r[c]) for c in columns] for r in ok[:top]], columns))
    if len(ok) > top:
        lines.append(f"... and {len(ok) - top} more healthy members")
    if stopped:
        lines.append(f"stopped early by the scheduler: {stopped}")
    if diverged:
        steps = ", ".join(f"#{r['member']} at step {r['diverged_at_step']}" for r in diverged[:top])
        more = f" and {len(diverged) - top} more" if len(diverged) > top else ""
        lines.append(f"diverged ({len(diverged)}): {steps}{more}")
    return "\n".join(lines)


def _table(cells: list[list[str]], header: list[str]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *cells]
    )


def write_result(result: Result, out_dir: str | os.PathLike) -> Path:
    """Write `results.csv`, `curves.npz` and `sweep.json` into `out_dir`, each atomically.

    Raises:
      StorageError: a file could not be written (a full disk, permissions); the message names
        it and its cause. The previous file stays intact, and the sweep's checkpoint too:
        `sweepjax resume OUT_DIR` rewrites the result files.
    """
    out = Path(out_dir)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)

    files = {
        "results.csv": (write_csv, False),
        "curves.npz": (lambda f: np.savez(f, **result.curves), True),
        "sweep.json": (lambda f: json.dump(result.summary, f, indent=2, default=str), False),
    }
    for name, (write, binary) in files.items():
        try:
            atomic_write(out / name, write, binary)
        except OSError as err:
            raise StorageError(
                f"{describe_os_error(err, 'write')} The previous {name} and the sweep's "
                f"checkpoint are intact; then `sweepjax resume {out}` rewrites the result files."
            ) from err
    result.out_dir = out
    return out
