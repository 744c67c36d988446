"""The report's figures (matplotlib, no display needed): curves, metrics against each
hyperparameter, a heat map of the two main ones, parallel coordinates, the schedules.

Each `figure_*` takes a `sweepjax.Result` and returns a matplotlib `Figure`, or None when the
sweep has nothing to draw (no curves, a single dimension, ...). `FIGURES` names them with
their captions.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.analysis import (
    as_number,
    best_index,
    config_of,
    format_value,
    important_pair,
    is_diverged,
    is_log_scale,
    is_numeric,
    member_schedules,
    varying_dimensions,
)
from sweepjax.results import CURVES, RANK_BY, Result

_LABELS = {
    "train_loss": "train loss",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "final_val_accuracy": "final validation accuracy",
    "final_val_loss": "final validation loss",
    "learning_rate": "learning rate",
    "weight_decay": "weight decay",
}


def _label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " "))


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _log_frame(values: np.ndarray) -> tuple[float, float] | None:
    """Limits of a log axis that frames most of `values`; outliers go to the edges.

    The top is ten times the median, so that exploding members do not squash everything else
    against the bottom.
    """
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return None
    top = min(10.0 * float(np.median(positive)), 1.5 * float(positive.max()))
    bottom = max(float(positive.min()) / 1.5, top * 1e-8)
    return (bottom, top) if bottom < top else None


def _tidy_log_axis(axis, low: float, high: float) -> None:
    """Readable labels on a log axis spanning `low` to `high`: plain numbers at 1-2-5 when the
    span is short (matplotlib would otherwise label crowded minor ticks), decades when long."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not (low > 0 and high > low):
        return
    axis.set_minor_formatter(NullFormatter())
    if high / low < 300:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _colouring(result: Result):
    """(name, values [P], norm, cmap) of the dimension lines are coloured by, or None."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    rows = result.rows
    numeric = [d for d in varying_dimensions(rows) if is_numeric(rows, d)]
    if not numeric:
        return None
    name = "learning_rate" if "learning_rate" in numeric else numeric[0]
    values = np.asarray([as_number(r[name]) for r in rows])
    if is_log_scale(result.summary, name, values) and values.min() > 0:
        norm = LogNorm(values.min(), values.max())
    else:
        norm = Normalize(values.min(), values.max())
    return name, values, norm, colormaps["viridis"]


def _hp_text(row: Mapping[str, Any], names: Sequence[str]) -> str:
    return ", ".join(f"{n}={format_value(row[n])}" for n in names[:3])


def figure_curves(result: Result):
    """Train loss, validation loss and validation accuracy of every member against the step,
    coloured by learning rate on a log colour scale, the best member highlighted."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves, rows = result.curves, result.rows
    names = [n for n in CURVES if n in curves]
    if not names or not len(curves["steps"]):
        return None
    steps = curves["steps"]
    colouring = _colouring(result)
    best = best_index(result)
    dims = varying_dimensions(rows)
    fig = Figure(figsize=(5.2 * len(names) + 1.2, 4.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
        values = curves[name]
        frame = None
        if name != "val_accuracy":
            healthy = [i for i, r in enumerate(rows) if not is_diverged(r)]
            frame = _log_frame(values[:, healthy] if healthy else values)
        for i, row in enumerate(rows):
            y = values[:, i].copy()
            diverged = is_diverged(row)
            at = as_number(row.get("diverged_at_step"))
            if diverged and math.isfinite(at) and at >= 0:
                cut = np.searchsorted(steps, at)  # the first evaluation after divergence
                y[cut + 1 :] = np.nan
            colour = colouring[3](colouring[2](colouring[1][i])) if colouring else "tab:blue"
            ax.plot(
                steps,
                y,
                color=colour,
                lw=0.9,
                alpha=0.45 if diverged else 0.75,
                ls="--" if diverged else "-",
            )
            if diverged:
                last = np.flatnonzero(np.isfinite(y))
                if last.size:
                    mark = y[last[-1]] if frame is None else np.clip(y[last[-1]], *frame)
                    ax.plot(steps[last[-1]], mark, "x", color="tab:red", ms=6, mew=1.5)
        if best is not None:
            ax.plot(
                steps,
                values[:, best],
                color="black",
                lw=2.4,
                label=f"best #{rows[best]['member']}: {_hp_text(rows[best], dims)}"
                if k == 0
                else f"best #{rows[best]['member']}",
            )
        if any(is_diverged(r) for r in rows):
            ax.plot([], [], "x--", color="tab:red", label="diverged (x: last evaluation)")
        if frame is not None:
            ax.set_yscale("log")
            ax.set_ylim(*frame)
            _tidy_log_axis(ax.yaxis, *frame)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        ax.set_ylabel(_label(name))
        ax.set_title(_label(name))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left" if name == "val_accuracy" else "upper right")
    if colouring:
        mappable = ScalarMappable(norm=colouring[2], cmap=colouring[3])
        fig.colorbar(mappable, ax=list(axes), label=_label(colouring[0]), pad=0.01)
    fig.suptitle(f"{sweep_title(result)}: curves of every member")
    return fig


def figure_hyperparameters(result: Result):
    """Final validation accuracy and loss against each numeric hyperparameter."""
    from matplotlib.figure import Figure

    rows = result.rows
    dims = [d for d in varying_dimensions(rows) if is_numeric(rows, d)]
    metrics = [m for m in ("final_val_accuracy", "final_val_loss") if m in rows[0]] if rows else []
    if not dims or not metrics:
        return None
    diverged = np.asarray([is_diverged(r) for r in rows])
    best = best_index(result)
    fig = Figure(figsize=(3.6 * len(dims) + 0.5, 3.2 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(dims), squeeze=False, sharey="row")
    for j, dim in enumerate(dims):
        x = np.asarray([as_number(r[dim]) for r in rows])
        log = is_log_scale(result.summary, dim, x) and x.min() > 0
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            y = np.asarray([as_number(r[metric]) for r in rows])
            frame = _log_frame(y[~diverged]) if metric.endswith("loss") else None
            if frame is not None:  # outliers on the edges
                y = np.where(np.isfinite(y), np.clip(y, *frame), y)
            ax.scatter(x[~diverged], y[~diverged], s=18, color="tab:blue", label="healthy")
            if diverged.any():
                finite = diverged & np.isfinite(y)
                ax.scatter(
                    x[finite], y[finite], marker="x", s=30, color="tab:red", label="diverged"
                )
                missing = diverged & ~np.isfinite(y)
                if missing.any():  # no metric: drawn on the worse edge
                    edge = 0.97 if metric.endswith("loss") else 0.03
                    ax.scatter(
                        x[missing],
                        np.full(missing.sum(), edge),
                        marker="x",
                        s=30,
                        color="tab:red",
                        transform=ax.get_xaxis_transform(),
                    )
            if best is not None:
                ax.scatter(
                    x[best], y[best], marker="*", s=160, color="gold", ec="black", label="best"
                )
            if log:
                ax.set_xscale("log")
                _tidy_log_axis(ax.xaxis, x.min(), x.max())
            if frame is not None:
                ax.set_yscale("log")
                ax.set_ylim(frame[0] / 1.3, frame[1] * 1.3)
                _tidy_log_axis(ax.yaxis, *frame)
            ax.set_xlabel(_label(dim) + (" (log)" if log else ""))
            if j == 0:
                ax.set_ylabel(_label(metric))
            ax.grid(True, alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"{sweep_title(result)}: final metrics against each hyperparameter")
    return fig


def figure_heatmap(result: Result):
    """Final validation accuracy over the two most important hyperparameters, as a filled
    contour of the members (interpolated on log axes where log-scaled) with the members on top."""
    import matplotlib.tri as mtri
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = result.rows
    pair = important_pair(rows)
    if pair is None:
        return None
    xname, yname = pair
    x = np.asarray([as_number(r[xname]) for r in rows])
    y = np.asarray([as_number(r[yname]) for r in rows])
    z = np.asarray([as_number(r[RANK_BY]) for r in rows])
    diverged = np.asarray([is_diverged(r) for r in rows])
    logx = is_log_scale(result.summary, xname, x) and x.min() > 0
    logy = is_log_scale(result.summary, yname, y) and y.min() > 0
    healthy = ~diverged & np.isfinite(z)
    fig = Figure(figsize=(7.0, 5.4), layout="constrained")
    ax = fig.subplots()
    vmin, vmax = (z[healthy].min(), z[healthy].max()) if healthy.any() else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1e-6
    mappable = None
    u, v = (np.log10(x) if logx else x), (np.log10(y) if logy else y)
    distinct = min(len(set(x[healthy])), len(set(y[healthy])))
    if healthy.sum() >= 4 and distinct >= 3:  # a dimension with 2 values gives no contour
        try:  # triangulate where the axes are uniform (log space), draw in data space
            triangles = mtri.Triangulation(u[healthy], v[healthy]).triangles
            tri = mtri.Triangulation(x[healthy], y[healthy], triangles)
            levels = MaxNLocator(10).tick_values(vmin, vmax)
            mappable = ax.tricontourf(tri, z[healthy], levels=levels, cmap="viridis", alpha=0.85)
        except (ValueError, RuntimeError):  # collinear points: the scatter alone
            mappable = None
    points = ax.scatter(
        x[healthy],
        y[healthy],
        c=z[healthy],
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
        s=26 if mappable is not None else 70,
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
    if logx:
        ax.set_xscale("log")
        _tidy_log_axis(ax.xaxis, x.min(), x.max())
    if logy:
        ax.set_yscale("log")
        _tidy_log_axis(ax.yaxis, y.min(), y.max())
    ax.margins(0.05)
    ax.set_xlabel(_label(xname) + (" (log)" if logx else ""))
    ax.set_ylabel(_label(yname) + (" (log)" if logy else ""))
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.colorbar(mappable or points, ax=ax, label=_label(RANK_BY))
    fig.suptitle(f"{sweep_title(result)}: {_label(RANK_BY)} over {xname} and {yname}")
    return fig


def figure_parallel(result: Result):
    """Parallel coordinates: one axis per varying hyperparameter, then the final validation
    accuracy; healthy members coloured by it, diverged members dashed red, the best in black."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rows = result.rows
    dims = varying_dimensions(rows)
    if not dims or not rows:
        return None
    axes_names = [*dims, RANK_BY]
    columns, ticks = [], []
    for name in axes_names:
        raw = [r.get(name) for r in rows]
        if all(isinstance(v, int | float) for v in raw):
            values = np.asarray(raw, float)
            finite = values[np.isfinite(values)]
            lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
            log = name != RANK_BY and is_log_scale(result.summary, name, values) and lo > 0
            if log:
                values, lo_t, hi_t = np.log10(values), math.log10(lo), math.log10(hi)
            else:
                lo_t, hi_t = lo, hi
            span = hi_t - lo_t or 1.0
            scaled = (values - lo_t) / span
            distinct = np.unique(finite)
            if len(distinct) <= 6:  # a choice or a small grid: its values
                marks = list(((np.log10(distinct) if log else distinct) - lo_t) / span)
                labels = [format_value(float(v)) for v in distinct]
            else:
                marks = [0.0, 0.5, 1.0]
                labels = [
                    format_value(10 ** (lo_t + m * span) if log else lo_t + m * span) for m in marks
                ]
        else:  # strings: evenly spaced categories
            levels = sorted({str(v) for v in raw})
            position = {s: k / max(len(levels) - 1, 1) for k, s in enumerate(levels)}
            scaled = np.asarray([position[str(v)] for v in raw])
            marks, labels = list(position.values()), levels
        columns.append(scaled)
        ticks.append((marks, labels))
    data = np.stack(columns, 1)  # [P, D]
    accuracy = np.asarray([as_number(r.get(RANK_BY)) for r in rows])
    diverged = np.asarray([is_diverged(r) for r in rows])
    healthy = ~diverged & np.isfinite(accuracy)
    norm = Normalize(
        *(np.nanmin(accuracy[healthy]), np.nanmax(accuracy[healthy])) if healthy.any() else (0, 1)
    )
    cmap = "viridis"
    from matplotlib import colormaps

    colours = colormaps[cmap]
    position = np.arange(len(axes_names))
    fig = Figure(figsize=(max(1.9 * len(axes_names), 6.0) + 1.2, 4.8), layout="constrained")
    ax = fig.subplots()
    for i in np.flatnonzero(diverged):
        ax.plot(position, data[i], color="tab:red", ls="--", lw=0.8, alpha=0.6)
    for i in np.flatnonzero(healthy)[np.argsort(accuracy[healthy])]:
        ax.plot(position, data[i], color=colours(norm(accuracy[i])), lw=1.0, alpha=0.8)
    best = best_index(result)
    if best is not None:
        ax.plot(position, data[best], color="black", lw=2.6, label=f"best #{rows[best]['member']}")
    if diverged.any():
        ax.plot([], [], color="tab:red", ls="--", label="diverged")
    for k, (marks, labels) in enumerate(ticks):
        ax.axvline(k, color="grey", lw=0.8)
        for m, text in zip(marks, labels, strict=True):
            ax.text(
                k + 0.04,
                m,
                text,
                fontsize=7,
                va="center",
                ha="left",
                bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 1},
            )
    ax.set_xticks(position)
    ax.set_xticklabels(
        [
            _label(n) + (" (log)" if n != RANK_BY and is_log_scale(result.summary, n) else "")
            for n in axes_names
        ],
        fontsize=8,
    )
    ax.set_yticks([])
    ax.set_xlim(-0.1, len(axes_names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.08), ncol=2, frameon=False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_label(RANK_BY), pad=0.01)
    fig.suptitle(f"{sweep_title(result)}: parallel coordinates of every member")
    return fig


def figure_schedules(result: Result):
    """The learning rate each member followed against the step, coloured like the curves."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    computed = member_schedules(result)
    if computed is None:
        return None
    steps, lr = computed
    rows = result.rows
    colouring = _colouring(result)
    best = best_index(result)
    fig = Figure(figsize=(7.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(rows):
        colour = colouring[3](colouring[2](colouring[1][i])) if colouring else "tab:blue"
        ax.plot(
            steps, lr[i], color=colour, lw=0.9, alpha=0.75, ls="--" if is_diverged(row) else "-"
        )
    if best is not None:
        ax.plot(steps, lr[best], color="black", lw=2.2, label=f"best #{rows[best]['member']}")
        ax.legend(fontsize=8)
    done = result.summary.get("steps_done")
    if isinstance(done, int) and done < steps[-1]:
        ax.axvline(done, color="grey", ls=":", label=f"stopped at step {done}")
        ax.legend(fontsize=8)
    peaks = lr.max(1)
    if np.any(peaks > 0):  # log axis; a schedule decaying to zero leaves through the bottom
        ax.set_yscale("log")
        ax.set_ylim(peaks[peaks > 0].min() / 100, peaks.max() * 2)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    if colouring:
        mappable = ScalarMappable(norm=colouring[2], cmap=colouring[3])
        fig.colorbar(mappable, ax=ax, label=_label(colouring[0]) + " (peak)")
    schedule = config_of(result.summary).get("schedule", "?")
    fig.suptitle(f"{sweep_title(result)}: learning-rate schedule ({schedule}) of every member")
    return fig


FIGURES = {
    "curves": (
        figure_curves,
        "Training and validation curves of every member (losses above ten times the median "
        "leave through the top edge)",
    ),
    "hyperparameters": (
        figure_hyperparameters,
        "Final metrics against each hyperparameter (losses above ten times the median are "
        "drawn on the top edge)",
    ),
    "heatmap": (figure_heatmap, "Final validation accuracy over the two main hyperparameters"),
    "parallel": (figure_parallel, "Parallel coordinates of all dimensions"),
    "schedules": (figure_schedules, "The learning-rate schedule each member followed"),
}


def sweep_title(result: Result) -> str:
    return result.out_dir.name if result.out_dir is not None else "sweep"
