"""The schedulers against references written apart from them, in both ranking directions.

ASHA and Hyperband are fed the same trials, seeded curves (ties and diverged trials included)
and arrival order as Optuna's `SuccessiveHalvingPruner` / `HyperbandPruner`, which is fed
the worst value in place of each diverged one where ours counts it as the worst; synchronous
successive halving is held to the paper's rule in numpy; median stopping to Optuna's
`MedianPruner`; PBT to truncation selection as Ray Tune's `PopulationBasedTraining` documents
it, with a hand-computed sequence (`tests/test_pbt_references.py`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sweepjax.search.protocol import DIRECTIONS, Observation
from sweepjax.search.schedulers import ASHA, MedianStopping, SuccessiveHalving, budgets

pytestmark = pytest.mark.quick

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = {"max": "maximize", "min": "minimize"}
WORST = {"max": -math.inf, "min": math.inf}


def seeded_curves(seed: int, direction: str, trials: int, steps: int) -> np.ndarray:
    """`[trials, steps + 1]` values by a trial's own steps: an accuracy (`max`) or a loss
    (`min`) that improves with noise, rounded to 2 decimals so that ties happen; about one trial
    in six diverges (NaN from a random step on)."""
    rng = np.random.default_rng([seed, DIRECTIONS.index(direction)])
    progress = np.linspace(0.5, 1.0, steps + 1)
    accuracy = rng.random((trials, 1)) * progress + 0.2 * rng.random((trials, steps + 1))
    values = np.round(accuracy if direction == "max" else 2.0 - 1.5 * accuracy, 2)
    for trial in np.flatnonzero(rng.random(trials) < 1 / 6):
        values[trial, rng.integers(1, steps + 1) :] = np.nan
    return values


# ASHA and Hyperband against Optuna


@pytest.mark.parametrize("min_steps, max_steps, eta", [(1, 30, 1.2), (3, 100, 1.5), (5, 400, 3)])
def test_rung_budgets_are_the_distinct_rounded_up_powers_below_the_budget(
    min_steps, max_steps, eta
):
    """Rung k's budget is min_steps * eta**k rounded up; a fractional eta repeats one, once."""
    rounded_up = np.ceil(np.round(min_steps * eta ** np.arange(60.0), 9))
    expected = np.unique(rounded_up[rounded_up < max_steps]).astype(int).tolist()
    assert budgets(min_steps, max_steps, eta) == expected
    assert ASHA("min", max_steps, min_steps, eta).rungs() == expected


