"""Learning-rate schedules whose every parameter is a traced per-member value.

A schedule is a pure scalar function `fn(step, hp) -> learning rate`, where `hp` maps parameter
names to (traced) scalars; `learning_rate` is the peak. Because the parameters, the integer-looking
ones included (`decay_steps`, `warmup_steps`), are data, sweeping them compiles once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A schedule family: `fn(step, hp)` and its parameters' defaults given the run length."""

    fn: Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]
    defaults: Callable[[int], dict[str, float]]


def _constant(step, hp):
    return hp["learning_rate"] * jnp.ones_like(jnp.asarray(step, jnp.float32))


def _cosine(step, hp):
    progress = jnp.clip(step / jnp.maximum(hp["decay_steps"], 1), 0.0, 1.0)
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return hp["learning_rate"] * ((1.0 - hp["alpha"]) * cosine + hp["alpha"])


def _warmup_cosine(step, hp):
    warmup = hp["warmup_steps"]
    ramp = hp["learning_rate"] * step / jnp.maximum(warmup, 1)
    decay = _cosine(step - warmup, {**hp, "decay_steps": hp["decay_steps"] - warmup})
    return jnp.where(step < warmup, ramp, decay)


SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(_constant, lambda steps: {}),
    "cosine": Schedule(_cosine, lambda steps: {"decay_steps": steps, "alpha": 0.0}),
    "warmup_cosine": Schedule(
        _warmup_cosine, lambda steps: {"warmup_steps": 0, "decay_steps": steps, "alpha": 0.0}
    ),
}


def schedule_parameters(family: str, steps: int) -> dict[str, float]:
    """The parameters of schedule `family` (besides `learning_rate`) and their defaults.

    >>> schedule_parameters("cosine", 1000)
    {'decay_steps': 1000, 'alpha': 0.0}
    """
    if family not in SCHEDULES:
        raise ValueError(f"schedule: unknown family {family!r}; allowed: {sorted(SCHEDULES)}.")
    return SCHEDULES[family].defaults(steps)


def learning_rate_at(family: str, step: jax.Array, hp: Mapping[str, Any]) -> jax.Array:
    """The learning rate of schedule `family` at `step` for one member's parameters `hp`.

    >>> hp = {"learning_rate": 1.0, "decay_steps": 100, "alpha": 0.0}
    >>> round(float(learning_rate_at("cosine", 50, hp)), 6)
    0.5
    """
    step = jnp.asarray(step, jnp.float32)
    return SCHEDULES[family].fn(step, {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()})
