"""fANOVA importance of a sweep's hyperparameters: how much of the ranking metric's variance
each one explains on its own, and how much that share varies over the random forest's trees.

`fanova_importance(result)` fits Optuna's `FanovaImportanceEvaluator` (seeded, so a report is
reproducible) on the sweep as an Optuna study (`sweepjax.integrations.optuna_study.study_of`), over the
members that finished: diverged members, members a scheduler stopped early and members without
a finite metric are left out (their metric says how they failed or how far they got, not how
good their hyperparameters are), and so is every dimension that does not vary among the others.

Categorical dimensions (schedule and optimizer families, a `Choice` of names, a swept seed) enter
by name. Log-scaled ones enter as their logarithm: Optuna's evaluator integrates each dimension
uniformly over its raw range, where the top decade of a learning rate would weigh 90%.
Numeric dimensions span the range of the members fitted.

The shares are Optuna's (each dimension's variance fraction, the mean over the trees, divided by
their sum, as `optuna.importance.get_param_importances` normalizes them); the spread is the std
of that fraction over the trees, divided alike, read from the evaluator's fANOVA object
(Optuna returns the mean alone) and left out where that object is not there.

Needs Optuna and scikit-learn (`pip install 'sweepjax[importance]'`); without them the report
says so in place of the table and draws no importance figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from sweepjax.report.analysis import (
    categories,
    is_categorical,
    is_diverged,
    is_log_scale,
    is_stopped,
)
from sweepjax.report.figure_axes import label, sweep_title
from sweepjax.sweep.columns import hyperparameter_columns
from sweepjax.sweep.results import Result, finished_rows, ranking

MIN_FINISHED = 5  # fewer members than this say nothing a forest could fit
TREES = 64  # Optuna's default forest
SEED = 0
NEEDS = (
    "fANOVA importance needs Optuna and scikit-learn; install them with: "
    "pip install 'sweepjax[importance]'"
)


class Share(NamedTuple):
    """One hyperparameter's importance: its share and the std of that share over the trees
    (None where it could not be read)."""

    name: str
    scale: str  # "categorical", "log" or "linear": how the forest saw it
    share: float
    spread: float | None


class Importance(NamedTuple):
    """The importance of a sweep's hyperparameters, largest first, or `note` saying why none."""

    shares: list[Share]
    fitted: int  # members the forest was fitted on
    left_out: dict[str, int]  # why members were not: count
    explained: float  # the main effects' part of the forest's variance (mean over the trees)
    note: str = ""


def finished_members(result: Result) -> tuple[list[Mapping[str, Any]], dict[str, int]]:
    """The members fANOVA is fitted on (finished, with a finite ranking metric) and how many
    were left out, by reason.

    >>> rows = [{"member": i, "status": s, "final_val_accuracy": v} for i, (s, v) in
    ...         enumerate([("ok", 0.5), ("diverged", 0.1), ("stopped", 0.3), ("ok", None)])]
    >>> fitted, left_out = finished_members(Result(rows, {}, {}))
    >>> [r["member"] for r in fitted], left_out
    ([0], {'diverged': 1, 'stopped early': 1, 'without a finite value': 1})
    """
    column = ranking(result.summary)[0]
    rows = result.rows
    fitted = finished_rows(rows, column)
    diverged = sum(is_diverged(r) for r in rows)
    stopped = sum(is_stopped(r) for r in rows)
    left_out = {
        "diverged": diverged,
        "stopped early": stopped,
        "without a finite value": len(rows) - len(fitted) - diverged - stopped,
    }
    return fitted, left_out


def fit_words(fitted: int, left_out: Mapping[str, int]) -> str:
    """Which members the forest was fitted on, in words.

    >>> fit_words(20, {"diverged": 3, "stopped early": 0})
    'fitted on 20 finished members; 3 diverged left out'
    """
    gone = ", ".join(f"{n} {why}" for why, n in left_out.items() if n)
    return f"fitted on {fitted} finished members" + (f"; {gone} left out" if gone else "")


