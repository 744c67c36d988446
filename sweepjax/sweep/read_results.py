"""Reading a sweep folder's result files back (`results.csv`, `curves.npz`, `sweep.json`).

Every reader refuses a damaged file in one line (`StorageError`, exit code 1) naming the file,
what is wrong and what rewrites it: a file that does not parse, a last line cut short, or
rows and curves that disagree with the members `sweep.json` records (`check_sizes`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sweepjax.errors import StorageError, describe_os_error
from sweepjax.files import load_npz
from sweepjax.sweep.results import Result

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
