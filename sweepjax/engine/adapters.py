"""The adapter that reduces any Flax module to two pure functions, a `Model`:

    init(key, x) -> variables            # {"params": ..., plus mutable collections}
    apply(variables, x, train, rng) -> (logits, updated non-parameter collections)

Both are pure, so the population engine can `vmap` them over members. `adapt` accepts a
`flax.linen.Module` instance, a `flax.nnx.Module` instance, or an nnx class (or any callable
taking `rngs=` and returning a module); `sweepjax.engine.models.as_model` is the public entry.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from sweepjax.engine.user_code import describe_failure

# Adapters kept for reuse: as many as the compiled-program caches keep programs
# (`sweepjax.engine.population.make_train_chunk`), which hold their models anyway.
CACHED_ADAPTERS = 64


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A Flax model as two pure functions (see the module docstring).

    Compared and hashed by identity: one `Model` keys one compiled program.
    """

    init: Callable[[jax.Array, jax.Array], dict[str, Any]]
    apply: Callable[..., tuple[jax.Array, dict[str, Any]]]
    module: Any = None
    takes_dropout: bool = False  # `apply(..., dropout_rate=r)` reaches the module's dropout

    def apply_fresh(self, x: jax.Array, seed: int = 0) -> tuple[jax.Array, dict[str, Any]]:
        """Initialise from `seed` and apply to x in eval mode (for quick checks)."""
        variables = self.init(jax.random.key(seed), x)
        return self.apply(variables, x, train=False, rng=jax.random.key(seed))


@dataclasses.dataclass(frozen=True, eq=False)
class _Same:
    """An unhashable module as a cache key, by identity. The key holds the module, so its
    `id` cannot pass to another object while the key is cached."""

    module: Any

    def __hash__(self) -> int:
        return id(self.module)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.module is self.module


def adapt(module: Any) -> Model | None:
    """The `Model` of a Flax module, or None when `module` is none.

    An equal module (linen modules compare by their fields), or the same object when it is
    unhashable, gives back the same `Model` while it is among the `CACHED_ADAPTERS` last
    used, so repeated sweeps reuse compiled programs.

    >>> adapt(nn.Dense(3)) is adapt(nn.Dense(3)), adapt(42)
    (True, None)
    """
    if not (isinstance(module, nn.Module | nnx.Module) or callable(module)):
        return None
    try:
        hash(module)
    except TypeError:
        return _cached(_Same(module))
    return _cached(module)


@functools.lru_cache(maxsize=CACHED_ADAPTERS)
def _cached(key: Any) -> Model:
    module = key.module if isinstance(key, _Same) else key
    if isinstance(module, nn.Module):
        return _from_linen(module)
    if isinstance(module, nnx.Module):
        return _from_nnx_instance(module)
    return _from_nnx_constructor(module)


def _takes(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _from_linen(module: nn.Module) -> Model:
    takes_train = _takes(module.__call__, "train")
    takes_dropout = _takes(module.__call__, "dropout_rate")

    def call_kwargs(train: bool, dropout_rate=None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"train": train} if takes_train else {}
        if dropout_rate is not None and takes_dropout:
            kwargs["dropout_rate"] = dropout_rate
        return kwargs

    def init(key: jax.Array, x: jax.Array) -> dict[str, Any]:
        params_key, dropout_key = jax.random.split(key)
        variables = module.init(
            {"params": params_key, "dropout": dropout_key}, x, **call_kwargs(False)
        )
        return dict(variables)

    def apply(variables, x, train: bool, rng: jax.Array, dropout_rate=None):
        rngs = {"dropout": rng}
        if not train:
            return module.apply(variables, x, rngs=rngs, **call_kwargs(False)), {}
        mutable = [k for k in variables if k != "params"]
        logits, updates = module.apply(
            variables, x, rngs=rngs, mutable=mutable, **call_kwargs(True, dropout_rate)
        )
        return logits, dict(updates)

    return Model(init=init, apply=apply, module=module, takes_dropout=takes_dropout)


def _nnx_model(graphdef: Any, make_state: Callable[[jax.Array], Any], module: Any) -> Model:
    def init(key: jax.Array, x: jax.Array) -> dict[str, Any]:
        params, rest = make_state(key)
        return {"params": params, "state": rest}

    def apply(variables, x, train: bool, rng: jax.Array, dropout_rate=None):
        net = nnx.merge(graphdef, variables["params"], variables["state"])
        logits = net(x)
        _, _, rest = nnx.split(net, nnx.Param, ...)
        return logits, ({"state": rest} if train else {})

    return Model(init=init, apply=apply, module=module)


def _from_nnx_constructor(constructor: Callable[..., nnx.Module]) -> Model:
    try:
        abstract = nnx.eval_shape(lambda: constructor(rngs=nnx.Rngs(0)))
    except Exception as err:  # the user's __init__ failing is the user's error
        raise ValueError(f"model: {describe_failure(constructor, err)}") from err
    graphdef, _, _ = nnx.split(abstract, nnx.Param, ...)

    def make_state(key: jax.Array):
        _, params, rest = nnx.split(constructor(rngs=nnx.Rngs(key)), nnx.Param, ...)
        return params, rest

    return _nnx_model(graphdef, make_state, constructor)


def _from_nnx_instance(module: nnx.Module) -> Model:
    """Every member starts from the instance's own parameters (its seed does not re-initialise)."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    return _nnx_model(graphdef, lambda key: (params, rest), module)