def fit_scales(result: Result, fitted: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The dimensions that vary among the `fitted` members, each with how the forest sees it:
    "categorical" (by name), "log" (its logarithm) or "linear".

    >>> rows = [{"member": i, "lr": 10.0**-i, "act": "relu", "seed": i, "status": "ok"}
    ...         for i in range(4)]
    >>> fit_scales(Result(rows, {}, {}), rows)  # one activation; the seed is not swept
    {'lr': 'log'}
    """
    out = {}
    for name in hyperparameter_columns(result.rows):
        values = [r.get(name) for r in fitted]
        if len({str(v) for v in values}) < 2 or (
            name == "seed" and not is_categorical(result.summary, result.rows, name)
        ):
            continue
        if is_categorical(result.summary, result.rows, name):
            out[name] = "categorical"
        else:  # a LogUniform dimension's values are positive
            log = is_log_scale(result.summary, name, np.asarray(values, float))
            out[name] = "log" if log else "linear"
    return out


def _why_not(result: Result, fitted: Sequence[Mapping[str, Any]], scales: Mapping) -> str:
    """Why fANOVA has nothing to say about this sweep, or "" when it has."""
    column = ranking(result.summary)[0]
    if len(fitted) < MIN_FINISHED:
        return (
            f"Too few finished members for fANOVA importance: {len(fitted)}, it needs "
            f"{MIN_FINISHED} at least."
        )
    if len({float(r[column]) for r in fitted}) < 2:
        return f"{column} is the same for every finished member: there is no variance to explain."
    if not scales:
        return "No hyperparameter varies among the finished members."
    if len(scales) == 1:
        return (
            f"Only {next(iter(scales))} varies among the finished members: fANOVA has nothing "
            "to weigh it against (it would get the whole share)."
        )
    return ""


def fanova_importance(result: Result) -> Importance:
    """fANOVA importance of each hyperparameter that varies among the finished members, for
    the sweep's ranking metric (see the module's docstring); `note` says why there is none.

    >>> rows = [{"member": i, "lr": 0.1 * i, "status": "ok", "final_val_accuracy": 0.5}
    ...         for i in range(3)]
    >>> fanova_importance(Result(rows, {}, {})).note
    'Too few finished members for fANOVA importance: 3, it needs 5 at least.'
    """
    fitted, left_out = finished_members(result)
    scales = fit_scales(result, fitted)
    found = Importance([], len(fitted), left_out, math.nan)
    note = _why_not(result, fitted, scales)
    if note:
        return found._replace(note=note)
    try:
        import optuna
        import sklearn  # noqa: F401  (the forest of Optuna's fANOVA)
    except ImportError:
        return found._replace(note=NEEDS)
    from sweepjax.integrations.optuna_study import study_of
    from sweepjax.search.optuna_search import quiet_optuna

    rows = [_fit_values(r, scales) for r in fitted]
    distributions = _distributions(optuna, rows, scales)
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=TREES, seed=SEED)
    with quiet_optuna():
        study = study_of(Result(rows, {}, result.summary), distributions)
        raw = {name: float(v) for name, v in evaluator.evaluate(study).items()}
    spreads = _spreads(evaluator, raw)
    total = sum(raw.values())
    order = sorted(raw, key=lambda name: (-raw[name], name))
    shares = [
        Share(n, scales[n], raw[n] / total, None if spreads is None else spreads[n] / total)
        for n in order
    ]
    return found._replace(shares=shares, explained=total)


def _fit_values(row: Mapping[str, Any], scales: Mapping[str, str]) -> dict[str, Any]:
    """The row as the forest sees it: log-scaled dimensions as their base-10 logarithm."""
    return {k: math.log10(v) if scales.get(k) == "log" else v for k, v in row.items()}


def _distributions(optuna: Any, rows: Sequence[Mapping[str, Any]], scales: Mapping) -> dict:
    """Optuna's distribution of each dimension over the values of `rows`."""
    out = {}
    for name, scale in scales.items():
        values = [r[name] for r in rows]
        if scale == "categorical":
            out[name] = optuna.distributions.CategoricalDistribution(categories(values))
        else:
            out[name] = optuna.distributions.FloatDistribution(min(values), max(values))
    return out


