"""Optimizer families whose every numeric hyperparameter is per-member data.

Each family is an Optax transformation built by `optax.inject_hyperparams`, so its numbers
(learning rate, momentum, betas, eps, weight decay ...) live in the optimizer state as arrays.
Under `jax.vmap` each member holds its own values and changing them never recompiles.

Two kinds of weight decay are named apart:
  * `l2`: an L2 penalty added to the gradient before the optimizer (classic "L2 regularisation").
  * `weight_decay`: decoupled decay applied after the optimizer and scaled by the learning rate
    (AdamW, Loshchilov & Hutter 2019).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Family:
    """An optimizer family: its own hyperparameters with defaults, and its direction."""

    defaults: Mapping[str, float]
    direction: Callable[..., optax.GradientTransformation]
    always: frozenset[str] = frozenset()


def _sgd_direction(hp: Mapping[str, Any], names: frozenset[str], nesterov: bool):
    if "momentum" in names or nesterov:
        return optax.trace(decay=hp["momentum"], nesterov=nesterov)
    return optax.identity()


FAMILIES: dict[str, Family] = {
    "sgd": Family({"momentum": 0.0}, _sgd_direction),
    "adam": Family(
        {"b1": 0.9, "b2": 0.999, "eps": 1e-8},
        lambda hp, names, nesterov: optax.scale_by_adam(hp["b1"], hp["b2"], hp["eps"]),
    ),
    "adamw": Family(
        {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
        lambda hp, names, nesterov: optax.scale_by_adam(hp["b1"], hp["b2"], hp["eps"]),
        always=frozenset({"weight_decay"}),
    ),
}

# Hyperparameters every family takes; each adds its transform only when the sweep names it.
COMMON: dict[str, float] = {"learning_rate": 1e-3, "l2": 0.0, "weight_decay": 0.0}


def hyperparameter_names(family: str) -> dict[str, float]:
    """All per-member hyperparameters that optimizer `family` takes, with their defaults.

    >>> sorted(hyperparameter_names("sgd"))
    ['l2', 'learning_rate', 'momentum', 'weight_decay']
    """
    if family not in FAMILIES:
        raise ValueError(f"optimizer: unknown family {family!r}; allowed: {sorted(FAMILIES)}.")
    return {**COMMON, **FAMILIES[family].defaults}


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The static structure of an optimizer: family, which hyperparameters are set, nesterov.

    `init(params, hp)` and `update(grads, state, params)` are the per-member pure functions;
    `set_learning_rate(state, lr)` writes this step's scheduled learning rate into the state.

    >>> opt = Optimizer("adam", frozenset({"learning_rate"}))
    >>> params = {"w": jnp.ones(3)}
    >>> state = opt.init(params, {"learning_rate": jnp.float32(0.1)})
    >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)
    >>> updates["w"]
    Array([-0.1, -0.1, -0.1], dtype=float32)
    """

    family: str
    names: frozenset[str]
    nesterov: bool = False

    def __post_init__(self):
        hyperparameter_names(self.family)

    @property
    def hyperparameters(self) -> dict[str, float]:
        return hyperparameter_names(self.family)

    def _factory(self) -> Callable[..., optax.GradientTransformation]:
        family = FAMILIES[self.family]
        names = self.names | family.always

        def build(**hp):
            parts = []
            if "l2" in names:
                parts.append(optax.add_decayed_weights(hp["l2"]))
            parts.append(family.direction(hp, names, self.nesterov))
            if "weight_decay" in names:
                parts.append(optax.add_decayed_weights(hp["weight_decay"]))
            parts.append(optax.scale_by_learning_rate(hp["learning_rate"]))
            return optax.chain(*parts)

        # inject_hyperparams finds the hyperparameters in the factory's signature.
        build.__signature__ = inspect.Signature(
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in self.hyperparameters]
        )
        return optax.inject_hyperparams(build)

    def _values(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        return {k: hp.get(k, default) for k, default in self.hyperparameters.items()}

    def init(self, params: Any, hp: Mapping[str, Any]) -> Any:
        return self._factory()(**self._values(hp)).init(params)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        # Numeric hyperparameters are read from `state.hyperparams`; the values given to the
        # factory here are placeholders that never reach the update.
        return self._factory()(**self.hyperparameters).update(grads, state, params)

    @staticmethod
    def set_learning_rate(state: Any, learning_rate: jax.Array) -> Any:
        hyperparams = dict(state.hyperparams)
        hyperparams["learning_rate"] = jnp.asarray(
            learning_rate, hyperparams["learning_rate"].dtype
        )
        return state._replace(hyperparams=hyperparams)
