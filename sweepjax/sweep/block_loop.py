"""The loop over chunks of a sweep in blocks: one population per structure, advanced together.

Each block (`structures.py`) is a population of its structure's program on the same devices.
A chunk trains every block in turn on the same minibatches (the shared stream at the same
global step), evaluates each, and hands the sweep state one `Chunk` of all slots, block after
block; the state decides as for one population (the scheduler sees every trial, whatever its
structure), `plan_blocks` seats the searcher's new trials by structure, and each block is
rebuilt on the device (`sweepjax.engine.reassign`), created, or dropped. Checkpoints hold every
block's population (`populations/<NN>`) and the blocks' structures and sizes in the metadata.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweepjax.engine import distributed, placement
from sweepjax.engine.compiling import compile_count
from sweepjax.engine.population import (
    Population,
    Program,
    init_population,
    make_stream_chunk,
    make_train_chunk,
)
from sweepjax.engine.reassign import reassign
from sweepjax.search.space import HParams
from sweepjax.sweep.block_plan import BlockPlan, plan_blocks
from sweepjax.sweep.config import Config
from sweepjax.sweep.loop import Devices, Pace, Spent, check_agreement, drive
from sweepjax.sweep.restore import member_shapes, population_shapes, saved_columns
from sweepjax.sweep.structures import Blocks, block_key, structure_label, structure_options
from sweepjax.sweep.sweep_state import Chunk, SweepState


@dataclasses.dataclass
class BlockDevices:
    """Where every block trains: the sweep's `Devices` with each structure's program."""

    devices: Devices
    program_for: Callable[[Mapping[str, Any]], Program]  # model options -> the program

    def of(self, options: Mapping[str, Any]) -> Devices:
        return dataclasses.replace(self.devices, program=self.program_for(options))


class Paces(dict):
    """Each structure's `Pace`, by label: the `block_plan.Sizing` its blocks are sized by."""

    def of(self, label: str) -> Pace:
        return self.setdefault(label, Pace())

    def narrow_pays(self, label: str, size: int, narrower: int, steps_left: int) -> bool:
        return self.of(label).narrow_pays(size, narrower, steps_left)

    def compiled(self, label: str) -> set[int]:
        return set(self.of(label).sizes)


def start_blocks(state: SweepState, where: BlockDevices) -> list[Population]:
    """The first blocks: the searcher's first trials, each in its structure's block."""
    plan = plan_blocks(state, 0, [], where.devices.count)
    if plan is None:
        raise ValueError(f"searcher: {state.config.searcher!r} proposed no trial to start with.")
    return _apply(plan, [], where, 0)


def split_hparams(state: SweepState) -> list[HParams]:
    """The state's slot columns, block by block."""
    return [state.hparams.select(np.arange(s.start, s.stop)) for s in state.blocks.slices()]


def blocks_target(config: Config, where: BlockDevices, metrics) -> Callable:
    """The restore target of a checkpoint in blocks: the hyperparameter columns and curves,
    one abstract population per block (of its structure and size), and the kept trial's
    variables in its own structure."""
    example_x, mesh = where.devices.example_x, where.devices.mesh

    def target(meta) -> dict[str, Any]:
        made = saved_columns(meta, metrics)
        dtypes = {k: v.dtype for k, v in made["hparams"].items()}
        blocks = Blocks.from_json(meta.blocks)
        made["populations"] = {
            block_key(index): placement.abstract(
                population_shapes(where.program_for(options), dtypes, size, example_x), mesh
            )
            for index, (options, size) in enumerate(zip(blocks.options, blocks.sizes, strict=True))
        }
        if meta.kept_trial >= 0:  # one member's variables, on the host
            options = structure_options(config, meta.trial_hparams(meta.kept_trial))
            made["kept"] = member_shapes(
                population_shapes(where.program_for(options), dtypes, 1, example_x)
            )
        return made

    return target


def run_block_chunks(
    state: SweepState,
    pops: list[Population],
    where: BlockDevices,
    train_data: Any,
    callbacks: list[Any],
    stopping: Callable[[], bool],
) -> tuple[list[Population], Spent]:
    """Train every block until no trial runs, or until `stopping()` says a signal came.

    Returns the blocks after the last chunk and the compute spent.
    """
    mesh = where.devices.mesh
    pops = [placement.place(p, mesh) for p in pops]
    device_hparams = [placement.place(h, mesh) for h in split_hparams(state)]
    data_key, paces = jax.random.key(state.config.seed), Paces()

    def one_chunk(step: int, length: int) -> tuple[list[Population], Chunk]:
        nonlocal pops, device_hparams
        feed = (train_data.arrays(step, length), data_key, train_data.placement, length)
        pops, chunk = _advance(state, where, pops, device_hparams, feed, paces)
        pops, device_hparams = _decide(state, where, pops, device_hparams, chunk, paces)
        return pops, chunk

    spent = drive(state, int(pops[0].step), one_chunk, callbacks, stopping)
    return pops, spent


