"""The schedulers against references written apart from them, in both ranking directions.

ASHA and Hyperband are fed the same trials, seeded curves (ties and diverged trials included)
and arrival order as Optuna's `SuccessiveHalvingPruner` / `HyperbandPruner`; synchronous
successive halving is held to the paper's rule in numpy; median stopping to Optuna's
`MedianPruner`; PBT to truncation selection as Ray Tune's `PopulationBasedTraining` documents
it, with a hand-computed sequence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from sweepjax.adaptive.pbt import PBT, ranked
from sweepjax.adaptive.protocol import DIRECTIONS, Observation
from sweepjax.adaptive.schedulers import ASHA, MedianStopping, SuccessiveHalving, budgets
from sweepjax.distributions import Choice, IntUniform, LogUniform, Uniform

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


def sweep_against_optuna(scheduler, pruner, values, direction, population, chunk) -> list:
    """Run a refill sweep of `len(values)` trials through `scheduler` and an Optuna study with
    `pruner` in the same order; assert they stop the same trials each chunk. Returns our stops.

    A trial leaves its slot when stopped, diverged (Optuna: failed) or at its last step
    (Optuna: completed); the slot takes the next trial, asked from the study in id order.
    """
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
        observations = []
        for slot, trial in sorted(slots.items(), key=lambda item: (item[1] * 7) % 5):
            steps[trial] = min(steps[trial] + chunk, max_steps)
            value = float(values[trial, steps[trial]])
            observations.append(Observation(trial, slot, steps[trial], value, {}))
        ours = scheduler.decide(observations, step)
        theirs = [
            o.trial for o in observations if optuna_prunes(study, asked[o.trial], o, direction)
        ]
        assert [a.trial for a in ours] == theirs, step
        assert all(slots[a.slot] == a.trial for a in ours)
        stops += ours
        for obs in observations:
            if obs.trial in theirs:
                study.tell(asked[obs.trial], state=optuna.trial.TrialState.PRUNED)
            elif math.isnan(obs.value):
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


def closeness(lr: float, direction: str) -> float:
    """A ranking metric of the learning rate alone: an accuracy (`max`) or a loss (`min`)
    that is best at lr = 10**-1.5."""
    distance = abs(math.log10(lr) + 1.5)
    return -distance if direction == "max" else distance


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pbt_hand_computed_sequence(direction):
    """Four trials, quantile 0.25 (one loser, one donor), no resampling, one factor (1.25):
    every decision is fixed. The trials started at global step 100, so their own clocks (which
    `ready` counts) are not the sweep's. The loser takes the donor's values times 1.25, clipped:
    lr 0.02 * 1.25 = 0.025; width 16 * 1.25 = 20; momentum 0.95 * 1.25 -> 0.99; act one
    neighbour away or the same. Distances of log10(lr) from -1.5 decide the ranking:
    lr (1e-3, 0.02, 5e-4, 0.08) -> (1.5, 0.199, 1.801, 0.403): trial 2 copies trial 1;
    (1e-3, 0.02, 0.025, 0.08) -> (1.5, 0.199, 0.102, 0.403): trial 0 copies trial 2;
    (0.03125, 0.02, 0.025, 0.08) -> (0.005, 0.199, 0.102, 0.403): trial 3 copies trial 0;
    (0.03125, 0.02, 0.025, 0.0390625) -> (.., 0.199, .., 0.092): trial 1 copies trial 0.
    """
    space = {
        "lr": LogUniform(1e-4, 1e-1),
        "width": IntUniform(1, 64),
        "momentum": Uniform(0.5, 0.99),
        "act": Choice(["relu", "gelu", "tanh"]),
    }
    pbt = PBT(direction, space, ready=10, quantile=0.25, resample_probability=0.0, perturb=(1.25,))
    hp = {
        0: {"lr": 1e-3, "width": 8, "momentum": 0.9, "act": "relu"},
        1: {"lr": 0.02, "width": 16, "momentum": 0.95, "act": "relu"},
        2: {"lr": 5e-4, "width": 60, "momentum": 0.6, "act": "tanh"},
        3: {"lr": 0.08, "width": 4, "momentum": 0.7, "act": "gelu"},
    }
    expected = [
        (2, 1, 0.025, 20, 0.99),
        (0, 2, 0.03125, 25, 0.99),
        (3, 0, 0.0390625, 31, 0.99),
        (1, 0, 0.0390625, 31, 0.99),
    ]
    decisions = []
    for steps in range(5, 45, 5):
        slot = {t: 3 - t for t in hp}  # slots are not trial ids
        observations = [
            Observation(t, slot[t], steps, closeness(hp[t]["lr"], direction), dict(hp[t], seed=t))
            for t in hp
        ]
        actions = pbt.decide(observations, 100 + steps)
        assert len(actions) == (steps % 10 == 0), steps
        for a in actions:
            assert (a.slot, a.source_slot) == (slot[a.trial], slot[a.source_trial])
            donor_act = space["act"].values.index(hp[a.source_trial]["act"])
            assert abs(space["act"].values.index(a.hparams["act"]) - donor_act) <= 1
            hp[a.trial] = dict(a.hparams)
            decisions.append(
                (a.trial, a.source_trial, *(a.hparams[k] for k in ("lr", "width", "momentum")))
            )
    assert [d[:2] for d in decisions] == [e[:2] for e in expected]
    assert np.allclose(decisions, expected, rtol=1e-12, atol=0)


def quantiles(values: list[float], k: int, direction: str) -> tuple[set, set]:
    """Ray Tune's `_quantiles` with k trials at each end: sorted by score, the bottom k trials
    and the top k."""
    order = np.argsort(np.asarray(values) * (1 if direction == "max" else -1), kind="stable")
    return set(order[:k].tolist()), set(order[len(values) - k :].tolist())


def one_of(value: float, candidates: list[float]) -> bool:
    return any(math.isclose(value, c, rel_tol=1e-12) for c in candidates)


def explored(pbt: PBT, donor: dict, calls: int) -> list[dict]:
    """The values trial 1 (ranked worse) takes from trial 0 (`donor`) in each of `calls`
    decisions of a PBT that is ready every step with quantile 0.5."""
    good, bad = (1.0, 0.0) if pbt.direction == "max" else (0.0, 1.0)
    out = []
    for steps in range(1, calls + 1):
        pair = [Observation(0, 0, steps, good, donor), Observation(1, 1, steps, bad, {})]
        (action,) = pbt.decide(pair, steps)
        assert (action.trial, action.source_trial, action.source_slot) == (1, 0, 0)
        out.append(action.hparams)
    return out


def around(donor: float, factors, low: float, high: float) -> list[float]:
    """The values Ray's explore gives a number without resampling: donor * factor, clipped."""
    return [min(max(donor * f, low), high) for f in factors]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "n, quantile", [(4, 0.5), (8, 0.25), (12, 0.25), (10, 0.5), (10, 0.25), (3, 0.25)]
)
def test_pbt_truncation_selection_and_explore_match_rays_rule(direction, n, quantile):
    """The bottom quantile copies the top quantile and explores around the donor's values.
    Ray takes min(ceil(n * q), n // 2) trials at each end, ours max(floor(n * q), 1): the same
    where n * q is whole. Every trial's values differ, so exploring around the loser's own
    values would show."""
    k = max(math.floor(n * quantile), 1)
    if (n * quantile).is_integer():
        assert k == min(math.ceil(n * quantile), n // 2)
    space = {"lr": LogUniform(1e-5, 1.0), "momentum": Uniform(0.0, 1.0), "width": IntUniform(1, 99)}
    pbt = PBT(direction, space, ready=3, quantile=quantile, resample_probability=0.0, seed=n)
    rng, donors_besides_the_best = np.random.default_rng([n, DIRECTIONS.index(direction)]), 0
    for steps in (3, 6, 9):
        values = rng.permutation(n).tolist()
        hp = {
            t: {"lr": 10.0 ** -rng.uniform(0, 5), "momentum": rng.random(), "width": 10 + t}
            for t in range(n)
        }
        observations = [Observation(t, (t + 5) % n, steps, values[t], hp[t]) for t in range(n)]
        actions = pbt.decide(observations, steps)
        bottom, top = quantiles(values, k, direction)
        assert {a.trial for a in actions} == bottom
        best = max(top, key=lambda t: values[t] * (1 if direction == "max" else -1))
        donors_besides_the_best += sum(a.source_trial != best for a in actions)
        for a in actions:
            assert a.source_trial in top and a.source_slot == (a.source_trial + 5) % n
            donor = hp[a.source_trial]
            assert one_of(a.hparams["lr"], around(donor["lr"], (0.8, 1.2), 1e-5, 1.0))
            assert one_of(a.hparams["momentum"], around(donor["momentum"], (0.8, 1.2), 0.0, 1.0))
            assert a.hparams["width"] in {round(donor["width"] * f) for f in (0.8, 1.2)}
    assert donors_besides_the_best > 0 or k == 1  # Ray draws a donor from the whole top


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pbt_resamples_with_its_probability_from_the_distribution(direction):
    """Ray's explore: with `resample_probability` a fresh draw from the dimension's
    distribution (here log-uniform and uniform), else the donor's value perturbed."""
    bounds = {"lr": (1e-4, 1e-1), "momentum": (0.5, 0.99)}
    space = {"lr": LogUniform(*bounds["lr"]), "momentum": Uniform(*bounds["momentum"])}
    pbt = PBT(direction, space, ready=1, quantile=0.5, resample_probability=0.25, seed=3)
    donor = {"lr": 1e-3, "momentum": 0.7}
    fresh: dict[str, list[float]] = {"lr": [], "momentum": []}
    for new in explored(pbt, donor, 200):
        for name, draws in fresh.items():
            if not one_of(new[name], around(donor[name], (0.8, 1.2), *bounds[name])):
                draws.append(new[name])
    for name, draws in fresh.items():
        assert 26 <= len(draws) <= 74, name  # 200 * 0.25 = 50, within 4 standard deviations
    low, high = np.log(bounds["lr"])
    assert scipy.stats.kstest(np.log(fresh["lr"]), "uniform", (low, high - low)).pvalue > 1e-3
    low, high = bounds["momentum"]
    assert scipy.stats.kstest(fresh["momentum"], "uniform", (low, high - low)).pvalue > 1e-3


CHOICES = {
    "wd": Choice([0.0, 1e-4, 1e-3, 1e-2, 0.1]),
    "act": Choice(["relu", "gelu", "tanh", "silu"]),
    "opt": Choice(["adam", "sgd", "lamb"]),
    "clip": Choice([None, 0.1, 1.0]),  # a Choice the space samples (as objects): None or a number
}


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pbt_explores_a_choice_to_a_neighbour_or_draws_uniformly(direction):
    """Ray's explore of a list: the donor's value shifts to a neighbour (ours may also stay),
    clipped at the ends; a float read back in float32 (0.01 -> 0.0099999998) is its nearest
    choice; a value not among the choices (a number for names), or a resample, draws
    uniformly from all of them (chi-square against equal counts)."""
    donor = {"wd": float(np.float32(1e-2)), "act": "silu", "opt": 3, "clip": 0.1}
    pbt = PBT(direction, CHOICES, ready=1, quantile=0.5, resample_probability=0.0, seed=1)
    moved = explored(pbt, donor, 90)
    expected = {"wd": {1e-3, 1e-2, 0.1}, "act": {"tanh", "silu"}, "opt": {"adam", "sgd", "lamb"}}
    expected["clip"] = {None, 0.1, 1.0}
    assert {k: {new[k] for new in moved} for k in CHOICES} == expected
    pbt = PBT(direction, CHOICES, ready=1, quantile=0.5, resample_probability=1.0, seed=2)
    drawn = explored(pbt, donor, 300)
    for name, dist in CHOICES.items():
        counts = [sum(new[name] == v for new in drawn) for v in dist.values]
        assert scipy.stats.chisquare(counts).pvalue > 1e-3, (name, counts)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "donor, factor, expected",
    [(2, 1.2, 3), (2, 0.8, 1), (3, 0.9, 2), (10, 1.2, 12), (10, 0.8, 8), (1, 0.8, 1), (60, 1.2, 64)]
    + [(5, 1.0, 5)],
)
def test_pbt_perturbs_an_integer_by_at_least_one_step(direction, donor, factor, expected):
    """Hand-computed: round(donor * factor), one step further where that rounds back to the
    donor (2 * 1.2 = 2.4 -> 3; 3 * 0.9 = 2.7 -> 2), clipped to [1, 64]; a factor 1 keeps it."""
    space = {"width": IntUniform(1, 64)}
    pbt = PBT(direction, space, ready=1, quantile=0.5, resample_probability=0.0, perturb=[factor])
    (new,) = explored(pbt, {"width": donor}, 1)
    assert new == {"width": expected} and type(new["width"]) is int