class ModuloHyperband(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with a trial in bracket `number % brackets` as ours puts it (Optuna
    hashes the study's name with the number)."""

    def _get_bracket_id(self, study, trial) -> int:
        return trial.number % self._n_brackets if self._pruners else 0


def optuna_prunes(study, trial, obs: Observation, direction: str) -> bool:
    """Report `obs` to Optuna's `trial` and ask its pruner.

    Optuna prunes a NaN at a rung without recording it there; ours records it as the worst
    value (the diverged trial spent the rung's budget and is among its n trials), so the
    record Optuna would have kept for the worst value is added here.
    """
    trial.report(obs.value, obs.steps)
    prunes = trial.should_prune()
    if prunes and math.isnan(obs.value):
        attrs = study._storage.get_trial(trial._trial_id).system_attrs
        rung = sum(key.startswith("completed_rung_") for key in attrs)
        study._storage.set_trial_system_attr(
            trial._trial_id, f"completed_rung_{rung}", WORST[direction]
        )
    return prunes


def sweep_against_optuna(scheduler, pruner, values, direction, population, chunk, feed=None):
    """Run a refill sweep of `len(values)` trials through `scheduler` and an Optuna study with
    `pruner` in the same order; assert they stop the same trials each chunk. Returns our stops.
    `feed(study, trial, obs, steps_before)` reports an observation to Optuna and says whether
    ours must stop it (default: `optuna_prunes`).

    A trial leaves its slot when stopped, diverged (Optuna: failed) or at its last step
    (Optuna: completed); the slot takes the next trial, asked from the study in id order.
    """
    if feed is None:
        feed = lambda study, trial, obs, before: optuna_prunes(study, trial, obs, direction)  # noqa: E731
    study = optuna.create_study(direction=STUDY[direction], pruner=pruner)
    max_steps = values.shape[1] - 1
    slots: dict[int, int] = {}  # slot -> trial
    steps, asked, stops, step = {}, {}, [], 0
    while True:
        for slot in range(population):
            if slot not in slots and len(asked) < len(values):
                slots[slot] = trial = len(asked)
                asked[trial], steps[trial] = study.ask(), 0
        if not slots:
            return stops
        step += chunk
        observations, before = [], dict(steps)
        for slot, trial in sorted(slots.items(), key=lambda item: (item[1] * 7) % 5):
            steps[trial] = min(steps[trial] + chunk, max_steps)
            value = float(values[trial, steps[trial]])
            observations.append(Observation(trial, slot, steps[trial], value, {}))
        ours = scheduler.decide(observations, step)
        theirs = [o.trial for o in observations if feed(study, asked[o.trial], o, before[o.trial])]
        assert [a.trial for a in ours] == theirs, step
        assert all(slots[a.slot] == a.trial for a in ours)
        stops += ours
        for obs in observations:
            if obs.trial in theirs:
                study.tell(asked[obs.trial], state=optuna.trial.TrialState.PRUNED)
            elif not math.isfinite(obs.value):
                study.tell(asked[obs.trial], state=optuna.trial.TrialState.FAIL)
            elif obs.steps == max_steps:
                study.tell(asked[obs.trial], obs.value)
            else:
                continue
            del slots[obs.slot]


ASHA_CASES = [  # min_steps, eta, max_steps (never a rung of Optuna's), chunk, population
    (1, 3, 20, 1, 4),
    (1, 2, 30, 5, 3),  # a chunk of 5 passes rungs 1, 2 and 4 at once
    (2, 2, 14, 3, 5),
]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", ASHA_CASES)
def test_asha_stops_what_optunas_successive_halving_prunes(direction, case):
    min_steps, eta, max_steps, chunk, population = case
    stops = []
    for seed in range(2):
        values = seeded_curves(seed, direction, 24, max_steps)
        asha = ASHA(direction, max_steps=max_steps, min_steps=min_steps, eta=eta)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_steps, eta)
        stops += sweep_against_optuna(asha, pruner, values, direction, population, chunk)
    assert {a.reason for a in stops} >= {"asha rung 0", "asha rung 1"}  # not a vacuous match


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_asha_after_a_rung_full_of_diverged_trials_matches_optuna(direction):
    """Seven trials diverge by rung 0 and rank last there; the next finite trials are among the
    best n // eta, so they continue."""
    values = seeded_curves(7, direction, 10, 20)
    values[:7, 1:] = np.nan
    asha, pruner = ASHA(direction, 20, 1, 3), optuna.pruners.SuccessiveHalvingPruner(1, 3)
    stops = sweep_against_optuna(asha, pruner, values, direction, 1, 1)
    assert [a.trial for a in stops][:7] == list(range(7))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hyperband_stops_what_optunas_hyperband_prunes(direction):
    """Optuna's brackets: floor(log_eta(max / min)) + 1, bracket b starting at min * eta**b."""
    stops = []
    for seed in range(2):
        values = seeded_curves(seed + 10, direction, 30, 20)
        hyperband = ASHA(direction, max_steps=20, min_steps=1, eta=3, brackets=3)
        pruner = ModuloHyperband(min_resource=1, max_resource=20, reduction_factor=3)
        stops += sweep_against_optuna(hyperband, pruner, values, direction, 4, 1)
    stopped_brackets = {hyperband.bracket_of(a.trial) for a in stops}
    assert stopped_brackets == {0, 1, 2}


# ASHA and Hyperband with diverged values against Optuna fed the worst value in their place


def diverging_curves(seed: int, direction: str, trials: int, steps: int, rungs) -> np.ndarray:
    """`seeded_curves` with about one more trial in four diverged from one of the `rungs`' steps
    on (one diverging between rungs is recorded nowhere), and each diverged trial's values NaN,
    +inf or -inf (any infinity is a diverged value)."""
    values = seeded_curves(seed, direction, trials, steps)
    rng = np.random.default_rng([seed, DIRECTIONS.index(direction), 7])
    for trial in np.flatnonzero(rng.random(trials) < 1 / 4):
        values[trial, rng.choice(rungs) :] = np.nan
    for row in values:
        row[np.isnan(row)] = rng.choice([math.nan, math.inf, -math.inf])
    return values


class FedTheWorst:
    """Reports to Optuna the worst value in place of each diverged one, at the budget of the
    first rung its observation newly reaches (`min_steps * eta**(bracket + k)` above its steps
    before), and says whether ours must stop it: where Optuna prunes it, and also where Optuna
    promotes the worst value, which must be only where it ties the rung's cutoff (counted in
    `ties`). A finite value is reported as it is and Optuna's decision is ours."""

    def __init__(self, direction: str, min_steps: int, eta: int, brackets: int = 1):
        self.direction, self.min_steps, self.eta = direction, min_steps, eta
        self.brackets, self.ties = brackets, 0

    def __call__(self, study, trial, obs: Observation, before: int) -> bool:
        if math.isfinite(obs.value):
            trial.report(obs.value, obs.steps)
            return trial.should_prune()
        bracket = trial.number % self.brackets
        rungs = (self.min_steps * self.eta ** (bracket + k) for k in itertools.count())
        first = next(budget for budget in rungs if budget > before)
        if obs.steps < first:  # no new rung reached: Optuna does not prune, ours does not stop
            trial.report(WORST[self.direction], obs.steps)
            return trial.should_prune()
        trial.report(WORST[self.direction], first)
        if trial.should_prune():
            return True
        keys = study._storage.get_trial(trial._trial_id).system_attrs
        key = f"completed_rung_{sum(k.startswith('completed_rung_') for k in keys) - 1}"
        rung = sorted(
            (
                t.system_attrs[key]
                for t in study.get_trials()
                if key in t.system_attrs and t.number % self.brackets == bracket
            ),
            reverse=self.direction == "max",
        )
        assert rung[max(len(rung) // self.eta, 1) - 1] == WORST[self.direction]
        self.ties += 1
        return True


def decided_after_a_divergence(asha: ASHA) -> int:
    """How many finite values were recorded at a rung after a diverged one (not a vacuous
    match: their decisions counted the diverged value in n)."""
    rungs = [[v for _, v in rung] for bracket in asha.state_dict()["records"] for rung in bracket]
    firsts = [next((i for i, v in enumerate(r) if not math.isfinite(v)), len(r)) for r in rungs]
    return sum(math.isfinite(v) for r, i in zip(rungs, firsts, strict=True) for v in r[i:])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", ASHA_CASES)
def test_asha_with_diverged_values_matches_optuna_fed_the_worst_value(direction, case):
    """Every decision on a finite value is Optuna's; a diverged trial stops at the first rung
    it reaches, as Optuna prunes it there unless the worst value ties the cutoff."""
    min_steps, eta, max_steps, chunk, population = case
    rungs = [r for r in min_steps * eta ** np.arange(9) if r < max_steps]
    stops, counted = [], 0
    for seed in range(3):
        values = diverging_curves(seed, direction, 24, max_steps, rungs)
        asha = ASHA(direction, max_steps=max_steps, min_steps=min_steps, eta=eta)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_steps, eta)
        feed = FedTheWorst(direction, min_steps, eta)
        stops += sweep_against_optuna(asha, pruner, values, direction, population, chunk, feed)
        counted += decided_after_a_divergence(asha)
    assert {a.reason for a in stops} >= {"asha rung 0", "asha rung 1"}  # not a vacuous match
    assert counted >= 10


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_diverged_trial_stops_where_optuna_fed_the_worst_value_would_promote_it(direction):
    """Trial 0 diverges at rung 0, alone there: Optuna fed the worst value promotes it (the
    worst value is the cutoff, n = 1), ours stops it; trial 1 then continues in both (n = 2,
    ahead of the worst). Every other decision is Optuna's."""
    values = diverging_curves(3, direction, 12, 20, [1, 3, 9])
    values[0, 1:] = np.nan
    asha, pruner = ASHA(direction, 20, 1, 3), optuna.pruners.SuccessiveHalvingPruner(1, 3)
    feed = FedTheWorst(direction, 1, 3)
    stops = sweep_against_optuna(asha, pruner, values, direction, 1, 1, feed)
    assert stops[0].trial == 0 and feed.ties >= 1
    assert asha.rung_of(1) >= 1


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hyperband_with_diverged_values_matches_optuna_fed_the_worst_value(direction):
    stops, counted = [], 0
    for seed, chunk in [(0, 1), (1, 3)]:
        values = diverging_curves(seed + 10, direction, 30, 20, [1, 3, 9])
        hyperband = ASHA(direction, max_steps=20, min_steps=1, eta=3, brackets=3)
        pruner = ModuloHyperband(min_resource=1, max_resource=20, reduction_factor=3)
        feed = FedTheWorst(direction, 1, 3, brackets=3)
        stops += sweep_against_optuna(hyperband, pruner, values, direction, 4, chunk, feed)
        counted += decided_after_a_divergence(hyperband)
    assert {hyperband.bracket_of(a.trial) for a in stops} == {0, 1, 2}
    assert counted >= 10


# Synchronous successive halving against the paper's rule in numpy


def paper_cut(values: np.ndarray, ids: list[int], eta: float, direction: str) -> set[int]:
    """Successive halving's cut (Jamieson and Talwalkar 2016): of n configurations keep the
    best max(1, n // eta); NaN (diverged or never got there) is worst; ties by lower id."""
    score = np.where(np.isnan(values), np.inf, -values if direction == "max" else values)
    order = np.lexsort((np.asarray(ids), score))
    keep = {ids[i] for i in order[: max(1, int(len(ids) // eta))] if np.isfinite(score[i])}
    return set(ids) - keep


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cohort, population, seed", [(4, 4, 0), (4, 4, 1), (6, 4, 2), (5, 3, 3)])
def test_successive_halving_follows_the_papers_rule_per_cohort(direction, cohort, population, seed):
    """A cohort's rung is cut once each member still in it reached the rung or left (finished
    or diverged); a member keeps training while it waits, its rung value is the one it had on
    first reaching the rung. Slots refill, so a cohort's members start at different steps."""
    eta, max_steps = 2, 12
    values = seeded_curves(seed + 20, direction, 4 * cohort, max_steps)
    rungs = budgets(1, max_steps, eta)
    sh = SuccessiveHalving(direction, max_steps, 1, eta, cohort_size=cohort)
    at: dict[int, list[float]] = {}  # trial -> its value at each rung reached
    gone, out, decided = set(), set(), {}  # left the sweep; cut; cohort -> rungs decided
    slots, steps, step, stops = {}, {}, 0, 0
    while slots or len(steps) < len(values):
        for slot in range(population):
            if slot not in slots and len(steps) < len(values):
                slots[slot] = len(steps)
                steps[len(steps)] = 0
        step += 1
        observations = []
        for slot, trial in sorted(slots.items()):
            steps[trial] += 1
            value = float(values[trial, steps[trial]])
            observations.append(Observation(trial, slot, steps[trial], value, {}))
            if len(at.setdefault(trial, [])) < len(rungs) and steps[trial] >= rungs[len(at[trial])]:
                at[trial].append(value)
            if math.isnan(value):
                at[trial] = [math.nan] * len(rungs)
            if math.isnan(value) or steps[trial] == max_steps:
                gone.add(trial)
        expected = {}
        for c in sorted({o.trial // cohort for o in observations}):
            ids = list(range(c * cohort, (c + 1) * cohort))
            while ids[-1] in steps and decided.get(c, 0) < len(rungs):
                k, members = decided.get(c, 0), [t for t in ids if t not in out]
                if any(len(at[t]) <= k and t not in gone for t in members):
                    break
                row = np.array([at[t][k] if len(at[t]) > k else math.nan for t in members])
                cut = paper_cut(row, members, eta, direction)
                expected |= dict.fromkeys(cut, f"successive halving rung {k}")
                out |= cut
                decided[c] = k + 1
        running = {o.trial: o.slot for o in observations}
        want = sorted((running[t], t, why) for t, why in expected.items() if t in running)
        got = sorted((a.slot, a.trial, a.reason) for a in sh.decide(observations, step))
        assert got == want, step
        stops += len(got)
        for slot, trial in list(slots.items()):
            if trial in gone or trial in out:
                del slots[slot]
    assert stops >= 5  # not a vacuous match


# Median stopping against Optuna


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("seed", range(4))
def test_median_stopping_matches_optunas_median_pruner(direction, seed):
    """`min_trials` is `n_startup_trials` and `grace_steps` is `n_warmup_steps` (interval 1).

    Optuna compares a trial's best value so far with the median of the completed trials'
    values at exactly its step; ours compares its current value with the median of the other
    trials' last values at or before its step. They agree on what is asked here: completed
    trials that reported at every step, and a probe trial reporting one value.
    """
    rng = np.random.default_rng([seed, 5])
    grace, min_trials, completed = int(rng.integers(0, 4)), int(rng.integers(1, 6)), 4 + seed % 2
    curves = seeded_curves(seed + 30, direction, completed, 8)[:, 1:]
    curves[np.isnan(curves)] = 0.5  # Optuna would count a diverged trial as failed
    rule = MedianStopping(direction, grace_steps=grace, min_trials=min_trials)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=min_trials, n_warmup_steps=grace)
    study = optuna.create_study(direction=STUDY[direction], pruner=pruner)
    for trial, curve in enumerate(curves):
        told = study.ask()
        for steps, value in enumerate(curve, start=1):
            rule.decide([Observation(trial, trial, steps, float(value), {})], steps)
            told.report(float(value), steps)
        study.tell(told, float(curve[-1]))
    state, stops = rule.state_dict(), 0
    for steps in [*range(0, 10), *rng.integers(1, 9, 30)]:
        # Optuna prunes a NaN even where no completed trial reported; ours needs min_trials.
        nan = [math.nan] if 1 <= steps <= 8 else []
        value = float(rng.choice([*curves[:, min(max(steps, 1), 8) - 1], *nan, rng.random()]))
        probe = MedianStopping(direction, grace_steps=grace, min_trials=min_trials)
        probe.load_state_dict(state)
        ours = bool(probe.decide([Observation(completed, 0, int(steps), value, {})], 99))
        told = study.ask()
        told.report(value, int(steps))
        assert ours == told.should_prune(), (steps, value)
        stops += ours
    assert stops > 0 or min_trials > completed


# PBT against the rule of Jaderberg et al. 2017 / Ray Tune
