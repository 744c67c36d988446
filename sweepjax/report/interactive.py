"""The report's interactive figures (plotly), shown in `report.html` in place of their PNGs.

`INTERACTIVE` maps names of `sweepjax.report.figures.FIGURES` to functions that take a
`sweepjax.Result` and return a plotly `Figure`, or None when there is nothing to draw, like
the matplotlib ones: parallel coordinates to brush, the ranking metric against each
hyperparameter and every member's curves with its hyperparameters on hover, and the heat map
of `sweepjax.report.interactive_map`. `plotly_script()` is plotly.js, inlined once
per page so that it works offline; `figure_html(name, result)` is one figure's `<div>`.

Each member's curve is a trace of its own up to `SEPARATE_CURVES` members; larger sweeps draw
their curves in a trace per colour bin (hover text then repeats at every point), thinned to at
most `MAX_CURVE_POINTS` points in all: each curve keeps as many evaluations as fit, evenly
spread from its first to its last.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sweepjax.report.analysis import (
    as_number,
    best_index,
    categorical_dimensions,
    categories,
    is_diverged,
    is_log_scale,
    is_numeric,
    varying_dimensions,
)
from sweepjax.report.figure_axes import falls, hp_text, label, log_frame
from sweepjax.report.figure_curves import curve_names
from sweepjax.report.interactive_map import (
    CROSS,
    STAR,
    Ranking,
    figure_heatmap,
    layout,
    log_axis,
    member_texts,
    parallel_dimensions,
    parcoords_axis,
    ranking_of,
)
from sweepjax.sweep.results import Result

MAX_CURVE_POINTS = 20_000
BEST_CURVES = ("black", "#d62728", "#ff7f0e")  # the best three members' curves, best first
SEPARATE_CURVES = 100  # up to this many members, each curve is a trace of its own colour
_BINS = 8  # beyond, the curves share a trace per colour bin of the ranking metric
_CONFIG = {"displaylogo": False, "responsive": True}


def plotly_script() -> str:
    """plotly.js in one `<script>` element, for a page that must work offline."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_html(name: str, result: Result) -> str | None:
    """The `<div>` (and its script) of the interactive version of figure `name`, or None when
    it has none or nothing to draw; it needs `plotly_script()` earlier on the page."""
    make = INTERACTIVE.get(name)
    fig = make(result) if make is not None else None
    if fig is None:
        return None
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"plot-{name}",
        default_height=f"{fig.layout.height}px",
        config=_CONFIG,
    )


def figure_parallel(result: Result):
    """Parallel coordinates of the healthy members (brush an axis to select a range): every
    varying dimension, then the ranking metric, coloured by it; diverged members left out."""
    import plotly.graph_objects as go

    rows, rank = result.rows, ranking_of(result)
    names = parallel_dimensions(result)
    if not names or rank.healthy.sum() < 2:
        return None
    kept = np.flatnonzero(rank.healthy)
    sign = 1.0 if rank.direction == "max" else -1.0
    kept = kept[np.argsort(sign * rank.values[kept], kind="stable")]  # the best drawn last
    dims = [parcoords_axis(result, n, [rows[i][n] for i in kept]) for n in names]
    metric = rank.values[kept]
    dims.append(parcoords_axis(result, rank.column, metric.tolist()))
    line = {"color": rank.shade(metric), "showscale": True, **rank.colours()}
    trace = go.Parcoords(
        dimensions=dims, line=line, unselected={"line": {"color": "lightgrey", "opacity": 0.15}}
    )
    diverged = sum(is_diverged(r) for r in rows)
    missing = len(rows) - len(kept) - diverged
    title = f"{len(kept)} healthy members; drag along an axis to select a range"
    if diverged:
        title += f"; {diverged} diverged member{'s' * (diverged > 1)} left out"
    if missing:
        title += f"; {missing} without a {rank.column} left out"
    fig = go.Figure(trace, layout=layout(title, 520))
    fig.update_layout(margin={"t": 110, "l": 80, "r": 40})
    return fig


def colour_groups(result: Result) -> tuple[str | None, dict[str, str]]:
    """The categorical dimension the members are coloured by (the first, the seed last) and a
    colour per category (repeating beyond 26); without one, None and a single colour.

    >>> rows = [{"member": i, "opt": o, "status": "ok"} for i, o in enumerate(["sgd", "adam"])]
    >>> colour_groups(Result(rows, {}, {}))
    ('opt', {'adam': '#636EFA', 'sgd': '#EF553B'})
    """
    from plotly.colors import qualitative

    names = sorted(categorical_dimensions(result), key=lambda d: d == "seed")
    if not names:
        return None, {"member": "#1f77b4"}
    name = names[0]
    levels = [str(v) for v in categories([r[name] for r in result.rows])]
    palette = qualitative.Plotly if len(levels) <= len(qualitative.Plotly) else qualitative.Alphabet
    return name, {v: palette[k % len(palette)] for k, v in enumerate(levels)}


