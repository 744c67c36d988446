"""A structural sweep whose trials come and go: one population per structure, trained together.

`train_blocks` is the trainer `sweepjax.runner.training.train_population` takes for a sweep
that `sweepjax.sweep.structures.trains_in_blocks`: it starts the searcher's first trials in
one block per structure (or restores the blocks of the latest checkpoint), runs the chunk loop
of `sweepjax.sweep.block_loop` with the checkpointer, progress bar and trackers, and returns the
sweep state. Every block trains every member at once (no width search).

>>> from sweepjax import Choice, Config, run
>>> config = Config(space={"model.hidden": Choice([[4], [8]]), "learning_rate": 0.1},
...                 population=4, trials=6, scheduler="asha", steps=20, eval_every=10,
...                 batch_size=16, out_dir=None)
>>> sorted({row["model.hidden"] for row in run(config, quiet=True).rows})
['[4]', '[8]']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from sweepjax.engine import distributed, widths
from sweepjax.engine.data import Dataset
from sweepjax.engine.population import Population, Program
from sweepjax.runner.training import (
    Checkpointer,
    Context,
    nbytes,
    open_loop,
    stop_if_asked,
    stopping,
    trackers,
)
from sweepjax.sweep.block_loop import (
    BlockDevices,
    blocks_target,
    evaluate_blocks,
    run_block_chunks,
    start_blocks,
)
from sweepjax.sweep.loop import Devices
from sweepjax.sweep.out_dir import check_room
from sweepjax.sweep.restore import empty_state, restore_state
from sweepjax.sweep.structures import Blocks, block_key
from sweepjax.sweep.sweep_state import SweepState


def train_blocks(
    ctx: Context,
    dataset: Dataset,
    devices: Devices,
    data_placement: str,
    policies: tuple,
    *,
    program_for: Callable[[Mapping[str, Any]], Program],
):
    """Begin (afresh or from the latest checkpoint) and train the blocks until no trial runs:
    `(state, spent, width search, test metrics of the slots still running or None)`;
    `program_for(options)` is a structure's program."""
    config, out_dir = ctx.config, ctx.config.out_dir
    where = BlockDevices(devices, program_for)
    state, pops = _begin(ctx, where, policies)
    if out_dir is not None and distributed.is_primary():
        check_room(out_dir, sum(nbytes(p) for p in pops), config.keep_checkpoints)
    stop_if_asked(ctx)
    step = int(pops[0].step)
    search = widths.WidthSearch([None], 0)  # each block trains every member at once
    with contextlib.ExitStack() as stack:
        bar, train_data = open_loop(ctx, stack, (dataset, devices, data_placement), state, step)
        callbacks = [Checkpointer(ctx, search), bar, *trackers(ctx, state, stack)]
        pops, spent = run_block_chunks(state, pops, where, train_data, callbacks, stopping(ctx))
    running = state.running_slots().any()
    test = evaluate_blocks(state, where, pops, "test") if running else None
    return state, spent, search, test


def _begin(
    ctx: Context, where: BlockDevices, policies: tuple
) -> tuple[SweepState, list[Population]]:
    """The blocks restored from the latest good checkpoint, or the searcher's first trials."""
    config, program, manager = ctx.config, ctx.program, ctx.manager
    if manager is None or not manager.all_steps():
        state = empty_state(config, program, policies, ctx.metrics)
        state.blocks = Blocks([], [])
        return state, start_blocks(state, where)
    target = blocks_target(config, where, ctx.metrics)
    state, snapshot = restore_state(config, program, manager, policies, target, ctx.metrics)
    populations = snapshot.state["populations"]
    return state, [populations[block_key(i)] for i in range(len(state.blocks.sizes))]
