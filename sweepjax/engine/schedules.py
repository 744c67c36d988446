"""Schedules whose every parameter is a traced per-member value.

A schedule is a pure scalar function `fn(step, hp) -> learning rate`, where `hp` maps parameter
names to (traced) scalars; `learning_rate` is the peak (or initial) value. Because the
parameters, the integer-looking ones included (`decay_steps`, `warmup_steps`, `T_0`,
`boundary_*`), are data, sweeping them compiles once.

Any other optimizer hyperparameter (momentum, b1, weight_decay, ...) can follow a family too
(`Config.schedules`, `hyperparameters_at`): its own value takes the place of `learning_rate`,
and the family's parameters are the member's `<hyperparameter>.<parameter>` values, e.g.
`momentum.decay_steps`, data like every other.

The family itself can be per-member data too: `learning_rate_at(("cosine", "sgdr"), step, hp)`
picks member by member with `hp["schedule"]`, an index into the families, through
`jax.lax.switch` (under `vmap` every family is evaluated and the member's one selected; a
schedule is a handful of scalar operations, so this costs nothing next to a train step).

Every family also takes `warmup_steps` (default 0): a linear ramp from 0 to the schedule's value
at its start, put in front of the schedule (the schedule starts after the warmup). The families
with a warmup of their own (`warmup_cosine`) count it inside `decay_steps`, as Optax does.

Users add a family (the "lambda" schedule) with `register_schedule(name, fn, defaults)` to the
process's registry `SCHEDULES`, and remove it with `unregister_schedule(name)`. A sweep folder
records where such a family came from, so that `resume` and `report` import it again
(`sweepjax.sweep.code_record`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# The piecewise constant family has this many (boundary, scale) pairs; unused ones keep scale 1.
PIECES = 3
# Columns that index families or seed members; they stay integers on the device.
INDEX_COLUMNS = ("seed", "schedule", "optimizer")
_NOISE_SALT = 0x5C4ED  # separates the schedule-noise stream from the member's init stream


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A schedule family: `fn(step, hp)` and its parameters' defaults given the run length.

    `own_warmup` is True for a family that handles `warmup_steps` itself. A user's family
    keeps what `register_schedule` was given (`given_defaults`) and the module whose top level
    registered it (`registered_in`), which a sweep folder records to import it again.
    """

    fn: Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]
    defaults: Callable[[int], dict[str, float]]
    own_warmup: bool = False
    given_defaults: Any = None
    registered_in: str | None = None


def _safe(x):
    return jnp.maximum(x, 1e-12)


def _constant(step, hp):
    return hp["learning_rate"] * jnp.ones_like(step)


def _piecewise_constant(step, hp):
    lr = hp["learning_rate"]
    for i in range(PIECES):
        lr = jnp.where(step >= hp[f"boundary_{i}"], lr * hp[f"scale_{i}"], lr)
    return lr


def _exponent(step, hp):
    p = step / _safe(hp["decay_steps"])
    return jnp.where(hp["staircase"] > 0.5, jnp.floor(p), p)


def _exponential(step, hp):
    return hp["learning_rate"] * jnp.power(hp["decay_rate"], _exponent(step, hp))


def _natural_exp(step, hp):
    return hp["learning_rate"] * jnp.exp(-hp["decay_rate"] * _exponent(step, hp))


def _inverse_time(step, hp):
    return hp["learning_rate"] / (1.0 + hp["decay_rate"] * _exponent(step, hp))


def _polynomial(step, hp):
    decay_steps = _safe(hp["decay_steps"])
    # cycle: stretch decay_steps to the first multiple of itself at or beyond the step.
    cycles = jnp.ceil(step / decay_steps)
    # A division may land just above a whole number (GPUs divide approximately); the products
    # of whole numbers are exact, so step back one cycle where the previous one already fits.
    cycles = jnp.where((cycles - 1.0) * decay_steps >= step, cycles - 1.0, cycles)
    cycled = decay_steps * jnp.maximum(cycles, 1.0)
    decay_steps = jnp.where(hp["cycle"] > 0.5, cycled, decay_steps)
    frac = 1.0 - jnp.clip(step, 0.0, decay_steps) / decay_steps
    end = hp["end_learning_rate"]
    return (hp["learning_rate"] - end) * frac ** hp["power"] + end


def _linear(step, hp):
    return _polynomial(step, {**hp, "power": 1.0, "cycle": 0.0})


def _cosine(step, hp):
    progress = jnp.minimum(step, hp["decay_steps"]) / _safe(hp["decay_steps"])
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return hp["learning_rate"] * ((1.0 - hp["alpha"]) * cosine + hp["alpha"])


