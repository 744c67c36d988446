"""Trials and their curves: one row per configuration a sweep ever tried, on the host.

A slot is a row of the device population; a trial is a configuration with a history. A trial
enters a slot at a global step (`start`, its offset in the shared minibatch stream), trains,
and leaves it `finished` (its budget spent), `stopped` (by the scheduler) or `diverged`. The
table is JSON in every checkpoint; `Curves` records each trial's train loss and validation
metrics at every chunk boundary it was in a slot for (NaN elsewhere).

>>> table = TrialTable()
>>> table.add({"learning_rate": 0.1, "seed": 0}, start=0).id
0
>>> TrialTable.from_json(table.to_json()).rows[0].status
'running'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.sweep.results import curve_names

RESULT_STATUS = {"running": "ok", "finished": "ok", "stopped": "stopped", "diverged": "diverged"}


@dataclasses.dataclass
class Trial:
    """One configuration and its history.

    Attributes:
      id: its number, in the order the searcher proposed it.
      hparams: its hyperparameters as the searcher gave them (a family by name), with `seed`.
      start: the global step it entered its slot: its offset in the shared minibatch stream.
      status: `running`, `finished`, `stopped` or `diverged`.
      steps: the steps it trained.
      reason: why it stopped (the scheduler's rule), empty otherwise.
      rung: the highest rung it reached under a rung-based scheduler, -1 otherwise.
      parent: PBT: the trial it last copied its state from; None if never.
      diverged_at: its own step at which it diverged, -1 if it did not.
      metrics: its final metrics once it left its slot (`final_val_<m>`, `test_<m>`, ...).
      history: PBT: each exploit (step, source trial, old and new hyperparameters).
      told: whether the searcher was told how it ended.
    """

    id: int
    hparams: dict[str, Any]
    start: int
    status: str = "running"
    steps: int = 0
    reason: str = ""
    rung: int = -1
    parent: int | None = None
    diverged_at: int = -1
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    told: bool = False  # whether the searcher was told how it ended


class TrialTable:
    """Every trial of a sweep, by id (see the module docstring)."""

    def __init__(self, rows: Sequence[Trial] = ()):
        self.rows: list[Trial] = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, hparams: Mapping[str, Any], start: int) -> Trial:
        trial = Trial(len(self.rows), dict(hparams), start)
        self.rows.append(trial)
        return trial

    def to_json(self) -> list[dict[str, Any]]:
        return [_plain(dataclasses.asdict(t)) for t in self.rows]

    @classmethod
    def from_json(cls, rows: Sequence[Mapping[str, Any]]) -> TrialTable:
        return cls([Trial(**row) for row in rows])


def _plain(value: Any) -> Any:
    """JSON-able Python values (numpy scalars as Python's; NaN stays a float)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclasses.dataclass
class Curves:
    """Per-chunk curves by trial: `steps [C]` (global steps), and `[C, T]` arrays `train_loss`
    and `val_<metric>`, NaN where a trial held no slot."""

    steps: list[int]
    values: dict[str, list[np.ndarray]]

    @classmethod
    def empty(cls, metrics: tuple[str, ...]) -> Curves:
        return cls([], {name: [] for name in curve_names(metrics)})

    def append(
        self,
        step: int,
        losses: np.ndarray,
        val: Mapping[str, np.ndarray],
        slot_trials: np.ndarray,
        trials: int,
    ) -> None:
        """Add one chunk: its end step, its `[length, S]` train losses and its evaluation of
        the `S` slots, slot `s` holding trial `slot_trials[s]` (-1: none) of `trials`."""
        held = slot_trials >= 0

        def by_trial(per_slot: np.ndarray) -> np.ndarray:
            row = np.full(trials, np.nan, np.float32)
            row[slot_trials[held]] = per_slot[held]
            return row

        self.steps.append(step)
        self.values["train_loss"].append(by_trial(_chunk_mean(losses)))
        for name, value in val.items():
            self.values[f"val_{name}"].append(by_trial(np.asarray(value)))

    def arrays(self, trials: int | None = None) -> dict[str, np.ndarray]:
        """The curves as arrays, `[C, trials]` (rows of earlier chunks padded with NaN)."""
        width = trials if trials is not None else max((len(r) for r in self._rows()), default=0)

        def padded(rows: list[np.ndarray]) -> np.ndarray:
            out = np.full((len(rows), width), np.nan, np.float32)
            for i, row in enumerate(rows):
                out[i, : len(row)] = row
            return out

        return {
            "steps": np.asarray(self.steps, np.int64),
            **{k: padded(v) for k, v in self.values.items()},
        }

    def _rows(self) -> list[np.ndarray]:
        return [row for rows in self.values.values() for row in rows]

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], metrics: tuple[str, ...]) -> Curves:
        return cls(
            steps=[int(s) for s in arrays["steps"]],
            values={k: list(np.asarray(arrays[k])) for k in curve_names(metrics)},
        )


def _chunk_mean(losses: np.ndarray) -> np.ndarray:
    """Mean train loss of each slot over a chunk's steps it was alive for (NaN if none)."""
    alive_steps = np.isfinite(losses).sum(0)
    total = np.where(np.isfinite(losses), losses, 0.0).sum(0)
    return np.where(alive_steps > 0, total / np.maximum(alive_steps, 1), np.nan)


def last_finite(values: np.ndarray) -> float:
    """The last finite value of a curve, NaN if none.

    >>> last_finite(np.array([1.0, 2.0, np.nan]))
    2.0
    """
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan
