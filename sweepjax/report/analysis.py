"""What a sweep's results say, from its table alone: which members are healthy and best, which
hyperparameters vary (quantities or categories) and trend with the metric, where divergence
begins, the schedule each member followed.

These read `results.csv` rows and `sweep.json` (as `sweepjax.Result` holds them) and compute
the numbers the report and `sweepjax show` print. "Best" follows a ranking column and its
direction (`"max"`: higher is better, `"min"`: lower), the sweep's own by
`sweepjax.sweep.results.ranking`; functions given rows alone default to the final validation
accuracy, highest first (classification, and results written before sweeps had tasks).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from sweepjax.sweep.columns import hyperparameter_columns
from sweepjax.sweep.results import RANK_BY, Result, rank_rows

_DEFAULT_PAIR = ("learning_rate", "weight_decay")


def config_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    config = summary.get("config")
    return config if isinstance(config, dict) else {}


def is_diverged(row: Mapping[str, Any]) -> bool:
    return row.get("status") == "diverged"


def is_stopped(row: Mapping[str, Any]) -> bool:
    """Whether an adaptive scheduler stopped the member early."""
    return row.get("status") == "stopped"


def as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def better(direction: str) -> str:
    """Which values of a metric ranked in `direction` are better: "higher" or "lower".

    >>> better("max"), better("min")
    ('higher', 'lower')
    """
    return "higher" if direction == "max" else "lower"


def is_numeric(rows: Sequence[Mapping[str, Any]], name: str) -> bool:
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
    entry = config_of(summary).get("space", {}).get(name)
    if isinstance(entry, dict) and "distribution" in entry:
        return entry["distribution"] == "LogUniform"
    finite = np.asarray([v for v in values if math.isfinite(v)], float)
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)


def is_categorical(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], name: str
) -> bool:
    """Whether dimension `name` holds categories rather than quantities: names (schedule and
    optimizer families, a `Choice` of strings) or a seed the space sweeps (a label: seed 2 is
    not "more" than seed 1).

    >>> swept = {"config": {"space": {"seed": {"distribution": "Choice", "values": [0, 1]}}}}
    >>> rows = [{"seed": 0, "schedule": "cosine", "lr": 0.1}]
    >>> [is_categorical(swept, rows, n) for n in ("seed", "schedule", "lr")]
    [True, True, False]
    >>> is_categorical({}, rows, "seed")  # the member's index when the space leaves it out
    False
    """
    if name == "seed":
        return isinstance(config_of(summary).get("space", {}).get("seed"), dict)
    return not is_numeric(rows, name)


def categorical_dimensions(result: Result) -> list[str]:
    """The hyperparameter columns of categories (`is_categorical`) with two values or more,
    the seed last (families and choices say more about a sweep than its seeds)."""
    rows = result.rows
    names = [
        c
        for c in hyperparameter_columns(rows)
        if is_categorical(result.summary, rows, c) and len({str(r.get(c)) for r in rows}) > 1
    ]
    return sorted(names, key=lambda name: name == "seed")


def categories(values: Sequence[Any]) -> list[Any]:
    """The distinct `values` in order: numbers by value, names alphabetically.

    >>> categories(["sgdr", "cosine", "sgdr"]), categories([10, 2, 2])
    (['cosine', 'sgdr'], [2, 10])
    """
    return sorted(
        set(values), key=lambda v: (isinstance(v, str), v if isinstance(v, str) else float(v))
    )


def rank_correlation(
    rows: Sequence[Mapping[str, Any]], column: str = RANK_BY, direction: str = "max"
) -> dict[str, float]:
    """Spearman correlation of each numeric varying dimension with how well members rank by
    `column` in `direction`: positive when higher values of the hyperparameter rank better (a
    higher accuracy, a lower mse), negative when they rank worse; its size says how much.

    Over healthy members only; tied values (a grid, a `Choice`) share their mean rank. Cheap and
    deterministic: it picks the heat map's pair (the report's importance is fANOVA's, in
    `sweepjax.report.importance`).

    >>> rows = [{"member": i, "lr": i + 1.0, "wd": 1.0, "status": "ok",
    ...          "final_val_mse": 0.1 * i} for i in range(4)]
    >>> rank_correlation(rows, "final_val_mse", "min")
    {'lr': -1.0}
    """
    healthy = rank_rows(rows, column, direction)
    sign = 1.0 if direction == "max" else -1.0
    out = {}
    for name in varying_dimensions(rows):
        if not is_numeric(rows, name) or len(healthy) < 3:
            continue
        x = rankdata([as_number(r[name]) for r in healthy])
        y = rankdata([sign * as_number(r[column]) for r in healthy])
        if x.std() == 0 or y.std() == 0:
            out[name] = 0.0
        else:
            out[name] = round(float(np.corrcoef(x, y)[0, 1]), 6)
    return out


def important_pair(
    rows: Sequence[Mapping[str, Any]], column: str = RANK_BY, direction: str = "max"
) -> tuple[str, str] | None:
    """The two dimensions of the heat map: learning rate and weight decay when both vary,
    otherwise the numeric dimensions of the largest `rank_correlation`, whatever its sign.

    >>> rows = [{"member": i, "learning_rate": 0.1 * (i + 1), "weight_decay": 1e-4 * (i % 2 + 1),
    ...          "momentum": 0.1 * i, "status": "ok", "final_val_accuracy": 0.5} for i in range(4)]
    >>> important_pair(rows)
    ('learning_rate', 'weight_decay')
    """
    numeric = [d for d in varying_dimensions(rows) if is_numeric(rows, d)]
    if len(numeric) < 2:
        return None
    score = rank_correlation(rows, column, direction)
    order = sorted(numeric, key=lambda d: (d not in _DEFAULT_PAIR, -abs(score.get(d, 0.0))))
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
    if not rows or name not in rows[0] or not is_numeric(rows, name):
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
        bad = [as_number(r[name]) for r in members if is_diverged(r)]
        good = [as_number(r[name]) for r in members if not is_diverged(r)]
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


def boundary_text(b: Mapping[str, Any]) -> str:
    setting = ", ".join(f"{k}={format_value(v)}" for k, v in b["setting"].items()) or "all members"
    return (
        f"{setting}: smallest diverged {format_value(b['smallest_diverged'])}, "
        f"largest healthy {format_value(b['largest_healthy'])} ({b['diverged']}/{b['members']} diverged)"
    )


def member_schedules(result: Result, num: int = 200) -> tuple[np.ndarray, np.ndarray] | None:
    """The learning rate each member followed, from its own schedule family (a per-member
    `schedule` column, else the config's family) and its hyperparameters.

    The members' hyperparameters are completed as training completes them
    (`sweepjax.sweep.config.complete_hparams`): what the table leaves out takes the default of the
    member's own family, or of the optimizer.

    Args:
      result: a sweep (its `summary` must hold the config).
      num: how many steps to evaluate between 0 and the config's `steps`.

    Returns:
      `steps [S]` and `learning_rate [P, S]`, or None if the schedule cannot be computed (no
      config, or a schedule family this process does not know: `write_report` imports the
      recorded ones first and names those it cannot, `code_record.schedule_problems`).
    """
    config = config_of(result.summary)
    steps = config.get("steps")
    if not isinstance(steps, int) or not result.rows:
        return None
    completed = _completed_hparams(config, result.rows)
    if completed is None:
        return None
    names, hp = completed
    grid = np.unique(np.linspace(0, steps, min(num, steps + 1)).round().astype(np.int64))
    return grid, np.asarray(_schedule_table(names)(grid, hp), np.float64)


@functools.cache
def _schedule_table(names: tuple[str, ...]):
    """`(steps [S], hp [P]) -> learning rate [P, S]` for the schedule families `names`,
    compiled once per set of families: step by step, as training evaluates it (a noisy family
    draws from each step's own key)."""
    import jax

    from sweepjax.engine.schedules import learning_rate_at

    at_steps = jax.vmap(lambda step, h: learning_rate_at(names, step, h), in_axes=(0, None))
    return jax.jit(jax.vmap(at_steps, in_axes=(None, 0)))


def _completed_hparams(
    config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> tuple[tuple[str, ...], dict[str, np.ndarray]] | None:
    """The sweep's schedule families and every member's hyperparameters as training has them,
    or None when the stored config cannot be read back (another version, unknown families)."""
    from sweepjax.sweep.config import (
        FAMILY_KEYS,
        Config,
        allowed_hyperparameters,
        complete_hparams,
        families,
    )

    try:
        # The schedule does not depend on the model, and a user module is stored as its repr.
        sweep = Config.from_json({k: v for k, v in config.items() if k != "model"})
        names = families(sweep, "schedule")
        wanted = {*allowed_hyperparameters(sweep), *FAMILY_KEYS}
        columns = [c for c in hyperparameter_columns(rows) if c in wanted]
        hp = complete_hparams(sweep, {c: np.asarray([r[c] for r in rows]) for c in columns})
    except (TypeError, ValueError, KeyError):
        return None
    return names, hp.values


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def best_index(result: Result) -> int | None:
    """The position in `result.rows` of the best member by the sweep's ranking, or None.

    >>> rows = [{"member": i, "status": "ok", "final_val_mse": v} for i, v in enumerate([0.3, 0.1])]
    >>> best_index(Result(rows, {}, {"rank_by": "final_val_mse", "rank_direction": "min"}))
    1
    """
    ranked = result.ranked()
    if not ranked:
        return None
    member = ranked[0]["member"]
    return next(i for i, r in enumerate(result.rows) if r["member"] == member)
