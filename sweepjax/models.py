"""Built-in Flax models, and the adapter that reduces any Flax module to two pure functions.

`as_model(module)` accepts a `flax.linen.Module`, a `flax.nnx.Module` subclass (or any callable
taking `rngs=` and returning one) and returns a `Model(init, apply)`:

    init(key, x) -> variables            # {"params": ..., plus mutable collections}
    apply(variables, x, train, rng) -> (logits, updated non-parameter collections)

Both are pure, so the population engine can `vmap` them over members.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
}


def _activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation: unknown {name!r}; allowed: {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """A multi-layer perceptron on flattened inputs.

    >>> logits, _ = as_model(MLP(hidden=(8,))).apply_fresh(jnp.zeros((2, 40)))
    >>> logits.shape
    (2, 10)
    """

    hidden: Sequence[int] = (100, 100)
    activation: str = "relu"
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class PatchConv(nn.Module):
    """A convolution computed as patches times a matrix, with `nn.Conv`'s parameters and result.

    Under `vmap` over members with per-member kernels, XLA lowers `nn.Conv` to a grouped
    convolution that runs an order of magnitude slower on CPUs than the equivalent batched
    matrix product this layer produces. The parameters (`kernel` of shape
    `(*window, in_features, features)` and `bias`) are laid out exactly as `nn.Conv`'s.

    >>> layer = PatchConv(4, (3,), strides=(2,), padding=1)
    >>> variables = layer.init(jax.random.key(0), jnp.ones((2, 9, 1)))
    >>> layer.apply(variables, jnp.ones((2, 9, 1))).shape
    (2, 5, 4)
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] | None = None
    padding: int | str = 0
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        window = tuple(self.kernel_size)
        strides = tuple(self.strides or (1,) * len(window))
        kernel = self.param("kernel", self.kernel_init, (*window, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x = jnp.pad(x, [(0, 0), *self._pads(x.shape[1:-1], window, strides), (0, 0)])
        sizes = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:-1], window, strides, strict=True)]
        patches = []
        for offset in itertools.product(*(range(k) for k in window)):
            index = tuple(
                slice(o, o + s * (n - 1) + 1, s)
                for o, s, n in zip(offset, strides, sizes, strict=True)
            )
            patches.append(x[(slice(None), *index)])
        patches = jnp.stack(patches, axis=-2)  # [batch, *sizes, prod(window), in_features]
        patches = patches.reshape(*patches.shape[:-2], -1)
        return patches @ kernel.reshape(-1, self.features) + bias

    def _pads(self, shape, window, strides) -> list[tuple[int, int]]:
        if isinstance(self.padding, int):
            return [(self.padding, self.padding)] * len(window)
        if self.padding == "SAME":
            pads = []
            for n, k, s in zip(shape, window, strides, strict=True):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            return pads
        return [(0, 0)] * len(window)  # VALID


