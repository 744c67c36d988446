"""The report's figures against the step: the training and validation curves of every member,
and the learning-rate schedule each member followed (its own family where the family is chosen
per member).

Both take a `sweepjax.Result` and return a matplotlib `Figure`, or None when there is nothing
to draw (no curves, no config to compute the schedules from).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sweepjax.report.analysis import (
    as_number,
    best_index,
    config_of,
    is_diverged,
    member_schedules,
    varying_dimensions,
)
from sweepjax.report.figure_axes import (
    Colours,
    by_hyperparameter,
    draw_best,
    falls,
    hp_text,
    label,
    log_frame,
    sweep_title,
    tidy_log_axis,
)
from sweepjax.sweep.results import Result, metric_of, ranking

_COLUMNS = 3  # panels per row of the curves figure


def curve_names(result: Result) -> list[str]:
    """The curves drawn, in order: train loss, validation loss, the ranking metric, the rest.

    >>> curves = dict.fromkeys(["steps", "train_loss", "val_loss", "val_mae", "val_mse"])
    >>> curve_names(Result([], curves, {"rank_by": "final_val_mse", "rank_direction": "min"}))
    ['train_loss', 'val_loss', 'val_mse', 'val_mae']
    """
    curves = result.curves
    first = ["train_loss", "val_loss", f"val_{metric_of(ranking(result.summary)[0])}"]
    rest = [n for n in curves if n.startswith("val_")]
    return [n for n in dict.fromkeys([*first, *rest]) if n in curves]


def figure_curves(result: Result, only: Sequence[str] | None = None, prefer: str | None = None):
    """Train loss and every validation metric of every member against the step, coloured by
    learning rate (`prefer`: another dimension, see `by_hyperparameter`), the best member
    highlighted, diverged members dashed up to their divergence.

    Curves whose lower values are better (losses, errors) are drawn on log axes that frame
    most members; up to three panels a row. `only`: those curves alone.
    """
    from matplotlib.figure import Figure

    names = [n for n in curve_names(result) if only is None or n in only]
    if not names or not len(result.curves["steps"]):
        return None
    colours = by_hyperparameter(result, prefer)
    columns = min(len(names), _COLUMNS)
    lines = -(-len(names) // columns)
    fig = Figure(figsize=(5.2 * columns + 1.2, 4.4 * lines), layout="constrained")
    axes = list(fig.subplots(lines, columns, squeeze=False).ravel())
    for k, name in enumerate(names):
        _draw_curves(axes[k], result, name, colours, detailed=k == 0)
    for ax in axes[len(names) :]:
        ax.remove()
    if colours:
        colours.key(fig, axes[: len(names)], pad=0.01)
    fig.suptitle(f"{sweep_title(result)}: curves of every member")
    return fig


def _draw_curves(ax, result: Result, name: str, colours: Colours | None, detailed: bool) -> None:
    """One panel: curve `name` of every member; the best member's hyperparameters in the
    legend when `detailed`."""
    from matplotlib.ticker import MaxNLocator

    steps, values, rows = result.curves["steps"], result.curves[name], result.rows
    healthy = [i for i, r in enumerate(rows) if not is_diverged(r)]
    lower = falls(name, result, values[:, healthy])
    frame = log_frame(values[:, healthy] if healthy else values) if lower else None
    for i, row in enumerate(rows):
        _draw_member(ax, steps, values[:, i], row, colours.of(i) if colours else "tab:blue", frame)
    best = best_index(result)
    if best is not None:
        member = f"best #{rows[best]['member']}"
        detail = f": {hp_text(rows[best], varying_dimensions(rows)[:3])}" if detailed else ""
        draw_best(
            ax, steps, values[:, best], colours.of(best) if colours else "tab:blue", member + detail
        )
    if len(healthy) < len(rows):
        ax.plot([], [], "x--", color="tab:red", label="diverged (x: last evaluation)")
    if frame is not None:
        ax.set_yscale("log")
        ax.set_ylim(*frame)
        tidy_log_axis(ax.yaxis, *frame)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel(label(name))
    ax.set_title(label(name))
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # falling curves leave the top right empty
        ax.legend(fontsize=7, loc="upper right" if lower else "lower right")


def _draw_member(ax, steps, y, row, colour, frame) -> None:
    """One member's curve; a diverged one dashed and cut after its divergence, a red x at its
    last evaluation (on the edge of `frame` when outside it)."""
    diverged = is_diverged(row)
    at = as_number(row.get("diverged_at_step"))
    y = y.copy()
    if diverged and math.isfinite(at) and at >= 0:
        cut = np.searchsorted(steps, at)  # the first evaluation after divergence
        y[cut + 1 :] = np.nan
    style = {"alpha": 0.45, "ls": "--"} if diverged else {"alpha": 0.75, "ls": "-"}
    ax.plot(steps, y, color=colour, lw=0.9, **style)
    last = np.flatnonzero(np.isfinite(y))
    if diverged and last.size:
        mark = y[last[-1]] if frame is None else np.clip(y[last[-1]], *frame)
        ax.plot(steps[last[-1]], mark, "x", color="tab:red", ms=6, mew=1.5)


def figure_schedules(result: Result):
    """The learning rate each member followed against the step, coloured by its schedule
    family where the family is chosen per member, else like the curves."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    computed = member_schedules(result)
    if computed is None:
        return None
    steps, lr = computed
    rows = result.rows
    colours = by_hyperparameter(result, "schedule")
    best = best_index(result)
    fig = Figure(figsize=(7.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(rows):
        colour = colours.of(i) if colours else "tab:blue"
        ax.plot(
            steps, lr[i], color=colour, lw=0.9, alpha=0.75, ls="--" if is_diverged(row) else "-"
        )
    if best is not None:
        colour = colours.of(best) if colours else "tab:blue"
        draw_best(ax, steps, lr[best], colour, f"best #{rows[best]['member']}")
    done = result.summary.get("steps_done")
    if isinstance(done, int) and done < steps[-1]:
        ax.axvline(done, color="grey", ls=":", label=f"stopped at step {done}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    peaks = lr.max(1)
    if np.any(peaks > 0):  # log axis; a schedule decaying to zero leaves through the bottom
        ax.set_yscale("log")
        ax.set_ylim(peaks[peaks > 0].min() / 100, peaks.max() * 2)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    if colours and colours.label == "learning rate":
        colours = colours._replace(label="learning rate (peak)")
    if colours:
        colours.key(fig, ax)
    fig.suptitle(
        f"{sweep_title(result)}: learning-rate schedule ({_families(result)}) of every member"
    )
    return fig


def _families(result: Result) -> str:
    """The schedule families of the members, in words.

    >>> rows = [{"member": i, "schedule": s} for i, s in enumerate(["sgdr", "cosine", "sgdr"])]
    >>> _families(Result(rows, {}, {})), _families(Result(rows[:1], {}, {"config": {"schedule": "x"}}))
    ('cosine, sgdr', 'sgdr')
    """
    default = config_of(result.summary).get("schedule", "?")
    names = sorted({str(r.get("schedule", default)) for r in result.rows})
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} families"
