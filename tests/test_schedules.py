"""Every schedule family against Optax (where Optax has it) or the seed's formula written out."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepjax.engine.schedules import (
    BUILTIN_SCHEDULES,
    SCHEDULES,
    learning_rate_at,
    register_schedule,
    schedule_noise,
    schedule_parameters,
    unregister_schedule,
)

STEPS = np.arange(0, 200, dtype=np.float32)


def curve(family, hp):
    """The schedule on the grid STEPS, evaluated as the engine does (jit, traced parameters)."""
    hp = {k: jnp.asarray(v) for k, v in hp.items()}
    fn = jax.jit(jax.vmap(lambda s, p: learning_rate_at(family, s, p), in_axes=(0, None)))
    return np.asarray(fn(STEPS, hp))


def check(family, hp, expected, rtol=1e-5, atol=1e-7):
    expected = np.asarray([float(expected(int(t))) for t in STEPS])
    np.testing.assert_allclose(curve(family, hp), expected, rtol=rtol, atol=atol)


OPTAX_PARITY = [
    ("constant", {"learning_rate": 0.3}, lambda: optax.constant_schedule(0.3)),
    (
        "exponential",
        {"learning_rate": 0.5, "decay_steps": 30, "decay_rate": 0.7, "staircase": 0.0},
        lambda: optax.exponential_decay(0.5, 30, 0.7),
    ),
    (
        "exponential",
        {"learning_rate": 0.5, "decay_steps": 30, "decay_rate": 0.7, "staircase": 1.0},
        lambda: optax.exponential_decay(0.5, 30, 0.7, staircase=True),
    ),
    (
        "polynomial",
        {
            "learning_rate": 0.4,
            "end_learning_rate": 0.01,
            "power": 2.0,
            "decay_steps": 150,
            "cycle": 0.0,
        },
        lambda: optax.polynomial_schedule(0.4, 0.01, 2.0, 150),
    ),
    (
        "linear",
        {"learning_rate": 0.4, "end_learning_rate": 0.05, "decay_steps": 120},
        lambda: optax.linear_schedule(0.4, 0.05, 120),
    ),
    (
        "cosine",
        {"learning_rate": 0.2, "decay_steps": 150, "alpha": 0.1},
        lambda: optax.cosine_decay_schedule(0.2, 150, alpha=0.1),
    ),
    (
        "warmup_cosine",
        {"learning_rate": 0.2, "warmup_steps": 20, "decay_steps": 180, "alpha": 0.0},
        lambda: optax.warmup_cosine_decay_schedule(0.0, 0.2, 20, 180),
    ),
    (
        "piecewise_constant",
        {
            "learning_rate": 1.0,
            "boundary_0": 50,
            "boundary_1": 120,
            "boundary_2": 170,
            "scale_0": 0.1,
            "scale_1": 0.5,
            "scale_2": 0.2,
        },
        lambda: optax.piecewise_constant_schedule(1.0, {50: 0.1, 120: 0.5, 170: 0.2}),
    ),
    (
        "sgdr",
        {
            "learning_rate": 0.3,
            "T_0": 10,
            "T_mult": 2.0,
            "restart_decay": 0.5,
            "min_learning_rate": 0.01,
        },
        lambda: optax.sgdr_schedule(
            [
                {
                    "init_value": 0.3 * 0.5**m,
                    "peak_value": 0.3 * 0.5**m,
                    "warmup_steps": 0,
                    "decay_steps": 10 * 2**m,
                    "end_value": 0.01,
                }
                for m in range(5)
            ]
        ),
    ),
    (
        "sgdr",
        {
            "learning_rate": 0.3,
            "T_0": 40,
            "T_mult": 1.0,
            "restart_decay": 1.0,
            "min_learning_rate": 0.0,
        },
        lambda: optax.sgdr_schedule(
            [{"init_value": 0.3, "peak_value": 0.3, "warmup_steps": 0, "decay_steps": 40}] * 5
        ),
    ),
    (
        "one_cycle",
        {
            "learning_rate": 0.5,
            "decay_steps": 150,
            "pct_start": 0.3,
            "pct_final": 0.85,
            "div_factor": 25.0,
            "final_div_factor": 1e4,
        },
        lambda: optax.linear_onecycle_schedule(150, 0.5),
    ),
]


@pytest.mark.parametrize(("family", "hp", "reference"), OPTAX_PARITY)
def test_parity_with_optax(family, hp, reference):
    check(family, {**hp, "warmup_steps": hp.get("warmup_steps", 0)}, reference())


def test_natural_exp_and_inverse_time_follow_the_formulas():
    # TF's natural_exp_decay and inverse_time_decay (the seed's exp(-rate/step) is a typo).
    base = {"learning_rate": 0.5, "decay_steps": 25.0, "decay_rate": 0.3}
    for staircase in (0.0, 1.0):
        hp = {**base, "staircase": staircase}

        def p(t, s=staircase):
            return math.floor(t / 25) if s else t / 25

        check("natural_exp", hp, lambda t, p=p: 0.5 * math.exp(-0.3 * p(t)))
        check("inverse_time", hp, lambda t, p=p: 0.5 / (1 + 0.3 * p(t)))


def test_polynomial_with_cycle_follows_the_formula():
    hp = {
        "learning_rate": 0.4,
        "end_learning_rate": 0.01,
        "power": 0.5,
        "decay_steps": 60,
        "cycle": 1.0,
    }

    def expected(t):
        decay_steps = 60 * max(math.ceil(t / 60), 1)
        return (0.4 - 0.01) * (1 - min(t, decay_steps) / decay_steps) ** 0.5 + 0.01

    check("polynomial", hp, expected)


def test_linear_cosine_follows_the_formula():
    hp = {"learning_rate": 0.1, "decay_steps": 150, "num_periods": 2.0, "alpha": 0.1, "beta": 0.01}

    def expected(t):
        t = min(t, 150)
        linear = (150 - t) / 150
        cosine = 0.5 * (1 + math.cos(math.pi * 2 * 2.0 * t / 150))
        return 0.1 * ((0.1 + linear) * cosine + 0.01)

    check("linear_cosine", hp, expected)


def test_noisy_linear_cosine_follows_the_formula_with_the_members_noise():
    hp = {
        "learning_rate": 0.1,
        "decay_steps": 150,
        "num_periods": 0.5,
        "alpha": 0.0,
        "beta": 0.001,
        "initial_variance": 1.0,
        "variance_decay": 0.55,
        "seed": 7,
    }
    noise = np.asarray(jax.vmap(lambda s: schedule_noise(7, s))(STEPS))

    def expected(t):
        g = min(t, 150)
        linear = (150 - g) / 150
        cosine = 0.5 * (1 + math.cos(math.pi * 2 * 0.5 * g / 150))
        std = math.sqrt(1.0 / (1 + g) ** 0.55)
        return max(0.1 * ((0.0 + linear + std * noise[t]) * cosine + 0.001), 0.0)

    check("noisy_linear_cosine", hp, expected, atol=1e-6)
    again = curve("noisy_linear_cosine", hp)
    other = curve("noisy_linear_cosine", {**hp, "seed": 8})
    np.testing.assert_array_equal(again, curve("noisy_linear_cosine", hp))  # reproducible
    assert not np.allclose(again, other)  # each member has its own noise


@pytest.mark.parametrize(("cycle_decay", "gamma"), [(1.0, 1.0), (0.5, 1.0), (1.0, 0.995)])
def test_cyclic_triangular_follows_the_formula(cycle_decay, gamma):
    # triangular, triangular2 (amplitude halves every cycle), exp_range (gamma ** step).
    hp = {
        "learning_rate": 0.6,
        "min_learning_rate": 0.1,
        "step_size": 25,
        "cycle_decay": cycle_decay,
        "gamma": gamma,
    }

    def expected(t):
        m = math.floor(1 + t / (2 * 25))
        b = abs(t / 25 - 2 * m + 1)
        amplitude = (0.6 - 0.1) * cycle_decay ** (m - 1) * gamma**t
        return 0.1 + amplitude * max(0.0, 1 - b)

    check("cyclic", hp, expected)


def test_linear_warmup_in_front_of_any_schedule():
    hp = {"learning_rate": 0.5, "decay_steps": 30, "decay_rate": 0.7, "staircase": 0.0}
    reference = optax.exponential_decay(0.5, 30, 0.7)

    def expected(t):
        return 0.5 * t / 40 if t < 40 else float(reference(t - 40))

    check("exponential", {**hp, "warmup_steps": 40}, expected)


def test_families_as_a_per_member_choice():
    families = ("constant", "cosine", "sgdr")
    hp = {
        "learning_rate": jnp.array([0.1, 0.2, 0.3]),
        "decay_steps": jnp.full(3, 100.0),
        "alpha": jnp.zeros(3),
        "T_0": jnp.full(3, 30.0),
        "T_mult": jnp.full(3, 2.0),
        "restart_decay": jnp.ones(3),
        "min_learning_rate": jnp.zeros(3),
        "warmup_steps": jnp.zeros(3),
        "schedule": jnp.array([2, 0, 1], jnp.int32),
    }
    step = jnp.float32(45)
    mixed = jax.jit(jax.vmap(lambda p: learning_rate_at(families, step, p)))(hp)
    for i in range(3):
        alone = learning_rate_at(
            families[int(hp["schedule"][i])], step, {k: v[i] for k, v in hp.items()}
        )
        np.testing.assert_allclose(mixed[i], alone, rtol=1e-6)


def test_every_family_has_finite_defaults():
    for family in BUILTIN_SCHEDULES:
        hp = {"learning_rate": 0.1, "seed": 0, **schedule_parameters(family, 200)}
        values = curve(family, hp)
        assert np.isfinite(values).all() and (values >= 0).all(), family
        if family != "noisy_linear_cosine":  # its noise may lift it above the peak
            assert values.max() <= 0.1 * 1.01, family  # beta may add 0.1%


# The changed value of each parameter: half its default, or these where half would say nothing
# (a zero default, a flag, a warmup of 0). The last piecewise scale is 1.0 by default, which
# makes its boundary invisible: 0.5 in the base.
CHANGED = {"warmup_steps": 20.0, "cycle": 1.0, "staircase": 1.0, "alpha": 0.5}
BASE = {"scale_2": 0.5}
EVERY_KEY = [(f, n) for f in BUILTIN_SCHEDULES for n in schedule_parameters(f, 100)]


@pytest.mark.parametrize(("family", "name"), EVERY_KEY, ids=[f"{f}-{n}" for f, n in EVERY_KEY])
def test_every_schedule_parameter_changes_the_rate(family, name):
    """A parameter silently ignored would leave the schedule on 200 steps unchanged."""
    hp = {"learning_rate": 0.1, **schedule_parameters(family, 100)}
    hp |= {k: v for k, v in BASE.items() if k in hp}
    value = CHANGED.get(name, hp[name] / 2 if hp[name] else 0.5)
    base, changed = curve(family, hp), curve(family, {**hp, name: value})
    assert np.isfinite(changed).all()
    assert not np.array_equal(base, changed), f"{family}: {name} changed nothing"


def test_a_registered_family_is_removed_and_a_built_in_one_is_not():
    before = dict(SCHEDULES)
    register_schedule("halved", lambda step, hp: hp["learning_rate"] / 2)
    assert float(learning_rate_at("halved", 0, {"learning_rate": 1.0})) == 0.5
    unregister_schedule("halved")
    assert before == SCHEDULES
    with pytest.raises(ValueError, match="'halved' is not a registered family"):
        unregister_schedule("halved")
    with pytest.raises(ValueError, match="'cosine' is a built-in family; it cannot be removed"):
        unregister_schedule("cosine")
