"""Schedulers on hand-built observations: host-side only, no JAX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sweepjax.search.distributions import Choice, IntUniform, LogUniform, Uniform
from sweepjax.search.pbt import PBT
from sweepjax.search.protocol import Exploit, Observation, Stop
from sweepjax.search.schedulers import (
    ASHA,
    FIFO,
    MedianStopping,
    Patience,
    SuccessiveHalving,
)
from sweepjax.sweep.policies import SCHEDULERS, make_scheduler

pytestmark = pytest.mark.quick

NAN = float("nan")
INF = float("inf")
SPACE = {
    "lr": LogUniform(1e-4, 1e-1),
    "momentum": Uniform(0.5, 0.99),
    "width": IntUniform(1, 64),
    "act": Choice(["relu", "gelu", "tanh"]),
    "batch_size": 32,
}


def obs(trial: int, steps: int, value: float, slot: int | None = None, **hp) -> Observation:
    return Observation(trial, trial if slot is None else slot, steps, value, hp)


def stopped(actions) -> list[int]:
    assert all(isinstance(a, Stop) for a in actions)
    return sorted(a.trial for a in actions)


# Successive halving


@pytest.mark.parametrize("direction", ["max", "min"])
def test_successive_halving_keeps_top_third_each_rung(direction):
    values = np.random.default_rng(0).permutation(27) / 27.0  # distinct, known
    sh = SuccessiveHalving(direction, max_steps=27, min_steps=1, eta=3, cohort_size=27)
    assert sh.rungs() == [1, 3, 9]
    alive = list(range(27))
    for rung, (steps, keep) in enumerate([(1, 9), (3, 3), (9, 1)]):
        actions = sh.decide([obs(t, steps, values[t] + steps) for t in alive], steps)
        order = sorted(alive, key=lambda t: values[t], reverse=direction == "max")
        assert stopped(actions) == sorted(order[keep:])
        assert {a.reason for a in actions} == {f"successive halving rung {rung}"}
        alive = sorted(order[:keep])
    assert sh.decide([obs(t, 27, 1.0) for t in alive], 27) == []
    first_out = sorted(range(27), key=lambda t: values[t], reverse=direction == "max")[-1]
    assert (sh.rung_of(alive[0]), sh.rung_of(first_out)) == (2, 0)


def test_successive_halving_waits_for_the_whole_cohort_and_breaks_ties_by_id():
    sh = SuccessiveHalving("max", max_steps=30, min_steps=10, eta=3, cohort_size=6)
    first = [obs(t, 10, 0.5) for t in range(3)] + [obs(t, 5, 0.5) for t in range(3, 6)]
    assert sh.decide(first, 10) == []  # trials 3..5 have not reached rung 0
    actions = sh.decide(
        [obs(t, 20, 0.5) for t in range(3)] + [obs(t, 10, 0.5) for t in (3, 4, 5)], 20
    )
    assert stopped(actions) == [2, 3, 4, 5]  # all tied: the two lowest ids stay
    assert all(a.slot == a.trial for a in actions)


def test_successive_halving_members_not_yet_asked_and_divergence():
    sh = SuccessiveHalving("max", max_steps=90, min_steps=10, eta=3, cohort_size=6)
    assert sh.rungs() == [10, 30]
    # Only 4 of 6 members started (population 4): wait for 4 and 5.
    assert sh.decide([obs(t, 10, t / 10) for t in range(4)], 10) == []
    # Trials 1 and 3 diverged (no longer observed); 4 and 5 start in their slots.
    later = [obs(0, 20, 0.0), obs(2, 20, 0.2), obs(4, 10, 0.9, slot=1), obs(5, 10, NAN, slot=3)]
    actions = sh.decide(later, 20)
    # n = 6 members at rung 0; 1, 3 and 5 (NaN) count as worst: 4 and 2 stay; 0 and 5 stop
    # (1 and 3 are not running: no action for them).
    assert stopped(actions) == [0, 5]
    assert {a.slot for a in actions} == {0, 3}
    # Trial 2 finishes (passing rung 1 with 0.2); rung 1 waits for trial 4.
    assert sh.decide([obs(2, 90, 0.2), obs(4, 20, 0.9, slot=1)], 30) == []
    # Trial 4 reaches it: n = 2 keeps 1; the finished trial's value counts and is better.
    assert sh.decide([obs(4, 30, 0.1, slot=1)], 40) == [Stop(1, 4, "successive halving rung 1")]


def test_successive_halving_counts_a_member_never_seen_and_waits_for_one_not_asked():
    sh = SuccessiveHalving("max", max_steps=90, min_steps=10, eta=2, cohort_size=4)
    # Trial 2 diverged in its first chunk (never seen): worst of 4; the best 2 (1, 3) stay.
    actions = sh.decide([obs(0, 10, 0.1), obs(1, 10, 0.3), obs(3, 10, 0.2)], 10)
    assert actions == [Stop(0, 0, "successive halving rung 0")]
    sh = SuccessiveHalving("max", max_steps=90, min_steps=10, eta=2, cohort_size=2)
    assert sh.decide([obs(0, 10, 0.5)], 10) == []  # trial 1 is not asked yet: wait for it
    actions = sh.decide([obs(0, 20, 0.6), obs(1, 10, 0.4)], 20)
    assert actions == [Stop(1, 1, "successive halving rung 0")]  # 0.4 < 0.5: 1 of 2 stays


def test_successive_halving_records_every_rung_a_jump_passes():
    sh = SuccessiveHalving("min", max_steps=27, min_steps=1, eta=3, cohort_size=3)
    actions = sh.decide([obs(0, 10, 0.3), obs(1, 10, 0.1), obs(2, 10, 0.2)], 10)
    assert stopped(actions) == [0, 2]  # rung 0 keeps 1; rungs 1 and 2 keep the one left
    assert [sh.rung_of(t) for t in range(3)] == [2, 2, 2]


# ASHA and Hyperband


def test_asha_promotion_rule_hand_computed():
    asha = ASHA("max", max_steps=27, min_steps=1, eta=3)
    # (trial, value, continues?) at rung 0 in arrival order, per Optuna's rule:
    # n=1 idx0: only one; n=2 idx0: 0.4 < 0.5; n=3 idx0: best; n=4 idx0: 0.55 < 0.6;
    # n=5 idx0: no; n=6 idx1: 2nd best is 0.55 > 0.5; n=7 idx1: 0.55 ties the 2nd best.
    sequence = [(0, 0.5, 1), (1, 0.4, 0), (2, 0.6, 1), (3, 0.55, 0), (4, 0.1, 0), (5, 0.5, 0)]
    sequence += [(6, 0.55, 1)]
    for trial, value, keeps in sequence:
        actions = asha.decide([obs(trial, 1, value)], trial)
        assert actions == ([] if keeps else [Stop(trial, trial, "asha rung 0")]), trial
        assert asha.rung_of(trial) == 0


def test_asha_first_trials_ties_and_min_direction():
    asha = ASHA("min", max_steps=9, min_steps=1, eta=3)
    assert asha.rungs() == [1, 3]
    assert asha.decide([obs(0, 1, 0.5), obs(1, 1, 0.5)], 1) == []  # tie with the best: continues
    assert stopped(asha.decide([obs(2, 1, 0.6)], 1)) == [2]
    assert asha.decide([obs(3, 1, 0.4)], 1) == []
    # Trial 0 at rung 1 (step 3): first there, continues; trial 3 is worse there: stops.
    assert asha.decide([obs(0, 3, 0.3)], 3) == []
    assert asha.decide([obs(3, 4, 0.35)], 4) == [Stop(3, 3, "asha rung 1")]
    assert (asha.rung_of(0), asha.rung_of(3), asha.rung_of(9)) == (1, 1, -1)


def test_asha_jump_over_rungs_and_nan():
    asha = ASHA("max", max_steps=27, min_steps=1)
    assert asha.decide([obs(0, 10, 0.9)], 10) == []  # rungs 0, 1, 2 all recorded
    assert asha.rung_of(0) == 2
    assert asha.decide([obs(1, 10, 0.1)], 10) == [Stop(1, 1, "asha rung 0")]
    assert asha.rung_of(1) == 0  # stops at the first rung it fails
    assert asha.decide([obs(2, 1, NAN)], 1) == [Stop(2, 2, "asha rung 0")]
    # The NaN is recorded and ranks last: with 4 values (idx 0), 0.95 beats 0.9 and continues,
    # 0.5 does not.
    assert asha.decide([obs(3, 1, 0.95)], 1) == []
    assert asha.decide([obs(4, 1, 0.5)], 1) == [Stop(4, 4, "asha rung 0")]


# Trial, steps, value maximizing, value minimizing (the same ranks: 1 - the accuracy), whether
# it continues, its rung after. eta=2, rungs at steps 1, 2, 4; a diverged value (NaN, or the
# infinity that would rank best if compared as a number) counts in n and ranks last. At each
# arrival: the rung's n, max(n // 2, 1) = k, the finite values best first (as maximizing),
# the k-th best.
DIVERGED_SEQUENCE = [
    # rung 0 (steps 1)
    (0, 1, 0.5, 0.5, True, 0),  # n=1 k=1: [.5] -> .5 continues
    (1, 1, NAN, NAN, False, 0),  # n=2: diverged, stops
    (2, 1, NAN, NAN, False, 0),  # n=3: diverged, stops
    (3, 1, 0.3, 0.7, True, 0),  # n=4 k=2: [.5 .3] -> 2nd .3: continues (without the NaNs: n=2)
    (4, 1, 0.2, 0.8, False, 0),  # n=5 k=2: [.5 .3 .2] -> 2nd .3: stops
    (5, 1, INF, -INF, False, 0),  # n=6: diverged (the "best" infinity), stops
    (6, 1, 0.25, 0.75, True, 0),  # n=7 k=3: [.5 .3 .25 .2] -> 3rd .25: continues
    (7, 4, NAN, NAN, False, 0),  # passes rungs 0-2: recorded at rung 0 only, n=8, stops there
    (8, 1, 0.7, 0.3, True, 0),  # n=9 k=4: [.7 .5 .3 .25 .2] -> 4th .25: continues
    # rung 1 (steps 2)
    (0, 2, 0.6, 0.4, True, 1),  # n=1 k=1: [.6]: continues
    (3, 2, NAN, NAN, False, 1),  # n=2: diverged at a second rung, stops
    (6, 2, NAN, NAN, False, 1),  # n=3: stops
    (8, 3, 0.45, 0.55, True, 1),  # n=4 k=2: [.6 .45] -> 2nd .45: continues (without NaNs: n=2)
    # rung 2 (steps 4)
    (0, 4, NAN, NAN, False, 2),  # n=1: diverged, stops even alone at the rung
    (8, 5, 0.1, 0.9, True, 2),  # n=2 k=1: [.1] -> .1, ahead of the NaN: continues
    # a jump over all three rungs, recorded at each in turn
    (9, 4, 0.65, 0.35, True, 2),  # r0 n=10 k=5: [.7 .65 .5 .3 .25 .2] -> 5th .25: continues;
    # r1 n=5 k=2: [.65 .6 .45] -> 2nd .6; r2 n=3 k=1: [.65 .1] -> .65: continues
    (10, 8, 0.55, 0.45, True, 2),  # r0 n=11 k=5: [.7 .65 .55 .5 .3 ...] -> 5th .3;
    # r1 n=6 k=3: [.65 .6 .55 .45] -> 3rd .55; r2 n=4 k=2: [.65 .55 .1] -> 2nd .55: continues
    # (without the NaNs at rung 2: n=3 k=1 -> .65, and .55 would stop)
    (11, 8, 0.4, 0.6, False, 1),  # r0 n=12 k=6: [.7 .65 .55 .5 .4 .3 .25 .2] -> 6th .3;
    # r1 n=7 k=3: [.65 .6 .55 .45 .4] -> 3rd .55: stops at rung 1
]


@pytest.mark.parametrize("direction", ["max", "min"])
def test_asha_diverged_values_count_as_worst_at_their_rung_hand_computed(direction):
    asha = ASHA(direction, max_steps=8, min_steps=1, eta=2)
    assert asha.rungs() == [1, 2, 4]
    for trial, steps, best_high, best_low, keeps, rung in DIVERGED_SEQUENCE:
        value = best_high if direction == "max" else best_low
        actions = asha.decide([obs(trial, steps, value)], steps)
        assert actions == ([] if keeps else [Stop(trial, trial, f"asha rung {rung}")]), trial
        assert asha.rung_of(trial) == rung, trial
    again = ASHA(direction, max_steps=8, min_steps=1, eta=2)
    again.load_state_dict(json.loads(json.dumps(asha.state_dict())))  # NaN and inf round-trip
    assert again.decide([obs(12, 1, NAN)], 1) == [Stop(12, 12, "asha rung 0")]
    assert again.decide([obs(13, 8, 0.9 if direction == "max" else 0.1)], 8) == []
    assert again.rung_of(13) == 2


def test_hyperband_brackets_and_their_min_budgets():
    hb = ASHA("max", max_steps=100, min_steps=4, eta=3, brackets=3)
    assert hb.name == "hyperband"
    assert [hb.rungs(b) for b in range(3)] == [[4, 12, 36], [12, 36], [36]]
    assert [hb.bracket_of(t) for t in range(6)] == [0, 1, 2, 0, 1, 2]
    assert hb.decide([obs(1, 4, 0.1)], 4) == [] and hb.rung_of(1) == -1  # bracket 1 starts at 12
    assert hb.decide([obs(0, 4, 0.9)], 4) == []
    # Trial 3 (bracket 0) is worse than trial 0 there; trial 1 (bracket 1) has its own rung.
    assert hb.decide([obs(3, 4, 0.5), obs(1, 12, 0.1)], 12) == [Stop(3, 3, "asha rung 0")]
    assert hb.rung_of(1) == 0
    assert hb.decide([obs(4, 12, 0.05)], 12) == [Stop(4, 4, "asha rung 0")]
    assert hb.decide([obs(2, 12, 0.0)], 12) == [] and hb.rung_of(2) == -1  # bracket 2: 36
    assert hb.decide([obs(2, 36, 0.0)], 36) == [] and hb.rung_of(2) == 0


# Median stopping and patience


@pytest.mark.parametrize("direction", ["max", "min"])
def test_median_stops_exactly_those_below_the_median(direction):
    rule = MedianStopping(direction, grace_steps=10, min_trials=3)
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    actions = rule.decide([obs(t, 10, v) for t, v in enumerate(values)], 10)
    # Others' medians: 3.5, 3.5, 3, 2.5, 2.5; strictly worse: 0, 1 (max) or 3, 4 (min).
    assert stopped(actions) == ([0, 1] if direction == "max" else [3, 4])
    assert {a.reason for a in actions} == {"median"}


def test_median_grace_min_trials_and_history_of_ended_trials():
    assert MedianStopping("max", grace_steps=20).decide([obs(t, 10, t) for t in range(6)], 10) == []
    assert MedianStopping("max", min_trials=3).decide([obs(t, 10, t) for t in range(3)], 10) == []
    rule = MedianStopping("max", grace_steps=0, min_trials=3)
    rule.decide([obs(t, 10, v) for t, v in enumerate([0.5, 0.6, 0.7])], 10)
    rule.decide([obs(t, 20, v) for t, v in enumerate([0.8, 0.9, 1.0])], 20)
    # Trials 0..2 ended; trial 3 at step 15 faces their values at step 10: median 0.6.
    assert rule.decide([obs(3, 15, 0.55)], 30) == [Stop(3, 3, "median")]
    assert rule.decide([obs(4, 15, 0.6)], 30) == []  # not strictly worse
    # At step 25 nobody else trained that far: too few trials.
    assert rule.decide([obs(4, 25, 0.0)], 40) == []
    # A NaN trial is worst; NaN values of others are left out of the median.
    rule.decide([obs(5, 10, NAN)], 50)
    assert rule.decide([obs(6, 10, NAN)], 50) == [Stop(6, 6, "median")]


def test_patience():
    rule = Patience("min", patience=20, min_delta=0.1)
    seq = [(10, 1.0, False), (20, 0.85, False), (30, 0.95, False), (40, 0.92, True)]
    for steps, value, stops in seq:
        # 0.85 improves by 0.15 > 0.1 (best at step 20); 0.95 and 0.92 do not; at step 40, 20
        # steps without improvement.
        assert rule.decide([obs(0, steps, value)], steps) == (
            [Stop(0, 0, "patience")] if stops else []
        )
    rule = Patience("max", patience=10)
    assert rule.decide([obs(1, 5, NAN)], 5) == []
    assert rule.decide([obs(1, 10, 0.1)], 10) == []  # finite after NaN: an improvement
    assert rule.decide([obs(1, 15, NAN)], 15) == []
    assert stopped(rule.decide([obs(1, 20, 0.1)], 20)) == [1]


def test_fifo_never_stops():
    assert FIFO().decide([obs(t, 100, NAN) for t in range(4)], 100) == []


# PBT


def population(values, steps=10, **hp):
    return [obs(t, steps, v, slot=t + 100, **hp) for t, v in enumerate(values)]


HP = {"lr": 0.01, "momentum": 0.9, "width": 10, "act": "gelu", "seed": 7, "batch_size": 32}


def test_pbt_bottom_quantile_copies_top_quantile():
    pbt = PBT("max", SPACE, ready=10, quantile=0.25, seed=1)
    values = [0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6]
    actions = pbt.decide(population(values, **HP), 10)
    assert all(isinstance(a, Exploit) for a in actions)
    assert sorted(a.trial for a in actions) == [2, 6]  # the bottom 2 of 8
    assert {a.source_trial for a in actions} <= {1, 5}  # the top 2
    assert all(a.slot == a.trial + 100 and a.source_slot == a.source_trial + 100 for a in actions)
    assert all(set(a.hparams) == {"lr", "momentum", "width", "act"} for a in actions)
    assert pbt.decide(population(values, steps=15, **HP), 15) == []  # not ready again yet
    assert len(pbt.decide(population(values, steps=20, **HP), 20)) == 2


def test_pbt_min_direction_small_populations_and_nan():
    pbt = PBT("min", SPACE, ready=5)
    assert pbt.decide(population([0.3], **HP), 10) == []  # one trial: nothing to copy
    pbt = PBT("min", SPACE, ready=5)
    actions = pbt.decide(population([0.3, 0.1], **HP), 10)
    assert [(a.trial, a.source_trial) for a in actions] == [(0, 1)]
    pbt = PBT("min", SPACE, ready=5)
    actions = pbt.decide(population([0.3, NAN, 0.1, 0.2], **HP), 10)
    # 3 finite: 1 bottom (0.3, trial 0) plus the NaN trial 1, both copying trial 2.
    assert [(a.trial, a.source_trial) for a in actions] == [(0, 2), (1, 2)]
    assert PBT("min", SPACE, ready=5).decide(population([NAN, NAN], **HP), 10) == []


def test_pbt_explores_within_bounds():
    pbt = PBT("max", SPACE, ready=1, quantile=0.5, resample_probability=0.5, perturb=(0.5, 3.0))
    hp = dict(HP, lr=0.09, momentum=0.98, width=60, act="tanh")
    for step in range(1, 60):
        for a in pbt.decide(population([0.1, 0.9, 0.2, 0.8], steps=step, **hp), step):
            new = a.hparams
            assert 1e-4 <= new["lr"] <= 1e-1 and 0.5 <= new["momentum"] <= 0.99
            assert 1 <= new["width"] <= 64 and isinstance(new["width"], int)
            assert new["act"] in ("relu", "gelu", "tanh")
            assert type(new["lr"]) is float
    assert len(pbt.history()) == 2 * 59


def test_pbt_perturbation_is_multiplicative_and_clipped():
    pbt = PBT("max", SPACE, ready=1, quantile=0.5, resample_probability=0.0, perturb=(0.8, 1.2))
    hp = dict(HP, lr=1e-3, momentum=0.9, width=2, act="gelu")
    seen = {"lr": set(), "momentum": set(), "width": set(), "act": set()}
    for step in range(1, 40):
        for a in pbt.decide(population([0.1, 0.9], steps=step, **hp), step):
            for k in seen:
                seen[k].add(round(a.hparams[k], 12) if k != "act" else a.hparams[k])
    assert seen["lr"] == {0.0008, 0.0012}  # log scale: a factor, i.e. a step in log(lr)
    assert seen["momentum"] == {0.72, 0.99}  # 0.9 * 1.2 clipped to 0.99
    assert seen["width"] == {1, 3}  # 2 * 0.8 and 2 * 1.2 round back to 2: one step each way
    assert seen["act"] == {"relu", "gelu", "tanh"}  # a neighbour or the same


def test_pbt_is_deterministic_in_seed_and_counter():
    def run(seed):
        pbt = PBT("max", SPACE, ready=10, resample_probability=0.5, seed=seed)
        return [pbt.decide(population([0.1, 0.9, 0.5, 0.4], steps=s, **HP), s) for s in (10, 20)]

    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert first[0][0].hparams != first[1][0].hparams  # the counter moves on


def test_pbt_history_and_fixed_values():
    pbt = PBT("max", SPACE, ready=10)
    pbt.decide(population([0.1, 0.9], **HP), 50)
    (entry,) = pbt.history()
    assert entry["step"] == 50 and entry["trial"] == 0 and entry["source_trial"] == 1
    assert entry["old"] == {"lr": 0.01, "momentum": 0.9, "width": 10, "act": "gelu"}
    assert set(entry["new"]) == set(entry["old"])  # batch_size (fixed) and seed never change
    assert json.loads(json.dumps(pbt.state_dict()))["history"] == [entry]


# State round trips


def simulate(make, calls=24, population=6, trials=30, nan_at=(4, 30), seed=0):
    """Two copies fed the same stream; the second is restored from JSON halfway. Returns the
    actions of each call (asserted identical across the copies)."""
    table = np.random.default_rng(seed).random((trials, 100))
    original, clone = make(), None
    running = {s: s for s in range(population)}  # slot -> trial
    steps = dict.fromkeys(range(population), 0)  # trial -> steps
    hparams = {t: dict(HP, lr=float(1e-3 * (1 + t % 5))) for t in range(trials)}
    nxt, log = population, []
    for call in range(calls):
        for t in running.values():
            steps[t] += 5
        observations = []
        for slot, t in sorted(running.items()):
            value = NAN if (t, steps[t] // 5) == nan_at else table[t, steps[t] // 5]
            observations.append(
                Observation(np.int64(t), slot, np.int64(steps[t]), np.float32(value), hparams[t])
            )
        if call == calls // 2:
            state = original.state_dict()
            assert_builtin(state)
            clone = make()
            clone.load_state_dict(json.loads(json.dumps(state)))
        actions = original.decide(observations, call * 5)
        if clone is not None:
            assert clone.decide(observations, call * 5) == actions
            assert json.dumps(clone.state_dict()) == json.dumps(original.state_dict())
        log.append(actions)
        for a in actions:
            if isinstance(a, Exploit):
                hparams[a.trial] = dict(hparams[a.trial], **a.hparams)
        ended = {a.slot for a in actions if isinstance(a, Stop)}
        ended |= {o.slot for o in observations if o.steps >= 60 or o.trial == nan_at[0]}
        for slot in ended:
            if nxt < trials:
                running[slot], steps[nxt], nxt = nxt, 0, nxt + 1
            else:
                del running[slot]
    return log


def assert_builtin(value):
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            assert_builtin(v)
    elif isinstance(value, list):
        for v in value:
            assert_builtin(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))


MAKERS = {
    "none": FIFO,
    "asha": lambda: ASHA("max", max_steps=60, min_steps=5, eta=2),
    "hyperband": lambda: ASHA("max", max_steps=60, min_steps=5, eta=2, brackets=3),
    "successive_halving": lambda: SuccessiveHalving("min", 60, 5, 2, cohort_size=6),
    "median": lambda: MedianStopping("max", grace_steps=10, min_trials=2),
    "patience": lambda: Patience("max", patience=10, min_delta=0.05),
    "pbt": lambda: PBT("max", SPACE, ready=10, quantile=0.5, resample_probability=0.3, seed=5),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_state_round_trip_decides_identically(name):
    log = simulate(MAKERS[name])
    if name != "none":
        assert any(log[len(log) // 2 :]), "the second half decides something"


def test_state_of_another_scheduler_is_refused():
    with pytest.raises(ValueError, match="scheduler state"):
        ASHA("max", 60, 5, eta=2).load_state_dict(ASHA("max", 60, 5, eta=3).state_dict())
    with pytest.raises(ValueError, match="scheduler state"):
        Patience("max", 10).load_state_dict(FIFO().state_dict())


# Validation and the factory


BAD = [
    (lambda: ASHA("max", 100, 10, eta=1), "scheduler.eta: 1 must be > 1"),
    (lambda: ASHA("max", 100, 0), "scheduler.min_steps"),
    (lambda: ASHA("max", 100, 100), "min budget above max"),
    (lambda: ASHA("max", 100, 10, brackets=0), "scheduler.brackets"),
    (lambda: ASHA("max", 100, 12, brackets=3), "scheduler.brackets"),
    (lambda: ASHA("up", 100, 10), "scheduler.direction"),
    (lambda: ASHA("max", 100, 10, eta="3"), "scheduler.eta"),
    (lambda: SuccessiveHalving("max", 100, 10, cohort_size=0), "scheduler.cohort_size"),
    (lambda: SuccessiveHalving("max", 100, 200, cohort_size=3), "scheduler.min_steps"),
    (lambda: MedianStopping("max", grace_steps=-1), "scheduler.grace_steps"),
    (lambda: MedianStopping("sideways"), "scheduler.direction"),
    (lambda: Patience("max", 0), "scheduler.patience"),
    (lambda: Patience("max", 5, min_delta=-1), "scheduler.min_delta"),
    (lambda: PBT("max", SPACE, ready=10, quantile=0.0), "scheduler.quantile"),
    (lambda: PBT("max", SPACE, ready=10, quantile=0.6), "scheduler.quantile"),
    (lambda: PBT("max", SPACE, ready=10, resample_probability=1.5), "scheduler.resample_prob"),
    (lambda: PBT("max", SPACE, ready=0), "scheduler.ready"),
    (lambda: PBT("max", SPACE, ready=10, perturb=[]), "scheduler.perturb"),
    (lambda: PBT("min", SPACE, ready=10, perturb=[0.8, -1]), "scheduler.perturb"),
    (lambda: ASHA("max", 27.5, 1), "scheduler.max_steps: 27.5 is not an integer >= 1; allowed: an integer"),
    (lambda: ASHA("max", 1, 1), "scheduler.min_steps: 1 is not below max_steps 1"),
    # 4 * 5**b for b = 0, 1, 2: 4, 20, 100; bracket 2's 100 is not below max_steps 100.
    (lambda: ASHA("max", 100, 4, eta=5, brackets=3), "a min budget of 100 >= max_steps 100; allowed: 1 to 2."),
    (lambda: SuccessiveHalving("up", 100, 10, cohort_size=3), "scheduler.direction: 'up'"),
    (lambda: Patience("up", 5), "scheduler.direction: 'up'"),
    (lambda: PBT("up", SPACE, ready=10), "scheduler.direction: 'up'"),
    (lambda: PBT("max", SPACE, ready=10, perturb=[0.8, 0.0]), "scheduler.perturb: [0.8, 0.0]"),
    (lambda: PBT("max", SPACE, ready=10, seed=1.5), "scheduler.seed: 1.5 is not an integer"),
    (lambda: PBT("max", ["lr"], ready=10), "scheduler.space: ['lr'] is not a mapping"),
]  # fmt: skip


@pytest.mark.parametrize("build, message", BAD)
def test_bad_values_are_refused(build, message):
    with pytest.raises(ValueError, match="allowed: ") as err:
        build()
    assert message in str(err.value)


def test_values_at_the_boundaries_are_allowed():
    """The least allowed value of each bounded argument, and the most brackets that fit."""
    assert ASHA("max", 2, 1).rungs() == [1]
    hyperband = ASHA("max", 100, 4, eta=5, brackets=2)
    assert (hyperband.name, hyperband.rungs(1)) == ("hyperband", [20])
    assert SuccessiveHalving("max", 2, 1, cohort_size=1).cohort_size == 1
    one_step = Patience("max", 1)  # stops at the first step that does not improve
    assert [one_step.decide([obs(0, s, 0.5)], s) for s in (1, 2)] == [[], [Stop(0, 0, "patience")]]
    for p in (0.0, 1.0):
        assert PBT("max", SPACE, ready=1, quantile=0.5, resample_probability=p).quantile == 0.5


SWEEP = {"direction": "max", "max_steps": 2700, "eval_every": 10, "population": 8}


def make(name, **options):
    return make_scheduler(name, options, **SWEEP, space=SPACE, seed=0)


def test_make_scheduler_defaults():
    assert set(SCHEDULERS) == {
        "none", "asha", "hyperband", "successive_halving", "median", "patience", "pbt",
    }  # fmt: skip
    assert isinstance(make("none"), FIFO)
    asha = make("asha")
    assert (asha.name, asha.eta, asha.min_steps, asha.rungs()) == ("asha", 3, 100, [100, 300, 900])
    assert make("asha", eta=2).min_steps == 340  # 2700 // 8 rounded up to the eval interval
    hb = make("hyperband")
    assert (hb.brackets, hb.rungs(2)) == (3, [900])
    assert make("hyperband", min_steps=1000).brackets == 1
    assert make("successive_halving").cohort_size == 8
    assert make("median").grace_steps == 10
    assert make("patience").patience == 540
    pbt = make("pbt")
    assert (pbt.ready, pbt.seed, sorted(pbt.space)) == (270, 0, ["act", "lr", "momentum", "width"])
    space = dict(SPACE, optimizer=Choice(["adam", "sgd"]), **{"model.width": Choice([8, 16])})
    pinned = make_scheduler("pbt", {}, **SWEEP, space=dict(space, seed=IntUniform(0, 9)), seed=0)
    assert sorted(pinned.space) == ["act", "lr", "momentum", "width"]
    short = make_scheduler("pbt", {}, **dict(SWEEP, max_steps=25, eval_every=10), space={}, seed=1)
    assert short.ready == 10


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("ashaa", {}, "scheduler: unknown scheduler 'ashaa'"),
        (3, {}, "scheduler: unknown scheduler 3"),
        ("asha", {"etta": 2}, "scheduler.etta: not an option of asha"),
        ("none", {"eta": 2}, "scheduler.eta: not an option of none"),
        ("asha", {"eta": "2"}, "scheduler.eta"),
        ("asha", {"min_steps": 2.5}, "scheduler.min_steps"),
        ("hyperband", {"brackets": 9}, "scheduler.brackets"),
        ("pbt", {"quantile": True}, "scheduler.quantile"),
        ("pbt", {"perturb": "fast"}, "scheduler.perturb"),
        ("median", {"min_trials": 0}, "scheduler.min_trials"),
        ("patience", {"patience": None}, "scheduler.patience"),
        ("asha", [("eta", 2)], "scheduler: options"),
    ],
)
def test_make_scheduler_refuses_bad_names_and_options(name, options, message):
    with pytest.raises(ValueError, match="allowed: ") as err:
        make_scheduler(name, options, **SWEEP, space=SPACE, seed=0)
    assert message in str(err.value)


def test_make_scheduler_when_the_default_min_budget_does_not_fit():
    sweep = dict(SWEEP, max_steps=100, eval_every=100)
    with pytest.raises(ValueError, match=r"scheduler\.min_steps: 100 \(the default"):
        make_scheduler("asha", {}, **sweep, space={}, seed=0)
    assert make_scheduler("asha", {"min_steps": 50}, **sweep, space={}, seed=0).rungs() == [50]
    assert make_scheduler("median", {}, **sweep, space={}, seed=0).grace_steps == 100
