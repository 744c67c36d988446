"""The result of a sweep: the per-member table, the curves, and the files they are written to.

Files in `out_dir` (each written atomically: a temporary file, then a rename):
  * `results.csv`: one row per member (hyperparameters, status, final and best metrics);
  * `curves.npz`: `steps [C]`, `train_loss`, `val_loss`, `val_accuracy` (each `[C, P]`);
  * `sweep.json`: the config, library versions, device, timings and a summary.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRICS = (
    "status",
    "diverged_at_step",
    "final_train_loss",
    "final_val_loss",
    "final_val_accuracy",
    "best_val_accuracy",
    "test_accuracy",
)
RANK_BY = "final_val_accuracy"


@dataclasses.dataclass
class Result:
    """A finished (or interrupted) sweep.

    Attributes:
      rows: one dict per member: `member`, its hyperparameters, then `METRICS`.
      curves: `steps [C]` and `[C, P]` arrays `train_loss`, `val_loss`, `val_accuracy`.
      summary: what `sweep.json` holds.
      out_dir: where the files are, or None if nothing was written.
    """

    rows: list[dict[str, Any]]
    curves: dict[str, np.ndarray]
    summary: dict[str, Any]
    out_dir: Path | None = None

    def ranked(self) -> list[dict[str, Any]]:
        """Healthy members, best first by final validation accuracy."""
        ok = [r for r in self.rows if r["status"] == "ok"]
        return sorted(ok, key=lambda r: -r[RANK_BY])

    @property
    def best(self) -> dict[str, Any] | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def leaderboard(self, top: int = 10) -> str:
        return leaderboard(self.rows, top)


def member_rows(hparams: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Rows of the results table from per-member hyperparameters and metrics arrays."""
    size = len(metrics["status"])
    rows = []
    for i in range(size):
        row: dict[str, Any] = {"member": i}
        row.update({k: np.asarray(v)[i].item() for k, v in hparams.items()})
        row.update({k: np.asarray(metrics[k])[i].item() for k in METRICS})
        rows.append(row)
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cross-member statistics over healthy members only (diverged members never enter)."""
    ok = [r for r in rows if r["status"] == "ok"]
    accs = np.array([r[RANK_BY] for r in ok], dtype=float)
    best = max(ok, key=lambda r: r[RANK_BY]) if ok else None
    return {
        "members": len(rows),
        "diverged": len(rows) - len(ok),
        "best_member": best["member"] if best else None,
        "best_val_accuracy": best[RANK_BY] if best else None,
        "best_test_accuracy": best["test_accuracy"] if best else None,
        "mean_val_accuracy": float(accs.mean()) if ok else None,
        "median_val_accuracy": float(np.median(accs)) if ok else None,
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def leaderboard(rows: Sequence[dict[str, Any]], top: int = 10) -> str:
    """A text leaderboard: the best healthy members, then the diverged ones apart."""
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r[RANK_BY])
    diverged = [r for r in rows if r["status"] != "ok"]
    hidden = {"status", "diverged_at_step", "final_train_loss", "final_val_loss"}
    columns = [c for c in rows[0] if c not in hidden] if rows else []
    lines = [_table([[_format(r[c]) for c in columns] for r in ok[:top]], columns)]
    if len(ok) > top:
        lines.append(f"... and {len(ok) - top} more healthy members")
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


def atomic_write(path: Path, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write `path` through a temporary file in the same folder and an atomic rename.

    A crash or a full disk leaves the previous file intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(result: Result, out_dir: str | os.PathLike) -> Path:
    """Write `results.csv`, `curves.npz` and `sweep.json` into `out_dir`, each atomically."""
    out = Path(out_dir)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)

    atomic_write(out / "results.csv", write_csv)
    atomic_write(out / "curves.npz", lambda f: np.savez(f, **result.curves), binary=True)
    atomic_write(out / "sweep.json", lambda f: json.dump(result.summary, f, indent=2, default=str))
    result.out_dir = out
    return out


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read `results.csv` back with numbers as numbers."""

    def convert(text: str) -> Any:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with open(path, newline="") as f:
        return [{k: convert(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_result(out_dir: str | os.PathLike) -> Result:
    """Load a `Result` from the files of `out_dir`."""
    out = Path(out_dir)
    with np.load(out / "curves.npz") as f:
        curves = dict(f)
    summary = json.loads((out / "sweep.json").read_text())
    return Result(read_rows(out / "results.csv"), curves, summary, out)
