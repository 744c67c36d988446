"""What the report's figures share: words for column and curve names, which way a metric is
better, log axes that frame most values, member colours, the title and the PNG bytes.

Members are coloured either by a hyperparameter (`by_hyperparameter`; categories such as schedule
families or swept seeds by a qualitative palette and a legend, `by_category`) or by the sweep's
ranking metric (`by_ranking`), whose bright (yellow) end is always the best: the highest values
of a `max` metric such as accuracy, the lowest of a `min` metric such as mse.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sweepjax.files import atomic_write
from sweepjax.report.analysis import (
    as_number,
    better,
    categorical_dimensions,
    categories,
    format_value,
    is_diverged,
    is_log_scale,
    is_numeric,
    varying_dimensions,
)
from sweepjax.sweep.results import Result, metric_of, ranking

_WORDS = (  # name prefixes of results.csv columns and curves.npz arrays, and what they say
    ("final_val_", "final validation "),
    ("best_val_", "best validation "),
    ("final_train_", "final train "),
    ("val_", "validation "),
    ("train_", "train "),
    ("test_", "test "),
)


def _parts(name: str) -> tuple[str, str]:
    """(words of the prefix, metric) of a column or curve name; no prefix: ("", name)."""
    for prefix, words in _WORDS:
        if name.startswith(prefix):
            return words, name.removeprefix(prefix)
    return "", name


def label(name: str) -> str:
    """Axis words for a column or curve name.

    >>> label("val_mse"), label("final_val_accuracy"), label("train_loss"), label("weight_decay")
    ('validation mse', 'final validation accuracy', 'train loss', 'weight decay')
    """
    words, metric = _parts(name)
    return words + metric.replace("_", " ")


def falls(name: str, result: Result, values: np.ndarray | None = None) -> bool:
    """Whether lower values of column or curve `name` are better: any loss, the ranking metric
    when it ranks `min`. Other metrics have no recorded direction: they fall when the median
    member's curve `values [C, P]` ends lower than it starts.

    >>> regression = Result([], {}, {"rank_by": "final_val_mse", "rank_direction": "min"})
    >>> falls("val_loss", regression), falls("final_val_mse", regression)
    (True, True)
    >>> falls("val_r2", regression, np.array([[-3.0, 0.1], [0.5, 0.6]]))
    False
    """
    metric = _parts(name)[1]
    column, direction = ranking(result.summary)
    if metric == "loss" or metric == metric_of(column):
        return metric == "loss" or direction == "min"
    if values is None or len(values) < 2:
        return False
    change = values[-1] - values[0]
    change = change[np.isfinite(change)]
    return bool(change.size and np.median(change) < 0)


class Colours(NamedTuple):
    """Member colours: `values [P]` through `norm` and `cmap`; `label` names the key. With
    `categories`, `values` index them and the key is a legend, else a colour bar."""

    label: str
    values: np.ndarray
    norm: Any
    cmap: Any
    categories: tuple[str, ...] = ()

    def of(self, member: int) -> tuple[float, float, float, float]:
        """The RGBA colour of the member at position `member` of the table."""
        return self.cmap(self.norm(self.values[member]))

    def key(self, fig, ax, **options) -> None:
        """A colour bar beside `ax` (an axis or a list of them), or a legend of the categories
        at the right of the figure; `options` go to the colour bar."""
        from matplotlib.cm import ScalarMappable
        from matplotlib.lines import Line2D

        if not self.categories:
            mappable = ScalarMappable(norm=self.norm, cmap=self.cmap)
            fig.colorbar(mappable, ax=ax, label=self.label, **options)
            return
        handles = [
            Line2D([], [], color=self.cmap(k), lw=3, label=name)
            for k, name in enumerate(self.categories)
        ]
        fig.legend(handles=handles, title=self.label, loc="outside right center", fontsize=8)


def palette(count: int) -> list[tuple[float, float, float, float]]:
    """`count` distinct colours of a qualitative palette: tab10, tab20 beyond 10, then evenly
    spaced along turbo.

    >>> from matplotlib import colormaps
    >>> palette(3) == [colormaps["tab10"](k) for k in range(3)], len(palette(25))
    (True, 25)
    """
    from matplotlib import colormaps

    if count <= 20:
        cmap = colormaps["tab10" if count <= 10 else "tab20"]
        return [cmap(k) for k in range(count)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, count)]


def by_category(result: Result, name: str) -> Colours:
    """Colours by the categories of dimension `name` (`analysis.categories` order), one
    colour each from `palette`, keyed by a legend.

    >>> rows = [{"member": i, "schedule": s} for i, s in enumerate(["sgdr", "cosine", "sgdr"])]
    >>> colours = by_category(Result(rows, {}, {}), "schedule")
    >>> colours.categories, colours.of(0) == colours.of(2) != colours.of(1)
    (('cosine', 'sgdr'), True)
    """
    from matplotlib.colors import ListedColormap, NoNorm

    values = [r.get(name) for r in result.rows]
    names = categories(values)
    index = np.asarray([names.index(v) for v in values])
    cmap = ListedColormap(palette(len(names)))
    return Colours(label(name), index, NoNorm(), cmap, tuple(str(n) for n in names))


def by_hyperparameter(result: Result, prefer: str | None = None) -> Colours | None:
    """Colours by dimension `prefer` when it varies, else by the learning rate, else the first
    numeric varying dimension, else the first categorical one (`analysis.is_categorical`):
    categories by `by_category`, numbers on a log colour scale where log-scaled. None when no
    dimension varies."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    rows = result.rows
    numeric = [d for d in varying_dimensions(rows) if is_numeric(rows, d)]
    categorical = categorical_dimensions(result)
    ordered = [*numeric, *categorical]
    if "learning_rate" in numeric:
        ordered.insert(0, "learning_rate")
    if prefer in ordered:
        ordered.insert(0, prefer)
    if not ordered:
        return None
    name = ordered[0]
    if name in categorical:
        return by_category(result, name)
    values = np.asarray([as_number(r[name]) for r in rows])
    log = is_log_scale(result.summary, name, values) and values.min() > 0
    norm = (LogNorm if log else Normalize)(values.min(), values.max())
    return Colours(label(name), values, norm, colormaps["viridis"])


