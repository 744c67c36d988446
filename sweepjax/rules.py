"""Text summaries of finished sweeps that show a tuning rule (used by `experiments/*.py`).

Each rule experiment's `summarize(out_dir, ...)` builds its text from these helpers; the
`sweepjax summarize EXPERIMENT OUT_DIR ...` command prints it.

>>> rows = [{"lr": 0.1, "status": "ok", "final_train_loss": 0.5, "final_val_accuracy": 0.8,
...          "test_accuracy": 0.79}]
>>> print(by_value(rows, "lr").splitlines()[2])
0.1 | 1 | 0 | 0.5 | 80.0% | 79.0%
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any


def rows_of(out_dir: os.PathLike | str) -> list[dict[str, Any]]:
    from sweepjax.report import read_sweep

    return read_sweep(out_dir).rows


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0.0:
            return "0"
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.0e}"
    return str(value)


def healthy(row: Mapping[str, Any]) -> bool:
    return row["status"] == "ok"


def learned(row: Mapping[str, Any], num_classes: int = 10) -> bool:
    """Healthy, and its final train loss is below chance level (log of the class count)."""
    loss = row["final_train_loss"]
    return healthy(row) and math.isfinite(loss) and loss < 0.9 * math.log(num_classes)


def learned_by_last_step(row: Mapping[str, Any], num_classes: int = 10) -> bool:
    """Not diverged, and its train loss is below chance level by its last step (a trial a
    scheduler stopped early counts by where it stopped).

    >>> learned_by_last_step({"status": "stopped", "final_train_loss": 1.2})
    True
    """
    loss = row["final_train_loss"]
    return (
        row["status"] != "diverged" and math.isfinite(loss) and loss < 0.9 * math.log(num_classes)
    )


def by_value(rows: Sequence[Mapping[str, Any]], name: str, then: str | None = None) -> str:
    """A table of the mean final metrics per value of `name` (and of `then`, when given): of
    the members that did not diverge, each at its last step; with a `stopped` column when a
    scheduler stopped some early.

    >>> rows = [{"lr": 0.1, "status": s, "final_train_loss": 1.0, "final_val_accuracy": 0.5,
    ...          "test_accuracy": 0.5} for s in ("ok", "stopped", "diverged")]
    >>> by_value(rows, "lr").splitlines()[2]
    '0.1 | 3 | 1 | 1 | 1 | 50.0% | 50.0%'
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = (row[name],) if then is None else (row[name], row[then])
        groups.setdefault(key, []).append(row)
    stopped = any(r["status"] == "stopped" for r in rows)
    header = [name, *([then] if then else []), "members", *(["stopped"] if stopped else [])]
    header += ["diverged", "final train loss", "final val acc", "test acc"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for key in sorted(groups, key=lambda k: tuple(_sortable(v) for v in k)):
        members = groups[key]
        ok = [r for r in members if r["status"] != "diverged"]
        loss = _mean([r["final_train_loss"] for r in ok])
        acc = _mean([r["final_val_accuracy"] for r in ok])
        test = _mean([r["test_accuracy"] for r in ok])
        counts = [len(members), *([sum(r["status"] == "stopped" for r in members)] * stopped)]
        cells = (
            [fmt(v) for v in key]
            + [str(c) for c in counts]
            + [
                str(len(members) - len(ok)),
                fmt(loss) if ok else "-",
                f"{acc:.1%}" if ok else "-",
                f"{test:.1%}" if ok else "-",
            ]
        )
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def best_line(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    ok = sorted((r for r in rows if healthy(r)), key=lambda r: -r["final_val_accuracy"])
    if not ok:
        return "best: every member diverged"
    best = ok[0]
    setting = ", ".join(f"{n}={fmt(best[n])}" for n in names)
    return (
        f"best by validation: {setting} (val {best['final_val_accuracy']:.1%}, "
        f"test {best['test_accuracy']:.1%})"
    )


def compare(out_dir: os.PathLike | str, name: str, then: str | None = None) -> str:
    """`by_value` of a finished sweep's `name` (and `then`), and its best member's setting."""
    rows = rows_of(out_dir)
    names = [name] if then is None else [name, then]
    return "\n".join([by_value(rows, name, then), best_line(rows, names)])


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if isinstance(v, float | int) and math.isfinite(v)]
    return sum(values) / len(values) if values else float("nan")


def _sortable(value: Any) -> tuple:
    if isinstance(value, int | float):
        return (0, value, "")
    return (1, 0, str(value))
