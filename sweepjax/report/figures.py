"""The report's figures (matplotlib, no display needed): curves, the best value so far, the
ranking metric against each hyperparameter, a heat map of the two main ones, parallel
coordinates, fANOVA importance, the metric per category, the schedules.

Each `figure_*` takes a `sweepjax.Result` and returns a matplotlib `Figure`, or None when the
sweep has nothing to draw (no curves, a single dimension, ...). `FIGURES` names them with
their captions: a text (`caption_of` fills in the sweep's ranking metric) or a function of the
sweep (what the figure left out, where its numbers come from). Every figure follows the
sweep's ranking (`sweepjax.sweep.results.ranking`): its metric, and whether higher or lower is
better; colours by that metric are bright for the best members either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sweepjax.report.analysis import (
    as_number,
    best_index,
    format_value,
    important_pair,
    is_diverged,
    is_log_scale,
    is_numeric,
    varying_dimensions,
)
from sweepjax.report.figure_axes import (
    Colours,
    by_ranking,
    falls,
    label,
    log_frame,
    sweep_title,
    tidy_log_axis,
)
from sweepjax.report.figure_curves import figure_curves, figure_schedules
from sweepjax.report.figure_groups import figure_groups
from sweepjax.report.figure_history import figure_history, history_caption
from sweepjax.report.figure_trials import figure_lineage, figure_trials
from sweepjax.report.importance import figure_importance, importance_caption
from sweepjax.sweep.results import Result, ranking


def _log_scaled(result: Result, name: str, values: np.ndarray) -> bool:
    return is_log_scale(result.summary, name, values) and values.min() > 0


def _set_log(ax, which: str, values: np.ndarray) -> None:
    """A log scale on axis `which` ("x" or "y") of `ax`, labelled for `values`."""
    getattr(ax, f"set_{which}scale")("log")
    tidy_log_axis(getattr(ax, f"{which}axis"), values.min(), values.max())


def figure_hyperparameters(result: Result):
    """The ranking metric and the final validation loss against each numeric hyperparameter."""
    from matplotlib.figure import Figure

    rows = result.rows
    dims = [d for d in varying_dimensions(rows) if is_numeric(rows, d)]
    wanted = dict.fromkeys((ranking(result.summary)[0], "final_val_loss"))
    metrics = [m for m in wanted if rows and m in rows[0]]
    if not dims or not metrics:
        return None
    fig = Figure(figsize=(3.6 * len(dims) + 0.5, 3.2 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(dims), squeeze=False, sharey="row")
    for j, dim in enumerate(dims):
        x = np.asarray([as_number(r[dim]) for r in rows])
        log = _log_scaled(result, dim, x)
        for i, metric in enumerate(metrics):
            _scatter_metric(axes[i, j], result, x, metric)
            if log:
                _set_log(axes[i, j], "x", x)
            axes[i, j].set_xlabel(label(dim) + (" (log)" if log else ""))
            axes[i, j].grid(True, alpha=0.3)
    for i, metric in enumerate(metrics):
        axes[i, 0].set_ylabel(label(metric))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{sweep_title(result)}: final metrics against each hyperparameter")
    return fig


def _scatter_metric(ax, result: Result, x: np.ndarray, metric: str) -> None:
    """Column `metric` of every member against `x`: healthy dots, diverged crosses (on the worse
    edge when they have no value), the best a star; a log axis framing most members when lower
    values are better (losses, errors)."""
    rows = result.rows
    diverged = np.asarray([is_diverged(r) for r in rows])
    y = np.asarray([as_number(r[metric]) for r in rows])
    lower = falls(metric, result)
    frame = log_frame(y[~diverged]) if lower else None
    if frame is not None:  # outliers on the edges
        y = np.where(np.isfinite(y), np.clip(y, *frame), y)
    ax.scatter(x[~diverged], y[~diverged], s=18, color="tab:blue", label="healthy")
    cross = {"marker": "x", "s": 30, "color": "tab:red"}
    if diverged.any():
        finite = diverged & np.isfinite(y)
        ax.scatter(x[finite], y[finite], label="diverged", **cross)
        missing = diverged & ~np.isfinite(y)
        edge = np.full(missing.sum(), 0.97 if lower else 0.03)
        ax.scatter(x[missing], edge, transform=ax.get_xaxis_transform(), **cross)
    best = best_index(result)
    if best is not None:
        ax.scatter(x[best], y[best], marker="*", s=160, color="gold", ec="black", label="best")
    if frame is not None:
        ax.set_yscale("log")
        ax.set_ylim(frame[0] / 1.3, frame[1] * 1.3)
        tidy_log_axis(ax.yaxis, *frame)


def figure_heatmap(result: Result):
    """The ranking metric over the two most important hyperparameters, as a filled contour of
    the members (interpolated on log axes where log-scaled) with the members on top."""
    from matplotlib.figure import Figure

    rows = result.rows
    column, direction = ranking(result.summary)
    pair = important_pair(rows, column, direction)
    if pair is None:
        return None
    x, y = (np.asarray([as_number(r[name]) for r in rows]) for name in pair)
    logs = (_log_scaled(result, pair[0], x), _log_scaled(result, pair[1], y))
    colours = by_ranking(result)
    diverged = np.asarray([is_diverged(r) for r in rows])
    healthy = ~diverged & np.isfinite(colours.values)
    fig = Figure(figsize=(7.0, 5.4), layout="constrained")
    ax = fig.subplots()
    contour = _contour(ax, x, y, logs, healthy, colours)
    z = colours.values[healthy]
    points = ax.scatter(
        x[healthy],
        y[healthy],
        c=z,
        cmap=colours.cmap,
        norm=colours.norm,
        s=26 if contour is not None else 70,
        edgecolors="white",
        linewidths=0.6,
        label="healthy member",
    )
    if diverged.any():
        ax.scatter(
            x[diverged], y[diverged], marker="x", s=40, color="tab:red", label="diverged member"
        )
    best = best_index(result)
    if best is not None:
        ax.scatter(x[best], y[best], marker="*", s=260, color="gold", ec="black", label="best")
    for which, name, values, log in zip("xy", pair, (x, y), logs, strict=True):
        if log:
            _set_log(ax, which, values)
        getattr(ax, f"set_{which}label")(label(name) + (" (log)" if log else ""))
    ax.margins(0.05)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.colorbar(contour or points, ax=ax, label=colours.label)
    fig.suptitle(f"{sweep_title(result)}: {label(column)} over {pair[0]} and {pair[1]}")
    return fig


def _contour(ax, x, y, logs: tuple[bool, bool], healthy, colours: Colours):
    """The filled contour of the healthy members' colour values, triangulated where the axes
    are uniform (log space where log-scaled) and drawn in data space; None where it cannot be
    drawn (under 4 members, a dimension with under 3 values, collinear points)."""
    import matplotlib.tri as mtri
    from matplotlib.ticker import MaxNLocator

    if healthy.sum() < 4 or min(len(set(x[healthy])), len(set(y[healthy]))) < 3:
        return None
    u, v = (np.log10(x) if logs[0] else x), (np.log10(y) if logs[1] else y)
    try:
        triangles = mtri.Triangulation(u[healthy], v[healthy]).triangles
        tri = mtri.Triangulation(x[healthy], y[healthy], triangles)
        levels = MaxNLocator(10).tick_values(colours.norm.vmin, colours.norm.vmax)
        z = colours.values[healthy]
        return ax.tricontourf(
            tri, z, levels=levels, cmap=colours.cmap, norm=colours.norm, alpha=0.85
        )
    except (ValueError, RuntimeError):  # collinear points: the scatter alone
        return None


def _parallel_axis(raw: Sequence[Any], log: bool) -> tuple[np.ndarray, list[float], list[str]]:
    """One axis of the parallel coordinates: the members' positions in [0, 1], the positions
    to mark and their labels. Numbers span the axis (in log space when `log`), marked at each
    value when there are at most 6, else at the ends and the middle; strings are evenly spaced.

    >>> _parallel_axis([0.0, 2.0, 1.0], log=False)
    (array([0. , 1. , 0.5]), [0.0, 0.5, 1.0], ['0', '1', '2'])
    """
    if not all(isinstance(v, int | float) for v in raw):
        levels = sorted({str(v) for v in raw})
        position = {s: k / max(len(levels) - 1, 1) for k, s in enumerate(levels)}
        return np.asarray([position[str(v)] for v in raw]), list(position.values()), levels
    values = np.asarray(raw, float)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    log = log and low > 0
    scale = np.log10 if log else np.asarray
    low_t, high_t = float(scale(low)), float(scale(high))
    span = high_t - low_t or 1.0
    distinct = np.unique(finite)
    if len(distinct) <= 6:  # a choice or a small grid: its values
        marks = [float(m) for m in (scale(distinct) - low_t) / span]
        labels = [format_value(float(v)) for v in distinct]
    else:
        marks = [0.0, 0.5, 1.0]
        at = [low_t + m * span for m in marks]
        labels = [format_value(10**a if log else a) for a in at]
    return (scale(values) - low_t) / span, marks, labels


def figure_parallel(result: Result):
    """Parallel coordinates: one axis per varying hyperparameter, then the ranking metric;
    healthy members coloured by it (the best bright and drawn on top), diverged members
    dashed red, the best in black."""
    from matplotlib.figure import Figure

    rows = result.rows
    dims = varying_dimensions(rows)
    if not dims or not rows:
        return None
    column, direction = ranking(result.summary)
    names = [*dims, column]
    logs = [
        n != column
        and is_numeric(rows, n)
        and is_log_scale(result.summary, n, [as_number(r[n]) for r in rows])
        for n in names
    ]
    axes = [
        _parallel_axis([r.get(n) for r in rows], log) for n, log in zip(names, logs, strict=True)
    ]
    data = np.stack([scaled for scaled, _, _ in axes], 1)  # [P, D]
    colours = by_ranking(result)
    diverged = np.asarray([is_diverged(r) for r in rows])
    healthy = np.flatnonzero(~diverged & np.isfinite(colours.values))
    worst_first = np.argsort(colours.values[healthy] * (1.0 if direction == "max" else -1.0))
    position = np.arange(len(names))
    fig = Figure(figsize=(max(1.9 * len(names), 6.0) + 1.2, 4.8), layout="constrained")
    ax = fig.subplots()
    for i in np.flatnonzero(diverged):
        ax.plot(position, data[i], color="tab:red", ls="--", lw=0.8, alpha=0.6)
    for i in healthy[worst_first]:
        ax.plot(position, data[i], color=colours.of(i), lw=1.0, alpha=0.8)
    best = best_index(result)
    if best is not None:
        ax.plot(position, data[best], color="black", lw=2.6, label=f"best #{rows[best]['member']}")
    if diverged.any():
        ax.plot([], [], color="tab:red", ls="--", label="diverged")
    _mark_axes(ax, [(marks, labels) for _, marks, labels in axes])
    ax.set_xticks(position)
    ax.set_xticklabels(
        [label(n) + (" (log)" if log else "") for n, log in zip(names, logs, strict=True)],
        fontsize=8,
    )
    ax.set_yticks([])
    ax.set_xlim(-0.1, len(names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.08), ncol=2, frameon=False)
    colours.key(fig, ax, pad=0.01)
    fig.suptitle(f"{sweep_title(result)}: parallel coordinates of every member")
    return fig


def _mark_axes(ax, ticks: Sequence[tuple[list[float], list[str]]]) -> None:
    """A vertical line per axis of the parallel coordinates, its marks labelled beside it."""
    for k, (marks, labels) in enumerate(ticks):
        ax.axvline(k, color="grey", lw=0.8)
        for m, text in zip(marks, labels, strict=True):
            box = {"fc": "white", "ec": "none", "alpha": 0.7, "pad": 1}
            ax.text(k + 0.04, m, text, fontsize=7, va="center", ha="left", bbox=box)


FIGURES = {
    "curves": (
        figure_curves,
        "Training and validation curves of every member (on log axes, values above ten times "
        "the median leave through the top edge)",
    ),
    "history": (figure_history, history_caption),
    "hyperparameters": (
        figure_hyperparameters,
        "Final metrics against each hyperparameter (on log axes, values above ten times the "
        "median are drawn on the top edge)",
    ),
    "heatmap": (figure_heatmap, "{ranking} over the two main hyperparameters"),
    "parallel": (figure_parallel, "Parallel coordinates of all dimensions"),
    "importance": (figure_importance, importance_caption),
    "groups": (
        figure_groups,
        "{ranking} per category of each categorical dimension: every member a dot, the mean ± "
        "std (ddof=1) over the members that finished, the members and those that diverged "
        "counted under each category",
    ),
    "schedules": (
        figure_schedules,
        "The learning-rate schedule each member followed (its own family, coloured, where the "
        "family is chosen per member)",
    ),
    "trials": (figure_trials, "{ranking} of every trial against its own steps"),
    "lineage": (
        figure_lineage,
        "Population-based training: the hyperparameters each trial followed",
    ),
}


def caption_of(name: str, result: Result) -> str:
    """The caption of figure `name` of `FIGURES` for `result`: its text with the ranking metric
    named, or what its function says of this sweep.

    >>> regression = Result([], {}, {"rank_by": "final_val_mse", "rank_direction": "min"})
    >>> caption_of("heatmap", regression)
    'Final validation mse over the two main hyperparameters'
    """
    caption = FIGURES[name][1]
    if callable(caption):
        return caption(result)
    words = label(ranking(result.summary)[0])
    return caption.format(ranking=words[:1].upper() + words[1:])
