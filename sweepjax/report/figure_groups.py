"""The ranking metric per category: its mean and spread over the members of each schedule
family, optimizer family, seed or other categorical dimension, every member a dot.

`group_stats` groups a results table (as `Result.summarize_by` does, without pandas): per group
the members, how many diverged or were stopped early, and the mean and standard deviation of the
ranking metric over the others. `figure_groups` draws one panel per categorical dimension of the
report; `figure_means` (the schedule benchmark's accuracy against peak learning rate) one line
per category against a numeric dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from sweepjax.report.analysis import (
    as_number,
    categorical_dimensions,
    categories,
    is_diverged,
    is_log_scale,
    is_stopped,
)
from sweepjax.report.figure_axes import by_category, label, sweep_title, tidy_log_axis
from sweepjax.sweep.results import Result, finished_rows, ranking


class Group(NamedTuple):
    """The members that share `key` (their values of the grouping dimensions)."""

    key: tuple[Any, ...]
    members: int
    diverged: int
    stopped: int  # stopped early by an adaptive scheduler
    values: np.ndarray  # the metric of the others, where finite: the members of mean and std
    mean: float
    std: float  # NaN under ddof + 1 values


def group_stats(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], column: str, ddof: int = 1
) -> list[Group]:
    """`rows` grouped by their values of `keys` (in `analysis.categories` order, key by key):
    per group the members, the diverged and stopped ones, and the mean and standard deviation
    (`ddof` 1: the sample one) of `column` over the rest, NaN values left out.

    >>> rows = [{"member": i, "opt": o, "status": s, "acc": a} for i, (o, s, a) in
    ...         enumerate([("sgd", "ok", 0.5), ("sgd", "ok", 0.7), ("adam", "diverged", 0.1)])]
    >>> [(g.key, g.members, g.diverged, g.mean, round(g.std, 4)) for g in group_stats(rows, ["opt"], "acc")]
    [(('adam',), 1, 1, nan, nan), (('sgd',), 2, 0, 0.6, 0.1414)]
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    order = [categories([key[k] for key in groups]) for k in range(len(keys))]
    out = []
    for key in sorted(
        groups, key=lambda key: [o.index(v) for o, v in zip(order, key, strict=True)]
    ):
        members = groups[key]
        diverged = sum(is_diverged(r) for r in members)
        stopped = sum(is_stopped(r) for r in members)
        values = np.asarray([float(r[column]) for r in finished_rows(members, column)])
        mean = float(values.mean()) if values.size else np.nan
        std = float(values.std(ddof=ddof)) if values.size > ddof else np.nan
        out.append(Group(key, len(members), diverged, stopped, values, mean, std))
    return out


def _count_words(group: Group) -> str:
    """n, and the diverged and stopped members of a group, for its tick label.

    >>> _count_words(Group(("sgd",), 6, 2, 0, np.ones(4), 1.0, 0.0))
    'n=6, 2 diverged'
    """
    words = [f"n={group.members}"]
    words += [
        f"{n} {what}" for n, what in ((group.diverged, "diverged"), (group.stopped, "stopped")) if n
    ]
    return ", ".join(words)


def figure_groups(result: Result):
    """For each categorical dimension, the ranking metric of every member of each category
    (dots in the category's colour) with its mean and standard deviation (ddof=1), the
    members counted under the category; None when no categorical dimension varies."""
    from matplotlib.figure import Figure

    names = categorical_dimensions(result)
    if not names or not result.rows:
        return None
    column = ranking(result.summary)[0]
    stats = {n: group_stats(result.rows, [n], column) for n in names}
    widest = max(len(groups) for groups in stats.values())
    fig = Figure(figsize=(max(6.0, 0.8 * widest + 1.5), 3.8 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        _draw_groups(ax, stats[name], by_category(result, name).cmap)
        ax.set_xlabel(label(name))
        ax.set_ylabel(label(column))
    fig.suptitle(f"{sweep_title(result)}: {label(column)} per category (mean ± std, ddof=1)")
    return fig


def _draw_groups(ax, groups: Sequence[Group], cmap) -> None:
    """One panel: per group its members' dots, spread evenly across the slot, and its mean
    ± std as a black bar."""
    for k, group in enumerate(groups):
        count = group.values.size
        offsets = np.linspace(-0.25, 0.25, count) if count > 1 else np.zeros(count)
        ax.scatter(
            k + offsets,
            group.values,
            s=16,
            color=cmap(k),
            alpha=0.8,
            edgecolors="none",
        )
        if np.isfinite(group.mean):
            ax.errorbar(
                k,
                group.mean,
                yerr=np.nan_to_num(group.std),
                fmt="_",
                ms=26,
                mew=2.2,
                color="black",
                capsize=5,
            )
    ax.set_xticks(range(len(groups)))
    tilted = len(groups) > 5
    ax.set_xticklabels(
        [
            f"{g.key[0]}\n{_count_words(g)}" if not tilted else f"{g.key[0]} ({_count_words(g)})"
            for g in groups
        ],
        fontsize=8,
        rotation=30 if tilted else 0,
        ha="right" if tilted else "center",
    )
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(True, axis="y", alpha=0.3)


def figure_means(result: Result, x: str, by: str | None, ddof: int = 1):
    """The ranking metric's mean ± standard deviation (`ddof`) over the finished members of
    each value of dimension `x`, one line per category of `by` (its colours; None: one line of
    all members), against `x` on a log axis where it is log-scaled."""
    from matplotlib.figure import Figure

    column = ranking(result.summary)[0]
    keys = [by, x] if by is not None else [x]
    stats = group_stats(result.rows, keys, column, ddof)
    if not stats:
        return None
    colours = by_category(result, by) if by is not None else None
    fig = Figure(figsize=(8.4, 4.8), layout="constrained")
    ax = fig.subplots()
    lines = categories([g.key[0] for g in stats]) if by is not None else [None]
    for k, category in enumerate(lines):
        own = [g for g in stats if by is None or g.key[0] == category]
        ax.errorbar(
            [as_number(g.key[-1]) for g in own],
            [g.mean for g in own],
            yerr=[np.nan_to_num(g.std) for g in own],
            marker="o",
            ms=4,
            capsize=2,
            color=colours.cmap(k) if colours else "tab:blue",
            label=str(category) if by is not None else "all members",
        )
    values = np.asarray([as_number(r.get(x)) for r in result.rows])
    if is_log_scale(result.summary, x, values) and values.min() > 0:
        ax.set_xscale("log")
        tidy_log_axis(ax.xaxis, values.min(), values.max())
    ax.set_xlabel(label(x))
    ax.set_ylabel(f"{label(column)} (mean ± std, ddof={ddof})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{sweep_title(result)}: {label(column)} against {label(x)}")
    return fig
