"""Where a population's training begins: the searcher's first trials, or the latest checkpoint.

A checkpoint holds the whole sweep state: the population, the slots' hyperparameters, the
curves by trial, and in its metadata the trial table, which trial each slot holds, and the
scheduler's and the searcher's state (`SweepState.checkpoint_meta`). A checkpoint written
before trials existed (one trial per slot, all from step 0) restores as exactly that
(`CheckpointMeta.from_json` fills in what it lacks).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import numpy as np

from sweepjax.engine import distributed, placement
from sweepjax.engine.population import START, Population, Program, init_population
from sweepjax.search.space import HParams
from sweepjax.sweep import checkpoint
from sweepjax.sweep.config import FAMILY_KEYS, Config, families, is_adaptive
from sweepjax.sweep.metadata import CheckpointMeta
from sweepjax.sweep.results import curve_names
from sweepjax.sweep.structures import Blocks
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trials import Curves, TrialTable


def restore_target(config: Config, program: Program, example_x: Any, metrics, mesh):
    """Builds the abstract restore target from a checkpoint's metadata, placed as it trains."""

    def target(meta: CheckpointMeta) -> dict[str, Any]:
        target = saved_columns(meta, metrics)
        dtypes = {k: v.dtype for k, v in target["hparams"].items()}
        population = population_shapes(program, dtypes, len(meta.slots), example_x)
        target["population"] = placement.abstract(population, mesh)
        if meta.kept_trial >= 0:  # one member's variables, on the host
            target["kept"] = member_shapes(population)
        return target

    return target


def saved_columns(meta: CheckpointMeta, metrics) -> dict[str, Any]:
    """The restore target of a checkpoint's host arrays: the slots' hyperparameter columns and
    the curves by trial."""
    size, points, trials = len(meta.slots), meta.curve_points, meta.curve_trials
    hparams = {k: np.zeros(size, np.dtype(d)) for k, d in meta.hparams.items()}
    curves = {"steps": np.zeros(points, np.int64)}
    curves.update({k: np.zeros((points, trials), np.float32) for k in curve_names(metrics)})
    return {"hparams": hparams, "curves": curves}


def population_shapes(program: Program, dtypes: dict[str, Any], size: int, example_x: Any):
    """The abstract `Population` of `size` members of `program` (columns of `dtypes`)."""
    abstract = HParams({k: jax.ShapeDtypeStruct((size,), d) for k, d in dtypes.items()})
    return jax.eval_shape(lambda hp: init_population(program, hp, example_x), abstract)


def member_shapes(population: Any) -> Any:
    """The abstract variables (`{"params": ..., **model_state}`) of one member, on the host."""
    variables = {"params": population.params, **population.model_state}
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), variables)


def begin(
    config: Config, program: Program, manager, policies: tuple, devices, metrics: tuple[str, ...]
) -> tuple[SweepState, Population, int | None]:
    """`(state, population, width)`: restored from `manager`'s latest good checkpoint, or fresh
    from the searcher's first trials (`width` is the one a checkpoint chose; None: choose)."""
    if manager is None or not manager.all_steps():
        state = empty_state(config, program, policies, metrics)
        return state, _fresh(state, program, devices.example_x), None
    target = restore_target(config, program, devices.example_x, metrics, devices.mesh)
    state, snapshot = restore_state(config, program, manager, policies, target, metrics)
    return state, snapshot.state["population"], snapshot.meta.population_width


def empty_state(
    config: Config, program: Program, policies: tuple, metrics: tuple[str, ...]
) -> SweepState:
    """The state of a sweep before its first trials: no slot, no trial."""
    scheduler, searcher = policies
    direction, rank_by = program.task.direction, program.task.rank_by
    return SweepState(
        config, rank_by, direction, HParams({}), np.zeros(0, int), TrialTable(),
        Curves.empty(metrics), scheduler, searcher,
    )  # fmt: skip


def restore_state(
    config: Config, program: Program, manager, policies: tuple, target, metrics: tuple[str, ...]
) -> tuple[SweepState, checkpoint.Snapshot]:
    """The sweep state of `manager`'s latest good checkpoint (its damaged later steps deleted),
    and the snapshot it came from; `target` builds its restore target."""
    scheduler, searcher = policies
    direction, rank_by = program.task.direction, program.task.rank_by
    snapshot, bad = checkpoint.restore_latest(manager, target)
    for step in bad:
        manager.delete(step)
    meta, saved = snapshot.meta, snapshot.state["hparams"]  # Orbax returns dicts key-sorted
    hparams = {k: np.asarray(saved[k]) for k in meta.hparams}
    size = len(next(iter(hparams.values())))
    hparams.setdefault(START, np.zeros(size, np.int32))  # a checkpoint from before trials
    table = _table(config, meta, hparams, size)
    if meta.searcher is not None:
        searcher.load_state_dict(meta.searcher)
    else:  # its population was the searcher's first `size` rows
        searcher.ask(size)
    if meta.scheduler is not None:
        scheduler.load_state_dict(meta.scheduler)
    state = SweepState(
        config, rank_by, direction, HParams(hparams), np.asarray(meta.slots, int), table,
        Curves.from_arrays(snapshot.state["curves"], metrics), scheduler, searcher,
        slot_steps=meta.slot_steps, kept_trial=meta.kept_trial, kept=snapshot.state.get("kept"),
        blocks=None if meta.blocks is None else Blocks.from_json(meta.blocks),
    )  # fmt: skip
    state.extend_budget()
    _say_where(config, snapshot.step, state)
    return state, snapshot


def _fresh(state: SweepState, program: Program, example_x: Any) -> Population:
    """The first population: the searcher's first trials, in slots 0, 1, ...; slots it has no
    trial for yet stay idle (frozen copies of the first)."""
    config = state.config
    rows = state.searcher.ask(min(config.population, state.trial_count))
    if not rows:
        raise ValueError(f"searcher: {config.searcher!r} proposed no trial to start with.")
    state.start_trials(rows)
    pop = init_population(program, state.hparams, example_x)
    if len(rows) < config.population:
        pop = pop.replace(alive=jax.numpy.asarray(state.slot_trials >= 0))
    return pop


def _table(
    config: Config, meta: CheckpointMeta, hparams: dict[str, np.ndarray], size: int
) -> TrialTable:
    """The checkpoint's trial table; for a checkpoint from before trials, one per slot."""
    if meta.trials is not None:
        return TrialTable.from_json(meta.trials)
    table = TrialTable()
    for slot in range(size):
        row = {k: np.asarray(v)[slot].item() for k, v in hparams.items() if k != START}
        for kind in FAMILY_KEYS:
            if kind in row:  # an index column: the family's name, as a searcher gives it
                row[kind] = families(config, kind)[row[kind]]
        table.add(row, start=0)
    return table


def _say_where(config: Config, step: int, state: SweepState) -> None:
    adaptive = is_adaptive(config)
    if not state.done:
        of = "" if adaptive else f" of {config.steps}"
        note = f"resuming {config.out_dir} from the checkpoint at step {step}{of}"
    else:
        extend = (
            "" if adaptive else f" (to extend it: sweepjax resume {config.out_dir} --set steps=N)"
        )
        note = f"{config.out_dir} holds this sweep finished at step {step}; rewriting its results{extend}"
    if distributed.is_primary():
        print(f"sweepjax: {note}", file=sys.stderr)
