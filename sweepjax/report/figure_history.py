"""The optimization history: the best value of the ranking metric any member has reached so far,
against the steps trained and against the seconds spent.

A fixed population is measured at every evaluation: the history at step `s` is the best value
any member that did not diverge reached at an evaluation up to `s`. An adaptive sweep's trials
start and stop at different steps: its history is drawn against the member-steps all trials had
trained by then (the compute spent), the steps of the trials that diverged included.

Seconds are the wall-clock seconds since training began at each chunk's end (`chunk_seconds` of
`sweep.json`, one per evaluation; compiling included); where the sweep recorded no such times
for its evaluations (an older or a resumed sweep), steps are mapped linearly onto its
`train_seconds`, and the caption says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from sweepjax.report.analysis import format_value, is_diverged
from sweepjax.report.figure_axes import falls, label, sweep_title, tidy_log_axis
from sweepjax.sweep.results import Result, is_finite_number, metric_of, ranking


class History(NamedTuple):
    """The best value so far at each evaluation of a sweep."""

    steps: np.ndarray  # [C] the evaluations' steps
    spent: np.ndarray | None  # [C] member-steps all trials had trained (adaptive sweeps)
    seconds: np.ndarray | None  # [C] seconds since training began; None if never recorded
    measured: bool  # seconds from the chunks' clock, not mapped from steps
    each: np.ndarray  # [C] the best value of each evaluation (NaN: none finite)
    best: np.ndarray  # [C] the best value up to each evaluation


def best_so_far(values: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `values [C, P]`: its best finite value (the highest for direction "max",
    the lowest for "min"), and the best up to that row; NaN before any finite value.

    >>> best_so_far(np.array([[np.nan, 3.0], [2.0, 1.0], [np.nan, np.nan]]), "min")
    (array([ 3.,  1., nan]), array([3., 1., 1.]))
    """
    sign = 1.0 if direction == "max" else -1.0
    signed = np.where(np.isfinite(values), sign * values, -np.inf)
    each = signed.max(axis=1, initial=-np.inf)
    best = np.maximum.accumulate(each)
    return tuple(np.where(np.isfinite(a), sign * a, np.nan) for a in (each, best))


def member_steps(rows: Sequence[Mapping[str, Any]], steps: np.ndarray) -> np.ndarray:
    """The steps all trials of an adaptive sweep had trained at each of `steps`, from each
    trial's `start_step` and `steps_trained`.

    >>> member_steps([{"start_step": 0, "steps_trained": 20}, {"start_step": 10,
    ...               "steps_trained": 30}], np.array([10, 20, 40]))
    array([10, 30, 50])
    """
    start = np.asarray([int(r["start_step"]) for r in rows])
    trained = np.asarray([int(r["steps_trained"]) for r in rows])
    return np.clip(steps[:, None] - start[None, :], 0, trained[None, :]).sum(axis=1)


def seconds_at(summary: Mapping[str, Any], steps: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """The seconds since training began at each of `steps` (the evaluations), and whether
    they were measured (`chunk_seconds`, one per evaluation) rather than mapped linearly from
    steps onto `train_seconds`; None when neither is recorded.

    >>> seconds_at({"chunk_seconds": [1.5, 2.0]}, np.array([10, 20]))
    (array([1.5, 2. ]), True)
    >>> seconds_at({"train_seconds": 4.0, "steps_done": 20}, np.array([10, 20]))
    (array([2., 4.]), False)
    """
    chunks = summary.get("chunk_seconds")
    if isinstance(chunks, list) and len(chunks) == len(steps):
        return np.asarray(chunks, float), True
    total, done = summary.get("train_seconds"), summary.get("steps_done")
    if is_finite_number(total) and isinstance(done, int) and done > 0:
        return steps / done * float(total), False
    return None, False


def optimization_history(result: Result) -> History | None:
    """The best value of the ranking metric so far at each evaluation, over the members that
    did not diverge; None without curves."""
    column, direction = ranking(result.summary)
    curve = result.curves.get(f"val_{metric_of(column)}")
    if curve is None or not len(curve) or not result.rows:
        return None
    steps = np.asarray(result.curves["steps"])
    healthy = ~np.asarray([is_diverged(r) for r in result.rows])
    each, best = best_so_far(curve[:, healthy], direction)
    adaptive = "steps_trained" in result.rows[0]
    spent = member_steps(result.rows, steps) if adaptive else None
    seconds, measured = seconds_at(result.summary, steps)
    return History(steps, spent, seconds, measured, each, best)


def figure_history(result: Result):
    """The best value so far against the steps (an adaptive sweep: the member-steps spent) and
    against the seconds, each evaluation's best as dots; None without curves or values."""
    from matplotlib.figure import Figure

    history = optimization_history(result)
    if history is None or np.isnan(history.best).all():
        return None
    column = ranking(result.summary)[0]
    x_axes = [
        (history.steps, "step")
        if history.spent is None
        else (history.spent, "member-steps trained (all trials)")
    ]
    if history.seconds is not None:
        clock = "wall clock" if history.measured else "mapped linearly from steps"
        x_axes.append((history.seconds, f"seconds since training began ({clock})"))
    fig = Figure(figsize=(5.4 * len(x_axes) + 0.4, 4.2), layout="constrained")
    axes = fig.subplots(1, len(x_axes), squeeze=False, sharey=True)[0]
    for ax, (x, words) in zip(axes, x_axes, strict=True):
        ax.plot(
            x,
            history.each,
            "o",
            ms=3.5,
            color="tab:blue",
            alpha=0.45,
            label="best of each evaluation",
        )
        ax.step(x, history.best, where="post", color="black", lw=1.8, label="best so far")
        ax.set_xlabel(words)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    finite = history.best[np.isfinite(history.best)]
    if falls(column, result) and finite.min() > 0:
        axes[0].set_yscale("log")
        tidy_log_axis(axes[0].yaxis, finite.min(), np.nanmax(history.each))
    axes[0].set_ylabel(label(column.replace("final_", "", 1)))
    axes[0].legend(fontsize=8, title=f"best: {format_value(float(finite[-1]))}", title_fontsize=8)
    fig.suptitle(f"{sweep_title(result)}: best {label(column.replace('final_', '', 1))} so far")
    return fig


def history_caption(result: Result) -> str:
    """The history figure's caption: which members count, and where its seconds come from."""
    column = label(ranking(result.summary)[0].replace("final_", "", 1))
    seconds, measured = seconds_at(result.summary, np.asarray(result.curves.get("steps", [])))
    adaptive = bool(result.rows) and "steps_trained" in result.rows[0]
    against = "the member-steps all trials had trained" if adaptive else "the step"
    if measured:
        against += " and against the wall-clock seconds at each evaluation (compiling included)"
    elif seconds is not None:
        against += (
            " and against seconds mapped linearly from steps onto the sweep's train_seconds (it "
            "recorded no time per evaluation)"
        )
    return f"Best {column} so far over the members that did not diverge, against {against}"
