"""Between two chunks of a sweep in blocks: which structure gets how many slots next.

`plan_blocks` is `SweepState.plan` for a sweep whose slots are split into one block per
structure (`structures.py`). The running trials keep their slots; the searcher's new trials
are told apart by structure and seated in their structure's block: in its free slots, or in a
grown block (the next power of two of the slots it needs); a structure first proposed now
gets a new block, and a block left with no running trial is dropped. A block with at most half
its slots running narrows as a sweep of one structure does, when the compute saved outweighs
compiling the narrower programs (`Sizing`: nothing to compile for a size the structure ran at
before). Each block's size is one set of compiled programs, so sizes come from a short ladder,
and a growing block takes a size already compiled where one holds its trials.

>>> from sweepjax.search.distributions import Choice
>>> from sweepjax.sweep.config import Config
>>> from sweepjax.sweep.trials import Curves, TrialTable
>>> from sweepjax.sweep.policies import make_policies
>>> from sweepjax.engine.tasks import task_of
>>> config = Config(space={"learning_rate": Choice([.1, .2, .3, .4]), "model.hidden": Choice([[4], [8]])},
...                 population=4, trials=8, scheduler="asha", searcher="grid", steps=20, eval_every=10)
>>> scheduler, searcher = make_policies(config, task_of("classification"))
>>> state = SweepState(config, "accuracy", "max", HParams({}), np.zeros(0, int), TrialTable(),
...                    Curves.empty(("accuracy",)), scheduler, searcher, blocks=Blocks([], []))
>>> plan = plan_blocks(state, 0, [], devices=1)
>>> state.blocks.labels, state.blocks.sizes, state.slot_trials.tolist()
(['model.hidden=[4]', 'model.hidden=[8]'], [2, 2], [0, 2, 1, 3])
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from sweepjax.search.protocol import Exploit
from sweepjax.search.space import HParams
from sweepjax.sweep.slot_changes import BlockChange, Turn, slots_for
from sweepjax.sweep.structures import (
    Blocks,
    grown_size,
    structure_label,
    structure_options,
)
from sweepjax.sweep.sweep_state import SweepState


class Sizing(Protocol):
    """What the loop measured of each structure's blocks, by label: whether narrowing a block
    pays for compiling its programs, and the sizes whose programs are compiled already."""

    def narrow_pays(self, label: str, size: int, narrower: int, steps_left: int) -> bool: ...

    def compiled(self, label: str) -> set[int]: ...


@dataclasses.dataclass
class BlockPlan:
    """The next blocks (`blocks`); for each, the current block it comes from (None: a new
    structure) and how its slots change."""

    blocks: Blocks
    origins: list[int | None]
    changes: list[BlockChange]


def plan_blocks(
    state: SweepState,
    step: int,
    exploits: list[Exploit],
    devices: int,
    sizing: Sizing | None = None,
) -> BlockPlan | None:
    """The next blocks of `state` (see the module docstring), applied to `state`; None when
    nothing runs and nothing is to start (the state then stays as the last chunk left it)."""
    turn = state.next_turn(step, exploits)
    if turn is None:
        return None
    ids, new = state.admit(turn.rows, step) if turn.rows else ([], HParams({}))
    options = [structure_options(state.config, row) for row in turn.rows]
    labels = [structure_label(o) for o in options]
    old = state.blocks
    structures = dict(zip(old.labels, old.options, strict=True))
    structures.update({label: o for label, o in zip(labels, options, strict=True)})
    parts = dict(zip(old.labels, old.slices(), strict=True))
    plan = BlockPlan(Blocks([], []), [], [])
    for label, chosen in structures.items():
        mine = [i for i, other in enumerate(labels) if other == label]
        part = parts.get(label, slice(0, 0))
        size = _block_size(state, turn, (label, part, len(mine)), step, devices, sizing)
        if size == 0:
            continue  # no trial of this structure runs: its block is dropped
        seated = HParams({k: v[mine] for k, v in new.values.items()})
        change = turn.block(part, size, [ids[i] for i in mine], seated, devices)
        plan.blocks.options.append(chosen)
        plan.blocks.sizes.append(size)
        plan.origins.append(old.labels.index(label) if label in parts else None)
        plan.changes.append(change)
    state.blocks = plan.blocks
    state.slot_trials = np.concatenate([c.trials for c in plan.changes])
    names = plan.changes[0].reassignment.hparams.names
    state.hparams = HParams(
        {k: np.concatenate([c.reassignment.hparams[k] for c in plan.changes]) for k in names}
    )
    return plan


def _block_size(
    state: SweepState,
    turn: Turn,
    block: tuple[str, slice, int],
    step: int,
    devices: int,
    sizing: Sizing | None,
) -> int:
    """The next size of block `(label, part, new trials)`: 0 when none of its trials runs,
    grown to hold its new trials (to a size compiled already, if one holds them and is at most
    twice the next power of two), or narrowed when at most half of it runs and that pays."""
    label, part, new = block
    running = turn.running[part]
    size, needed = running.size, int(running.sum()) + new
    population = state.config.population
    if needed == 0:
        return 0
    if needed > size:
        grown = grown_size(needed, population, devices)
        fits = [s for s in (sizing.compiled(label) if sizing else ()) if needed <= s <= 2 * grown]
        return min(fits, default=grown)
    narrower = slots_for(needed, size, population, devices)
    if new or narrower == size:
        return size
    mask = np.zeros(turn.running.size, bool)
    mask[part] = running
    left = state.steps_left(step, mask)
    pays = sizing is None or sizing.narrow_pays(label, size, narrower, left)
    return narrower if pays else size