def by_ranking(result: Result) -> Colours:
    """Colours by the ranking metric over the healthy members' range, the best end bright.

    >>> rows = [{"member": i, "status": "ok", "final_val_mse": v} for i, v in enumerate([2.0, 1.0])]
    >>> colours = by_ranking(Result(rows, {}, {"rank_by": "final_val_mse", "rank_direction": "min"}))
    >>> from matplotlib import colormaps
    >>> colours.label, colours.of(1) == colormaps["viridis"](1.0)  # the lowest mse: bright
    ('final validation mse (lower is better)', True)
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    column, direction = ranking(result.summary)
    values = np.asarray([as_number(r.get(column)) for r in result.rows])
    healthy = ~np.asarray([is_diverged(r) for r in result.rows], bool) & np.isfinite(values)
    low, high = (values[healthy].min(), values[healthy].max()) if healthy.any() else (0.0, 1.0)
    cmap = colormaps["viridis" if direction == "max" else "viridis_r"]
    norm = Normalize(low, high if high > low else low + 1e-6)
    return Colours(f"{label(column)} ({better(direction)} is better)", values, norm, cmap)


def draw_best(ax, x, y, colour, text: str) -> None:
    """The best member's line: thick, in its own colour, outlined in black (its family or
    learning rate stays readable where the others are drawn in the same colours)."""
    from matplotlib import patheffects

    outline = [patheffects.Stroke(linewidth=4.4, foreground="black"), patheffects.Normal()]
    ax.plot(x, y, color=colour, lw=2.4, path_effects=outline, label=text)


def log_frame(values: np.ndarray) -> tuple[float, float] | None:
    """Limits of a log axis that frames most of `values`; outliers go to the edges.

    The top is ten times the median, so that exploding members do not squash everything else
    against the bottom.

    >>> log_frame(np.array([1.0, 2.0, 4.0, 1e9]))
    (0.6666666666666666, 30.0)
    """
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return None
    top = min(10.0 * float(np.median(positive)), 1.5 * float(positive.max()))
    bottom = max(float(positive.min()) / 1.5, top * 1e-8)
    return (bottom, top) if bottom < top else None


def tidy_log_axis(axis, low: float, high: float) -> None:
    """Readable labels on a log axis spanning `low` to `high`: plain numbers at 1-2-5 when the
    span is short (matplotlib would otherwise label crowded minor ticks), decades when long."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not (low > 0 and high > low):
        return
    axis.set_minor_formatter(NullFormatter())
    if high / low < 300:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def hp_text(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """`names` with their values in `row`.

    >>> hp_text({"lr": 0.1, "wd": 1e-4}, ["lr", "wd"])
    'lr=0.1, wd=0.0001'
    """
    return ", ".join(f"{n}={format_value(row[n])}" for n in names)


def write_png(fig, path: Path) -> bytes:
    """Write the figure to `path` as a PNG at 100 dpi, atomically; its bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    png = buffer.getvalue()
    atomic_write(path, lambda f: f.write(png), binary=True)
    return png


def sweep_title(result: Result) -> str:
    """The name of the sweep's folder, or "sweep" when it was never written."""
    return result.out_dir.name if result.out_dir is not None else "sweep"