def _linear_cosine_parts(step, hp):
    decay_steps = _safe(hp["decay_steps"])
    t = jnp.minimum(step, decay_steps)
    linear = (decay_steps - t) / decay_steps
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * 2.0 * hp["num_periods"] * t / decay_steps))
    return t, linear, cosine


def _linear_cosine(step, hp):
    _, linear, cosine = _linear_cosine_parts(step, hp)
    return hp["learning_rate"] * ((hp["alpha"] + linear) * cosine + hp["beta"])


def schedule_noise(seed: jax.Array, step: jax.Array) -> jax.Array:
    """The standard normal draw of member `seed` at `step` used by `noisy_linear_cosine`.

    >>> bool(schedule_noise(3, 7) == schedule_noise(3, 7))
    True
    """
    key = jax.random.fold_in(jax.random.key(jnp.asarray(seed, jnp.uint32)), _NOISE_SALT)
    return jax.random.normal(jax.random.fold_in(key, jnp.asarray(step, jnp.int32)))


def _noisy_linear_cosine(step, hp):
    t, linear, cosine = _linear_cosine_parts(step, hp)
    std = jnp.sqrt(hp["initial_variance"] / (1.0 + t) ** hp["variance_decay"])
    noisy = linear + std * schedule_noise(hp.get("seed", 0), step)
    # TF's formula can turn negative under large noise; a negative step size never helps.
    return jnp.maximum(hp["learning_rate"] * ((hp["alpha"] + noisy) * cosine + hp["beta"]), 0.0)


def _cyclic(step, hp):
    half = _safe(hp["step_size"])
    cycle = jnp.floor(1.0 + step / (2.0 * half))
    x = jnp.abs(step / half - 2.0 * cycle + 1.0)
    amplitude = (hp["learning_rate"] - hp["min_learning_rate"]) * (
        hp["cycle_decay"] ** (cycle - 1.0) * hp["gamma"] ** step
    )
    return hp["min_learning_rate"] + amplitude * jnp.maximum(0.0, 1.0 - x)


def sgdr_cycle(step: jax.Array, t_0: jax.Array, t_mult: jax.Array) -> tuple[jax.Array, ...]:
    """SGDR's restart index m, the cycle's start and its length `T_0 * T_mult**m` at `step`.

    >>> [int(v) for v in sgdr_cycle(25.0, 10.0, 2.0)]
    [1, 10, 20]
    """
    step, t_0, t_mult = (jnp.asarray(v, jnp.float32) for v in (step, t_0, t_mult))
    t_0 = _safe(t_0)
    geometric = t_mult > 1.0 + 1e-6
    ratio = jnp.where(geometric, t_mult, 2.0)

    def start(m):
        return jnp.where(geometric, t_0 * (ratio**m - 1.0) / (ratio - 1.0), t_0 * m)

    guess = jnp.where(geometric, jnp.log1p(step * (ratio - 1.0) / t_0) / jnp.log(ratio), step / t_0)
    m = jnp.maximum(jnp.floor(guess), 0.0)
    # Correct float rounding at the restart boundaries: start(m) <= step < start(m + 1).
    m = jnp.where(step >= start(m + 1.0), m + 1.0, m)
    m = jnp.where((step < start(m)) & (m > 0), m - 1.0, m)
    return m, start(m), t_0 * jnp.where(geometric, ratio, 1.0) ** m


def _sgdr(step, hp):
    m, begin, length = sgdr_cycle(step, hp["T_0"], hp["T_mult"])
    peak = hp["learning_rate"] * hp["restart_decay"] ** m
    low = hp["min_learning_rate"]
    return low + (peak - low) * 0.5 * (1.0 + jnp.cos(jnp.pi * (step - begin) / length))


def _warmup_cosine(step, hp):
    warmup = hp["warmup_steps"]
    ramp = hp["learning_rate"] * step / _safe(warmup)
    decay = _cosine(step - warmup, {**hp, "decay_steps": hp["decay_steps"] - warmup})
    return jnp.where(step < warmup, ramp, decay)


def _one_cycle(step, hp):
    total, peak, div = hp["decay_steps"], hp["learning_rate"], hp["div_factor"]
    bounds = [0.0, jnp.floor(hp["pct_start"] * total), jnp.floor(hp["pct_final"] * total), total]
    values = [peak / div, peak, peak / div, peak / (div * hp["final_div_factor"])]
    out = jnp.where(step >= total, values[-1], 0.0)
    for i in range(3):
        lo, hi = bounds[i], bounds[i + 1]
        pct = (step - lo) / jnp.maximum(hi - lo, 1.0)
        inside = (lo <= step) & (step < hi)
        out = out + jnp.where(inside, values[i] + (values[i + 1] - values[i]) * pct, 0.0)
    return out


