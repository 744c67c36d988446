"""PBT against references written apart from it, in both ranking directions: truncation
selection and explore as Ray Tune's `PopulationBasedTraining` documents them (the bottom
quantile copies a donor from the top and explores around the donor's values), a hand-computed
sequence, and the ranking against numpy's lexsort.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from sweepjax.search.distributions import Choice, IntUniform, LogUniform, Uniform
from sweepjax.search.pbt import PBT, ranked
from sweepjax.search.protocol import DIRECTIONS, Observation

pytestmark = pytest.mark.quick


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
