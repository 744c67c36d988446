"""The results of a sweep from its trial table: one row per trial, its curves, a summary.

A row holds the trial's hyperparameters (those the space names, `seed`, and the family of each
per-member family key), its status (`ok`, `stopped` or `diverged`) and where it diverged, then
its final train loss, its final validation metrics, its best value of the ranking metric and
its test metrics. An adaptive sweep's rows add the global step each trial entered its slot
(its offset in the shared minibatch stream), the steps it trained, the rung it reached, its
parent (PBT) and why it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sweepjax.search.space import HParams
from sweepjax.sweep.config import (
    FAMILY_KEYS,
    Config,
    complete_hparams,
    families,
    is_adaptive,
    policy_of,
)
from sweepjax.sweep.results import Result, member_rows, summarize
from sweepjax.sweep.structures import structural_keys
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trials import RESULT_STATUS, last_finite


def family_names(config: Config, hparams: HParams, kind: str) -> np.ndarray:
    """The readable `kind` family of every member, from its index column."""
    return np.asarray(families(config, kind))[np.asarray(hparams[kind])]


def hyperparameter_columns(config: Config, rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The results' hyperparameter columns of trials' rows, in the space's order; a trial's
    structure (`model.<option>`) first, as its searcher gave it (a list by its JSON label)."""
    structure = structural_keys(config)
    shown = {k: np.asarray([row[k] for row in rows]) for k in structure}
    values = {k: np.asarray([row[k] for row in rows]) for k in rows[0] if k not in structure}
    hparams = complete_hparams(config, values)
    shown.update({k: v for k, v in hparams.values.items() if k in config.space or k == "seed"})
    for kind in FAMILY_KEYS:
        if kind in hparams:
            shown[kind] = family_names(config, hparams, kind)
    return shown


def trial_result(
    state: SweepState, metrics: tuple[str, ...], test: Mapping[str, np.ndarray] | None
) -> Result:
    """The `Result` of the trials so far; `test` holds the test metrics of the slots whose
    trial still runs (an interrupted sweep), None when none does."""
    config, table = state.config, state.table
    curves = state.curves.arrays(len(table))
    final = _final_metrics(state, metrics, curves, test)
    best = np.nanmax if state.direction == "max" else np.nanmin
    ranking = curves[f"val_{state.rank_by}"]
    with np.errstate(all="ignore"):
        best_values = [_best(best, ranking[:, t]) for t in range(len(table))]
    columns = {
        "status": np.asarray([RESULT_STATUS[t.status] for t in table.rows]),
        "diverged_at_step": np.asarray([t.diverged_at for t in table.rows]),
    }
    if is_adaptive(config):
        columns.update(
            start_step=np.asarray([t.start for t in table.rows]),
            steps_trained=np.asarray([t.steps for t in table.rows]),
            rung=np.asarray([t.rung for t in table.rows]),
            parent=np.asarray([-1 if t.parent is None else t.parent for t in table.rows]),
            stop_reason=np.asarray([t.reason for t in table.rows]),
        )
    columns["final_train_loss"] = np.asarray(
        [last_finite(curves["train_loss"][:, t]) for t in range(len(table))], np.float32
    )
    columns.update({f"final_val_{m}": final[f"final_val_{m}"] for m in metrics})
    columns[f"best_val_{state.rank_by}"] = np.asarray(best_values, np.float32)
    columns.update({f"test_{m}": final[f"test_{m}"] for m in metrics})
    shown = hyperparameter_columns(config, [t.hparams for t in table.rows])
    rows = member_rows(shown, columns)
    summary = {
        "config": config.to_json(),
        "steps_done": int(curves["steps"][-1]) if len(curves["steps"]) else 0,
        "task": config.task if isinstance(config.task, str) else config.task.name,
        **summarize(rows, f"final_val_{state.rank_by}", state.direction),
        "member_steps": sum(t.steps for t in table.rows),
        "slot_steps": state.slot_steps,
        **_trial_counts(state),
    }
    lineage = [
        {
            **event,
            "trial": t.id,
            "old": _searched(config, event["old"]),
            "new": _searched(config, event["new"]),
        }
        for t in table.rows
        for event in t.history
    ]
    if policy_of(config.searcher, "searcher")[0] in MULTI_OBJECTIVE:
        summary["pareto_trials"] = pareto_front(rows, f"final_val_{state.rank_by}", state.direction)
    if lineage:
        summary["lineage"] = sorted(lineage, key=lambda e: (e["step"], e["trial"]))
    return Result(rows, curves, summary)


MULTI_OBJECTIVE = ("nsga2",)  # searchers that trade the ranking metric against steps trained


def pareto_front(rows: list[dict[str, Any]], column: str, direction: str) -> list[int]:
    """The trials no other healthy trial beats on both `column` (in `direction`) and fewer
    steps trained: the Pareto set of a multi-objective sweep, by trial number.

    >>> rows = [{"member": i, "status": s, "acc": a, "steps_trained": n} for i, (s, a, n) in
    ...         enumerate([("ok", 0.9, 90), ("stopped", 0.8, 10), ("stopped", 0.7, 30)])]
    >>> pareto_front(rows, "acc", "max")
    [0, 1]
    """
    sign = 1.0 if direction == "max" else -1.0
    points = [
        (r["member"], sign * float(r[column]), r.get("steps_trained", 0))
        for r in rows
        if r["status"] != "diverged" and np.isfinite(float(r[column]))
    ]
    return sorted(
        m
        for m, v, n in points
        if not any(v2 >= v and n2 <= n and (v2, n2) != (v, n) for _, v2, n2 in points)
    )


def _searched(config: Config, values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in config.space}


def _best(reduce, values: np.ndarray) -> float:
    return float(reduce(values)) if np.isfinite(values).any() else float("nan")


def _final_metrics(state, metrics, curves, test) -> dict[str, np.ndarray]:
    """Each trial's final validation and test metrics: recorded when it ended, or (a running
    trial of an interrupted sweep) its latest validation values and `test` of its slot."""
    slot_of = {int(t): slot for slot, t in enumerate(state.slot_trials) if t >= 0}
    out: dict[str, list[float]] = {}
    for trial in state.table.rows:
        for m in metrics:
            if trial.metrics:
                val, tested = trial.metrics[f"final_val_{m}"], trial.metrics.get(f"test_{m}")
            else:
                val = last_finite(curves[f"val_{m}"][:, trial.id])
                slot = slot_of.get(trial.id)
                tested = None if test is None or slot is None else float(test[m][slot])
            out.setdefault(f"final_val_{m}", []).append(val)
            out.setdefault(f"test_{m}", []).append(np.nan if tested is None else tested)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _trial_counts(state: SweepState) -> dict[str, Any]:
    """How many trials there were and how each ended (adaptive sweeps)."""
    if not is_adaptive(state.config):
        return {}
    statuses = [t.status for t in state.table.rows]
    return {
        "scheduler": policy_of(state.config.scheduler, "scheduler")[0],
        "trials": len(statuses),
        **{
            f"trials_{s}": statuses.count(s) for s in ("finished", "stopped", "diverged", "running")
        },
    }