def _advance(state, where: BlockDevices, pops, device_hparams, feed, paces) -> tuple:
    """One chunk of every block on the same minibatches; one `Chunk` of all slots."""
    (train, data_key, data_placement, length), mesh = feed, where.devices.mesh
    make_chunk = make_train_chunk if data_placement == "device" else make_stream_chunk
    parts, trained = [], []
    for options, pop, hparams in zip(state.blocks.options, pops, device_hparams, strict=True):
        devices = where.of(options)
        compiled_before, began = compile_count().seconds, time.perf_counter()
        pop, losses = make_chunk(devices.program, length, None, mesh)(pop, hparams, train, data_key)
        val = devices.metrics(pop, devices.val, None)
        parts.append(distributed.to_host((losses, val, pop.alive, pop.diverged_at)))
        compiling = compile_count().seconds - compiled_before
        pace = paces.of(structure_label(options))
        pace.record(time.perf_counter() - began - compiling, compiling, pop.size * length, pop.size)
        trained.append(pop)
    losses = np.concatenate([p[0] for p in parts], axis=1)
    val = {m: np.concatenate([p[1][m] for p in parts]) for m in parts[0][1]}
    alive, diverged_at = (np.concatenate([p[i] for p in parts]) for i in (2, 3))
    return trained, Chunk(int(trained[0].step), losses, val, alive, diverged_at, None)


def _decide(state: SweepState, where: BlockDevices, pops, device_hparams, chunk: Chunk, paces):
    """Between two chunks: as `loop._decide`, block by block on the device."""
    exploits = state.apply_decisions(state.observe(chunk), chunk.step)
    leaving = state.leaving()
    state.end_trials(chunk, _test_metrics(state, where, pops, leaving, chunk))
    _keep_best(state, pops, leaving)

    plan = plan_blocks(state, chunk.step, exploits, where.devices.count, paces)
    check_agreement(state, chunk.step)
    if plan is None:
        return pops, device_hparams
    pops = _apply(plan, pops, where, chunk.step)
    return pops, [placement.place(h, where.devices.mesh) for h in split_hparams(state)]


def _test_metrics(state, where: BlockDevices, pops, leaving, chunk: Chunk):
    """The test metrics of every slot of the blocks a trial leaves now (NaN elsewhere)."""
    if not leaving.any():
        return None
    wanted = [bool(leaving[part].any()) for part in state.blocks.slices()]
    return evaluate_blocks(state, where, pops, "test", wanted, chunk.val)


def evaluate_blocks(
    state: SweepState, where: BlockDevices, pops, split: str, wanted=None, names=()
):
    """`split`'s metrics (`val` or `test`) of every slot, block after block, on the host; of
    the blocks `wanted` only (a list of flags; the others NaN, for the metrics `names`)."""
    parts = []
    for index, (options, pop) in enumerate(zip(state.blocks.options, pops, strict=True)):
        if wanted is None or wanted[index]:
            devices = where.of(options)
            parts.append(devices.evaluate(pop, getattr(devices, split), None))
        else:
            parts.append({m: np.full(state.blocks.sizes[index], np.nan) for m in names})
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def _keep_best(state: SweepState, pops, leaving: np.ndarray) -> None:
    """Copy the variables of a new best finished trial to the host before its slot is reused."""
    slot = state.to_keep(leaving)
    if slot is None:
        return
    block, local = state.blocks.locate(slot)
    pop = pops[block]
    variables = {"params": pop.params, **pop.model_state}
    state.keep(slot, distributed.to_host(jax.tree.map(lambda leaf: leaf[local], variables)))


def _apply(plan: BlockPlan, pops: list[Population], where: BlockDevices, step: int):
    """The next blocks on the device: each rebuilt from its current block, or created."""
    mesh, made = where.devices.mesh, []
    for options, origin, change in zip(
        plan.blocks.options, plan.origins, plan.changes, strict=True
    ):
        devices, moved = where.of(options), change.reassignment
        if origin is None:  # a new structure: its first trials, from the current step
            hparams = placement.place(moved.hparams, mesh)  # initialised where it trains
            pop = init_population(devices.program, hparams, devices.example_x)
            pop = pop.replace(step=jnp.asarray(step, jnp.int32), alive=jnp.asarray(moved.running))
            made.append(placement.place(pop, mesh))
        elif moved.changes:
            made.append(
                reassign(
                    devices.program,
                    pops[origin],
                    moved.hparams,
                    moved.source,
                    moved.fresh,
                    moved.running,
                    devices.example_x,
                    mesh,
                )  # fmt: skip
            )
        else:
            made.append(pops[origin])
    return made