def _spreads(evaluator: Any, raw: Mapping[str, float]) -> dict[str, float] | None:
    """The std over the trees of each dimension's variance fraction, from the evaluator's
    fANOVA object (its features are the dimensions in name order); None when that object is
    not there or its means are not the evaluator's."""
    forest = getattr(evaluator, "_evaluator", None)
    names = sorted(raw)
    try:
        pairs = [forest.get_importance(k) for k in range(len(names))]
    except (AttributeError, TypeError):
        return None
    if not all(math.isclose(mean, raw[n]) for n, (mean, _) in zip(names, pairs, strict=True)):
        return None
    return {n: float(std) for n, (_, std) in zip(names, pairs, strict=True)}


def importance_table(result: Result) -> tuple[str, list[str], list[list[str]]]:
    """The report's importance table: title, header and cells; a note in their place when
    there is no importance to show (too few members, a missing package, ...)."""
    found = fanova_importance(result)
    if found.note:
        return "Importance of each hyperparameter (fANOVA)", ["note"], [[found.note]]
    column = ranking(result.summary)[0]
    title = (
        f"Importance of each hyperparameter (fANOVA, seeded): its share of the variance of "
        f"{column} that single hyperparameters explain, and the std of that share over the "
        f"forest's {TREES} trees; {fit_words(found.fitted, found.left_out)}. Single "
        f"hyperparameters explain {found.explained:.0%} of the forest's variance, the rest is "
        "their interactions"
    )
    cells = [
        [s.name, s.scale, f"{s.share:.3f}", "-" if s.spread is None else f"{s.spread:.3f}"]
        for s in found.shares
    ]
    return title, ["hyperparameter", "scale", "share", "std over trees"], cells


def figure_importance(result: Result):
    """Horizontal bars of each hyperparameter's fANOVA share, the largest on top, the std over
    the trees as error bars; None when there is no importance to show."""
    from matplotlib.figure import Figure

    found = fanova_importance(result)
    if not found.shares:
        return None
    shares = found.shares
    y = np.arange(len(shares))[::-1]  # the largest on top
    share = np.asarray([s.share for s in shares])
    spread = np.asarray([np.nan if s.spread is None else s.spread for s in shares])
    fig = Figure(figsize=(7.4, 1.6 + 0.45 * len(shares)), layout="constrained")
    ax = fig.subplots()
    # The whiskers stay within [0, 1], where a share can be.
    low, high = np.minimum(spread, share), np.minimum(spread, 1.0 - share)
    errors = None if np.isnan(spread).all() else np.stack([low, high])
    ax.barh(y, share, xerr=errors, color="tab:blue", height=0.6, capsize=3, ecolor="dimgrey")
    ends = share + np.nan_to_num(high)
    for k in range(len(shares)):
        ax.text(ends[k] + 0.01, y[k], f"{share[k]:.2f}", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{label(s.name)} ({s.scale})" for s in shares], fontsize=9)
    ax.set_xlim(0, float(ends.max()) * 1.15)
    ax.set_xlabel("share of the variance single hyperparameters explain (± std over trees)")
    ax.grid(True, axis="x", alpha=0.3)
    column = ranking(result.summary)[0]
    fig.suptitle(f"{sweep_title(result)}: fANOVA importance for {label(column)}")
    ax.set_title(fit_words(found.fitted, found.left_out), fontsize=9)
    return fig


def importance_caption(result: Result) -> str:
    """The importance figure's caption: what is shown and which members the forest saw."""
    fitted, left_out = finished_members(result)
    column = label(ranking(result.summary)[0])
    return (
        f"fANOVA importance of each hyperparameter for {column}: its share of the variance "
        f"single hyperparameters explain, ± its std over the forest's trees "
        f"({fit_words(len(fitted), left_out)})"
    )
