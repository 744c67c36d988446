"""The sweep as a state advanced chunk by chunk: slots, trials, and the decisions between chunks.

`SweepState` holds the device population (its slots), each slot's hyperparameters on the
host (with the `start_step` column: the global step its trial entered the slot), which trial
each slot holds, the trial table, the curves by trial, the scheduler and the searcher. After a
chunk, `observe` records it and marks trials finished or diverged, `apply_decisions` takes the
scheduler's actions, `end_trials` closes the trials that ended, and `plan` fills the free
slots from the searcher and returns a `Reassignment`: which slot each new slot copies
(`source`), which slots start a fresh trial, and which slots run. `sweepjax.engine.reassign` applies
it on the device as one jitted gather.

A slot's trial trains on the shared minibatch stream from its `start`: a trial's own step is
the global step minus `start_step`, so its schedule and its count begin at 0 in its slot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweepjax.engine.population import START
from sweepjax.search.protocol import Exploit, Observation, Scheduler, Searcher, Stop, better
from sweepjax.search.space import HParams
from sweepjax.sweep.config import Config, complete_hparams, is_adaptive
from sweepjax.sweep.metadata import CheckpointMeta, DataStream
from sweepjax.sweep.slot_changes import Reassignment, Turn, slots_for
from sweepjax.sweep.structures import STRUCTURAL_PREFIX, Blocks
from sweepjax.sweep.trials import Curves, TrialTable


@dataclasses.dataclass
class Chunk:
    """What the host sees after a chunk: per slot, `[K, S]` losses and the validation metrics,
    whether it is alive and where it diverged (global step, -1 if not); and the width it ran
    at (None: every member at once)."""

    step: int
    losses: np.ndarray
    val: dict[str, np.ndarray]
    alive: np.ndarray
    diverged_at: np.ndarray
    width: int | None = None


@dataclasses.dataclass
class SweepState:
    """The host side of a sweep between chunks (see the module docstring)."""

    config: Config
    rank_by: str  # the task's ranking metric
    direction: str  # "max" or "min"
    hparams: HParams  # the slots' columns, `START` included
    slot_trials: np.ndarray  # [S] the trial each slot holds, -1: none (idle)
    table: TrialTable
    curves: Curves
    scheduler: Scheduler
    searcher: Searcher
    slot_steps: int = 0  # steps trained by every slot, idle ones included: the compute spent
    kept_trial: int = -1  # the best finished trial whose variables `kept` holds (adaptive)
    kept: Any = None  # its `{"params": ..., **model_state}` on the host, for export
    blocks: Blocks | None = None  # the slots' blocks, one per structure (`structures.py`)

    def checkpoint_meta(self, step: int, data: dict[str, str], width: int | None) -> CheckpointMeta:
        """The metadata of a checkpoint of this state at global `step`, of the data set `data`
        (its identity) trained at population width `width` (None: not chosen yet)."""
        return CheckpointMeta(
            config=self.config.to_json(),
            data=data,
            data_stream=DataStream(self.config.seed, step),
            hparams={k: str(np.asarray(v).dtype) for k, v in self.hparams.values.items()},
            curve_points=len(self.curves.steps),
            curve_trials=len(self.table),
            population_width=width,
            budget_steps=self.config.steps,
            slots=[int(t) for t in self.slot_trials],
            trials=self.table.to_json(),
            scheduler=self.scheduler.state_dict(),
            searcher=self.searcher.state_dict(),
            slot_steps=self.slot_steps,
            kept_trial=self.kept_trial,
            step=step,
            blocks=None if self.blocks is None else self.blocks.to_json(),
        )

    def start_trials(self, rows: list[Mapping[str, Any]]) -> None:
        """Seat the searcher's first trials, `rows`, in slots 0, 1, ... at step 0; the slots
        left over stay idle (copies of the first slot's hyperparameters)."""
        ids, columns = self.admit(rows, step=0)
        idle = self.config.population - len(ids)
        self.hparams = HParams(
            {k: np.concatenate([v, v[:1].repeat(idle)]) for k, v in columns.values.items()}
        )
        self.slot_trials = np.asarray([*ids, *[-1] * idle], int)

    def count_slot_steps(self, length: int) -> None:
        """A chunk of `length` steps trains every slot, idle ones included."""
        self.slot_steps += self.size * length

    def keep(self, slot: int, variables: Any) -> None:
        """Keep `variables` (on the host) as those of the trial `slot` holds (see `to_keep`)."""
        self.kept_trial, self.kept = int(self.slot_trials[slot]), variables

    def extend_budget(self) -> None:
        """Trials that finished their budget in the slot they still hold run on when `steps`
        was raised (a resumed sweep extended); slots of trials that ended otherwise are idle."""
        for slot, trial_id in enumerate(self.slot_trials):
            trial = self.table.rows[trial_id] if trial_id >= 0 else None
            if trial is None or trial.status == "running":
                continue
            if trial.status == "finished" and trial.steps < self.config.steps:
                trial.status, trial.metrics = "running", {}
                if trial_id == self.kept_trial:  # kept at the old budget: kept anew when it ends
                    self.kept_trial, self.kept = -1, None
            else:  # a trial that ended there for good: the slot is idle
                self.slot_trials[slot] = -1

    @property
    def size(self) -> int:
        return int(self.slot_trials.size)

    @property
    def trial_count(self) -> int:
        """How many trials the sweep may try in all."""
        return self.config.trials or self.config.population

    def slot_statuses(self) -> np.ndarray:
        """The status of each slot's trial (`idle` where it holds none)."""
        return np.asarray(
            [self.table.rows[t].status if t >= 0 else "idle" for t in self.slot_trials], object
        )

    def running_slots(self) -> np.ndarray:
        """The slots whose trial is running, as a boolean mask."""
        return self.slot_statuses() == "running"

    @property
    def done(self) -> bool:
        return not self.running_slots().any()

    def next_length(self, step: int) -> int:
        """The next chunk's steps: to the next eval, and no running trial past its budget."""
        config = self.config
        left = [
            config.steps - self.trial_steps(s, step) for s in np.flatnonzero(self.running_slots())
        ]
        return max(1, min(config.eval_every - step % config.eval_every, *left))

    def member_steps_left(self, step: int) -> int:
        """The member-steps the sweep may still train after global `step`: each running trial
        to its budget on its own clock, and each trial yet to start a whole budget (a bound
        where a scheduler stops some early)."""
        running = np.flatnonzero(self.running_slots())
        left = sum(self.config.steps - self.trial_steps(s, step) for s in running)
        return left + (self.trial_count - len(self.table)) * self.config.steps

    def trial_steps(self, slot: int, step: int) -> int:
        return int(step - int(self.hparams[START][slot]))

    def observe(self, chunk: Chunk) -> list[Observation]:
        """Record a chunk: curves, trial steps, divergence and finished budgets; return the
        observations of the trials still running for the scheduler (and of those that diverged
        in it, valued NaN, for a scheduler that `counts_diverged`: ASHA's rungs)."""
        self.curves.append(chunk.step, chunk.losses, chunk.val, self.slot_trials, len(self.table))
        observations = []
        tell_diverged = getattr(self.scheduler, "counts_diverged", False)
        for slot in np.flatnonzero(self.running_slots()):
            trial = self.table.rows[self.slot_trials[slot]]
            trial.steps = self.trial_steps(slot, chunk.step)
            if not chunk.alive[slot]:
                trial.diverged_at = int(chunk.diverged_at[slot]) - int(self.hparams[START][slot])
                trial.status = "diverged"
                if tell_diverged:
                    nan = Observation(trial.id, int(slot), trial.steps, math.nan, trial.hparams)
                    observations.append(nan)
                continue
            value = float(chunk.val[self.rank_by][slot])
            observations.append(Observation(trial.id, int(slot), trial.steps, value, trial.hparams))
            if trial.steps >= self.config.steps:
                trial.status = "finished"
        return observations

    def apply_decisions(self, observations: list[Observation], step: int) -> list[Exploit]:
        """The scheduler's actions on the trials still running; returns the exploits to apply."""
        if not observations:
            return []
        exploits = []
        for action in self.scheduler.decide(observations, step):
            trial = self.table.rows[action.trial]
            if trial.status != "running":
                continue  # finished or diverged in this chunk: the action is moot
            if isinstance(action, Stop):
                trial.status, trial.reason = "stopped", action.reason
            else:
                exploits.append(action)
        rung_of = getattr(self.scheduler, "rung_of", None)
        for obs in observations:
            if rung_of is not None:
                self.table.rows[obs.trial].rung = int(rung_of(obs.trial))
        return exploits

    def leaving(self) -> np.ndarray:
        """The slots whose trial ended in this chunk (they are measured on the test split
        before `reassign` hands them on; `plan` then clears them)."""
        return ~np.isin(self.slot_statuses(), ("running", "idle"))

    def end_trials(self, chunk: Chunk, test: Mapping[str, np.ndarray] | None) -> None:
        """Trials that ended in this chunk leave their slots with their final metrics (the
        validation metrics of this chunk, `test` of the slots) and are told to the searcher."""
        for slot in np.flatnonzero(self.leaving()):
            trial = self.table.rows[self.slot_trials[slot]]
            trial.metrics = {
                **{f"final_val_{m}": float(v[slot]) for m, v in chunk.val.items()},
                **{f"test_{m}": float(v[slot]) for m, v in (test or {}).items()},
            }
            value = (
                math.nan
                if trial.status == "diverged"
                else trial.metrics[f"final_val_{self.rank_by}"]
            )
            if not trial.told:  # a finished trial extended by a larger `steps` was told once
                self.searcher.tell(trial.id, value, trial.steps, trial.status)
                trial.told = True

    def to_keep(self, leaving: np.ndarray) -> int | None:
        """The slot of the best trial that finished in this chunk, if it beats the kept one:
        an adaptive sweep hands slots on, so its best trial's variables are kept for export."""
        if not is_adaptive(self.config):
            return None  # every trial keeps its slot to the end
        column = f"final_val_{self.rank_by}"
        best = self.table.rows[self.kept_trial].metrics[column] if self.kept_trial >= 0 else None
        chosen = None
        for slot in np.flatnonzero(leaving):
            trial = self.table.rows[self.slot_trials[slot]]
            value = trial.metrics[column]
            finished = trial.status == "finished" and math.isfinite(value)
            if finished and (best is None or better(value, best, self.direction)):
                chosen, best = int(slot), value
        return chosen

    def plan(
        self, step: int, exploits: list[Exploit], devices: int, narrow_pays: Any = None
    ) -> Reassignment | None:
        """The next population: running slots kept (exploited ones copying their source), free
        slots filled from the searcher, its size fitted to what runs (`slots_for`); a narrower
        one only when `narrow_pays(size, narrower, steps_left)` (the loop's estimate of whether
        the compute saved outweighs compiling the narrower programs), if given."""
        turn = self.next_turn(step, exploits)
        if turn is None:
            return None  # the sweep is over: the state stays as the last chunk left it
        running, rows = turn.running, turn.rows
        size = slots_for(int(running.sum()) + len(rows), self.size, self.config.population, devices)
        if size < self.size and narrow_pays is not None and not rows:
            size = (
                size if narrow_pays(self.size, size, self.steps_left(step, running)) else self.size
            )
        ids, new = self.admit(rows, step) if rows else ([], None)
        change = turn.block(slice(0, self.size), size, ids, new, devices)
        self.slot_trials, self.hparams = change.trials, change.reassignment.hparams
        return change.reassignment

    def next_turn(self, step: int, exploits: list[Exploit]) -> Turn | None:
        """What the next population is made of: the running slots (exploited ones copying their
        source, with their new hyperparameters) and the searcher's rows for the free slots;
        None when nothing runs and nothing is to start."""
        statuses = self.slot_statuses()
        running = statuses == "running"
        columns = {k: np.asarray(v).copy() for k, v in self.hparams.values.items()}
        source = np.arange(self.size)
        for action in exploits:
            source[action.slot] = action.source_slot
            self._exploit(action, step, columns)
        free = self.config.population - int(running.sum())
        budget = self.trial_count - len(self.table)
        rows = self.searcher.ask(min(free, budget)) if free > 0 and budget > 0 else []
        if not running.any() and not rows:
            return None
        ended_alive = np.isin(statuses, ("stopped", "finished"))  # still alive on the device
        trials = np.where(running, self.slot_trials, -1)
        return Turn(running, ended_alive, trials, columns, source, rows)

    def steps_left(self, step: int, running: np.ndarray) -> int:
        """The most steps a trial of the `running` slots has left to train after `step`."""
        return max(self.config.steps - self.trial_steps(s, step) for s in np.flatnonzero(running))

    def admit(self, rows: list[Mapping[str, Any]], step: int) -> tuple[list[int], HParams]:
        """Add the searcher's `rows` to the trial table as trials starting at `step`; their ids
        and device columns. A row's `seed` is its trial's id unless the space fixes it."""
        first = len(self.table)
        rows = [{**row, "seed": row.get("seed", first + i)} for i, row in enumerate(rows)]
        ids = [self.table.add(row, start=step).id for row in rows]
        return ids, trial_columns(self.config, rows, [step] * len(rows))

    def _exploit(self, action: Exploit, step: int, columns: dict[str, np.ndarray]) -> None:
        """PBT: `action.slot` continues from `action.source_slot` with new values (its own
        seed kept); recorded in the trial's lineage."""
        trial = self.table.rows[action.trial]
        source = self.table.rows[action.source_trial]
        own = {k: v for k, v in trial.hparams.items() if k.startswith(STRUCTURAL_PREFIX)}
        new = {**source.hparams, **action.hparams, **own, "seed": trial.hparams["seed"]}
        trial.history.append(
            {"step": step, "source_trial": source.id, "old": trial.hparams, "new": new}
        )
        trial.hparams, trial.parent, trial.steps = new, source.id, source.steps
        start = int(columns[START][action.source_slot])
        row = trial_columns(self.config, [new], [start])
        for k, column in columns.items():
            column[action.slot] = row[k][0]


def trial_columns(config: Config, rows: list[Mapping[str, Any]], starts: list[int]) -> HParams:
    """Device columns of trials' hyperparameter rows, with their `START` steps."""
    names = [k for k in rows[0] if not k.startswith(STRUCTURAL_PREFIX)]  # no device column
    values = {k: np.asarray([row[k] for row in rows]) for k in names}
    columns = complete_hparams(config, values).values
    columns[START] = np.asarray(starts, np.int32)
    return HParams(columns)
