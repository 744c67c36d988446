"""The result of a sweep: the per-member table, the curves, and the files they are written to.

Files in `out_dir` (each written atomically: a temporary file, then a rename):
  * `results.csv`: one row per member (hyperparameters, status, the task's final, best and
    test metrics);
  * `curves.npz`: `steps [C]`, `train_loss` and `val_<metric>` for each task metric (`[C, P]`);
  * `sweep.json`: the config, library versions, device, timings and a summary.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import numbers
import os
import secrets
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweepjax.errors import StorageError, describe_os_error

if TYPE_CHECKING:
    import pandas as pd

STATUS = ("status", "diverged_at_step")  # the columns every row has after its hyperparameters
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

    # DataFrames (pandas is optional: `pip install 'sweepjax[pandas]'`); see sweepjax.frames.
    def to_pandas(self) -> pd.DataFrame:
        """The trial table, one row per trial, the columns of `results.csv` in its order.

        >>> Result([{"member": 0, "seed": 0, "status": "ok"}], {}, {}).to_pandas().shape
        (1, 3)
        """
        from sweepjax.frames import results_frame

        return results_frame(self)

    def curves_frame(self, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """The curves in long format: `member`, `step`, `metric`, `value`, no NaN rows."""
        from sweepjax.frames import curves_frame

        return curves_frame(self, metrics)

    def summarize_by(self, by: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Trials grouped by `by` (default: the hyperparameters but `seed`): `n`,
        `n_diverged`, and each metric's `_mean` and `_std` over the trials that finished."""
        from sweepjax.frames import summarize_by

        return summarize_by(self, by)


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


def atomic_write(path: Path, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write `path` through a temporary file in the same folder and an atomic rename.

    The file gets the mode a plain `open()` gives a new file (0o666 less the umask, so shared
    folders stay shared). A crash or a full disk leaves the previous file intact and no
    temporary file behind.

    Raises:
      OSError: the folder or the file could not be written; it names `path`, not the
        temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # as open() does
        created = True
        _write_and_close(
            os.fdopen(fd, "wb" if binary else "w", newline=None if binary else ""), write
        )
        os.replace(tmp, path)
    except BaseException as err:
        if created:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, err.strerror, os.fspath(path)) from err
        raise


def _write_and_close(f: io.IOBase, write: Callable[[io.IOBase], None]) -> None:
    """`write(f)`, then flush it to the disk and close it; a failed write closes it quietly
    (closing flushes again, and on a full disk that would only fail again)."""
    try:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        raise
    f.close()


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


# ----------------------------------------------------------------------------- reading

# What a damaged result file raises when parsed (UnicodeDecodeError and JSONDecodeError are
# ValueErrors; np.load raises EOFError or BadZipFile for a torn file).
_DAMAGE = (ValueError, EOFError, KeyError, csv.Error, zipfile.BadZipFile)


def _damaged(path: Path, reason: object) -> StorageError:
    """The error of a damaged result file: the file, what is wrong, and what rewrites it."""
    out = path.parent
    rewrite = (
        f"`sweepjax resume {out}` rewrites the result files from the sweep's checkpoint"
        if (out / "checkpoints").is_dir()
        else f"{out} holds no checkpoint to rewrite it from: run the sweep again"
    )
    return StorageError(f"{path} is damaged ({reason}); {rewrite}.")


def _load(path: Path, parse: Callable[[Path], Any]) -> Any:
    """`parse(path)`; raises FileNotFoundError when it is missing, `StorageError` when it is
    damaged or cannot be read."""
    try:
        return parse(path)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise StorageError(describe_os_error(err, "read")) from err
    except _DAMAGE as err:
        raise _damaged(path, err) from err


def _parse_rows(path: Path) -> list[dict[str, Any]]:
    def convert(text: str) -> Any:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with open(path, newline="") as f:
        content = f.read()
    reader = csv.DictReader(io.StringIO(content))
    rows = list(reader)
    header = reader.fieldnames or []
    if "member" not in header or "status" not in header:
        raise ValueError(f"a header without member and status: {header[:4]}")
    for line, row in enumerate(rows, 2):
        if None in row or None in row.values():  # DictReader's marks of extra, missing fields
            fields = sum(v is not None for k, v in row.items() if k is not None)
            fields += len(row.get(None, []))
            raise ValueError(f"line {line} has {fields} fields, the header {len(header)}")
    if not content.endswith("\n"):  # the writer ends every line: its last value may be cut
        raise ValueError("its last line is cut short: it has no line end")
    rows = [{k: convert(v) for k, v in row.items()} for row in rows]
    if not all(isinstance(r["member"], int) for r in rows):
        raise ValueError("a member that is not an integer")
    return rows


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read `results.csv` back with numbers as numbers.

    Raises:
      FileNotFoundError: there is no such file.
      StorageError: the file is damaged (not a results table) or cannot be read.
    """
    return _load(Path(path), _parse_rows)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file.

    Raises:
      FileNotFoundError: there is no such file.
      zipfile.BadZipFile, ValueError, EOFError: it is damaged. (Unlike `np.load`, a file that
        is not a zip archive is not taken for a pickle, whose error suggests unpickling it.)
    """
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise zipfile.BadZipFile("File is not a zip file")
        file.seek(0)
        with np.load(file) as arrays:
            return {k: np.asarray(arrays[k]) for k in arrays.files}


def _parse_summary(path: Path) -> dict[str, Any]:
    summary = json.loads(path.read_text())
    if not isinstance(summary, dict):
        raise ValueError(f"a JSON {type(summary).__name__}, not an object")
    return summary


def _required(out: Path, name: str, parse: Callable[[Path], Any]) -> Any:
    """A result file of `out` that must exist: a missing one is a `ValueError`."""
    if not out.is_dir():
        raise ValueError(f"out_dir: {out} is not a folder; give the out_dir of a sweep.")
    try:
        return _load(out / name, parse)
    except FileNotFoundError as err:
        writes = (
            f"; it holds checkpoints: `sweepjax resume {out}` writes them"
            if (out / "checkpoints").is_dir()
            else "; is it the out_dir of a sweep? A sweep writes them when it finishes or stops"
        )
        raise ValueError(f"out_dir: {out} holds no results ({name} is missing){writes}.") from err


def read_result(out_dir: str | os.PathLike) -> Result:
    """Load a `Result` from the files of `out_dir`; every file must be there.

    Raises:
      ValueError: `out_dir` is not a sweep folder with results (a file is missing).
      StorageError: a file is damaged or cannot be read, or the files disagree on the sweep's
        size (`check_sizes`).
    """
    out = Path(out_dir)
    rows = _required(out, "results.csv", _parse_rows)
    curves = _required(out, "curves.npz", load_npz)
    result = Result(rows, curves, _required(out, "sweep.json", _parse_summary), out)
    check_sizes(result)
    return result


def read_sweep(out_dir: str | os.PathLike) -> Result:
    """Load a sweep directory, tolerating missing files but `results.csv`.

    Unlike `read_result`, a missing `curves.npz` or `sweep.json` gives empty `curves` or
    `summary` (so do the curves of a sweep of buckets stopped early, one column per member of
    the population), and the curves are float64; a damaged file is an error all the same
    (files are written atomically, so a running sweep never tears one).

    Args:
      out_dir: a directory written by `sweepjax.run` (finished, interrupted or running).

    Returns:
      The `Result`, with `out_dir` set.

    Raises:
      ValueError: `out_dir` holds no `results.csv`.
      StorageError: a file is damaged or cannot be read, or the files disagree on the sweep's
        size (`check_sizes`).
    """
    out = Path(out_dir)
    rows = _required(out, "results.csv", _parse_rows)
    try:
        curves = _load(out / "curves.npz", load_npz)
    except FileNotFoundError:
        curves = {}
    result = Result(rows, curves, read_summary(out), out)
    check_sizes(result)
    if any(v.shape[1:] != (len(rows),) for k, v in curves.items() if k != "steps"):
        curves = {}  # a sweep of buckets stopped early: a column for every member, not a row
    result.curves = {k: v if k == "steps" else v.astype(np.float64) for k, v in curves.items()}
    return result


def read_summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """`sweep.json` of `out_dir` as a dict, or `{}` when it is missing.

    Raises:
      StorageError: it is damaged or cannot be read.
    """
    try:
        return _load(Path(out_dir) / "sweep.json", _parse_summary)
    except FileNotFoundError:
        return {}


def check_sizes(result: Result) -> None:
    """Check that the files of `result.out_dir` describe one sweep: as many rows as `sweep.json`
    records members, and every curve `[evaluations, members]` (a sweep of structural buckets
    stopped early: `[evaluations, population]`). A file cut short, or another sweep's, fails.

    Raises:
      StorageError: the file that disagrees, what it holds and what it should.

    >>> rows = [{"member": 0}, {"member": 1}]
    >>> check_sizes(Result(rows, {}, {"members": 3}, Path("runs/a")))
    Traceback (most recent call last):
    sweepjax.errors.StorageError: runs/a/results.csv is damaged (it holds 2 rows, and sweep.json records 3 members); runs/a holds no checkpoint to rewrite it from: run the sweep again.
    """
    out, summary, curves = Path(result.out_dir or "."), result.summary, result.curves
    members = summary.get("members")
    if isinstance(members, int) and len(result.rows) != members:
        found = f"it holds {len(result.rows)} rows, and sweep.json records {members} members"
        raise _damaged(out / "results.csv", found)
    if not curves:
        return
    steps = curves.get("steps")
    if steps is None or steps.ndim != 1:
        raise _damaged(out / "curves.npz", "no one-dimensional steps array")
    width = len(result.rows)
    if "buckets" in summary:  # each member's curve in its own column, trained or not yet
        width = summary.get("config", {}).get("population", width)
    expected = (len(steps), width)
    for name, values in curves.items():
        if name != "steps" and values.shape != expected:
            wanted = f"{expected[0]} evaluations of {width} members make {expected}"
            raise _damaged(out / "curves.npz", f"{name} has shape {values.shape}; {wanted}")
