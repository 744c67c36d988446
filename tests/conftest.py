"""Shared fixtures: two CPU devices, small data, compile counting.

The session has two CPU devices, as the `sweepjax` command makes one per core, so every sweep
of an even population trains split across them; one-device and four-device cases are explicit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest

import sweepjax
from sweepjax.engine import compiling
from sweepjax.engine.placement import use_cpu_cores

use_cpu_cores(2)  # before JAX computes anything; a subprocess's own XLA_FLAGS win
# Parity tests compare algorithms, not matmul precision: full float32 on GPUs too (their
# default for float32 products is TF32). CPUs compute float32 products in full anyway.
jax.config.update("jax_default_matmul_precision", "highest")


def pytest_configure(config) -> None:
    """Tests never write into the user's compile cache: the session (controller and workers,
    and the commands they start) shares one fresh folder, removed at the end."""
    if compiling.ENV not in os.environ:
        os.environ[compiling.ENV] = tempfile.mkdtemp(prefix="sweepjax-test-cache-")
        config.sweepjax_cache = os.environ[compiling.ENV]


def pytest_unconfigure(config) -> None:
    folder = getattr(config, "sweepjax_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def xla_flags(devices: int) -> str:
    """`XLA_FLAGS` for a subprocess with `devices` CPU devices and this session's other flags
    (the CPU code cap of `use_cpu_cores`, so its programs are this process's)."""
    own = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    return " ".join([*own, f"--xla_force_host_platform_device_count={devices}"])


def same(a, b):
    """Equal strings, or numbers equal to float32 rounding (NaN equal to NaN)."""
    if isinstance(b, str):
        return a == b
    return (a != a and b != b) or a == pytest.approx(b, rel=1e-6)


def assert_same(actual, desired) -> None:
    """Bitwise equality on the CPU; on accelerators, whose kernels may differ with the batch
    shape, equality to float32 rounding."""
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(actual, desired)
    else:
        np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def count_compiles():
    """Yields a list whose single item is, after the block, the number of XLA compilations in it."""
    counter = [0]
    with compiling.counting_compiles() as compiled:
        yield counter
    counter[0] = compiled().programs


def make_tiny_data(
    spread: float = 2.0,
    seed: int = 0,
    sizes: tuple[int, int] = (240, 60),
    val_size: int = 40,
    name: str = "tiny",
) -> sweepjax.Dataset:
    """A small 3-class problem in 12 features (fast to train, no download): class centers
    `spread` standard deviations apart, unit noise; learnable at 2, overlapping near 0.6.
    `sizes` are the train (validation included) and test examples."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 12)) * spread

    def make(n):
        y = rng.integers(0, 3, n)
        return centers[y] + rng.normal(size=(n, 12)), y

    (x, y), (xt, yt) = make(sizes[0]), make(sizes[1])
    return sweepjax.from_arrays(x, y, xt, yt, val_size=val_size, name=name)


# The metric columns of a classification sweep's results.csv, after `status, diverged_at_step`.
CLASSIFICATION_METRICS = (
    "final_train_loss",
    "final_val_loss",
    "final_val_accuracy",
    "best_val_accuracy",
    "test_loss",
    "test_accuracy",
)


def result_row(member: int, accuracy: float, diverged_at: int = -1, **hyperparameters) -> dict:
    """A `results.csv` row: its hyperparameters, `accuracy` for every metric, `status` "ok", or
    "diverged" at step `diverged_at` when that is not -1."""
    status = "ok" if diverged_at < 0 else "diverged"
    row = {"member": member, **hyperparameters, "status": status, "diverged_at_step": diverged_at}
    return {**row, **dict.fromkeys(CLASSIFICATION_METRICS, accuracy)}


@pytest.fixture(scope="session")
def tiny_data() -> sweepjax.Dataset:
    return make_tiny_data()


@pytest.fixture(scope="session")
def tiny_config() -> sweepjax.Config:
    return sweepjax.Config(
        model={"name": "mlp", "hidden": [16], "num_classes": 3},
        optimizer="sgd",
        space={
            "learning_rate": sweepjax.LogUniform(1e-2, 0.5),
            "momentum": sweepjax.Uniform(0.0, 0.9),
        },
        population=8,
        steps=30,
        batch_size=16,
        eval_every=10,
        out_dir=None,
    )


@pytest.fixture(scope="session")
def tiny_images() -> sweepjax.Dataset:
    """A learnable 3-class problem on 6x6x2 images: a bright quadrant per class, plus noise."""
    rng = np.random.default_rng(1)

    def make(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(size=(n, 6, 6, 2)) * 0.5
        for c in range(3):
            x[y == c, (c // 2) * 3 : (c // 2) * 3 + 3, (c % 2) * 3 : (c % 2) * 3 + 3] += 2.0
        return x, y

    (x, y), (xt, yt) = make(120), make(30)
    return sweepjax.from_arrays(x, y, xt, yt, val_size=20, name="tiny_images")