class CNN1D(nn.Module):
    """The MNIST-1D paper's small 1-D CNN: strided convolutions, then a linear read-out.

    >>> logits, _ = as_model(CNN1D(channels=(4, 4))).apply_fresh(jnp.zeros((2, 40)))
    >>> logits.shape
    (2, 10)
    """

    channels: Sequence[int] = (25, 25, 25)
    kernel: int = 5
    stride: int = 2
    activation: str = "relu"
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        if x.ndim == 2:
            x = x[..., None]
        for i, width in enumerate(self.channels):
            conv = PatchConv(
                width, (self.kernel,), strides=(self.stride,), padding=1, name=f"Conv_{i}"
            )
            x = act(conv(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes)(x)


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn1d": CNN1D}


def model_options(name: str) -> dict[str, Any]:
    """The configurable fields of built-in model `name` with their defaults."""
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; allowed: {sorted(MODELS)}.")
    fields = dataclasses.fields(MODELS[name])
    return {f.name: f.default for f in fields if f.name not in ("parent", "name")}


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """The built-in model described by `{"name": ..., **options}`.

    >>> build_model({"name": "mlp", "hidden": [32]})
    MLP(
        # attributes
        hidden = (32,)
        activation = 'relu'
        num_classes = 10
    )
    """
    options = dict(spec)
    name = options.pop("name", "mlp")
    allowed = model_options(name)
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(
                f"model.{key}: {value!r} is not an option of {name!r}; allowed: {sorted(allowed)}."
            )
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    if "activation" in options:
        _activation(options["activation"])
    return MODELS[name](**options)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A Flax model as two pure functions (see the module docstring).

    Compared and hashed by identity: one `Model` keys one compiled program.
    """

    init: Callable[[jax.Array, jax.Array], dict[str, Any]]
    apply: Callable[..., tuple[jax.Array, dict[str, Any]]]
    module: Any = None

    def apply_fresh(self, x: jax.Array, seed: int = 0) -> tuple[jax.Array, dict[str, Any]]:
        """Initialise from `seed` and apply to x in eval mode (for quick checks)."""
        variables = self.init(jax.random.key(seed), x)
        return self.apply(variables, x, train=False, rng=jax.random.key(seed))


_ADAPTERS: dict[Any, Model] = {}


def as_model(module: Any) -> Model:
    """Reduce a Flax module (linen instance, nnx class or constructor, or `Model`) to a `Model`.

    The same module gives back the same `Model`, so repeated sweeps reuse compiled programs.

    >>> as_model(MLP()) is as_model(MLP())
    True
    """
    if isinstance(module, Model):
        return module
    try:
        key = ("module", module)
        hash(key)
    except TypeError:
        key = ("id", id(module))
    if key not in _ADAPTERS:
        if isinstance(module, nn.Module):
            _ADAPTERS[key] = _from_linen(module)
        elif isinstance(module, nnx.Module):
            _ADAPTERS[key] = _from_nnx_instance(module)
        elif callable(module):
            _ADAPTERS[key] = _from_nnx_constructor(module)
        else:
            raise ValueError(
                f"model: {module!r} is not a Flax module; allowed: a built-in model name "
                f"{sorted(MODELS)}, a flax.linen.Module, or a flax.nnx.Module class or constructor."
            )
    return _ADAPTERS[key]


def _takes(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _from_linen(module: nn.Module) -> Model:
    takes_train = _takes(module.__call__, "train")

    def call_kwargs(train: bool) -> dict[str, bool]:
        return {"train": train} if takes_train else {}

    def init(key: jax.Array, x: jax.Array) -> dict[str, Any]:
        params_key, dropout_key = jax.random.split(key)
        variables = module.init(
            {"params": params_key, "dropout": dropout_key}, x, **call_kwargs(False)
        )
        return dict(variables)

    def apply(variables, x, train: bool, rng: jax.Array):
        rngs = {"dropout": rng}
        if not train:
            return module.apply(variables, x, rngs=rngs, **call_kwargs(False)), {}
        mutable = [k for k in variables if k != "params"]
        logits, updates = module.apply(
            variables, x, rngs=rngs, mutable=mutable, **call_kwargs(True)
        )
        return logits, dict(updates)

    return Model(init=init, apply=apply, module=module)


def _nnx_model(graphdef: Any, make_state: Callable[[jax.Array], Any], module: Any) -> Model:
    def init(key: jax.Array, x: jax.Array) -> dict[str, Any]:
        params, rest = make_state(key)
        return {"params": params, "state": rest}

    def apply(variables, x, train: bool, rng: jax.Array):
        net = nnx.merge(graphdef, variables["params"], variables["state"])
        logits = net(x)
        _, _, rest = nnx.split(net, nnx.Param, ...)
        return logits, ({"state": rest} if train else {})

    return Model(init=init, apply=apply, module=module)


def _from_nnx_constructor(constructor: Callable[..., nnx.Module]) -> Model:
    abstract = nnx.eval_shape(lambda: constructor(rngs=nnx.Rngs(0)))
    graphdef, _, _ = nnx.split(abstract, nnx.Param, ...)

    def make_state(key: jax.Array):
        _, params, rest = nnx.split(constructor(rngs=nnx.Rngs(key)), nnx.Param, ...)
        return params, rest

    return _nnx_model(graphdef, make_state, constructor)


def _from_nnx_instance(module: nnx.Module) -> Model:
    """Every member starts from the instance's own parameters (its seed does not re-initialise)."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    return _nnx_model(graphdef, lambda key: (params, rest), module)
