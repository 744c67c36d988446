"""Built-in Flax models, and `as_model`, which reduces any Flax module to a `Model`.

`as_model(module)` accepts a `flax.linen.Module`, a `flax.nnx.Module` subclass (or any callable
taking `rngs=` and returning one) and returns a `Model(init, apply)` of two pure functions
(`sweepjax.engine.adapters`), so the population engine can `vmap` them over members.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sweepjax.engine.adapters import Model, adapt
from sweepjax.engine.dropout import Dropout
from sweepjax.engine.transformer import Transformer

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
}

INITIALIZERS: dict[str, Callable] = {
    "lecun": nn.initializers.lecun_normal(),
    "he": nn.initializers.he_normal(),
    "xavier": nn.initializers.xavier_uniform(),
    "glorot": nn.initializers.xavier_uniform(),
}


def _activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation: unknown {name!r}; allowed: {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def _initializer(name: str) -> Callable:
    if name not in INITIALIZERS:
        raise ValueError(f"model.initializer: unknown {name!r}; allowed: {sorted(INITIALIZERS)}.")
    return INITIALIZERS[name]


class _Block(nn.Module):
    """Static choices shared by the built-in models."""

    activation: str = "relu"
    initializer: str = "lecun"
    norm: bool = False

    def _normalize(self, x: jax.Array, train: bool) -> jax.Array:
        if not self.norm:
            return x
        return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)


class MLP(_Block):
    """A multi-layer perceptron on flattened inputs.

    Options: `hidden` widths, or `width` and `depth` (`depth` layers of `width` units: two
    dimensions a sweep can search apart; either one alone takes the other from `hidden`),
    `activation`, `initializer` (he, lecun, xavier), `norm` (batch norm after each hidden
    layer). Dropout after each hidden layer when given a `dropout_rate`.

    >>> logits, _ = as_model(MLP(hidden=(8,))).apply_fresh(jnp.zeros((2, 40)))
    >>> logits.shape, MLP(width=16, depth=3).layers(), MLP(hidden=(8, 8), depth=1).layers()
    ((2, 10), (16, 16, 16), (8,))
    """

    hidden: Sequence[int] = (100, 100)
    num_classes: int = 10
    width: int | None = None
    depth: int | None = None

    def __post_init__(self):
        self.layers()  # a bad width or depth is refused when the model is built
        super().__post_init__()

    def layers(self) -> tuple[int, ...]:
        """The hidden layers' widths."""
        if self.width is None and self.depth is None:
            return tuple(self.hidden)
        width = self.width if self.width is not None else (self.hidden or (100,))[0]
        depth = self.depth if self.depth is not None else len(self.hidden)
        for key, value, low in (("width", width, 1), ("depth", depth, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"model.{key}: {value!r} is not allowed; allowed: an int >= {low}."
                )
        return (width,) * depth

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate=None) -> jax.Array:
        act, init = _activation(self.activation), _initializer(self.initializer)
        x = x.reshape((x.shape[0], -1))
        for width in self.layers():
            x = act(self._normalize(nn.Dense(width, kernel_init=init)(x), train))
            x = Dropout()(x, dropout_rate, train)
        return nn.Dense(self.num_classes, kernel_init=init)(x)


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


class CNN1D(_Block):
    """The MNIST-1D paper's small 1-D CNN: strided convolutions, then a linear read-out.

    >>> logits, _ = as_model(CNN1D(channels=(4, 4))).apply_fresh(jnp.zeros((2, 40)))
    >>> logits.shape
    (2, 10)
    """

    channels: Sequence[int] = (25, 25, 25)
    kernel: int = 5
    stride: int = 2
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate=None) -> jax.Array:
        act, init = _activation(self.activation), _initializer(self.initializer)
        if x.ndim == 2:
            x = x[..., None]
        for i, width in enumerate(self.channels):
            conv = PatchConv(
                width, (self.kernel,), (self.stride,), padding=1, kernel_init=init, name=f"Conv_{i}"
            )
            x = act(self._normalize(conv(x), train))
        x = Dropout()(x.reshape((x.shape[0], -1)), dropout_rate, train)
        return nn.Dense(self.num_classes, kernel_init=init)(x)


