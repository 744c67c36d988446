"""What the sweep loop and its policies say to each other between chunks.

A *slot* is a row of the device population; a *trial* is one configuration with a history,
numbered in the order the searcher proposed it (0, 1, 2, ...). After every chunk the loop gives
the scheduler one `Observation` per running trial and applies the actions it returns (`Stop`,
`Exploit`) as one jitted gather on the population axis; slots left free take the searcher's
next trials (`Searcher.ask`), and every trial that ends is told to the searcher
(`Searcher.tell`). Schedulers and searchers live on the host, hold only JSON-able state
(`state_dict` / `load_state_dict`, saved in every checkpoint) and draw random numbers from
generators seeded by their config and their own counters, so a resumed sweep decides exactly
as the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

DIRECTIONS = ("max", "min")


@dataclasses.dataclass(frozen=True)
class Observation:
    """A running trial at a chunk boundary.

    Attributes:
      trial: the trial's id.
      slot: the population row holding it.
      steps: the steps the trial has trained (its own count, not the sweep's).
      value: the ranking metric on the validation split now (NaN if it diverged).
      hparams: the trial's current hyperparameters (searched names and `seed`).
    """

    trial: int
    slot: int
    steps: int
    value: float
    hparams: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Stop:
    """Stop `trial` in `slot`; `reason` says which rule stopped it (e.g. `asha rung 1`)."""

    slot: int
    trial: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Exploit:
    """PBT: `slot` (holding `trial`) takes `source_slot`'s parameters, optimizer and model state
    and continues as the same trial with `hparams` (its new values of the searched names)."""

    slot: int
    trial: int
    source_slot: int
    source_trial: int
    hparams: Mapping[str, Any]


Action = Stop | Exploit


class Scheduler(Protocol):
    """Decides between chunks which running trials stop (or, for PBT, exploit and explore)."""

    name: str

    def decide(self, observations: Sequence[Observation], step: int) -> list[Action]:
        """The actions after the chunk that ended at the sweep's global `step`."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; `load_state_dict` of it continues exactly where this one is."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Searcher(Protocol):
    """Proposes trials (`ask`) and learns from the ones that ended (`tell`)."""

    name: str

    def ask(self, n: int) -> list[dict[str, Any]]:
        """Up to `n` new trials' hyperparameters; fewer (or none) when it has no more now.

        Rows are numbered by the order they are asked in over the searcher's life: the first
        row ever returned is trial 0. Values are as the search space gives them (a family's
        name for a `Choice` of names).
        """

    def tell(self, trial: int, value: float, steps: int, status: str) -> None:
        """Trial `trial` ended: its ranking metric `value` (NaN if diverged) after `steps`
        steps; `status` is `finished`, `stopped` or `diverged`."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def better(a: float, b: float, direction: str) -> bool:
    """Whether `a` is strictly better than `b` under `direction` (`max` or `min`).

    >>> better(0.9, 0.8, "max"), better(0.9, 0.8, "min")
    (True, False)
    """
    return a > b if direction == "max" else a < b
