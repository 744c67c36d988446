"""Datasets and the shared minibatch stream.

`load_dataset(name)` returns a `Dataset` of numpy arrays with train, validation and test splits.
The embedded default, MNIST-1D, is generated offline by the `mnist1d` package with the paper's
default arguments (4,000 train and 1,000 test examples of length 40) and cached as `.npz`.

The minibatch stream is a pure function of the data key and the step (`batch_indices`), so it is
shared by every member, runs inside the compiled chunk, and resumes exactly from a step number.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EMBEDDED = ("mnist1d",)
SPLIT_SEED = 0  # the validation split is carved with a fixed seed, the same for every sweep


class Dataset(NamedTuple):
    """Arrays of one classification data set; features float32, labels int32."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val / "
            f"{len(self.test_y)} test, features {self.train_x.shape[1:]}, {self.num_classes} classes"
        )


def cache_dir() -> Path:
    """Where generated data sets are cached (`$SWEEPJAX_CACHE`, default `~/.cache/sweepjax`)."""
    return Path(os.environ.get("SWEEPJAX_CACHE", Path.home() / ".cache" / "sweepjax"))


def _mnist1d_arrays() -> dict[str, np.ndarray]:
    path = cache_dir() / "mnist1d.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())
    arrays = {k: np.asarray(raw[k]) for k in ("x", "y", "x_test", "y_test")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.replace(tmp.name, path)
    return arrays


def from_arrays(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    val_size: int,
    name: str = "arrays",
    num_classes: int | None = None,
) -> Dataset:
    """A `Dataset` from numpy arrays; the validation split is carved from train with a fixed seed.

    >>> ds = from_arrays(np.zeros((10, 3)), np.arange(10) % 2, np.zeros((4, 3)), np.zeros(4), 2)
    >>> len(ds.train_y), len(ds.val_y), ds.num_classes
    (8, 2, 2)
    """
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    for split, labels in (("train", train_y), ("test", test_y)):
        if labels.ndim != 1 or (
            labels.size and (labels.min() < 0 or labels != labels.astype(int)).any()
        ):
            raise ValueError(f"dataset: {split} labels must be a 1-D array of integers >= 0.")
    num_classes = int(num_classes or max(train_y.max(initial=0), test_y.max(initial=0)) + 1)
    if not 0 <= val_size < len(train_y):
        raise ValueError(
            f"val_size: {val_size} must be >= 0 and below the {len(train_y)} training examples."
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train_y))
    val, train = order[:val_size], order[val_size:]
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    i32 = lambda a: np.asarray(a, np.int32)  # noqa: E731
    return Dataset(
        name,
        f32(train_x)[train],
        i32(train_y)[train],
        f32(train_x)[val],
        i32(train_y)[val],
        f32(test_x),
        i32(test_y),
        num_classes,
    )


def load_dataset(name: str, val_size: int) -> Dataset:
    """Load data set `name` (embedded: `mnist1d`).

    >>> load_dataset("mnist1d", val_size=500).describe()
    'mnist1d: 3500 train / 500 val / 1000 test, features (40,), 10 classes'
    """
    if name == "mnist1d":
        a = _mnist1d_arrays()
        return from_arrays(a["x"], a["y"], a["x_test"], a["y_test"], val_size, name, 10)
    raise ValueError(
        f"dataset: unknown data set {name!r}; allowed: the embedded {list(EMBEDDED)}, "
        "or arrays through sweepjax.data.from_arrays(...)."
    )


def batch_indices(key: jax.Array, step: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Indices of the shared minibatch at `step`: epoch-wise shuffles derived from `key`.

    Each epoch is a fresh permutation `permutation(fold_in(key, epoch))`; the last partial
    batch of an epoch is dropped.

    >>> idx = batch_indices(jax.random.key(0), 3, num_examples=10, batch_size=4)
    >>> idx.shape
    (4,)
    """
    steps_per_epoch = num_examples // batch_size
    epoch, position = jnp.divmod(step, steps_per_epoch)
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)


def chunk_indices(
    key: jax.Array, start: jax.Array, num_steps: int, num_examples: int, batch_size: int
) -> jax.Array:
    """`batch_indices` of steps `start .. start + num_steps - 1`, stacked: `[num_steps, batch]`.

    Each epoch's permutation is computed once, not once per step: a chunk spans at most
    `(num_steps - 1) // steps_per_epoch + 2` epochs, whatever `start` is.

    >>> key = jax.random.key(0)
    >>> table = chunk_indices(key, 5, num_steps=4, num_examples=10, batch_size=4)
    >>> bool((table[2] == batch_indices(key, 7, 10, 4)).all())
    True
    """
    steps_per_epoch = num_examples // batch_size
    num_epochs = (num_steps - 1) // steps_per_epoch + 2
    first_epoch = start // steps_per_epoch
    orders = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_examples))(
        first_epoch + jnp.arange(num_epochs)
    )
    steps = start + jnp.arange(num_steps)
    epoch, position = jnp.divmod(steps, steps_per_epoch)
    columns = position[:, None] * batch_size + jnp.arange(batch_size)
    return orders[(epoch - first_epoch)[:, None], columns]