def _worse_edge(rank: Ranking, log: bool) -> float:
    """Where diverged members are drawn: just beyond the healthy members' worse end."""
    if log:
        return rank.high * 2.0
    span = (rank.high - rank.low) or abs(rank.high) or 1.0
    return rank.low - 0.08 * span if rank.direction == "max" else rank.high + 0.08 * span


def figure_hyperparameters(result: Result):
    """The ranking metric against each varying hyperparameter (log x where log-scaled), one
    colour per value of the first categorical dimension, diverged members as grey crosses on
    the worse edge, the best a star; hovering shows a member's hyperparameters and metrics."""
    from plotly.subplots import make_subplots

    rows, rank = result.rows, ranking_of(result)
    dims = varying_dimensions(rows)
    if not dims or not rank.healthy.any():
        return None
    columns = min(len(dims), 3)
    lines = -(-len(dims) // columns)
    y = np.where(rank.healthy, rank.values, _worse_edge(rank, rank.log))
    fig = make_subplots(lines, columns, shared_yaxes="all", horizontal_spacing=0.05)
    texts = np.asarray(member_texts(rows), object)
    colour_by, colours = colour_groups(result)
    group = np.asarray([str(r[colour_by]) if colour_by else "member" for r in rows])
    best = np.zeros(len(rows), bool)
    if (top := best_index(result)) is not None:
        best[top] = True
    for k, dim in enumerate(dims):
        numeric = is_numeric(rows, dim)
        x = np.asarray([r[dim] if numeric else str(r[dim]) for r in rows])
        at = {"row": k // columns + 1, "col": k % columns + 1}
        for value, colour in colours.items():
            chosen = rank.healthy & (group == value)
            name = f"{colour_by} = {value}" if colour_by else "healthy member"
            _points(fig, x, y, texts, chosen, name, {"color": colour, "size": 8}, k == 0, at)
        _points(fig, x, y, texts, ~rank.healthy, "diverged (on the worse edge)", CROSS, k == 0, at)
        _points(fig, x, y, texts, best, "best", STAR, k == 0, at)
        log_x = numeric and x.min() > 0 and is_log_scale(result.summary, dim, x.astype(float))
        axis = log_axis(x.min(), x.max()) if log_x else {}
        fig.update_xaxes(title_text=label(dim) + (" (log)" if log_x else ""), **axis, **at)
    fig.update_yaxes(title_text=label(rank.column), col=1)
    if rank.log:
        fig.update_yaxes(**log_axis(rank.low, _worse_edge(rank, True)))
    fig.update_layout(layout(f"{rank.title}, against each hyperparameter", 120 + 330 * lines))
    fig.update_layout(legend={"orientation": "h", "y": -0.12 - 0.08 / lines})
    return fig


def _points(fig, x, y, texts, chosen, name, marker, legend: bool, at) -> None:
    """The members `chosen` as markers, hovering their text; one legend entry per `name`."""
    if chosen.any():
        fig.add_scatter(
            x=x[chosen],
            y=y[chosen],
            mode="markers",
            name=name,
            legendgroup=name,
            showlegend=legend,
            marker=marker,
            hovertext=texts[chosen],
            hoverinfo="text",
            **at,
        )


def thinned(evaluations: int, curves: int, budget: int = MAX_CURVE_POINTS) -> np.ndarray:
    """The evaluations each of `curves` keeps so that all hold at most `budget` points (two
    each at least): all of them, or as many as fit, evenly spread from the first to the last.

    >>> thinned(10, 3).tolist(), thinned(10, 3, budget=12).tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 3, 6, 9])
    """
    fit = max(2, budget // max(curves, 1))
    if evaluations <= fit:
        return np.arange(evaluations)
    return np.unique(np.linspace(0, evaluations - 1, fit).round().astype(int))


def figure_curves(result: Result):
    """Train loss and every validation metric of every member against the step (the curves of
    the PNG): thin lines coloured by the ranking metric (the best bright), the best three on
    top, diverged members grey up to their divergence; hovering shows the member and its
    hyperparameters. Curves whose lower values are better are on log axes framing most members.
    """
    from plotly.subplots import make_subplots

    rows, rank = result.rows, ranking_of(result)
    names = curve_names(result)
    steps = np.asarray(result.curves.get("steps", []))
    if not names or not len(steps) or not rows:
        return None
    keep = thinned(len(steps), len(rows) * len(names))
    columns = min(len(names), 3)
    lines = -(-len(names) // columns)
    titles = [label(n) for n in names]
    fig = make_subplots(lines, columns, subplot_titles=titles, horizontal_spacing=0.07)
    hps = parallel_dimensions(result)  # what varies: short, as binned traces repeat it
    texts = [f"member {r['member']}: {hp_text(r, hps)}" for r in rows]
    position = {r["member"]: i for i, r in enumerate(rows)}
    best = {
        position[r["member"]]: f"{'best' if k == 0 else f'#{k + 1}'}: member {r['member']}"
        for k, r in enumerate(result.ranked()[: len(BEST_CURVES)])
    }
    for k, name in enumerate(names):
        values = _cut_at_divergence(rows, steps, np.asarray(result.curves[name], float))[keep]
        at = {"row": k // columns + 1, "col": k % columns + 1}
        _add_curves(fig, steps[keep], values, rank, best, texts, name, k == 0, at)
        lower = falls(name, result, values[:, rank.healthy])
        fig.update_yaxes(**_frame(values[:, rank.healthy], lower), **at)
    scale = {"color": rank.shade([rank.low]), "showscale": True, **rank.colours()}
    fig.add_scatter(
        x=[None], y=[None], mode="markers", marker=scale, showlegend=False, hoverinfo="skip"
    )
    fig.update_xaxes(title_text="step")
    title = f"Curves of every member ({len(rows)}), coloured by {rank.title}"
    fig.update_layout(layout(title, 140 + 360 * lines))
    fig.update_layout(legend={"orientation": "h", "y": -0.1 - 0.1 / lines})
    return fig


def _add_curves(fig, steps, values, rank: Ranking, best, texts, name, legend: bool, at) -> None:
    """Curve `name` (`values [C, P]`) of every member in one panel, the worst first: the
    healthy ones by `_groups`, the diverged ones in one trace, the `best` (position: legend
    name, best first) each in its own."""
    from plotly.colors import sample_colorscale

    hover = f"%{{text}}<br>step %{{x}}<br>{name} = %{{y:.4g}}<extra></extra>"
    others = np.setdiff1d(np.flatnonzero(rank.healthy), list(best))
    for members, share in _groups(rank, others, values.shape[1] <= SEPARATE_CURVES):
        x, y, text = _joined(steps, values, members, texts)
        line = {"color": sample_colorscale("Viridis", share)[0], "width": 1}
        fig.add_scatter(
            x=x,
            y=y,
            text=text,
            mode="lines",
            line=line,
            opacity=0.6,
            showlegend=False,
            hovertemplate=hover,
            **at,
        )
    diverged = np.flatnonzero(~rank.healthy)
    if len(diverged):
        x, y, text = _joined(steps, values, diverged, texts)
        line = {"color": "grey", "width": 1, "dash": "dot"}
        fig.add_scatter(
            x=x,
            y=y,
            text=text,
            mode="lines",
            line=line,
            name="diverged, up to its divergence",
            legendgroup="diverged",
            showlegend=legend,
            hovertemplate=hover,
            **at,
        )
    for k, (i, member) in reversed(list(enumerate(best.items()))):
        line = {"color": BEST_CURVES[k], "width": 3 - 0.5 * k}
        fig.add_scatter(
            x=steps,
            y=values[:, i],
            text=texts[i],
            mode="lines",
            line=line,
            name=member,
            legendgroup=member,
            showlegend=legend,
            hovertemplate=hover,
            **at,
        )


def _joined(steps, values, members, texts):
    """The curves of `members` as one trace, NaN between members; one member's text once."""
    steps, values = steps.astype(np.float32), values.astype(np.float32)  # half the bytes
    if len(members) == 1:
        return steps, values[:, members[0]], texts[members[0]]
    gap = np.full(1, np.nan, np.float32)
    x = np.concatenate([np.concatenate([steps, gap]) for _ in members])
    y = np.concatenate([np.concatenate([values[:, i], gap]) for i in members])
    text = [t for i in members for t in [texts[i]] * len(steps) + [""]]
    return x, y, text


def _cut_at_divergence(rows, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values [C, P]` without each diverged member's evaluations after its divergence."""
    values = values.copy()
    for i, row in enumerate(rows):
        at = as_number(row.get("diverged_at_step"))
        if is_diverged(row) and at >= 0:
            values[np.searchsorted(steps, at) + 1 :, i] = np.nan
    return values


def _groups(rank: Ranking, members: np.ndarray, separate: bool) -> list[tuple[np.ndarray, float]]:
    """The traces `members` are drawn in, worst first, with their place on the colour scale
    (1: the best end): each member alone when `separate`, else one trace per colour bin."""
    low, high = rank.shade([rank.low, rank.high])
    share = (rank.shade(rank.values[members]) - low) / ((high - low) or 1.0)
    share = share if rank.direction == "max" else 1.0 - share
    if separate:
        return [(members[[k]], float(share[k])) for k in np.argsort(share, kind="stable")]
    bins = np.minimum((share * _BINS).astype(int), _BINS - 1)
    return [(members[bins == b], (b + 0.5) / _BINS) for b in np.unique(bins)]


def _frame(healthy: np.ndarray, lower: bool) -> dict[str, Any]:
    """A y axis framing the healthy members' values: log when lower is better and every value
    is positive (exploding members leave through the top), else linear."""
    finite = healthy[np.isfinite(healthy)]
    if not finite.size:
        return {}
    frame = log_frame(finite) if lower and finite.min() > 0 else None
    if frame is not None:
        return {"range": [np.log10(frame[0]), np.log10(frame[1])], **log_axis(*frame)}
    pad = 0.05 * ((finite.max() - finite.min()) or 1.0)
    return {"range": [finite.min() - pad, finite.max() + pad]}


INTERACTIVE = {
    "curves": figure_curves,
    "hyperparameters": figure_hyperparameters,
    "heatmap": figure_heatmap,
    "parallel": figure_parallel,
}
