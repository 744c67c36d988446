"""Does a member's arithmetic depend on the layout it trains in? A check for this machine.

Trains one member of a sweep alone, and among the first 8 and 64 members, at several widths,
on one device and on every device, and prints the largest difference of each layout from the
member alone: 0 means bitwise the same. On a CPU every layout on one device gives 0, and every
layout on several devices gives 0 against the others on several; one device against several
differs by float32 rounding (XLA rewrites some divisions differently in a program split across
devices). `docs/performance.md` ("Layouts and numbers") explains the causes and the test.

Run:
    python tools/layout_check.py                     # one JAX device per core, an MLP with AdamW
    python tools/layout_check.py --devices 4 --model user_conv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np

import sweepjax
from sweepjax.engine import placement
from sweepjax.engine.evaluation import make_evaluate
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams
from sweepjax.search.space import HParams

MEMBER = 3  # the member followed through every layout


class UserConv(nn.Module):
    """A user's module with `nn.Conv` (under vmap, a grouped convolution)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3,))(x[..., None])
        return nn.Dense(3)(nn.relu(x).reshape(x.shape[0], -1))


def layout_config(model: str = "mlp", steps: int = 8) -> sweepjax.Config:
    """The sweep followed: AdamW with a warmup-cosine schedule, learning rate and decay drawn."""
    spec = {"name": "mlp", "hidden": [16, 16], "num_classes": 3} if model == "mlp" else UserConv()
    return sweepjax.Config(
        model=spec,
        optimizer="adamw",
        schedule="warmup_cosine",
        space={
            "learning_rate": sweepjax.LogUniform(1e-3, 0.1),
            "weight_decay": sweepjax.LogUniform(1e-5, 1e-2),
        },
        searcher="random",
        population=64,
        steps=steps,
        batch_size=16,
        out_dir=None,
    )


def blobs() -> sweepjax.Dataset:
    """Three overlapping classes in 12 features: a small training set whose losses do not
    saturate, and a test split of 1,200 examples, evaluated in batches of 1,000 as a sweep's
    default `eval_batch` does (a long sum is where a layout could enter the evaluation)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 12))
    y = rng.integers(0, 3, 1440)
    x = centers[y] + rng.normal(size=(1440, 12))
    return sweepjax.from_arrays(x[:240], y[:240], x[240:], y[240:], val_size=40, name="blobs")


def follow(
    model: str, size: int, width: int | None, devices: int, steps: int = 8
) -> dict[str, np.ndarray]:
    """Member `MEMBER`'s train losses, parameters and test loss after `steps` steps.

    `size` 1 trains it alone; otherwise among the first `size` members of the sweep, `width`
    at a time, on the first `devices` devices (as many of them as divide `size`).
    """
    config, data = layout_config(model, steps), blobs()
    program = program_of(config)
    members = np.array([MEMBER] if size == 1 else range(size))
    mesh = placement.population_mesh(size, jax.devices()[:devices])
    hp = HParams({k: v[members] for k, v in sample_hparams(config).values.items()})
    hp = placement.place(hp, mesh)
    train = placement.replicate(data.train, mesh)
    pop = placement.place(init_population(program, hp, train["inputs"][: config.batch_size]), mesh)
    pop, losses = make_train_chunk(program, steps, width, mesh)(pop, hp, train, jax.random.key(1))
    test = placement.replicate(data.test, mesh)
    test_loss = make_evaluate(program, 1000, width, mesh)(pop, test)["loss"]
    at = list(members).index(MEMBER)
    out = {"losses": np.asarray(losses)[:, at], "test_loss": np.asarray(test_loss)[at]}
    for i, leaf in enumerate(jax.tree.leaves(pop.params)):
        out[f"param{i}"] = np.asarray(leaf)[at]
    return out


def largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "user_conv"])
    parser.add_argument("--devices", type=int, default=None, help="default: one per core")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    placement.use_cpu_cores(args.devices)
    alone = follow(args.model, 1, None, 1, args.steps)
    print(f"{jax.device_count()} devices ({jax.devices()[0].device_kind}), {args.model}")
    print("devices | population | width | largest difference from the member alone")
    for devices in sorted({1, jax.device_count()}):
        for size in (8, 64):
            for width in (None, 4, 1):
                got = follow(args.model, size, width, devices, args.steps)
                diff = largest_difference(got, alone)
                print(f"{devices:7} | {size:10} | {width or 'full':>5} | {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
