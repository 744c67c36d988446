"""The report of a sweep directory: figures, a leaderboard, the divergence boundary.

Everything is read from `out_dir` alone (`results.csv`, `curves.npz`, `sweep.json`), so a report
can be written for a finished, an interrupted or a resumed sweep, and partial files are tolerated
(a missing `curves.npz` only drops the curve figures; a damaged file is an error that names it,
see `sweepjax.results.read_sweep`).

`write_report(out_dir)` writes into `out_dir`:
  * `figures/*.png`: the figures (matplotlib, no display needed);
  * `report.html`: one self-contained page with every figure embedded;
  * `report.md`: the same in Markdown, linking the PNG files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from sweepjax.lock import holder
from sweepjax.results import CURVES, METRICS, RANK_BY, Result, atomic_write, leaderboard
from sweepjax.results import read_summary as read_summary  # re-exported: readers of a sweep
from sweepjax.results import read_sweep as read_sweep

STATUSES = ("running", "interrupted", "finished")
_LABELS = {
    "train_loss": "train loss",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "final_val_accuracy": "final validation accuracy",
    "final_val_loss": "final validation loss",
    "learning_rate": "learning rate",
    "weight_decay": "weight decay",
}
_DEFAULT_PAIR = ("learning_rate", "weight_decay")


# ----------------------------------------------------------------------------- reading


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
    done, steps = summary.get("steps_done"), _config(summary).get("steps")
    if not isinstance(done, int) or not isinstance(steps, int):
        return "unknown"
    return "finished" if done >= steps else "interrupted"


def _config(summary: Mapping[str, Any]) -> dict[str, Any]:
    config = summary.get("config")
    return config if isinstance(config, dict) else {}


def status_line(result: Result) -> str:
    """One line: where the sweep stands, its size and its best member."""
    summary = result.summary
    status = sweep_status(summary)
    done, steps = summary.get("steps_done"), _config(summary).get("steps")
    parts = [status]
    if isinstance(done, int):
        parts.append(f"step {done}/{steps}" if isinstance(steps, int) else f"step {done}")
    diverged = sum(_diverged(r) for r in result.rows)
    parts.append(f"{len(result.rows)} members, {diverged} diverged")
    best = _ranked(result.rows)
    if best:
        parts.append(f"best #{best[0]['member']} at {RANK_BY} {_fmt(best[0][RANK_BY])}")
    return ", ".join(parts)


def show(out_dir: str | os.PathLike, top: int = 10) -> str:
    """The text `sweepjax show` prints: the status line, the leaderboard, the divergence boundary.

    Args:
      out_dir: a sweep directory.
      top: how many healthy members to list.

    Returns:
      The text, several lines.

    While a process holds the folder's lock, the first line says so (who, which step, since
    when) and the rest are the results written last, if any.

    Raises:
      ValueError: `top` is not a positive integer, or `out_dir` holds no results and no
        running sweep.
      StorageError: a result file is damaged or cannot be read.
    """
    check_top(top)
    running = _running_line(out_dir)
    try:
        result = read_sweep(out_dir)
    except ValueError:
        if running is None:
            raise
        return f"{out_dir}: {running}; no results written yet"
    lines = [f"{result.out_dir}: {status_line(result)}"]
    if running is not None:
        lines.insert(0, f"{out_dir}: {running}; the results below were written before")
    if result.rows:
        lines.append(leaderboard(result.rows, top))
    boundary = divergence_boundary(result.rows)
    if any(b["smallest_diverged"] is not None for b in boundary):
        lines.append("divergence boundary (learning rate):")
        lines.extend(f"  {_boundary_text(b)}" for b in boundary)
    return "\n".join(lines)


def _running_line(out_dir: str | os.PathLike) -> str | None:
    """'running (step, PID, host, since)' while a sweep holds `out_dir`'s lock, else None."""
    info = holder(out_dir)
    if info is None:
        return None
    step = info.get("step")
    of = f" of {info['steps']}" if "steps" in info else ""
    at = f"at step {step}{of}" if step is not None else "starting (no chunk done yet)"
    since = f", since {info['since']}" if "since" in info else ""
    return f"running {at} (PID {info.get('pid', '?')} on {info.get('host', '?')}{since})"


# ----------------------------------------------------------------------------- analysis


