"""The report's figures of an adaptive sweep: trials by their own steps, and PBT's lineage.

>>> from sweepjax.sweep.results import Result
>>> figure_trials(Result([], {}, {})) is None  # a fixed population: no such figure
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.report.analysis import as_number, config_of
from sweepjax.report.figure_axes import label
from sweepjax.sweep.results import Result, ranking


def figure_trials(result: Result):
    """The ranking metric of every trial against its own steps: trials the scheduler stopped
    end early (grey, a cross where they stopped), trials that trained their budget in colour."""
    rows = result.rows
    if not rows or "steps_trained" not in rows[0] or not len(result.curves.get("steps", [])):
        return None
    column = ranking(result.summary)[0].replace("final_", "", 1)
    values, steps = np.asarray(result.curves[column]), np.asarray(result.curves["steps"])
    fig, (ax,) = _figure(1)
    for row in rows:
        trial = int(row["member"])
        held = np.isfinite(values[:, trial])
        own = steps[held] - int(row["start_step"])
        stopped = row["status"] == "stopped"
        style = {"color": "lightgrey", "lw": 0.7} if stopped else {"lw": 1.0, "alpha": 0.8}
        ax.plot(own, values[held, trial], **style)
        if stopped and held.any():
            ax.plot(own[-1], values[held, trial][-1], "x", color="grey", ms=4)
    ax.set_xlabel("steps of the trial")
    ax.set_ylabel(label(column))
    ax.set_title(f"{len(rows)} trials; grey: stopped early by the scheduler")
    return fig


def _figure(panels: int):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6 * panels + 0.6, 4.2), layout="constrained")
    return fig, list(fig.subplots(1, panels, squeeze=False).ravel())


def lineage_steps(result: Result) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """Each PBT trial's hyperparameters over the sweep: `[(step, values), ...]` per trial,
    from its first values and each exploit in `summary["lineage"]`.

    >>> lineage_steps(Result([{"member": 0, "lr": 0.1}], {}, {"lineage": [
    ...     {"step": 20, "trial": 0, "source_trial": 1, "old": {"lr": 0.1}, "new": {"lr": 0.3}}]}))
    {0: [(0, {'lr': 0.1}), (20, {'lr': 0.3})]}
    """
    events: Sequence[Mapping[str, Any]] = result.summary.get("lineage") or []
    if not events:
        return {}
    out: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for event in sorted(events, key=lambda e: (e["trial"], e["step"])):
        history = out.setdefault(int(event["trial"]), [(0, dict(event["old"]))])
        history.append((int(event["step"]), dict(event["new"])))
    for row in result.rows:
        trial = int(row["member"])
        if trial not in out:
            first = events[0]["new"]
            out[trial] = [(0, {k: row[k] for k in first if k in row})]
    return dict(sorted(out.items()))


def figure_lineage(result: Result):
    """PBT: the hyperparameters each trial followed, a step at every exploit (up to two
    explored dimensions, log axes where the space is log-scaled)."""
    histories = lineage_steps(result)
    if not histories:
        return None
    space = config_of(result.summary).get("space", {})
    names = [k for k in result.summary["lineage"][0]["new"] if isinstance(space.get(k), dict)]
    names = names[:2]
    if not names:
        return None
    end = int(result.summary.get("steps_done", 0))
    fig, axes = _figure(len(names))
    for ax, name in zip(axes, names, strict=True):
        for history in histories.values():
            xs = [step for step, _ in history] + [end]
            ys = [as_number(values.get(name)) for _, values in history]
            ax.step(xs, [*ys, ys[-1]], where="post", lw=0.9, alpha=0.8)
        if space[name].get("distribution") == "LogUniform":
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
    return fig
