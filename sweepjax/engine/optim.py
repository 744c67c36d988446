"""Optimizer families whose every numeric hyperparameter is per-member data.

Each family is an Optax transformation built by `optax.inject_hyperparams`, so its numbers
(learning rate, momentum, betas, eps, weight decay, clipping thresholds ...) live in the
optimizer state as arrays. Under `jax.vmap` each member holds its own values and changing them
never recompiles.

Two kinds of weight decay are named apart:
  * `l2`: an L2 penalty added to the gradient before the optimizer (classic "L2 regularisation").
  * `weight_decay`: decoupled decay applied after the optimizer and scaled by the learning rate
    (AdamW, Loshchilov & Hutter 2019). `adamw` and `lion` always have it.

Gradient clipping, applied first: `clip_norm` (by global norm) and `clip_value` (elementwise).

Optional parts (`l2`, `weight_decay`, `clip_norm`, `clip_value`, momentum of `sgd` and
`rmsprop*`) are in the program only when the sweep names them: the structure is keyed by the
set of names, the values are data.

Any of a family's hyperparameters but those read only at `init` (`INIT_ONLY`) can follow a
schedule (`Optimizer.schedules`, from `Config.schedules`): one-cycle momentum, a decaying weight
decay, a rising b2. The hyperparameter's own value is the schedule's peak (or initial) value
and the family's parameters are per-member data (`sweepjax.engine.schedules.hyperparameters_at`);
which hyperparameter follows which family is structure.

The family can be a per-member choice: `Optimizer(("adam", "sgd"), ...)` holds every family's
state for every member and picks each member's update with `jax.lax.switch` on its
`optimizer` index. Under `vmap` every family's update is computed and the member's one kept,
so a mixed population costs the sum of the families' optimizer states in memory (for example
sgd + adam: 0 + 2 copies of the parameters per member) and the sum of their elementwise update
work per step; the forward and backward passes, which dominate, are shared.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sweepjax.engine.schedules import SCHEDULES

Direction = Callable[[Mapping[str, Any], frozenset, bool], optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class Family:
    """An optimizer family: its own hyperparameters with defaults, and its transforms.

    `direction` comes before the learning rate, `after` (if any) after it (Optax's RMSprop
    applies momentum to the learning-rate-scaled update); `always` names optional parts the
    family always has.
    """

    defaults: Mapping[str, float]
    direction: Direction
    always: frozenset[str] = frozenset()
    after: Direction | None = None


def _sgd_direction(hp, names, nesterov):
    if "momentum" in names or nesterov:
        return optax.trace(decay=hp["momentum"], nesterov=nesterov)
    return optax.identity()


def _rms_momentum(hp, names, nesterov):
    if "momentum" in names:
        return optax.trace(decay=hp["momentum"], nesterov=nesterov)
    return optax.identity()


_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
_RMS = {"decay": 0.9, "eps": 1e-8, "initial_scale": 0.0, "momentum": 0.0}

FAMILIES: dict[str, Family] = {
    "sgd": Family({"momentum": 0.0}, _sgd_direction),
    "momentum": Family(
        {"momentum": 0.9}, lambda hp, names, nesterov: optax.trace(decay=hp["momentum"])
    ),
    "nesterov": Family(
        {"momentum": 0.9},
        lambda hp, names, nesterov: optax.trace(decay=hp["momentum"], nesterov=True),
    ),
    "adam": Family(
        _ADAM, lambda hp, names, nesterov: optax.scale_by_adam(hp["b1"], hp["b2"], hp["eps"])
    ),
    "adamw": Family(
        {**_ADAM, "weight_decay": 1e-4},
        lambda hp, names, nesterov: optax.scale_by_adam(hp["b1"], hp["b2"], hp["eps"]),
        always=frozenset({"weight_decay"}),
    ),
    "nadam": Family(
        _ADAM,
        lambda hp, names, nesterov: optax.scale_by_adam(
            hp["b1"], hp["b2"], hp["eps"], nesterov=True
        ),
    ),
    "adamax": Family(
        _ADAM, lambda hp, names, nesterov: optax.scale_by_adamax(hp["b1"], hp["b2"], hp["eps"])
    ),
    "rmsprop": Family(
        _RMS,
        lambda hp, names, nesterov: optax.scale_by_rms(hp["decay"], hp["eps"], hp["initial_scale"]),
        after=_rms_momentum,
    ),
    "rmsprop_centered": Family(
        _RMS,
        lambda hp, names, nesterov: optax.scale_by_stddev(
            hp["decay"], hp["eps"], hp["initial_scale"]
        ),
        after=_rms_momentum,
    ),
    "adagrad": Family(
        {"initial_accumulator_value": 0.1, "eps": 1e-7},
        lambda hp, names, nesterov: optax.scale_by_rss(hp["initial_accumulator_value"], hp["eps"]),
    ),
    "adadelta": Family(
        {"rho": 0.9, "eps": 1e-6},
        lambda hp, names, nesterov: optax.scale_by_adadelta(hp["rho"], hp["eps"]),
    ),
    "lion": Family(
        {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3},
        lambda hp, names, nesterov: optax.scale_by_lion(hp["b1"], hp["b2"]),
        always=frozenset({"weight_decay"}),
    ),
}

# Hyperparameters every family takes; each adds its transform only when the sweep names it.
COMMON: dict[str, float] = {
    "learning_rate": 1e-3,
    "l2": 0.0,
    "weight_decay": 0.0,
    "clip_norm": 1.0,
    "clip_value": 1.0,
}


# Hyperparameters only `init` reads (the accumulators' starting values): a schedule of them
# would change nothing after step 0.
INIT_ONLY = frozenset({"initial_scale", "initial_accumulator_value"})


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"optimizer: unknown family {family!r}; allowed: {sorted(FAMILIES)}.")


def hyperparameter_names(family: str) -> dict[str, float]:
    """All per-member hyperparameters that optimizer `family` takes, with their defaults.

    >>> sorted(hyperparameter_names("sgd"))
    ['clip_norm', 'clip_value', 'l2', 'learning_rate', 'momentum', 'weight_decay']
    """
    _check_family(family)
    return {**COMMON, **FAMILIES[family].defaults}


def schedulable(families: Sequence[str]) -> list[str]:
    """The hyperparameters of optimizer `families` that may follow a schedule, sorted.

    Not `learning_rate` (`Config.schedule` schedules it) nor those only `init` reads.

    >>> schedulable(["adamw"])
    ['b1', 'b2', 'clip_norm', 'clip_value', 'eps', 'l2', 'weight_decay']
    """
    names = {name for family in families for name in hyperparameter_names(family)}
    return sorted(names - INIT_ONLY - {"learning_rate"})


def check_schedules(schedules: Mapping[str, Any], families: Sequence[str]) -> None:
    """Raise `ValueError` naming `schedules.<name>`, its value and what is allowed, unless every
    entry maps a hyperparameter of `families` that may follow a schedule to a schedule family.

    >>> check_schedules({"b1": "cosine"}, ["sgd"])
    Traceback (most recent call last):
    ...
    ValueError: schedules.b1: 'cosine' schedules a hyperparameter optimizer ['sgd'] does not take; allowed: ['clip_norm', 'clip_value', 'l2', 'momentum', 'weight_decay'].
    """
    allowed = schedulable(families)
    for name, family in schedules.items():
        where = f"schedules.{name}: {family!r}"
        if name == "learning_rate":
            raise ValueError(
                f"{where}: the learning rate's schedule is the config's `schedule` key; allowed "
                f"here: {allowed}."
            )
        if name not in allowed:
            raise ValueError(
                f"{where} schedules a hyperparameter optimizer {list(families)} does not take; "
                f"allowed: {allowed}."
            )
        if not isinstance(family, str) or family not in SCHEDULES:
            raise ValueError(f"{where} is not a schedule family; allowed: {sorted(SCHEDULES)}.")


def _switch(index: jax.Array, transforms: Sequence[optax.GradientTransformation]):
    """One member's choice among `transforms` by `index`; every transform's state is kept."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        def branch(k):
            def run(operands):
                updates, state, params = operands
                new_updates, new_inner = transforms[k].update(updates, state[k], params)
                return new_updates, (*state[:k], new_inner, *state[k + 1 :])

            return run

        branches = [branch(k) for k in range(len(transforms))]
        return jax.lax.switch(index, branches, (updates, state, params))

    return optax.GradientTransformation(init, update)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The static structure of an optimizer: family (or families), which names are set, nesterov,
    and which hyperparameters follow which schedule family.

    `init(params, hp)` and `update(grads, state, params)` are the per-member pure functions;
    `set_hyperparameters(state, hp, lr)` writes the member's values and this step's scheduled
    learning rate into the state.
    With a tuple of families, `hp["optimizer"]` is the member's index into it.
    `schedules` holds sorted `(hyperparameter, schedule family)` pairs; the step's values come
    from `sweepjax.engine.schedules.hyperparameters_at(opt.schedules, step, hp)`. A scheduled
    hyperparameter's part is in the program, as if `names` held it.

    >>> opt = Optimizer("adam", frozenset({"learning_rate"}))
    >>> params = {"w": jnp.ones(3)}
    >>> state = opt.init(params, {"learning_rate": jnp.float32(0.1)})
    >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)
    >>> updates["w"].round(6)
    Array([-0.1, -0.1, -0.1], dtype=float32)
    """

    family: str | tuple[str, ...]
    names: frozenset[str]
    nesterov: bool = False
    schedules: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        for family in self.families:
            _check_family(family)
        check_schedules(dict(self.schedules), self.families)
        object.__setattr__(self, "schedules", tuple(sorted(self.schedules)))
        object.__setattr__(self, "names", self.names | {name for name, _ in self.schedules})

    @property
    def families(self) -> tuple[str, ...]:
        return (self.family,) if isinstance(self.family, str) else tuple(self.family)

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The union of the families' hyperparameters (the first family's default wins)."""
        out: dict[str, float] = {}
        for family in reversed(self.families):
            out.update(hyperparameter_names(family))
        if len(self.families) > 1:
            out["optimizer"] = 0
        return out

    def _chain(self, family_name: str, hp: Mapping[str, Any]) -> optax.GradientTransformation:
        family = FAMILIES[family_name]
        names = self.names | family.always
        parts = [family.direction(hp, names, self.nesterov)]
        if "weight_decay" in names:
            parts.append(optax.add_decayed_weights(hp["weight_decay"]))
        parts.append(optax.scale_by_learning_rate(hp["learning_rate"]))
        if family.after is not None:
            parts.append(family.after(hp, names, self.nesterov))
        return optax.chain(*parts)

    def _factory(self) -> Callable[..., optax.GradientTransformation]:
        def build(**hp):
            parts = []
            if "clip_norm" in self.names:
                parts.append(optax.clip_by_global_norm(hp["clip_norm"]))
            if "clip_value" in self.names:
                parts.append(optax.clip(hp["clip_value"]))
            if "l2" in self.names:
                parts.append(optax.add_decayed_weights(hp["l2"]))
            if len(self.families) == 1:
                parts.append(self._chain(self.families[0], hp))
            else:
                chains = [self._chain(f, hp) for f in self.families]
                parts.append(_switch(hp["optimizer"], chains))
            return optax.chain(*parts)

        # inject_hyperparams finds the hyperparameters in the factory's signature.
        build.__signature__ = inspect.Signature(
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in self.hyperparameters]
        )
        return optax.inject_hyperparams(build)

    def _values(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        values = {k: hp.get(k, default) for k, default in self.hyperparameters.items()}
        if "optimizer" in values:
            values["optimizer"] = jnp.asarray(values["optimizer"], jnp.int32)
        return values

    def init(self, params: Any, hp: Mapping[str, Any]) -> Any:
        return self._factory()(**self._values(hp)).init(params)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        # Numeric hyperparameters are read from `state.hyperparams`; the values given to the
        # factory here are placeholders that never reach the update.
        return self._factory()(**self.hyperparameters).update(grads, state, params)

    def set_hyperparameters(
        self, state: Any, hp: Mapping[str, Any], learning_rate: jax.Array
    ) -> Any:
        """`state` with every injected hyperparameter written from the member's values `hp`
        (defaults where `hp` has none) and the learning rate from this step's schedule.

        The state's copy is the one the update reads; writing it every step makes `hp` the one
        source of truth, so a member's values changed between chunks take effect.
        """
        values = {**self._values(hp), "learning_rate": learning_rate}
        hyperparams = {k: jnp.asarray(values[k], v.dtype) for k, v in state.hyperparams.items()}
        return state._replace(hyperparams=hyperparams)
