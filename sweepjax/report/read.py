"""Where a sweep stands: its status line and the text `sweepjax show` prints.

Everything is read from `out_dir` alone (`results.csv`, `curves.npz`, `sweep.json`, the lock),
so it works on a finished, an interrupted, a resumed or a running sweep.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sweepjax.report.analysis import (
    boundary_text,
    config_of,
    divergence_boundary,
    format_value,
    is_diverged,
)
from sweepjax.sweep.lock import FolderBusy, holder
from sweepjax.sweep.read_results import read_sweep
from sweepjax.sweep.results import Result, leaderboard, rank_rows, ranking

STATUSES = ("running", "interrupted", "finished")


def check_top(top: int) -> None:
    """Refuse a leaderboard length that is not a positive integer (`--top`)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(
            f"top: {top!r} is not allowed; allowed: a positive integer (how many members to list)."
        )


def sweep_status(summary: Mapping[str, Any]) -> str:
    """The state of a sweep from its `sweep.json`: running, interrupted, finished or unknown.

    A `status` key wins; otherwise `steps_done` is compared with the config's `steps`.

    >>> sweep_status({"steps_done": 30, "config": {"steps": 30}})
    'finished'
    >>> sweep_status({"steps_done": 10, "config": {"steps": 30}})
    'interrupted'
    >>> sweep_status({"status": "running", "steps_done": 10, "config": {"steps": 30}})
    'running'
    """
    status = summary.get("status")
    if isinstance(status, str) and status:
        return status
    if "trials" in summary and isinstance(summary.get("interrupted"), bool):  # adaptive
        return "interrupted" if summary["interrupted"] else "finished"
    done, steps = summary.get("steps_done"), config_of(summary).get("steps")
    if not isinstance(done, int) or not isinstance(steps, int):
        return "unknown"
    return "finished" if done >= steps else "interrupted"


def status_line(result: Result) -> str:
    """One line: where the sweep stands, its size and its best member by the sweep's ranking.

    >>> rows = [{"member": i, "status": "ok", "final_val_mse": v} for i, v in enumerate([0.3, 0.1])]
    >>> status_line(Result(rows, {}, {"rank_by": "final_val_mse", "rank_direction": "min"}))
    'unknown, 2 members, 0 diverged, best #1 at final_val_mse 0.1'
    """
    summary = result.summary
    status = sweep_status(summary)
    done, steps = summary.get("steps_done"), config_of(summary).get("steps")
    parts = [status]
    adaptive = "trials" in summary  # its sweep ends when its trials do, not at `steps`
    if isinstance(done, int):
        whole = isinstance(steps, int) and not adaptive
        parts.append(f"step {done}/{steps}" if whole else f"step {done}")
    diverged = sum(is_diverged(r) for r in result.rows)
    parts.append(f"{len(result.rows)} {'trials' if adaptive else 'members'}, {diverged} diverged")
    column, direction = ranking(summary)
    best = rank_rows(result.rows, column, direction)
    if best:
        parts.append(f"best #{best[0]['member']} at {column} {format_value(best[0][column])}")
    return ", ".join(parts)


def show(out_dir: str | os.PathLike, top: int = 10) -> str:
    """The text `sweepjax show` prints: the status line, the leaderboard, the divergence boundary.

    Args:
      out_dir: a sweep directory.
      top: how many healthy members to list.

    Returns:
      The text, several lines.

    While a process holds the folder's lock, the first line says so (who, which step, since
    when) and the rest are the results written last, if any; with none yet, that line alone.

    Raises:
      ValueError: `top` is not a positive integer, or `out_dir` holds no results and no
        running sweep.
      StorageError: a result file is damaged or cannot be read.
    """
    check_top(top)
    result, running = read_folder(out_dir)
    if result is None:
        return f"{out_dir}: {running_line(running)}; {NOT_YET}"
    lines = [f"{result.out_dir}: {status_line(result)}"]
    if running is not None:
        lines.insert(0, f"{out_dir}: {written_while(running, result)}")
    if result.rows:
        lines.append(leaderboard(result.rows, top, *ranking(result.summary)))
    boundary = divergence_boundary(result.rows)
    if any(b["smallest_diverged"] is not None for b in boundary):
        lines.append("divergence boundary (learning rate):")
        lines.extend(f"  {boundary_text(b)}" for b in boundary)
    return "\n".join(lines)


NOT_YET = "it writes its results when it finishes or stops"  # a running sweep without results


def read_folder(out_dir: str | os.PathLike) -> tuple[Result | None, dict[str, Any] | None]:
    """The results in `out_dir` (`read_sweep`) and, while a sweep holds the folder, who holds
    it (`sweepjax.sweep.lock.holder`); the results are None while that sweep has written none.

    Raises:
      ValueError: `out_dir` holds no results and no running sweep.
      StorageError: a result file is damaged or cannot be read.
    """
    running = holder(out_dir)
    try:
        return read_sweep(out_dir), running
    except ValueError:
        if running is None:
            raise
        return None, running


def no_results_yet(out_dir: str | os.PathLike, running: Mapping[str, Any]) -> FolderBusy:
    """The error of a command that needs the results of a sweep still running without any.

    >>> print(no_results_yet("runs/a", {"pid": 7, "host": "h", "step": 40}))
    out_dir: runs/a is a sweep still running at step 40 (PID 7 on h); it writes its results when it finishes or stops (kill -TERM 7 stops it after a checkpoint): try again then.
    """
    stop = f"kill -TERM {running.get('pid', '?')} stops it after a checkpoint"
    return FolderBusy(
        f"out_dir: {out_dir} is a sweep still {running_line(running)}; {NOT_YET} ({stop}): "
        "try again then."
    )


def written_while(running: Mapping[str, Any], result: Result) -> str:
    """Who is running the sweep (`running_line`), and when the results shown were written.

    >>> written_while({"pid": 7, "host": "h", "step": 50}, Result([], {}, {"steps_done": 30}))
    'running at step 50 (PID 7 on h); the results below were written at step 30'
    """
    done = result.summary.get("steps_done")
    when = "before" if done is None else f"at step {done}"
    return f"{running_line(running)}; the results below were written {when}"


def running_line(running: Mapping[str, Any]) -> str:
    """'running (step, PID, host, since)' from what the folder's lock says of its holder."""
    step = running.get("step")
    of = f" of {running['steps']}" if "steps" in running else ""
    at = f"at step {step}{of}" if step is not None else "starting (no chunk done yet)"
    since = f", since {running['since']}" if "since" in running else ""
    return f"running {at} (PID {running.get('pid', '?')} on {running.get('host', '?')}{since})"
