"""Datasets, their splits as pytrees of arrays, and the shared minibatch stream.

A `Dataset` holds train, validation and test splits, each a pytree of arrays with a leading
example axis; `from_examples` builds one from arrays or any random-access source, `from_arrays`
from `inputs` and `targets` arrays. Named data sets are loaded by `sweepjax.engine.loaders`.

The minibatch stream is a pure function of the data key and the step (`batch_indices`), so it is
shared by every member, runs inside the compiled chunk, and resumes exactly from a step number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweepjax.engine.settings import NORMALIZATIONS

SPLIT_SEED = 0  # the validation split is carved with a fixed seed, the same for every sweep


class Dataset(NamedTuple):
    """A data set's train, validation and test splits.

    Each split is a pytree of numpy arrays (or memory-mapped arrays) sharing a leading example
    axis: for the built-in tasks a dict with `inputs` (what the model takes) and `targets`,
    plus anything a user task reads (masks, weights, ...). `num_classes` is set for
    classification sets.
    """

    name: str
    train: Any
    val: Any
    test: Any
    num_classes: int | None = None

    def describe(self) -> str:
        sizes = f"{num_examples(self.train)} train / {num_examples(self.val)} val / {num_examples(self.test)} test"
        if self.num_classes is not None and set(self.train) == {"inputs", "targets"}:
            shape = tuple(self.train["inputs"].shape[1:])
            return f"{self.name}: {sizes}, features {shape}, {self.num_classes} classes"
        shapes = jax.tree.map(lambda a: tuple(a.shape[1:]), self.train)
        return f"{self.name}: {sizes}, examples {shapes}"


def num_examples(split: Any, key: str = "dataset") -> int:
    """The example count of a split, which every leaf must share (else a `ValueError`).

    >>> num_examples({"inputs": np.zeros((5, 2)), "targets": np.zeros(5)})
    5
    """
    counts = {
        jax.tree_util.keystr(path): np.shape(leaf)[0] if np.ndim(leaf) else None
        for path, leaf in jax.tree_util.tree_leaves_with_path(split)
    }
    if not counts:
        raise ValueError(f"{key}: a split has no arrays; allowed: a pytree of arrays.")
    if len(set(counts.values())) != 1 or None in counts.values():
        raise ValueError(
            f"{key}: the leaves disagree on the example count ({counts}); allowed: arrays "
            "sharing one leading example axis."
        )
    return next(iter(counts.values()))


def take(split: Any, indices: Any) -> Any:
    """The examples `indices` of every leaf of `split` (numpy, on the host)."""
    return jax.tree.map(lambda a: np.take(a, indices, axis=0), split)


def first(split: Any, count: int) -> Any:
    """The first `count` examples of `split`."""
    return jax.tree.map(lambda a: a[:count], split)


def _as_device_dtype(a: Any) -> Any:
    """float64 and int64 as JAX holds them (float32, int32); a memory-mapped array stays lazy."""
    a = a if isinstance(a, np.ndarray) else np.asarray(a)
    if a.dtype == np.float64:
        return a.astype(np.float32)
    if a.dtype == np.int64:
        return a.astype(np.int32)
    return a


def read_examples(source: Any, key: str = "dataset") -> Any:
    """A split as a pytree of arrays from any random-access source.

    `source` is a pytree of arrays (numpy, memory-mapped, jax), or any object with `__len__`
    and `__getitem__` returning one example as a pytree of arrays (a `tfds.data_source`, a
    `grain` data source, a list of dicts): its records are read once and stacked.

    >>> records = [{"inputs": np.ones(3), "targets": 1.0}] * 4
    >>> jax.tree.map(np.shape, read_examples(records))
    {'inputs': (4, 3), 'targets': (4,)}
    """
    if isinstance(source, Mapping | np.ndarray | jax.Array | tuple):
        split = jax.tree.map(_as_device_dtype, source)
        num_examples(split, key)
        return split
    if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
        raise ValueError(
            f"{key}: {type(source).__name__} is not a data source; allowed: a pytree of arrays, "
            "or an object with __len__ and __getitem__ returning examples."
        )
    try:
        records = source.__getitems__(range(len(source)))
    except (AttributeError, TypeError):  # many sources index one record at a time
        records = [source[i] for i in range(len(source))]
    if not records:
        raise ValueError(f"{key}: the source {type(source).__name__} holds no examples.")
    return jax.tree.map(lambda *leaves: _as_device_dtype(np.stack(leaves)), *records)


def from_examples(
    train: Any,
    test: Any,
    val: Any = None,
    *,
    val_size: int = 0,
    name: str = "examples",
    num_classes: int | None = None,
) -> Dataset:
    """A `Dataset` from splits given as pytrees of arrays or random-access sources.

    Without `val`, the validation split is `val_size` examples carved from train with a fixed
    seed (a copy; pass `val` to keep memory-mapped arrays on the disk).

    >>> train = {"inputs": np.zeros((10, 3)), "targets": np.zeros((10, 2))}
    >>> from_examples(train, train, val_size=2).describe()
    "examples: 8 train / 2 val / 10 test, examples {'inputs': (3,), 'targets': (2,)}"
    """
    train, test = read_examples(train, "train"), read_examples(test, "test")
    count = num_examples(train, "train")
    if val is not None:
        return Dataset(name, train, read_examples(val, "val"), test, num_classes)
    if not 0 <= val_size < count:
        raise ValueError(
            f"val_size: {val_size} must be >= 0 and below the {count} training examples."
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    return Dataset(
        name, take(train, order[val_size:]), take(train, order[:val_size]), test, num_classes
    )


def _class_count(name: str, labels: dict[str, np.ndarray], num_classes: int | None) -> int | None:
    """The classes of integer 1-D labels (checked against `num_classes` when given); None for
    other targets (regression, multi-label, ...)."""
    if any(y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) for y in labels.values()):
        return num_classes
    largest = max(int(y.max(initial=0)) for y in labels.values())
    num_classes = int(num_classes or largest + 1)
    for split, y in labels.items():
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"dataset: {name!r} {split} labels span [{int(y.min())}, {int(y.max())}]; "
                f"allowed: 0 to {num_classes - 1} ({num_classes} classes)."
            )
    return num_classes


def _label_kind(values: np.ndarray) -> str:
    """`integer`, `whole` (floats that are all whole numbers) or `other`."""
    if np.issubdtype(values.dtype, np.integer):
        return "integer"
    if np.issubdtype(values.dtype, np.floating) and (values == np.round(values)).all():
        return "whole"
    return "other"


def from_arrays(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    val_size: int,
    name: str = "arrays",
    num_classes: int | None = None,
) -> Dataset:
    """A `Dataset` of `inputs` and `targets` arrays; the validation split is carved from train.

    Integer 1-D targets are class labels (`num_classes` defaults to the largest label + 1), and
    so are whole-number floats beside integer labels in the other split; float or multi-column
    targets are kept as they are, for regression and multi-label tasks.

    >>> ds = from_arrays(np.zeros((10, 3)), np.arange(10) % 2, np.zeros((4, 3)), np.zeros(4, int), 2)
    >>> num_examples(ds.train), num_examples(ds.val), ds.num_classes
    (8, 2, 2)
    """
    labels = {"train": _as_device_dtype(train_y), "test": _as_device_dtype(test_y)}
    kinds = [_label_kind(y) for y in labels.values()]
    if "integer" in kinds and set(kinds) <= {"integer", "whole"}:  # class labels, some as floats
        labels = {split: y.astype(np.int32) for split, y in labels.items()}
    classes = _class_count(name, labels, num_classes)
    train = {"inputs": np.asarray(train_x, np.float32), "targets": labels["train"]}
    test = {"inputs": np.asarray(test_x, np.float32), "targets": labels["test"]}
    return from_examples(train, test, val_size=val_size, name=name, num_classes=classes)


def _float_inputs(split: Any) -> np.ndarray | None:
    inputs = split.get("inputs") if isinstance(split, Mapping) else None
    return inputs if inputs is not None and np.issubdtype(inputs.dtype, np.floating) else None


def normalize(dataset: Dataset, method: str) -> Dataset:
    """Normalise the float `inputs` with statistics of the training split only.

    `standard`: subtract the mean and divide by the standard deviation, per channel (the last
    axis) for images and over all features for vectors; `scale`: divide by 255 (8-bit images);
    `none`: leave as is. Splits without float `inputs` (tokens, say) are left as they are.

    >>> ds = from_arrays(np.arange(20.0).reshape(10, 2), np.arange(10) % 2, np.ones((2, 2)), [0, 1], 2)
    >>> abs(round(float(normalize(ds, "standard").train["inputs"].mean()), 6))
    0.0
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize: unknown {method!r}; allowed: {list(NORMALIZATIONS)}.")
    x = _float_inputs(dataset.train)
    if method == "none" or x is None:
        return dataset
    if method == "scale":
        mean, std = np.float32(0.0), np.float32(255.0)
    else:
        axes = tuple(range(x.ndim - 1)) if x.ndim > 2 else None
        mean = x.mean(axis=axes)
        std = np.maximum(x.std(axis=axes), 1e-6)

    def scaled(split):
        return {**split, "inputs": ((split["inputs"] - mean) / std).astype(np.float32)}

    return dataset._replace(
        train=scaled(dataset.train), val=scaled(dataset.val), test=scaled(dataset.test)
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
