"""Datasets and the shared minibatch stream.

`load_dataset(name)` returns a `Dataset` of numpy arrays with train, validation and test splits.
The embedded default, MNIST-1D, is generated offline by the `mnist1d` package with the paper's
default arguments (4,000 train and 1,000 test examples of length 40) and cached as `.npz` in
`cache_dir()`; a damaged cache is regenerated, and a cache folder that cannot be written only
costs the generation in each run (each with a `DataCacheWarning`).

The minibatch stream is a pure function of the data key and the step (`batch_indices`), so it is
shared by every member, runs inside the compiled chunk, and resumes exactly from a step number.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweepjax.results import atomic_write, load_npz

EMBEDDED = ("mnist1d",)
MNIST1D_ARRAYS = ("x", "y", "x_test", "y_test")
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


class DataCacheWarning(UserWarning):
    """A generated data set's cache was damaged (and is regenerated) or cannot be written."""


def _generate_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())
    return {k: np.asarray(raw[k]) for k in MNIST1D_ARRAYS}


def _read_mnist1d(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there is no cache or it is damaged (with a warning)."""
    try:
        arrays = load_npz(path)
        arrays = {k: arrays[k] for k in MNIST1D_ARRAYS}
    except (FileNotFoundError, NotADirectoryError):  # no cache yet
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        warnings.warn(
            f"the cached MNIST-1D {path} is damaged or unreadable ({reason}); regenerating it.",
            DataCacheWarning,
            stacklevel=4,
        )
        return None
    return arrays


def _mnist1d_arrays() -> dict[str, np.ndarray]:
    """MNIST-1D from the cache, or generated (a few seconds) and cached when it can be."""
    path = cache_dir() / "mnist1d.npz"
    arrays = _read_mnist1d(path)
    if arrays is not None:
        return arrays
    arrays = _generate_mnist1d()
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)
    except OSError as err:
        warnings.warn(
            f"could not cache MNIST-1D in {path.parent} ({err.strerror or err}); it is generated "
            "again in each run. To cache it, set SWEEPJAX_CACHE to a writable folder.",
            DataCacheWarning,
            stacklevel=3,
        )
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
    for split, labels in (("train", train_y), ("test", test_y)):
        if labels.size and labels.max() >= num_classes:
            raise ValueError(
                f"dataset: {name!r} {split} labels span [{int(labels.min())}, "
                f"{int(labels.max())}]; allowed: 0 to {num_classes - 1} ({num_classes} classes)."
            )
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


NORMALIZATIONS = ("standard", "scale", "none")


def normalize(dataset: Dataset, method: str) -> Dataset:
    """Normalise features with statistics of the training split only.

    `standard`: subtract the mean and divide by the standard deviation, per channel (the last
    axis) for images and over all features for vectors; `scale`: divide by 255 (8-bit images);
    `none`: leave as is.

    >>> ds = from_arrays(np.arange(20.0).reshape(10, 2), np.arange(10) % 2, np.ones((2, 2)), [0, 1], 2)
    >>> abs(round(float(normalize(ds, "standard").train_x.mean()), 6))
    0.0
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize: unknown {method!r}; allowed: {list(NORMALIZATIONS)}.")
    if method == "none":
        return dataset
    if method == "scale":
        mean, std = np.float32(0.0), np.float32(255.0)
    else:
        axes = tuple(range(dataset.train_x.ndim - 1)) if dataset.train_x.ndim > 2 else None
        mean = dataset.train_x.mean(axis=axes)
        std = np.maximum(dataset.train_x.std(axis=axes), 1e-6)
    f = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return dataset._replace(
        train_x=f(dataset.train_x), val_x=f(dataset.val_x), test_x=f(dataset.test_x)
    )


def _tfds_examples(source: Any, feature: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        examples = source.__getitems__(range(len(source)))
    except TypeError:  # some data sources (and tfds' mocks) only index one record at a time
        examples = [source[i] for i in range(len(source))]
    x = np.stack([np.asarray(e[feature]) for e in examples])
    return x, np.asarray([e["label"] for e in examples])


def _load_tfds(spec: str, val_size: int) -> Dataset:
    _, _, rest = spec.partition(":")
    name, _, variant = rest.partition(":")
    full = f"{name}/{variant}" if variant else name
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(full)
    except Exception as err:  # tfds raises its own DatasetNotFoundError and others
        raise ValueError(
            f"dataset: tfds has no data set {full!r} ({str(err).splitlines()[0]}); tfds names look like "
            "'tfds:mnist', 'tfds:fashion_mnist', 'tfds:cifar10' or 'tfds:<name>:<config>'."
        ) from err
    features = builder.info.features
    feature = next((k for k in ("image", "features") if k in features), None)
    if feature is None or "label" not in features:
        raise ValueError(
            f"dataset: {spec!r} has features {sorted(features)}; sweepjax needs a classification "
            "set with 'label' and 'image' or 'features'."
        )
    try:
        train, test = tfds.data_source(full, split=["train", "test"], download=True)
    except Exception as err:  # no network, no prepared copy, or a bad data dir
        raise ValueError(
            f"dataset: {spec!r} is not prepared and could not be downloaded ({err}). tfds looks in "
            f"{tfds.core.constants.DATA_DIR} (set TFDS_DATA_DIR to change it); prepare it with "
            f"`tfds build {full} --file_format=array_record` on a machine with network access."
        ) from err
    (train_x, train_y), (test_x, test_y) = (
        _tfds_examples(train, feature),
        _tfds_examples(test, feature),
    )
    num_classes = features["label"].num_classes
    for split, labels in (("train", train_y), ("test", test_y)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"dataset: {spec!r} {split} labels span [{labels.min()}, {labels.max()}]; "
                f"allowed: 0 to {num_classes - 1}."
            )
    return from_arrays(train_x, train_y, test_x, test_y, val_size, spec, num_classes)


def load_dataset(name: str, val_size: int, normalization: str = "standard") -> Dataset:
    """Load data set `name`: the embedded `mnist1d`, or `tfds:<name>[:<config>]`.

    Args:
      name: `mnist1d`, or a tensorflow-datasets classification set as `tfds:<name>[:<config>]`
        (read through `tfds.data_source`, which needs no TensorFlow).
      val_size: examples carved from train (with a fixed seed) for validation.
      normalization: see `normalize`.

    >>> load_dataset("mnist1d", val_size=500).describe()
    'mnist1d: 3500 train / 500 val / 1000 test, features (40,), 10 classes'
    """
    if name == "mnist1d":
        a = _mnist1d_arrays()
        dataset = from_arrays(a["x"], a["y"], a["x_test"], a["y_test"], val_size, name, 10)
    elif name.startswith("tfds:"):
        dataset = _load_tfds(name, val_size)
    else:
        raise ValueError(
            f"dataset: unknown data set {name!r}; allowed: the embedded {list(EMBEDDED)}, "
            "'tfds:<name>[:<config>]' for tensorflow-datasets (e.g. 'tfds:cifar10'), "
            "or arrays through sweepjax.data.from_arrays(...)."
        )
    return normalize(dataset, normalization)


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


@dataclasses.dataclass(frozen=True)
class Augment:
    """On-device image augmentation of the shared batch: random crop with padding, horizontal flip.

    Each example of a `[batch, H, W, C]` batch is zero-padded by `crop_padding` pixels on every
    side and cropped back to `H x W` at a random offset, then mirrored left-right with
    probability 1/2 if `flip`. The randomness is derived from the data key and the step only
    (`augment_key`), so every member sees the same augmented batch and a resumed sweep the same
    augmentations.
    """

    crop_padding: int = 4
    flip: bool = True


AUGMENT_OPTIONS = {"crop_padding": int, "flip": bool}


def augmentation_of(value: Any) -> Augment | None:
    """The `Augment` a config's `augment` value asks for; None for no augmentation.

    `None` or `False`: none; `True`: `Augment()` (crop with padding 4 and flip); a mapping with
    some of `crop_padding` (int >= 0) and `flip` (bool) sets those.

    >>> augmentation_of(True), augmentation_of({"flip": False}), augmentation_of(None)
    (Augment(crop_padding=4, flip=True), Augment(crop_padding=4, flip=False), None)
    """
    if value is None or value is False:
        return None
    if value is True:
        return Augment()
    if not isinstance(value, Mapping):
        raise ValueError(
            f"augment: {value!r} is not allowed; allowed: None, False, True, or a dict with "
            f"{sorted(AUGMENT_OPTIONS)} (e.g. {{'crop_padding': 4, 'flip': True}})."
        )
    for key, item in value.items():
        kind = AUGMENT_OPTIONS.get(key)
        if kind is None:
            raise ValueError(
                f"augment.{key}: {item!r} is not an option; allowed: {sorted(AUGMENT_OPTIONS)}."
            )
        if not isinstance(item, kind) or (kind is int and (isinstance(item, bool) or item < 0)):
            allowed = "an integer >= 0" if kind is int else "true or false"
            raise ValueError(f"augment.{key}: {item!r} is not allowed; allowed: {allowed}.")
    augment = Augment(**value)
    return augment if augment.crop_padding or augment.flip else None


def check_augmentation(augment: Augment | None, feature_shape: tuple[int, ...], name: str) -> None:
    """Refuse augmentation of features that are not images `[H, W, C]` (before anything compiles)."""
    if augment is None:
        return
    if len(feature_shape) != 3:
        raise ValueError(
            f"augment: {dataclasses.asdict(augment)} needs image features [height, width, "
            f"channels], but {name!r} has features of shape {tuple(feature_shape)}; allowed for "
            "this data set: augment=None."
        )


# The augmentation stream's key is `fold_in(data_key, AUGMENT_STREAM)`; the shuffle uses
# `fold_in(data_key, epoch)`, and no sweep reaches epoch 2**32 - 1, so the two never share a key.
AUGMENT_STREAM = 2**32 - 1


def augment_key(data_key: jax.Array, step: jax.Array) -> jax.Array:
    """The key of step `step`'s augmentation: a pure function of the data key and the step."""
    return jax.random.fold_in(jax.random.fold_in(data_key, AUGMENT_STREAM), step)


def augment_batch(augment: Augment, x: jax.Array, key: jax.Array) -> jax.Array:
    """Augment a batch of images `[batch, H, W, C]` with randomness from `key` (see `Augment`).

    >>> x = jnp.arange(2 * 4 * 4 * 1.0).reshape(2, 4, 4, 1)
    >>> augment_batch(Augment(crop_padding=1), x, jax.random.key(0)).shape
    (2, 4, 4, 1)
    """
    crop_key, flip_key = jax.random.split(key)
    batch, height, width, channels = x.shape
    if augment.crop_padding:
        p = augment.crop_padding
        padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * p + 1)
        x = jax.vmap(
            lambda image, o: jax.lax.dynamic_slice(
                image, (o[0], o[1], 0), (height, width, channels)
            )
        )(padded, offsets)
    if augment.flip:
        flip = jax.random.bernoulli(flip_key, 0.5, (batch,))
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    return x