class CNN2D(_Block):
    """A small 2-D CNN for images: per stage a k x k convolution, activation, 2 x 2 max-pool.

    `kernel` is the convolution width swept in the seed experiments (3, 5, 7 ...).

    >>> logits, _ = as_model(CNN2D(channels=(4,), kernel=5)).apply_fresh(jnp.zeros((2, 8, 8, 1)))
    >>> logits.shape
    (2, 10)
    """

    channels: Sequence[int] = (32, 64)
    kernel: int = 3
    dense: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate=None) -> jax.Array:
        act, init = _activation(self.activation), _initializer(self.initializer)
        if x.ndim == 3:
            x = x[..., None]
        for width in self.channels:
            x = PatchConv(width, (self.kernel, self.kernel), padding="SAME", kernel_init=init)(x)
            x = nn.max_pool(act(self._normalize(x, train)), (2, 2), strides=(2, 2))
        x = act(nn.Dense(self.dense, kernel_init=init)(x.reshape((x.shape[0], -1))))
        x = Dropout()(x, dropout_rate, train)
        return nn.Dense(self.num_classes, kernel_init=init)(x)


class ResNet(_Block):
    """A CIFAR-style ResNet of basic blocks (He et al. 2016), batch norm on by default.

    `stages` gives the blocks per stage: (1, 1, 1) with width 16 is ResNet-8, (3, 3, 3) with
    width 16 ResNet-20, and (2, 2, 2, 2) with width 64 ResNet-18. Batch statistics are model
    state, so each member carries (and checkpoints) its own.

    >>> logits, _ = as_model(ResNet(stages=(1,), width=4)).apply_fresh(jnp.zeros((2, 8, 8, 3)))
    >>> logits.shape
    (2, 10)
    """

    stages: Sequence[int] = (1, 1, 1)
    width: int = 16
    initializer: str = "he"
    norm: bool = True
    num_classes: int = 10

    def _conv(self, width: int, window: int, stride: int = 1) -> PatchConv:
        init = _initializer(self.initializer)
        return PatchConv(width, (window, window), (stride, stride), "SAME", kernel_init=init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate=None) -> jax.Array:
        act = _activation(self.activation)
        x = act(self._normalize(self._conv(self.width, 3)(x), train))
        for stage, blocks in enumerate(self.stages):
            width = self.width * 2**stage
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                y = act(self._normalize(self._conv(width, 3, stride)(x), train))
                y = self._normalize(self._conv(width, 3)(y), train)
                if x.shape != y.shape:
                    x = self._normalize(self._conv(width, 1, stride)(x), train)
                x = act(x + y)
        x = Dropout()(x.mean(axis=(1, 2)), dropout_rate, train)
        return nn.Dense(self.num_classes, kernel_init=_initializer(self.initializer))(x)


# Named ResNet depths: option defaults that `build_model` applies under these names.
RESNETS: dict[str, dict[str, Any]] = {
    "resnet8": {"stages": (1, 1, 1), "width": 16},
    "resnet20": {"stages": (3, 3, 3), "width": 16},
    "resnet18": {"stages": (2, 2, 2, 2), "width": 64},
}


MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "cnn1d": CNN1D,
    "cnn2d": CNN2D,
    "resnet": ResNet,
    **dict.fromkeys(RESNETS, ResNet),
    "transformer": Transformer,
}


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
        activation = 'relu'
        initializer = 'lecun'
        norm = False
        hidden = (32,)
        num_classes = 10
        width = None
        depth = None
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
    _activation(options.get("activation", "relu"))
    _initializer(options.get("initializer", "lecun"))
    return MODELS[name](**{**RESNETS.get(name, {}), **options})


def model_of(spec: Any) -> Model:
    """The `Model` of a config's `model` value: a built-in spec dict or a Flax module.

    >>> model_of({"name": "mlp", "hidden": [8]}).takes_dropout
    True
    """
    if isinstance(spec, Mapping):
        return as_model(build_model(spec))
    return as_model(spec)


def as_model(module: Any) -> Model:
    """Reduce a Flax module (linen instance, nnx class or constructor, or `Model`) to a `Model`.

    The same module gives back the same `Model`, so repeated sweeps reuse compiled programs.

    >>> as_model(MLP()) is as_model(MLP())
    True
    """
    if isinstance(module, Model):
        return module
    if isinstance(module, type) and issubclass(module, nn.Module):
        raise ValueError(
            f"model: {module.__name__} is a flax.linen.Module class; allowed: an instance of it "
            f"(model={module.__name__}()), a flax.nnx.Module class, or a built-in model name."
        )
    model = adapt(module)
    if model is None:
        raise ValueError(
            f"model: {module!r} is not a Flax module; allowed: a built-in model name "
            f"{sorted(MODELS)}, a flax.linen.Module, or a flax.nnx.Module class or constructor."
        )
    return model