def documented_draw(seed: int, n: int) -> float:
    """The fresh draw of the n-th exploit with one donor and resample_probability 1: numpy's
    `default_rng([seed mod 2**64, n])` picks the donor, decides to resample, then draws."""
    rng = np.random.default_rng([seed % 2**64, n])
    rng.integers(1), rng.random()
    return float(rng.random())


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("seed", [3, -1])
def test_pbt_nth_exploit_draws_from_numpy_seeded_with_seed_and_n(direction, seed):
    space = {"x": Uniform(0.0, 1.0)}  # its ppf is the draw itself
    pbt = PBT(direction, space, ready=1, quantile=0.5, resample_probability=1.0, seed=seed)
    assert [new["x"] for new in explored(pbt, {"x": 0.5}, 3)] == [
        documented_draw(seed, n) for n in range(3)
    ]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_ranking_is_by_value_then_trial_id_with_values_not_finite_last(direction):
    """numpy's lexsort of (not finite, value in the direction, trial id), on values given out
    of id order: three ties at 0.5, and 1.7e308 above 1e308 (finite, though twice either is
    not). PBT's losers are then the last three finite and the four not finite."""
    ids = [7, 4, 0, 2, 1, 9, 3, 6, 5, 8]
    sign = 1.0 if direction == "max" else -1.0
    values = [sign * v for v in (0.5, 1.7e308, math.nan, 0.5, 1e308, math.inf, -0.3, math.nan)]
    values += [sign * 0.5, -math.inf]
    bad = ~np.isfinite(values)
    order = np.lexsort((ids, np.where(bad, 0.0, -sign * np.asarray(values)), bad))
    expected = [ids[i] for i in order]
    assert [t for t, _ in ranked(list(zip(ids, values, strict=True)), direction)] == expected
    pbt = PBT(direction, {}, ready=1, quantile=0.5)
    observations = [Observation(t, t, 1, v, {}) for t, v in zip(ids, values, strict=True)]
    actions = pbt.decide(observations, 1)
    assert [a.trial for a in actions] == sorted(expected[3:])
    assert {a.source_trial for a in actions} <= set(expected[:3])