def _piecewise_defaults(steps: int) -> dict[str, float]:
    boundaries = [steps // 2, (3 * steps) // 4, steps]
    scales = [0.1, 0.1, 1.0]
    return {
        **{f"boundary_{i}": b for i, b in enumerate(boundaries)},
        **{f"scale_{i}": s for i, s in enumerate(scales)},
    }


def _staircase(decay_rate):
    return lambda steps: {"decay_steps": steps, "decay_rate": decay_rate, "staircase": 0.0}


SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(_constant, lambda steps: {}),
    "piecewise_constant": Schedule(_piecewise_constant, _piecewise_defaults),
    "exponential": Schedule(_exponential, _staircase(0.1)),
    "natural_exp": Schedule(_natural_exp, _staircase(2.3)),
    "inverse_time": Schedule(_inverse_time, _staircase(9.0)),
    "polynomial": Schedule(
        _polynomial,
        lambda steps: {"decay_steps": steps, "end_learning_rate": 0.0, "power": 2.0, "cycle": 0.0},
    ),
    "linear": Schedule(_linear, lambda steps: {"decay_steps": steps, "end_learning_rate": 0.0}),
    "cosine": Schedule(_cosine, lambda steps: {"decay_steps": steps, "alpha": 0.0}),
    "linear_cosine": Schedule(
        _linear_cosine,
        lambda steps: {"decay_steps": steps, "num_periods": 0.5, "alpha": 0.0, "beta": 0.001},
    ),
    "noisy_linear_cosine": Schedule(
        _noisy_linear_cosine,
        lambda steps: {
            "decay_steps": steps,
            "num_periods": 0.5,
            "alpha": 0.0,
            "beta": 0.001,
            "initial_variance": 1.0,
            "variance_decay": 0.55,
        },
    ),
    "cyclic": Schedule(
        _cyclic,
        lambda steps: {
            "step_size": max(steps // 8, 1),
            "min_learning_rate": 0.0,
            "cycle_decay": 1.0,
            "gamma": 1.0,
        },
    ),
    "sgdr": Schedule(
        _sgdr,
        lambda steps: {
            "T_0": max(steps // 7, 1),
            "T_mult": 2.0,
            "restart_decay": 1.0,
            "min_learning_rate": 0.0,
        },
    ),
    "warmup_cosine": Schedule(
        _warmup_cosine,
        lambda steps: {"warmup_steps": max(steps // 20, 1), "decay_steps": steps, "alpha": 0.0},
        own_warmup=True,
    ),
    "one_cycle": Schedule(
        _one_cycle,
        lambda steps: {
            "decay_steps": steps,
            "pct_start": 0.3,
            "pct_final": 0.85,
            "div_factor": 25.0,
            "final_div_factor": 1e4,
        },
    ),
}
BUILTIN_SCHEDULES = tuple(SCHEDULES)


def register_schedule(
    name: str,
    fn: Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array],
    defaults: Mapping[str, float] | Callable[[int], Mapping[str, float]] | None = None,
) -> None:
    """Add a user schedule family (the "lambda" schedule): `fn(step, hp)` of traced scalars.

    Args:
      name: the family's name, as `Config.schedule` or a `Choice` in the space gives it.
      fn: the learning rate at float32 `step` for one member's parameters `hp` (a mapping of
        scalars, `learning_rate` and the names in `defaults` included). Use `jnp`, not Python
        control flow on the values: they are traced.
      defaults: the family's own parameters and their defaults (or a function of the run length
        returning them). Each one becomes a sweepable per-member value.

    >>> register_schedule("halving", lambda step, hp: hp["learning_rate"] * 0.5 ** (step / hp["half_life"]),
    ...                   {"half_life": 100.0})
    >>> float(learning_rate_at("halving", 200, {"learning_rate": 1.0, "half_life": 100.0}))
    0.25
    >>> unregister_schedule("halving")
    """
    if name in SCHEDULES:
        raise ValueError(f"schedule: {name!r} is already a family; choose another name.")
    if not callable(fn):
        raise ValueError(f"schedule: {name!r} needs a function fn(step, hp); got {fn!r}.")
    table = defaults if callable(defaults) else (lambda steps, d=dict(defaults or {}): dict(d))
    given = defaults if callable(defaults) or defaults is None else dict(defaults)
    SCHEDULES[name] = Schedule(fn, table, given_defaults=given, registered_in=_caller_module())


def _caller_module() -> str | None:
    """The module whose top level called `register_schedule` (importing it registers again)."""
    frame = sys._getframe(2)
    if frame.f_code.co_name != "<module>":
        return None
    return frame.f_globals.get("__name__")


def unregister_schedule(name: str) -> None:
    """Remove a family `register_schedule` added, leaving the process's registry as it was.

    Programs compiled with the family stay cached under its name: a changed function takes a
    new name.

    >>> register_schedule("flat", lambda step, hp: hp["learning_rate"])
    >>> unregister_schedule("flat")
    >>> "flat" in SCHEDULES
    False
    """
    if name in BUILTIN_SCHEDULES:
        raise ValueError(f"schedule: {name!r} is a built-in family; it cannot be removed.")
    if name not in SCHEDULES:
        raise ValueError(f"schedule: {name!r} is not a registered family.")
    del SCHEDULES[name]


def schedule_parameters(family: str, steps: int) -> dict[str, float]:
    """The parameters of schedule `family` (besides `learning_rate`) and their defaults.

    >>> schedule_parameters("cosine", 1000)
    {'warmup_steps': 0, 'decay_steps': 1000, 'alpha': 0.0}
    """
    if family not in SCHEDULES:
        raise ValueError(f"schedule: unknown family {family!r}; allowed: {sorted(SCHEDULES)}.")
    return {"warmup_steps": 0, **SCHEDULES[family].defaults(steps)}


def _one(family: str, step: jax.Array, hp: Mapping[str, jax.Array]) -> jax.Array:
    schedule = SCHEDULES[family]
    if schedule.own_warmup or "warmup_steps" not in hp:
        return schedule.fn(step, hp)
    warmup = hp["warmup_steps"]
    after = schedule.fn(jnp.maximum(step - warmup, 0.0), hp)
    start = schedule.fn(jnp.zeros_like(step), hp)
    return jnp.where(step < warmup, start * step / _safe(warmup), after)


def learning_rate_at(
    family: str | Sequence[str], step: jax.Array, hp: Mapping[str, Any]
) -> jax.Array:
    """The learning rate at `step` for one member's parameters `hp`.

    Args:
      family: a schedule family, or a tuple of families; then `hp["schedule"]` is the member's
        index into it (a per-member choice, one compiled program for all).
      step: the step (any number; traced is fine).
      hp: the member's parameters: `learning_rate` and the family's parameters.

    Returns:
      A float32 scalar.

    >>> hp = {"learning_rate": 1.0, "decay_steps": 100, "alpha": 0.0}
    >>> round(float(learning_rate_at("cosine", 50, hp)), 6)
    0.5
    >>> hp = {**hp, "schedule": 1}
    >>> float(learning_rate_at(("cosine", "constant"), 50, hp))
    1.0
    """
    step = jnp.asarray(step, jnp.float32)
    values = {
        k: jnp.asarray(v, jnp.int32 if k in INDEX_COLUMNS else jnp.float32) for k, v in hp.items()
    }
    families = (family,) if isinstance(family, str) else tuple(family)
    for name in families:
        if name not in SCHEDULES:
            raise ValueError(f"schedule: unknown family {name!r}; allowed: {sorted(SCHEDULES)}.")
    if len(families) == 1:
        return jnp.asarray(_one(families[0], step, values), jnp.float32)
    branches = [
        lambda s, v, name=name: jnp.asarray(_one(name, s, v), jnp.float32) for name in families
    ]
    return jax.lax.switch(values["schedule"], branches, step, values)


def hyperparameters_at(
    schedules: Sequence[tuple[str, str]], step: jax.Array, hp: Mapping[str, Any]
) -> dict[str, jax.Array]:
    """The scheduled optimizer hyperparameters at `step`, for one member's values `hp`.

    Each `(name, family)` follows `family` with `hp[name]` as its peak (or initial) value, the
    place `learning_rate` takes in a learning-rate schedule, and `hp["<name>.<parameter>"]` as
    the family's parameters (all of them present: `schedule_parameters` gives the defaults).

    A momentum falling from 0.95 to 0.85 and back over 100 steps, one-cycle style, is the
    `cyclic` family with its minimum above its value:

    >>> hp = {"momentum": 0.85, "momentum.min_learning_rate": 0.95, "momentum.step_size": 50,
    ...       "momentum.cycle_decay": 1.0, "momentum.gamma": 1.0, "momentum.warmup_steps": 0}
    >>> [round(float(hyperparameters_at([("momentum", "cyclic")], t, hp)["momentum"]), 6)
    ...  for t in (0, 50, 100)]
    [0.95, 0.85, 0.95]
    """
    out = {}
    for name, family in schedules:
        prefix = f"{name}."
        own = {k.removeprefix(prefix): v for k, v in hp.items() if k.startswith(prefix)}
        seed = {"seed": hp["seed"]} if "seed" in hp else {}  # the member's noise stream
        out[name] = learning_rate_at(family, step, {**seed, **own, "learning_rate": hp[name]})
    return out