def _diverged(row: Mapping[str, Any]) -> bool:
    return row.get("status") != "ok"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _ranked(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    healthy = [r for r in rows if not _diverged(r) and math.isfinite(_number(r.get(RANK_BY)))]
    return sorted(healthy, key=lambda r: -_number(r[RANK_BY]))


def hyperparameter_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hyperparameter columns of a results table (neither `member` nor a metric).

    >>> hyperparameter_columns([{"member": 0, "learning_rate": 0.1, "seed": 0, "status": "ok"}])
    ['learning_rate', 'seed']
    """
    if not rows:
        return []
    return [c for c in rows[0] if c != "member" and c not in METRICS]


def _is_numeric(rows: Sequence[Mapping[str, Any]], name: str) -> bool:
    return all(isinstance(r.get(name), int | float) for r in rows)


def varying_dimensions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Hyperparameter columns (but `seed`) that take more than one value across the members.

    >>> varying_dimensions([{"member": 0, "lr": 0.1, "seed": 0}, {"member": 1, "lr": 0.2, "seed": 1}])
    ['lr']
    """
    return [
        c
        for c in hyperparameter_columns(rows)
        if c != "seed" and len({str(r.get(c)) for r in rows}) > 1
    ]


def is_log_scale(summary: Mapping[str, Any], name: str, values: Sequence[float] = ()) -> bool:
    """Whether dimension `name` is log-scaled: `LogUniform` in the sweep's space.

    Without a space entry, positive values spanning more than two decades count as log-scaled.

    >>> space = {"learning_rate": {"distribution": "LogUniform", "low": 1e-3, "high": 1.0}}
    >>> is_log_scale({"config": {"space": space}}, "learning_rate")
    True
    """
    entry = _config(summary).get("space", {}).get(name)
    if isinstance(entry, dict) and "distribution" in entry:
        return entry["distribution"] == "LogUniform"
    finite = np.asarray([v for v in values if math.isfinite(v)], float)
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)


