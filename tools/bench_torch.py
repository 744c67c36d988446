"""The PyTorch ways of `tools/bench.py`, on the CPU: (d) one config at a time, (e) torch.func.

Both do the JAX ways' work: the same architecture (a `torch.nn` copy of the row's Flax model,
relu and the built-in defaults), the engine's minibatch stream (its step indices, made a
tensor beforehand; each step's batch is gathered from the resident training set), the same
optimizer (SGD with momentum, then decoupled weight decay scaled by the learning rate) and
the same starting point: each member's parameters are the engine's, converted.

  (d) torch: one member after another, eager `nn.Module` + `torch.optim.SGD`.
  (e) torch_vmap: every member at once: per step `vmap(grad_and_value(functional_call ...))`
      over the stacked parameters, the batch shared (`in_dims=None`), and the optimizer as
      tensor ops with per-member learning rate, momentum and weight decay.

Importing this module needs torch; `tools/bench.py` offers these ways only when it imports.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from sweepjax import Config
from sweepjax.engine.data import Dataset
from sweepjax.engine.models import CNN1D, MLP, build_model
from sweepjax.engine.population import init_population
from sweepjax.runner.run import program_of, sample_hparams


class TorchMLP(nn.Module):
    """`sweepjax.engine.models.MLP` (relu, no norm, no dropout) in torch."""

    def __init__(self, flax: MLP, in_features: int):
        super().__init__()
        widths = [in_features, *flax.hidden, flax.num_classes]
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.dense[:-1]:
            x = F.relu(layer(x))
        return self.dense[-1](x)


class TorchCNN1D(nn.Module):
    """`sweepjax.engine.models.CNN1D` (relu, no norm) in torch: `nn.Conv1d` with the same channels,
    kernel, stride and padding as its `PatchConv`s, so the FLOPs are the same."""

    def __init__(self, flax: CNN1D, length: int):
        super().__init__()
        channels = [1, *flax.channels]
        self.conv = nn.ModuleList(
            nn.Conv1d(a, b, flax.kernel, flax.stride, padding=1)
            for a, b in itertools.pairwise(channels)
        )
        for _ in flax.channels:
            length = (length + 2 - flax.kernel) // flax.stride + 1
        self.out = nn.Linear(channels[-1] * length, flax.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # [batch, 1 channel, length]
        for conv in self.conv:
            x = F.relu(conv(x))
        return self.out(x.flatten(1))


def torch_model(spec: Mapping[str, Any], input_shape: Sequence[int]) -> nn.Module:
    """The torch copy of built-in model `spec` ("mlp" or "cnn1d") for inputs of `input_shape`."""
    flax = build_model(spec)
    if isinstance(flax, MLP):
        return TorchMLP(flax, int(np.prod(input_shape)))
    if isinstance(flax, CNN1D):
        return TorchCNN1D(flax, input_shape[0])
    raise ValueError(f"no torch copy of model {spec.get('name')!r}")


def torch_params(flax_params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Flax parameters with a leading member axis, as the torch copy's stacked state.

    Dense kernels `[in, out]` become `weight [out, in]`; `PatchConv` kernels
    `[window, in, out]` become `weight [out, in, window]`. The CNN's read-out takes the
    features flattened channels-first in torch (`[channels, length]`), so its rows are
    permuted from Flax's `[length, channels]` order.
    """
    params = {k: {n: np.asarray(a) for n, a in v.items()} for k, v in flax_params.items()}
    convs = sorted(k for k in params if k.startswith("Conv_"))
    denses = sorted((k for k in params if k.startswith("Dense_")), key=lambda k: int(k[6:]))
    state = {}
    for i, name in enumerate(convs):
        state[f"conv.{i}.weight"] = params[name]["kernel"].transpose(0, 3, 2, 1)
        state[f"conv.{i}.bias"] = params[name]["bias"]
    if convs:
        kernel = params[denses[0]]["kernel"]  # [P, length * channels, out]
        members, features, out = kernel.shape
        channels = params[convs[-1]]["bias"].shape[-1]
        kernel = kernel.reshape(members, features // channels, channels, out)
        state["out.weight"] = kernel.transpose(0, 3, 2, 1).reshape(members, out, features)
        state["out.bias"] = params[denses[0]]["bias"]
    else:
        for i, name in enumerate(denses):
            state[f"dense.{i}.weight"] = params[name]["kernel"].transpose(0, 2, 1)
            state[f"dense.{i}.bias"] = params[name]["bias"]
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


class Setup:
    """What both ways share for one row: the model, the members' starting state and
    hyperparameters, and the data as resident tensors with the engine's step indices."""

    def __init__(self, config: Config, data: Dataset, indices: np.ndarray):
        hparams = sample_hparams(config)
        pop = init_population(
            program_of(config), hparams, data.train["inputs"][: config.batch_size]
        )
        self.params = torch_params(pop.params)  # every member, stacked
        self.hparams = {
            k: torch.from_numpy(np.array(hparams[k], np.float32))
            for k in ("learning_rate", "momentum", "weight_decay")
        }
        self.model = torch_model(config.model, data.train["inputs"].shape[1:])
        self.x = torch.from_numpy(np.asarray(data.train["inputs"], np.float32))
        self.y = torch.from_numpy(np.asarray(data.train["targets"], np.int64))
        self.indices = torch.from_numpy(np.asarray(indices, np.int64))

    def member(self, i: int) -> nn.Module:
        """A fresh copy of the model holding member i's starting parameters."""
        model = copy.deepcopy(self.model)
        model.load_state_dict({k: v[i] for k, v in self.params.items()})
        return model


# ------------------------------------------------------------------------------------ (d)


def train_member(setup: Setup, i: int, steps: int | None = None) -> torch.Tensor:
    """Member i for `steps` steps (all by default), eager, with `torch.optim.SGD`; its losses.

    `torch.optim.SGD(weight_decay=...)` couples the decay (adds `wd * p` to the gradient
    before momentum); the benchmark's optax chain decouples it: `m = momentum * m + g`, then
    `p -= lr * (m + wd * p)`. So SGD runs without decay and the decay is applied to the
    parameters before its step: `p *= 1 - lr * wd`, then SGD's `p -= lr * m` (as AdamW does).
    """
    model = setup.member(i)
    lr, momentum, wd = (
        float(setup.hparams[k][i]) for k in ("learning_rate", "momentum", "weight_decay")
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    params = list(model.parameters())
    indices = setup.indices[:steps]
    losses = torch.empty(len(indices))
    for t, idx in enumerate(indices):
        loss = F.cross_entropy(model(setup.x[idx]), setup.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.mul_(1.0 - lr * wd)
        optimizer.step()
        losses[t] = loss.detach()
    return losses


# ------------------------------------------------------------------------------------ (e)


def train_population(setup: Setup, steps: int | None = None) -> torch.Tensor:
    """Every member at once with `torch.func`, for `steps` steps; losses `[steps, P]`.

    The parameters are stacked as `torch.func.stack_module_state` stacks P modules' (here
    converted from the engine's stacked parameters directly). The update is `train_member`'s,
    on the stacked state, with per-member hyperparameters broadcast over each parameter's
    shape: `m = momentum * m + g`, `p = p * (1 - lr * wd) - lr * m`, computed in place.
    """
    model = setup.model
    params = {k: v.clone() for k, v in setup.params.items()}

    def loss_fn(p, xb, yb):
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    step = vmap(grad_and_value(loss_fn), in_dims=(0, None, None))

    def column(name: str, like: torch.Tensor) -> torch.Tensor:
        return setup.hparams[name].reshape(-1, *[1] * (like.ndim - 1))

    lr = {k: column("learning_rate", v) for k, v in params.items()}
    mom = {k: column("momentum", v) for k, v in params.items()}
    decay = {k: 1.0 - lr[k] * column("weight_decay", v) for k, v in params.items()}
    trace = {k: torch.zeros_like(v) for k, v in params.items()}
    indices = setup.indices[:steps]
    losses = torch.empty(len(indices), len(setup.hparams["learning_rate"]))
    for t, idx in enumerate(indices):
        grads, loss = step(params, setup.x[idx], setup.y[idx])
        for k, p in params.items():
            trace[k].mul_(mom[k]).add_(grads[k])
            p.mul_(decay[k]).addcmul_(lr[k], trace[k], value=-1.0)
        losses[t] = loss
    return losses


# ------------------------------------------------------------------------------- timing


def run(way: str, setup: Setup, members: Sequence[int], repeats: int = 1) -> dict[str, Any]:
    """Time (d) `way="torch"` on `members` or (e) `way="torch_vmap"` on every member.

    Returns `seconds` (the fastest of `repeats`, summed over members for (d)), `warmup_seconds`
    (one untimed step; eager torch compiles nothing) and `losses [steps, members]`.
    """
    start = time.perf_counter()
    if way == "torch":
        train_member(setup, members[0], steps=1)
    else:
        train_population(setup, steps=1)
    warmup = time.perf_counter() - start

    def best(fn):
        seconds = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            losses = fn()
            seconds = min(seconds, time.perf_counter() - start)
        return seconds, losses.numpy()

    if way == "torch":
        timed = [best(lambda i=i: train_member(setup, i)) for i in members]
        seconds = sum(s for s, _ in timed)
        losses = np.stack([loss for _, loss in timed], 1)
    else:
        seconds, losses = best(lambda: train_population(setup))
    return {"seconds": seconds, "warmup_seconds": warmup, "losses": losses}
