"""The interactive heat map of the two main hyperparameters, and what every interactive figure
shares: the ranking metric's colour scale (on a log scale where its values span decades), tick
labels of log axes in the original units, the axes of the parallel coordinates, the hover text
of a member.

The heat map never invents values that no member reached: members on a grid fill its cells
(the mean over repeats such as seeds); scattered members are interpolated linearly on their
Delaunay triangulation (in log space for log-scaled dimensions), blank outside their convex
hull, so the surface stays within the members' values and has no extrema between them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from sweepjax.report.analysis import (
    as_number,
    best_index,
    better,
    categorical_dimensions,
    categories,
    format_value,
    important_pair,
    is_categorical,
    is_diverged,
    is_log_scale,
    varying_dimensions,
)
from sweepjax.report.figure_axes import label
from sweepjax.sweep.columns import hyperparameter_columns, metric_columns
from sweepjax.sweep.results import Result, ranking

GRID_SIZE = 80  # cells a side of an interpolated surface
CROSS = {"symbol": "x", "color": "grey", "size": 8}  # a diverged member
STAR = {"symbol": "star", "color": "gold", "size": 16, "line": {"color": "black", "width": 1}}


class Ranking(NamedTuple):
    """The ranking metric of every member and its colour scale, the best end bright; on a log
    scale when the healthy members' values are positive and span more than two decades (an
    mse from 3 down to 0.0005), so that the best members are not all one colour."""

    column: str
    direction: str
    values: np.ndarray  # [P], NaN where missing
    healthy: np.ndarray  # [P] bool: not diverged, a finite value
    low: float
    high: float
    log: bool

    @property
    def title(self) -> str:
        return f"{label(self.column)} ({better(self.direction)} is better)"

    @property
    def bar_title(self) -> str:
        return f"{label(self.column)}<br>({better(self.direction)} is better)"

    def shade(self, values) -> np.ndarray:
        """Where `values` of the metric fall on the colour scale: log10 of them when `log`."""
        values = np.asarray(values, float)
        if not self.log:
            return values
        with np.errstate(divide="ignore", invalid="ignore"):  # a diverged member's value
            return np.log10(values)

    def colours(self, bound: str = "c") -> dict[str, Any]:
        """Plotly colour settings: `bound` "c" for markers and lines, "z" for heat maps."""
        bar: dict[str, Any] = {"title": {"text": self.bar_title, "side": "right"}}
        if self.log:
            bar.update(zip(("tickvals", "ticktext"), log_ticks(self.low, self.high), strict=True))
        low, high = self.shade([self.low, self.high]).tolist()
        return {
            "colorscale": "Viridis",
            "reversescale": self.direction == "min",
            f"{bound}min": low,
            f"{bound}max": high,
            "colorbar": bar,
        }


def ranking_of(result: Result) -> Ranking:
    """The sweep's ranking metric, its healthy members and their range.

    >>> rows = [{"member": i, "status": s, "final_val_mse": v}
    ...         for i, (s, v) in enumerate([("ok", 2.0), ("ok", 1.0), ("diverged", 9.0)])]
    >>> r = ranking_of(Result(rows, {}, {"rank_by": "final_val_mse", "rank_direction": "min"}))
    >>> r.healthy.tolist(), r.low, r.high, r.log, r.colours()["reversescale"]
    ([True, True, False], 1.0, 2.0, False, True)
    """
    column, direction = ranking(result.summary)
    values = np.asarray([as_number(r.get(column)) for r in result.rows], float)
    diverged = np.asarray([is_diverged(r) for r in result.rows], bool)
    healthy = ~diverged & np.isfinite(values) if len(values) else np.zeros(0, bool)
    low, high = (values[healthy].min(), values[healthy].max()) if healthy.any() else (0.0, 1.0)
    log = is_log_scale({}, column, values[healthy])
    return Ranking(column, direction, values, healthy, float(low), float(high), log)


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Ticks of a log10 axis from `low` to `high` (both positive): their positions (log10) and
    labels in the original units; 1-2-5 when the span is short, decades otherwise (at most 8),
    the ends when fewer than two ticks fall inside.

    >>> log_ticks(1e-4, 0.1)
    ([-4.0, -3.0, -2.0, -1.0], ['0.0001', '0.001', '0.01', '0.1'])
    >>> log_ticks(0.01, 0.05)[1]
    ['0.01', '0.02', '0.05']
    >>> log_ticks(0.013, 0.018)[1]
    ['0.013', '0.018']
    """
    short = high / low < 300
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    ticks = [m * 10.0**e for e in decades for m in ((1.0, 2.0, 5.0) if short else (1.0,))]
    inside = [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    inside = inside[:: -(-len(inside) // 8)] if inside else inside
    if len(inside) < 2:
        return [math.log10(low), math.log10(high)], [format_value(low), format_value(high)]
    return [math.log10(t) for t in inside], [f"{t:g}" for t in inside]


def log_axis(low: float, high: float) -> dict[str, Any]:
    """A plotly log axis for values from `low` to `high`, ticked by `log_ticks`."""
    ticks, texts = log_ticks(low, high)
    return {"type": "log", "tickvals": [10.0**t for t in ticks], "ticktext": texts}


def member_texts(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Hover text per member: its number, every hyperparameter, every metric, its divergence.

    >>> member_texts([{"member": 3, "lr": 0.1, "status": "diverged", "diverged_at_step": 7,
    ...                "final_val_mse": float("nan")}])
    ['<b>member 3</b> (diverged at step 7)<br>lr = 0.1<br>final_val_mse = nan']
    """
    names = [*hyperparameter_columns(rows), *metric_columns(rows)]
    out = []
    for row in rows:
        head = f"<b>member {row['member']}</b>"
        if is_diverged(row):
            head += f" (diverged at step {row.get('diverged_at_step')})"
        lines = [f"{n} = {html.escape(format_value(row.get(n)))}" for n in names]
        out.append("<br>".join([head, *lines]))
    return out


def parallel_dimensions(result: Result) -> list[str]:
    """The hyperparameter axes of the parallel coordinates: every varying dimension, and the
    seed where the space sweeps it (`analysis.is_categorical`).

    >>> rows = [{"member": i, "lr": 0.1 * i, "seed": i % 2, "status": "ok"} for i in range(4)]
    >>> swept = {"config": {"space": {"seed": {"distribution": "Choice", "values": [0, 1]}}}}
    >>> parallel_dimensions(Result(rows, {}, swept)), parallel_dimensions(Result(rows, {}, {}))
    (['lr', 'seed'], ['lr'])
    """
    names = varying_dimensions(result.rows)
    return names + [c for c in categorical_dimensions(result) if c not in names]


def parcoords_axis(result: Result, name: str, raw: Sequence[Any]) -> dict[str, Any]:
    """One axis of the parallel coordinates for the values `raw` of dimension `name`:
    categories (`analysis.is_categorical`) as integers labelled with their names, log-scaled
    dimensions in log10 labelled in the original units (the ends, and the ticks of `log_ticks`
    away from them), other numbers as they are (marked at each value when at most 6).

    >>> rows = [{"member": i, "optimizer": o} for i, o in enumerate(["sgd", "adam", "sgd"])]
    >>> axis = parcoords_axis(Result(rows, {}, {}), "optimizer", ["sgd", "adam", "sgd"])
    >>> axis["values"], axis["range"], axis["tickvals"], axis["ticktext"]
    ([1, 0, 1], [0, 1], [0, 1], ['adam', 'sgd'])
    >>> axis = parcoords_axis(Result([], {}, {}), "lr", [3e-4, 0.5, 0.01])
    >>> axis["label"], axis["ticktext"]
    ('lr (log)', ['0.0003', '0.001', '0.01', '0.1', '0.5'])
    """
    if is_categorical(result.summary, result.rows, name):
        levels = categories(raw)
        return {
            "label": label(name),
            "values": [levels.index(v) for v in raw],
            "range": [0, max(len(levels) - 1, 1)],
            "tickvals": list(range(len(levels))),
            "ticktext": [str(v) for v in levels],
        }
    values = np.asarray(raw, float)
    low, high = float(values.min()), float(values.max())
    if is_log_scale(result.summary, name, values) and low > 0:
        ends = {math.log10(low): format_value(low), math.log10(high): format_value(high)}
        # a tick this close to an end would overlap the end's label
        near = 0.06 * (math.log10(high / low) or 1.0)
        ticks = dict(zip(*log_ticks(low, high), strict=True))
        ticks = {t: s for t, s in ticks.items() if min(abs(t - e) for e in ends) > near}
        marks = sorted({**ends, **ticks}.items())
        return {
            "label": f"{label(name)} (log)",
            "values": np.log10(values).tolist(),
            "range": [math.log10(low), math.log10(high)],
            "tickvals": [t for t, _ in marks],
            "ticktext": [s for _, s in marks],
        }
    axis = {"label": label(name), "values": values.tolist(), "range": [low, high]}
    distinct = np.unique(values)
    if len(distinct) <= 6:
        axis.update(tickvals=distinct.tolist(), ticktext=[format_value(v) for v in distinct])
    return {**axis, "tickformat": ".3~g"}


def layout(title: str, height: int) -> dict[str, Any]:
    """The layout every interactive figure starts from."""
    return {
        "template": "plotly_white",
        "height": height,
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
        "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
        "hoverlabel": {"align": "left"},
    }


def grid_means(
    u: np.ndarray, v: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The mean of `z` in each cell of the grid the points `(u, v)` lie on (NaN where no member
    is): `us [X]`, `vs [Y]`, `means [Y, X]`; None when they are scattered (a coordinate that
    never repeats, or fewer than half the cells filled).

    >>> us, vs, means = grid_means(np.array([0, 0, 1, 1, 0.]), np.array([0, 1, 0, 1, 0.]),
    ...                            np.array([1, 2, 3, 4, 3.]))
    >>> means.tolist()  # cell (0, 0) holds two repeats: 1 and 3
    [[2.0, 3.0], [2.0, 4.0]]
    >>> grid_means(np.array([0, 1, 2.]), np.array([2, 0, 1.]), np.array([1, 2, 3.])) is None
    True
    """
    us, column = np.unique(u, return_inverse=True)
    vs, line = np.unique(v, return_inverse=True)
    filled = len(set(zip(column.tolist(), line.tolist(), strict=True)))
    if min(len(us), len(vs)) < 2 or max(len(us), len(vs)) >= len(u):
        return None
    if 2 * filled < len(us) * len(vs):
        return None
    total = np.zeros((len(vs), len(us)))
    count = np.zeros((len(vs), len(us)))
    np.add.at(total, (line, column), z)
    np.add.at(count, (line, column), 1.0)
    with np.errstate(invalid="ignore"):
        return us, vs, total / count


def interpolate(
    u: np.ndarray, v: np.ndarray, z: np.ndarray, size: int = GRID_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`z` interpolated linearly on the Delaunay triangulation of the points `(u, v)` (repeats
    averaged first) over a `size` x `size` grid spanning them: `us [size]`, `vs [size]`,
    `surface [size, size]` (rows along v), NaN outside the points' convex hull. Within each
    triangle the surface is a weighted mean of its corners, so it never leaves their range.

    None when the points do not span a plane (under three, or all on a line).

    >>> us, vs, s = interpolate(np.array([0, 1, 0.]), np.array([0, 0, 1.]), np.array([0, 1, 2.]), 3)
    >>> s.tolist()  # z = u + 2 v inside the triangle, NaN beyond its long edge
    [[0.0, 0.5, 1.0], [1.0, 1.5, nan], [2.0, nan, nan]]
    """
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import QhullError

    points, inverse = np.unique(np.stack([u, v], 1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    means = np.bincount(inverse, z) / np.bincount(inverse)
    low, high = points.min(0), points.max(0)
    if len(points) < 3 or np.any(high <= low):
        return None
    span = high - low  # triangulated on the unit square: well-shaped triangles on any scale
    try:
        surface = LinearNDInterpolator((points - low) / span, means)
    except QhullError:
        return None
    us, vs = np.linspace(low[0], high[0], size), np.linspace(low[1], high[1], size)
    grid_u, grid_v = np.meshgrid((us - low[0]) / span[0], (vs - low[1]) / span[1])
    return us, vs, surface(grid_u, grid_v)


def _coordinates(result: Result, name: str) -> tuple[np.ndarray, bool]:
    """Dimension `name` of every member on the heat map's axis (log10 where log-scaled)."""
    values = np.asarray([as_number(r[name]) for r in result.rows], float)
    log = bool(is_log_scale(result.summary, name, values) and values.min() > 0)
    return (np.log10(values) if log else values), log


def figure_heatmap(result: Result):
    """The ranking metric over the two main hyperparameters (`analysis.important_pair`): the
    grid's cells or the linear interpolation between members, the members on top."""
    import plotly.graph_objects as go

    rank = ranking_of(result)
    pair = important_pair(result.rows, rank.column, rank.direction)
    if pair is None or rank.healthy.sum() < 2:
        return None
    (u, u_log), (v, v_log) = (_coordinates(result, name) for name in pair)
    h = rank.healthy
    surface = grid_means(u[h], v[h], rank.values[h])
    how = "mean over repeats in each cell of the grid"
    if surface is None:
        surface = interpolate(u[h], v[h], rank.values[h])
        how = "linear interpolation between members, blank outside them"
    fig = go.Figure(layout=layout(f"{label(rank.column)}: {how}", 560))
    if surface is not None:
        fig.add_trace(_surface_trace(surface, (u_log, v_log), pair, rank))
    _add_members(fig, result, u, v, rank)
    for axis, name, coordinate, log in (("xaxis", pair[0], u, u_log), ("yaxis", pair[1], v, v_log)):
        settings: dict[str, Any] = {
            "title": {"text": label(name) + (" (log)" if log else "")},
            "zeroline": False,  # at log10 = 0 on a log dimension: no meaning
        }
        if log:  # the axis holds log10 of the values, labelled in the values
            ticks, texts = log_ticks(10 ** np.nanmin(coordinate), 10 ** np.nanmax(coordinate))
            settings.update(tickvals=ticks, ticktext=texts)
        fig.update_layout({axis: settings})
    fig.update_layout(legend={"orientation": "h", "y": -0.15})
    return fig


def _surface_trace(surface, logs: tuple[bool, bool], pair: tuple[str, str], rank: Ranking):
    """The heat map trace of `surface` (`us, vs, values [V, U]`), hovering the original units."""
    import plotly.graph_objects as go

    us, vs, values = surface
    # hover shows the hyperparameters and the metric, not their logarithms
    grid_u, grid_v = np.meshgrid(10**us if logs[0] else us, 10**vs if logs[1] else vs)
    return go.Heatmap(
        x=us,
        y=vs,
        z=rank.shade(values).astype(np.float32),
        customdata=np.stack([grid_u, grid_v, values], -1).astype(np.float32),
        hovertemplate=f"{pair[0]} = %{{customdata[0]:.3g}}<br>{pair[1]} = %{{customdata[1]:.3g}}"
        f"<br>{rank.column} = %{{customdata[2]:.4g}}<extra></extra>",
        hoverongaps=False,
        zsmooth=False,
        **rank.colours("z"),
    )


def _add_members(fig, result: Result, u: np.ndarray, v: np.ndarray, rank: Ranking) -> None:
    """The healthy members coloured like the surface, diverged ones as grey crosses, the best
    a star; each hovering its hyperparameters and metrics."""
    texts = np.asarray(member_texts(result.rows), object)
    h, diverged = rank.healthy, ~rank.healthy
    marker = {
        "color": rank.shade(rank.values[h]),
        "size": 9,
        "line": {"color": "white", "width": 1},
    }
    marker.update({k: v for k, v in rank.colours().items() if k != "colorbar"})
    fig.add_scatter(
        x=u[h],
        y=v[h],
        mode="markers",
        name="member",
        marker=marker,
        hovertext=texts[h],
        hoverinfo="text",
    )
    if diverged.any():
        fig.add_scatter(
            x=u[diverged],
            y=v[diverged],
            mode="markers",
            name="diverged member",
            marker={**CROSS, "size": 9},
            hovertext=texts[diverged],
            hoverinfo="text",
        )
    best = best_index(result)
    if best is not None:
        fig.add_scatter(
            x=[u[best]],
            y=[v[best]],
            mode="markers",
            name=f"best #{result.rows[best]['member']}",
            marker={**STAR, "size": 18},
            hovertext=[texts[best]],
            hoverinfo="text",
        )