def importance(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """|Spearman correlation| of each numeric varying dimension with the ranking metric.

    Over healthy members only; tied values (a grid, a `Choice`) share their mean rank. A rough
    guide to which hyperparameters matter most.

    >>> rows = [{"member": i, "lr": i + 1.0, "wd": 1.0, "status": "ok",
    ...          "final_val_accuracy": 0.1 * i} for i in range(4)]
    >>> importance(rows)
    {'lr': 1.0}
    """
    healthy = _ranked(rows)
    out = {}
    for name in varying_dimensions(rows):
        if not _is_numeric(rows, name) or len(healthy) < 3:
            continue
        x = rankdata([_number(r[name]) for r in healthy])
        y = rankdata([_number(r[RANK_BY]) for r in healthy])
        if x.std() == 0 or y.std() == 0:
            out[name] = 0.0
        else:
            out[name] = round(abs(float(np.corrcoef(x, y)[0, 1])), 6)
    return out


def important_pair(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The two dimensions of the heat map: learning rate and weight decay when both vary,
    otherwise the most important numeric dimensions (see `importance`).

    >>> rows = [{"member": i, "learning_rate": 0.1 * (i + 1), "weight_decay": 1e-4 * (i % 2 + 1),
    ...          "momentum": 0.1 * i, "status": "ok", "final_val_accuracy": 0.5} for i in range(4)]
    >>> important_pair(rows)
    ('learning_rate', 'weight_decay')
    """
    numeric = [d for d in varying_dimensions(rows) if _is_numeric(rows, d)]
    if len(numeric) < 2:
        return None
    score = importance(rows)
    order = sorted(numeric, key=lambda d: (d not in _DEFAULT_PAIR, -score.get(d, 0.0)))
    return order[0], order[1]


def divergence_boundary(
    rows: Sequence[Mapping[str, Any]], name: str = "learning_rate"
) -> list[dict[str, Any]]:
    """The smallest `name` that diverged and the largest that did not, per setting of the others.

    Members are grouped by the other varying hyperparameters whose values repeat (a grid, a
    `Choice`); continuous dimensions sampled at random do not split the population.

    Args:
      rows: the results table.
      name: the dimension along which divergence is bounded.

    Returns:
      One dict per setting: `setting` (the grouping values), `members`, `diverged`,
      `smallest_diverged` and `largest_healthy` (None when there is none). Empty if `name` is not
      a numeric column.

    >>> rows = [{"member": i, "learning_rate": lr, "momentum": m, "status": s}
    ...         for i, (lr, m, s) in enumerate([(0.1, 0.0, "ok"), (1.0, 0.0, "diverged"),
    ...                                         (0.1, 0.9, "diverged"), (0.01, 0.9, "ok")])]
    >>> [(b["setting"], b["smallest_diverged"], b["largest_healthy"])
    ...  for b in divergence_boundary(rows)]
    [({'momentum': 0.0}, 1.0, 0.1), ({'momentum': 0.9}, 0.1, 0.01)]
    """
    if not rows or name not in rows[0] or not _is_numeric(rows, name):
        return []
    groups = [
        d
        for d in varying_dimensions(rows)
        if d != name and len({str(r[d]) for r in rows}) <= len(rows) / 2
    ]
    settings: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        settings.setdefault(tuple(row[d] for d in groups), []).append(row)
    out = []
    for key in sorted(settings, key=lambda k: tuple(str(v) for v in k)):
        members = settings[key]
        bad = [_number(r[name]) for r in members if _diverged(r)]
        good = [_number(r[name]) for r in members if not _diverged(r)]
        out.append(
            {
                "setting": dict(zip(groups, key, strict=True)),
                "members": len(members),
                "diverged": len(bad),
                "smallest_diverged": min(bad) if bad else None,
                "largest_healthy": max(good) if good else None,
            }
        )
    return out


def _boundary_text(b: Mapping[str, Any]) -> str:
    setting = ", ".join(f"{k}={_fmt(v)}" for k, v in b["setting"].items()) or "all members"
    return (
        f"{setting}: smallest diverged {_fmt(b['smallest_diverged'])}, "
        f"largest healthy {_fmt(b['largest_healthy'])} ({b['diverged']}/{b['members']} diverged)"
    )


def member_schedules(result: Result, num: int = 200) -> tuple[np.ndarray, np.ndarray] | None:
    """The learning rate each member followed, from the config's schedule and its hyperparameters.

    Hyperparameters the table does not hold take the defaults of the config's optimizer and
    schedule.

    Args:
      result: a sweep (its `summary` must hold the config).
      num: how many steps to evaluate between 0 and the config's `steps`.

    Returns:
      `steps [S]` and `learning_rate [P, S]`, or None if the schedule cannot be computed (no
      config, or a schedule family this version does not know).
    """
    import jax

    from sweepjax.schedules import learning_rate_at

    config = _config(result.summary)
    family, steps = config.get("schedule"), config.get("steps")
    if not isinstance(family, str) or not isinstance(steps, int) or not result.rows:
        return None
    defaults = _defaults(config)
    if defaults is None:
        return None
    names = [n for n in defaults if n != "seed"]
    hp = {
        n: np.asarray([_number(r.get(n, defaults[n])) for r in result.rows], np.float32)
        for n in names
    }
    grid = np.unique(np.linspace(0, steps, min(num, steps + 1)).round().astype(np.int64))
    try:
        lr = jax.vmap(lambda h: learning_rate_at(family, grid, h))(hp)
    except (KeyError, ValueError, TypeError):
        return None
    return grid, np.asarray(lr, np.float64)


def _defaults(config: Mapping[str, Any]) -> dict[str, float] | None:
    """Every per-member hyperparameter of a stored config with its default."""
    from sweepjax.config import Config, allowed_hyperparameters
    from sweepjax.schedules import schedule_parameters

    try:
        return {k: float(v) for k, v in allowed_hyperparameters(Config.from_json(config)).items()}
    except (TypeError, ValueError, KeyError):
        pass  # a config from another version of sweepjax: fall back to the schedule alone
    try:
        params = schedule_parameters(config["schedule"], config["steps"])
    except (KeyError, ValueError, TypeError):
        return None
    return {"learning_rate": 1e-3, **{k: float(v) for k, v in params.items()}}


# ----------------------------------------------------------------------------- figures


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " "))


def _png(fig) -> bytes:
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
    numeric = [d for d in varying_dimensions(rows) if _is_numeric(rows, d)]
    if not numeric:
        return None
    name = "learning_rate" if "learning_rate" in numeric else numeric[0]
    values = np.asarray([_number(r[name]) for r in rows])
    if is_log_scale(result.summary, name, values) and values.min() > 0:
        norm = LogNorm(values.min(), values.max())
    else:
        norm = Normalize(values.min(), values.max())
    return name, values, norm, colormaps["viridis"]


def _best_index(result: Result) -> int | None:
    ranked = _ranked(result.rows)
    if not ranked:
        return None
    member = ranked[0]["member"]
    return next(i for i, r in enumerate(result.rows) if r["member"] == member)


def _hp_text(row: Mapping[str, Any], names: Sequence[str]) -> str:
    return ", ".join(f"{n}={_fmt(row[n])}" for n in names[:3])


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
    best = _best_index(result)
    dims = varying_dimensions(rows)
    fig = Figure(figsize=(5.2 * len(names) + 1.2, 4.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
        values = curves[name]
        frame = None
        if name != "val_accuracy":
            healthy = [i for i, r in enumerate(rows) if not _diverged(r)]
            frame = _log_frame(values[:, healthy] if healthy else values)
        for i, row in enumerate(rows):
            y = values[:, i].copy()
            diverged = _diverged(row)
            at = _number(row.get("diverged_at_step"))
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
        if any(_diverged(r) for r in rows):
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
    fig.suptitle(f"{_title(result)}: curves of every member")
    return fig


def figure_hyperparameters(result: Result):
    """Final validation accuracy and loss against each numeric hyperparameter."""
    from matplotlib.figure import Figure

    rows = result.rows
    dims = [d for d in varying_dimensions(rows) if _is_numeric(rows, d)]
    metrics = [m for m in ("final_val_accuracy", "final_val_loss") if m in rows[0]] if rows else []
    if not dims or not metrics:
        return None
    diverged = np.asarray([_diverged(r) for r in rows])
    best = _best_index(result)
    fig = Figure(figsize=(3.6 * len(dims) + 0.5, 3.2 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(dims), squeeze=False, sharey="row")
    for j, dim in enumerate(dims):
        x = np.asarray([_number(r[dim]) for r in rows])
        log = is_log_scale(result.summary, dim, x) and x.min() > 0
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            y = np.asarray([_number(r[metric]) for r in rows])
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
    fig.suptitle(f"{_title(result)}: final metrics against each hyperparameter")
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
    x = np.asarray([_number(r[xname]) for r in rows])
    y = np.asarray([_number(r[yname]) for r in rows])
    z = np.asarray([_number(r[RANK_BY]) for r in rows])
    diverged = np.asarray([_diverged(r) for r in rows])
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
    best = _best_index(result)
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
    fig.suptitle(f"{_title(result)}: {_label(RANK_BY)} over {xname} and {yname}")
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
                labels = [_fmt(float(v)) for v in distinct]
            else:
                marks = [0.0, 0.5, 1.0]
                labels = [_fmt(10 ** (lo_t + m * span) if log else lo_t + m * span) for m in marks]
        else:  # strings: evenly spaced categories
            levels = sorted({str(v) for v in raw})
            position = {s: k / max(len(levels) - 1, 1) for k, s in enumerate(levels)}
            scaled = np.asarray([position[str(v)] for v in raw])
            marks, labels = list(position.values()), levels
        columns.append(scaled)
        ticks.append((marks, labels))
    data = np.stack(columns, 1)  # [P, D]
    accuracy = np.asarray([_number(r.get(RANK_BY)) for r in rows])
    diverged = np.asarray([_diverged(r) for r in rows])
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
    best = _best_index(result)
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
    fig.suptitle(f"{_title(result)}: parallel coordinates of every member")
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
    best = _best_index(result)
    fig = Figure(figsize=(7.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(rows):
        colour = colouring[3](colouring[2](colouring[1][i])) if colouring else "tab:blue"
        ax.plot(steps, lr[i], color=colour, lw=0.9, alpha=0.75, ls="--" if _diverged(row) else "-")
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
    schedule = _config(result.summary).get("schedule", "?")
    fig.suptitle(f"{_title(result)}: learning-rate schedule ({schedule}) of every member")
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


def _title(result: Result) -> str:
    return result.out_dir.name if result.out_dir is not None else "sweep"


# ----------------------------------------------------------------------------- the report


def leaderboard_rows(
    rows: Sequence[Mapping[str, Any]], top: int = 10
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The best `top` healthy members (best first) and every diverged member (by step).

    >>> rows = [{"member": 0, "status": "ok", "final_val_accuracy": 0.5, "diverged_at_step": -1},
    ...         {"member": 1, "status": "ok", "final_val_accuracy": 0.9, "diverged_at_step": -1},
    ...         {"member": 2, "status": "diverged", "final_val_accuracy": 0.1, "diverged_at_step": 7}]
    >>> [[r["member"] for r in part] for part in leaderboard_rows(rows)]
    [[1, 0], [2]]
    """
    diverged = sorted(
        (r for r in rows if _diverged(r)),
        key=lambda r: (_number(r.get("diverged_at_step")), r["member"]),
    )
    return _ranked(rows)[:top], diverged


def _tables(result: Result, top: int) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, cells) of the report's tables."""
    rows = result.rows
    hps = hyperparameter_columns(rows)
    best, diverged = leaderboard_rows(rows, top)
    metrics = [
        m
        for m in (
            "final_val_accuracy",
            "best_val_accuracy",
            "final_val_loss",
            "final_train_loss",
            "test_accuracy",
        )
        if rows and m in rows[0]
    ]
    healthy = sum(not _diverged(r) for r in rows)
    header = ["rank", "member", *hps, *metrics]
    tables = [
        (
            f"Leaderboard (top {len(best)} of {healthy} healthy members, by {RANK_BY})",
            header,
            [
                [str(k + 1), str(r["member"]), *(_fmt(r[c]) for c in hps + metrics)]
                for k, r in enumerate(best)
            ],
        )
    ]
    if diverged:
        header = ["member", *hps, "diverged_at_step", "final_train_loss"]
        tables.append(
            (
                f"Diverged members ({len(diverged)})",
                header,
                [[_fmt(r.get(c)) for c in header] for r in diverged],
            )
        )
    boundary = divergence_boundary(rows)
    if boundary:
        groups = list(boundary[0]["setting"])
        header = [*groups, "members", "diverged", "smallest diverged lr", "largest healthy lr"]
        cells = [
            [
                *(_fmt(b["setting"][g]) for g in groups),
                str(b["members"]),
                str(b["diverged"]),
                _fmt(b["smallest_diverged"]),
                _fmt(b["largest_healthy"]),
            ]
            for b in boundary
        ]
        tables.append(("Divergence boundary (learning rate)", header, cells))
    return tables


def _facts(result: Result) -> list[tuple[str, str]]:
    summary, config = result.summary, _config(result.summary)
    facts = [("status", status_line(result))]
    for key in ("dataset", "optimizer", "schedule", "search", "population", "steps", "batch_size"):
        if key == "dataset" and isinstance(summary.get("dataset"), str):
            facts.append((key, summary["dataset"]))  # what was trained on, described
        elif key in config:
            facts.append((key, _fmt(config[key])))
    model = config.get("model")
    if model is not None:
        facts.append(("model", json.dumps(model) if isinstance(model, dict) else str(model)))
    if isinstance(config.get("space"), dict):
        facts.append(("space", json.dumps(config["space"])))
    for key in ("device", "compile_seconds", "train_seconds", "member_steps_per_second"):
        if key in summary:
            facts.append((key, _fmt(summary[key])))
    return facts


def write_report(out_dir: str | os.PathLike, top: int = 10) -> Path:
    """Write the figures, `report.html` (figures embedded) and `report.md` of a sweep directory.

    Args:
      out_dir: a sweep directory (finished, interrupted or running).
      top: how many healthy members the leaderboard lists.

    Returns:
      The path of `report.html`.

    Raises:
      ValueError: `top` is not a positive integer, or `out_dir` holds no results.
      StorageError: a result file is damaged or cannot be read.
    """
    check_top(top)
    result = read_sweep(out_dir)
    out = Path(out_dir)
    figures: list[tuple[str, str, bytes]] = []
    for name, (make, caption) in FIGURES.items():
        fig = make(result)
        if fig is None:
            continue
        png = _png(fig)
        atomic_write(out / "figures" / f"{name}.png", lambda f, png=png: f.write(png), binary=True)
        figures.append((name, caption, png))
    tables = _tables(result, top)
    facts = _facts(result)
    title = f"sweepjax report: {_title(result)}"
    atomic_write(out / "report.md", lambda f: f.write(_markdown(title, facts, tables, figures)))
    atomic_write(out / "report.html", lambda f: f.write(_html(title, facts, tables, figures)))
    return out / "report.html"


def _markdown(title, facts, tables, figures) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    for name, header, cells in tables:
        lines += ["", f"## {name}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(c) + " |" for c in cells]
    for name, caption, _ in figures:
        lines += ["", f"## {caption}", "", f"![{caption}](figures/{name}.png)"]
    return "\n".join(lines) + "\n"


def _html(title, facts, tables, figures) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:0.9em}"
        "th{background:#eee}img{max-width:100%;border:1px solid #ddd}"
        "dt{font-weight:bold;float:left;clear:left;width:14em}dd{margin-left:15em}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        "<dl>",
        *(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts),
        "</dl>",
    ]
    for name, header, cells in tables:
        parts.append(f"<h2>{e(name)}</h2><table><tr>")
        parts.append("".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in cells]
        parts.append("</table>")
    for name, caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<h2>{e(caption)}</h2><figure id="{name}">'
            f'<img alt="{e(caption)}" src="data:image/png;base64,{data}"></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
