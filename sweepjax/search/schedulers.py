"""Schedulers: which running trials stop between chunks (PBT, in `pbt`, also exploits).

`FIFO` (`none`) stops nothing; `ASHA` is asynchronous successive halving (with `brackets > 1`,
Hyperband: `hyperband`); `SuccessiveHalving` is its synchronous form over cohorts of trials;
`MedianStopping` and `Patience` stop single trials by their curves (`factory.make_scheduler`
builds one by name from a config's options). All state is JSON-able.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.search.checks import check, check_direction, check_int, finite
from sweepjax.search.distributions import is_number
from sweepjax.search.pbt import ranked
from sweepjax.search.protocol import Observation, Stop, better
from sweepjax.search.stateful import Stateful


class FIFO(Stateful):
    """Stops nothing: every trial runs to the sweep's budget.

    >>> FIFO().decide([Observation(0, 0, 10, 0.5, {})], 10)
    []
    """

    name = "none"

    def decide(self, observations: Sequence[Observation], step: int) -> list[Stop]:
        return []


def _check_budgets(max_steps: Any, min_steps: Any, eta: Any) -> None:
    check_int("max_steps", max_steps, 1)
    check_int("min_steps", min_steps, 1)
    why = f"is not below max_steps {max_steps} (min budget above max)"
    check("min_steps", min_steps, min_steps < max_steps, why, f"1 to {max_steps - 1}")
    check("eta", eta, is_number(eta) and eta > 1, "must be > 1", "a number above 1")


def budgets(min_steps: int, max_steps: int, eta: float) -> list[int]:
    """The rung budgets `min_steps * eta**k` strictly below `max_steps` (rounded up).

    >>> budgets(1, 27, 3), budgets(10, 100, 2), budgets(1, 4, 1.2)
    ([1, 3, 9], [10, 20, 40, 80], [1, 2, 3])
    """
    out: list[int] = []
    for k in itertools.count():
        if (budget := math.ceil(min_steps * eta**k - 1e-9)) >= max_steps:
            break
        if not out or budget > out[-1]:  # a small fractional eta rounds up to the same budget
            out.append(budget)
    return out


def promotable(value: float, values: Sequence[float], eta: float, direction: str) -> bool:
    """Optuna's `_is_trial_promotable_to_next_rung`: with n values at the rung (`value`'s
    among them), whether `value` is at least as good as the `max(n // eta, 1)`-th best.
    A value that is not finite never is, and ranks last.

    >>> promotable(0.5, [0.5], 3, "max"), promotable(0.5, [0.9, 0.5], 3, "max")
    (True, False)
    >>> promotable(0.5, [0.9, 0.5, 0.1, 0.2, 0.3, 0.4], 3, "max")  # 2nd best of 6
    True
    >>> nan = float("nan")  # counts in n and ranks last: 0.3 is 2nd of the best 4 // 2
    >>> promotable(0.3, [0.5, nan, nan, 0.3], 2, "max"), promotable(nan, [nan], 2, "max")
    (True, False)
    """
    if not finite(value):
        return False
    idx = max(int(len(values) // eta) - 1, 0)
    best = sorted((v for v in values if finite(v)), reverse=direction == "max")
    return idx >= len(best) or not better(best[idx], value, direction)


class ASHA(Stateful):
    """Asynchronous successive halving (Li et al. 2020): a trial that first reaches a rung
    continues only if it is `promotable` among the values recorded there so far (Optuna's
    `SuccessiveHalvingPruner` rule); otherwise `Stop("asha rung K")`. An observation whose
    steps pass several rungs at once is recorded at each in turn and stops at the first it fails.

    A diverged value (not finite: NaN, +inf or -inf, whichever the direction) counts as the
    worst value at its rung, as in the paper's implementation, where a failed trial still
    occupies its rung. It
    is recorded at the first rung its observation newly reaches, and only there (it stops
    there, even alone at the rung), so it counts in that rung's `n`: a later arrival continues
    if it is within the best `max(n // eta, 1)` of the `n` values, the diverged ones ranked
    behind every finite one. A diverged value that reaches no new rung is recorded nowhere. A
    trial whose training diverges in a chunk is handed over once, valued NaN at the steps the
    chunk ended on (`counts_diverged`): it occupies the rung it was training towards.

    Fed the same trials, values and arrival order, Optuna's pruner decides as this when every
    value is finite. It prunes a NaN without recording it (and ranks an infinity as a number),
    so with diverged values the counts differ. Fed instead the worst value (-inf maximizing,
    +inf minimizing) in place of each diverged one, reported at the budget of the first rung it
    newly reaches, Optuna decides every finite value as this does; it differs on the diverged
    trial alone, which it promotes where the worst value ties the rung's cutoff
    (`tests/test_scheduler_references.py`).

    With `brackets > 1` (Hyperband), trial `t` is in bracket `t % brackets`, whose rungs start
    at `min_steps * eta**bracket`; each bracket keeps its own records.

    >>> asha = ASHA("max", max_steps=27, min_steps=1)
    >>> asha.rungs()
    [1, 3, 9]
    >>> asha.decide([Observation(0, 0, 1, 0.5, {}), Observation(1, 1, 1, 0.4, {})], 1)
    [Stop(slot=1, trial=1, reason='asha rung 0')]
    >>> asha.rung_of(1), asha.rung_of(2)
    (0, -1)
    """

    CONFIG = ("direction", "max_steps", "min_steps", "eta", "brackets")
    STATE = ("records", "reached")
    counts_diverged = True  # a sweep hands it a trial whose training diverged, valued NaN

    def __init__(
        self, direction: str, max_steps: int, min_steps: int, eta: float = 3, brackets: int = 1
    ):
        check_direction(direction, "scheduler.direction")
        _check_budgets(max_steps, min_steps, eta)
        check_int("brackets", brackets, 1)
        low = min_steps * eta ** (brackets - 1)
        fit = sum(min_steps * eta**b < max_steps for b in range(brackets))
        why = f"gives bracket {brackets - 1} a min budget of {low} >= max_steps {max_steps}"
        check("brackets", brackets, low < max_steps, why, f"1 to {fit}")
        self.direction, self.max_steps, self.min_steps = direction, int(max_steps), int(min_steps)
        self.eta, self.brackets = eta, int(brackets)
        self.name = "hyperband" if brackets > 1 else "asha"
        self._rungs = [budgets(min_steps * eta**b, max_steps, eta) for b in range(brackets)]
        self._records: list[list[list[list]]] = [[[] for _ in r] for r in self._rungs]
        self._reached: dict[str, int] = {}  # trial -> the highest rung it reached

    def rungs(self, bracket: int = 0) -> list[int]:
        """The rung budgets (a trial's own steps) of `bracket`."""
        return list(self._rungs[bracket])

    def bracket_of(self, trial: int) -> int:
        return int(trial) % self.brackets

    def rung_of(self, trial: int) -> int:
        """The highest rung `trial` reached (in its bracket), -1 if none."""
        return self._reached.get(str(trial), -1)

    def decide(self, observations: Sequence[Observation], step: int) -> list[Stop]:
        actions = []
        for obs in observations:
            rung = self._advance(obs)
            if rung is not None:
                actions.append(Stop(int(obs.slot), int(obs.trial), f"asha rung {rung}"))
        return actions

    def _advance(self, obs: Observation) -> int | None:
        """Record `obs` at each rung it newly reached, in order; the first it fails, if any."""
        bracket, value = self.bracket_of(obs.trial), float(obs.value)
        rungs = self._rungs[bracket]
        for k in range(self.rung_of(obs.trial) + 1, len(rungs)):
            if obs.steps < rungs[k]:
                break
            records = self._records[bracket][k]
            records.append([int(obs.trial), value])  # a diverged value too: the worst here
            self._reached[str(obs.trial)] = k
            if not promotable(value, [v for _, v in records], self.eta, self.direction):
                return k
        return None


class SuccessiveHalving(Stateful):
    """Synchronous successive halving over cohorts of `cohort_size` consecutive trial ids.

    At rung k a cohort waits until each member still in it has reached the rung (one that
    diverged, or left before its budget, counts as worst), then keeps the top
    `max(1, n // eta)` of its n members (ties: the lower trial id) and stops the rest:
    `Stop("successive halving rung K")`. A cohort is decided once its last id was seen (an id
    below the last one seen but never seen itself diverged in its first chunk).

    >>> sh = SuccessiveHalving("min", max_steps=9, min_steps=3, cohort_size=3)
    >>> [a.trial for a in sh.decide([Observation(t, t, 3, v, {}) for t, v in enumerate([0.3, 0.1, 0.2])], 3)]
    [0, 2]
    """

    name = "successive_halving"
    CONFIG = ("direction", "max_steps", "min_steps", "eta", "cohort_size")
    STATE = ("values", "left", "decided", "seen")

    def __init__(
        self, direction: str, max_steps: int, min_steps: int, eta: float = 3, *, cohort_size: int
    ):
        check_direction(direction, "scheduler.direction")
        _check_budgets(max_steps, min_steps, eta)
        check_int("cohort_size", cohort_size, 1)
        self.direction, self.max_steps, self.min_steps = direction, int(max_steps), int(min_steps)
        self.eta, self.cohort_size = eta, int(cohort_size)
        self._rungs = budgets(min_steps, max_steps, eta)
        self._values: dict[str, list[float]] = {}  # trial -> its value at each rung it reached
        self._left: dict[str, str] = {}  # trial -> "finished", "diverged" or "stopped" (lost)
        self._decided: dict[str, int] = {}  # cohort -> the rungs decided
        self._seen = -1  # the highest trial id seen

    def rungs(self) -> list[int]:
        return list(self._rungs)

    def rung_of(self, trial: int) -> int:
        """The highest rung `trial` reached, -1 if none."""
        return len(self._values.get(str(trial), [])) - 1

    def decide(self, observations: Sequence[Observation], step: int) -> list[Stop]:
        running = {int(o.trial): o for o in observations}
        self._seen = max(self._seen, *running) if running else self._seen
        for t in self._values:
            if int(t) not in running:
                self._left.setdefault(t, "diverged")  # gone before its budget
        for t, obs in running.items():
            values = self._values.setdefault(str(t), [])
            while len(values) < len(self._rungs) and obs.steps >= self._rungs[len(values)]:
                values.append(float(obs.value))
            if not finite(obs.value) or obs.steps >= self.max_steps:
                self._left.setdefault(str(t), "finished" if finite(obs.value) else "diverged")
        actions: list[Stop] = []
        for cohort in sorted({t // self.cohort_size for t in running}):
            actions += self._decide_cohort(cohort, running)
        return actions

    def _decide_cohort(self, cohort: int, running: Mapping[int, Observation]) -> list[Stop]:
        """Decide every rung of `cohort` that all its remaining members have reached."""
        ids = range(cohort * self.cohort_size, (cohort + 1) * self.cohort_size)
        if ids[-1] > self._seen:  # members not asked yet
            return []
        actions = []
        for k in range(self._decided.get(str(cohort), 0), len(self._rungs)):
            members = [t for t in ids if self._left.get(str(t)) != "stopped"]
            if any(self.rung_of(t) < k and self._running(t) for t in members):
                break
            best = ranked([[t, self._at(t, k)] for t in members], self.direction)
            keep = {t for t, v in best[: max(1, int(len(best) // self.eta))] if finite(v)}
            for t in members:
                if t not in keep:
                    self._left[str(t)] = "stopped"
                    if t in running:
                        reason = f"successive halving rung {k}"
                        actions.append(Stop(int(running[t].slot), t, reason))
            self._decided[str(cohort)] = k + 1
        return actions

    def _running(self, trial: int) -> bool:
        """Seen and still training (a trial never seen below the last one seen diverged)."""
        return str(trial) in self._values and str(trial) not in self._left

    def _at(self, trial: int, rung: int) -> float:
        """Its value at `rung`; NaN (the worst) if it diverged or never got there."""
        values = self._values.get(str(trial), [])
        ok = rung < len(values) and self._left.get(str(trial)) != "diverged"
        return values[rung] if ok else math.nan


class MedianStopping(Stateful):
    """The median stopping rule (Golovin et al. 2017): a trial past `grace_steps` stops when
    its value at its steps t is strictly worse than the median of the other trials' values at
    t (each one's last value at or before t, among trials that trained at least t steps,
    ended ones included), once at least `min_trials` such others exist. A call records all its
    observations before it decides, so trials at the same step face the same median.

    >>> median = MedianStopping("max", min_trials=2)
    >>> median.decide([Observation(t, t, 10, v, {}) for t, v in enumerate([0.1, 0.5, 0.9])], 10)
    [Stop(slot=0, trial=0, reason='median')]
    """

    name = "median"
    CONFIG = ("direction", "grace_steps", "min_trials")
    STATE = ("curves",)

    def __init__(self, direction: str, grace_steps: int = 0, min_trials: int = 3):
        check_direction(direction, "scheduler.direction")
        check_int("grace_steps", grace_steps, 0)
        check_int("min_trials", min_trials, 1)
        self.direction, self.grace_steps = direction, int(grace_steps)
        self.min_trials = int(min_trials)
        self._curves: dict[str, list[list]] = {}  # trial -> [its steps, its values there]

    def decide(self, observations: Sequence[Observation], step: int) -> list[Stop]:
        for obs in observations:
            steps, values = self._curves.setdefault(str(obs.trial), [[], []])
            keep = bisect.bisect_left(steps, obs.steps)  # replace any at the same or later steps
            del steps[keep:], values[keep:]
            steps.append(int(obs.steps))
            values.append(float(obs.value))
        actions, at = [], {}
        for obs in observations:
            if obs.steps < self.grace_steps:
                continue
            if obs.steps not in at:
                at[obs.steps] = self._values_at(obs.steps)
            others = [v for t, v in at[obs.steps].items() if t != str(obs.trial)]
            if len(others) < self.min_trials:
                continue
            median = float(np.median(others))
            if not finite(obs.value) or better(median, float(obs.value), self.direction):
                actions.append(Stop(int(obs.slot), int(obs.trial), "median"))
        return actions

    def _values_at(self, t: int) -> dict[str, float]:
        """Each trial's last finite value at or before step `t`, if it trained that far."""
        out = {}
        for trial, (steps, values) in self._curves.items():
            i = bisect.bisect_right(steps, t) - 1
            if steps[-1] >= t and i >= 0 and finite(values[i]):
                out[trial] = values[i]
        return out


class Patience(Stateful):
    """Early stopping: a trial stops (`patience`) once its best value has not improved by more
    than `min_delta` for `patience` steps of its own.

    >>> rule = Patience("min", patience=20)
    >>> [rule.decide([Observation(0, 0, s, v, {})], s) for s, v in [(10, 1.0), (20, 0.5), (40, 0.6)]]
    [[], [], [Stop(slot=0, trial=0, reason='patience')]]
    """

    name = "patience"
    CONFIG = ("direction", "patience", "min_delta")
    STATE = ("best",)

    def __init__(self, direction: str, patience: int, min_delta: float = 0.0):
        check_direction(direction, "scheduler.direction")
        check_int("patience", patience, 1)
        ok = finite(min_delta) and min_delta >= 0
        check("min_delta", min_delta, ok, "is not allowed", "a finite number >= 0")
        self.direction, self.patience, self.min_delta = direction, int(patience), float(min_delta)
        self._best: dict[str, list] = {}  # trial -> [its best value, the steps it was reached]

    def decide(self, observations: Sequence[Observation], step: int) -> list[Stop]:
        actions = []
        for obs in observations:
            value, best = float(obs.value), self._best.get(str(obs.trial))
            if best is None or self._improves(value, best[0]):
                self._best[str(obs.trial)] = [value, int(obs.steps)]
            elif obs.steps - best[1] >= self.patience:
                actions.append(Stop(int(obs.slot), int(obs.trial), "patience"))
        return actions

    def _improves(self, value: float, best: float) -> bool:
        if not finite(value):
            return False
        if not finite(best):
            return True
        return (value - best if self.direction == "max" else best - value) > self.min_delta
