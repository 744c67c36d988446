"""How a population's slots change between two chunks, decided on the host.

`SweepState.next_turn` says what the next population is made of (a `Turn`: the running slots,
their hyperparameters after PBT's exploits, the searcher's new trials); `Turn.block` lays the
next slots out (`slot_order`: kept, packed onto the devices, or new trials seated) as a
`Reassignment`, which `sweepjax.engine.reassign` applies on the device as one jitted gather;
`slots_for` fits the population's size to what runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweepjax.engine.layout import MIN_WIDTH
from sweepjax.search.space import HParams


@dataclasses.dataclass
class Reassignment:
    """How the population changes between two chunks (see `sweepjax.engine.reassign`).

    Attributes:
      source: `[S']` the slot of the old population each new slot takes its state from.
      fresh: `[S']` new slots that initialise a new trial from its hyperparameters instead.
      running: `[S']` new slots that train in the next chunk (the others are frozen).
      hparams: the new population's hyperparameters, `[S']` columns.
    """

    source: np.ndarray
    fresh: np.ndarray
    running: np.ndarray
    hparams: HParams
    freezes: bool  # a slot alive on the device stops running, or the population's size changes

    @property
    def changes(self) -> bool:
        """Whether applying it changes the device population at all."""
        same = self.source.size == self.fresh.size and np.array_equal(
            self.source, np.arange(self.source.size)
        )
        return not same or self.fresh.any() or self.freezes


@dataclasses.dataclass
class BlockChange:
    """One block's next slots (the whole population, for a sweep of one structure): the trial
    each holds, and the `Reassignment` that makes them from the block's current slots."""

    trials: np.ndarray
    reassignment: Reassignment


@dataclasses.dataclass
class Turn:
    """Between two chunks, per current slot: whether its trial runs on, whether its ended trial
    is still alive on the device, the trial it keeps (-1: none), its hyperparameters (after
    PBT's exploits) and the slot it copies (`source`); and the searcher's new `rows`."""

    running: np.ndarray
    ended_alive: np.ndarray
    trials: np.ndarray
    columns: dict[str, np.ndarray]
    source: np.ndarray
    rows: list[Mapping[str, Any]]

    def block(
        self, part: slice, size: int, ids: list[int], new: HParams | None, devices: int
    ) -> BlockChange:
        """The next `size` slots made from the current slots `part` (none: a new block), the
        running ones kept and the new trials `ids` (device columns `new`) seated."""
        running = self.running[part]
        order, new_slots = slot_order(running, size, len(ids), devices)
        fresh = np.zeros(size, bool)
        fresh[new_slots] = True
        if running.size:
            trials = self.trials[part][order]
            hparams = {k: v[part][order] for k, v in self.columns.items()}
            source = (self.source[part] - part.start)[order]
            if not ((source >= 0) & (source < running.size)).all():
                raise RuntimeError("an exploit copies a slot of another structure's block")
            freezes = size != running.size or bool((self.ended_alive[part][order] & ~fresh).any())
        else:  # a new block: every slot starts from the first new trial's values
            trials, hparams = (
                np.full(size, -1),
                {k: np.repeat(v[:1], size) for k, v in new.values.items()},
            )
            source, freezes = np.zeros(size, int), True
        if ids and size != running.size:
            trials[int(running.sum()) :] = -1  # beyond the running slots: new trials, then idle
        trials[new_slots] = ids
        for k in new.names if ids else ():
            hparams[k][new_slots] = new[k]
        reassignment = Reassignment(source, fresh, trials >= 0, HParams(hparams), freezes)
        return BlockChange(trials, reassignment)


def slot_order(
    running: np.ndarray, size: int, new: int, devices: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which current slot each of `size` next slots takes (`order`), and where `new` trials sit.

    Same size with new trials: every slot stays, the new ones take the first free slots. No
    new trial: the running slots are packed into each device's first groups (`packed`).
    Otherwise the running slots first, then the new trials, then idle copies of slot 0.

    >>> running = np.array([True, False, True, False])
    >>> [a.tolist() for a in slot_order(running, 4, 1, 1)], slot_order(running, 8, 3, 1)[1].tolist()
    ([[0, 1, 2, 3], [1]], [2, 3, 4])
    """
    if size == running.size and new:
        return np.arange(size), np.flatnonzero(~running)[:new]
    if not new:
        return packed(running, devices, size), np.zeros(0, int)
    kept = np.flatnonzero(running)
    return np.concatenate([kept, np.zeros(size - kept.size, int)]), np.arange(
        kept.size, kept.size + new
    )


def packed(running: np.ndarray, devices: int, size: int) -> np.ndarray:
    """An order of `size` slots taken from the current ones that puts the running slots first
    in each of `devices`' shares (each device holds a contiguous share of the slots): a
    device keeps its own running slots, in order, as far as its new share holds them; the
    rest move to devices with room; idle slots (slot 0 again where there are too few) follow.

    >>> running = np.array([False, True, False, False, True, True, False, True])
    >>> packed(running, 2, 8).tolist(), packed(running, 2, 4).tolist()
    ([1, 0, 2, 3, 4, 5, 7, 6], [1, 7, 4, 5])
    """
    old, new = running.size // devices, size // devices
    own = [list(np.flatnonzero(running[d * old : (d + 1) * old]) + d * old) for d in range(devices)]
    overflow = [slot for slots in own for slot in slots[new:]]
    idle = list(np.flatnonzero(~running)) + [0] * size
    order = []
    for slots in own:
        room = new - len(slots[:new])
        mine, overflow = slots[:new] + overflow[:room], overflow[room:]
        pad = new - len(mine)
        order += mine + idle[:pad]
        idle = idle[pad:]
    return np.asarray(order, int)


def slots_for(needed: int, size: int, population: int, devices: int) -> int:
    """The population size for `needed` running slots: the full `population` when it grows,
    a narrower one (a power of two, a multiple of `devices`) when at most half is needed.

    >>> slots_for(3, 16, 16, 2), slots_for(9, 16, 16, 2), slots_for(12, 4, 16, 2)
    (4, 16, 16)
    """
    if needed > size:
        return population
    if needed * 2 > size:
        return size
    narrow = max(MIN_WIDTH, devices, 1 << max(needed - 1, 0).bit_length())
    narrow = -(-narrow // devices) * devices
    return min(narrow, size)
