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


def _whole_numbers(values: np.ndarray) -> bool:
    return np.issubdtype(values.dtype, np.floating) and bool((values == np.round(values)).all())


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

    Integer 1-D targets are class labels (`num_classes` defaults to the largest label + 1);
    float or multi-column targets are kept as they are, for regression and multi-label tasks.

    >>> ds = from_arrays(np.zeros((10, 3)), np.arange(10) % 2, np.zeros((4, 3)), np.zeros(4, int), 2)
    >>> num_examples(ds.train), num_examples(ds.val), ds.num_classes
    (8, 2, 2)
    """
    labels = {"train": _as_device_dtype(train_y), "test": _as_device_dtype(test_y)}
    if _whole_numbers(labels["test"]) and np.issubdtype(labels["train"].dtype, np.integer):
        labels["test"] = labels["test"].astype(np.int32)  # class labels held as floats
    classes = _class_count(name, labels, num_classes)
    train = {"inputs": np.asarray(train_x, np.float32), "targets": labels["train"]}
    test = {"inputs": np.asarray(test_x, np.float32), "targets": labels["test"]}
    return from_examples(train, test, val_size=val_size, name=name, num_classes=classes)


NORMALIZATIONS = ("standard", "scale", "none")


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
    train, test = read_examples(train, "train"), read_examples(test, "test")
    num_classes = features["label"].num_classes
    return from_arrays(
        train[feature], train["label"], test[feature], test["label"], val_size, spec, num_classes
    )


def _load_text(spec: str, val_size: int) -> Dataset:
    """`text:<corpus>[:<length>]`: next-token windows of a text (`sweepjax.text`)."""
    from sweepjax.text import token_windows

    _, _, rest = spec.partition(":")
    corpus, _, length = rest.partition(":")
    if length and not length.isdigit():
        raise ValueError(f"dataset: {spec!r}: the window length {length!r} is not a whole number.")
    windows = token_windows(corpus or "pydoc", int(length or 64), val_size, val_size)

    def split(tokens):
        return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}

    name = f"{spec} (sha256 {windows.digest})"
    return Dataset(name, split(windows.train), split(windows.val), split(windows.test))


def _load_sklearn(spec: str, val_size: int) -> Dataset:
    """`sklearn:<name>`: a set scikit-learn ships (no download); a fifth is held out for test.

    Float targets (regression) are standardised with the training split's mean and deviation,
    so MSE is in units of the target's variance; integer targets are class labels.
    """
    name = spec.partition(":")[2]
    try:
        from sklearn import datasets
    except ImportError as err:
        raise ValueError(
            f"dataset: {spec!r} needs scikit-learn: pip install 'sweepjax[datasets]'."
        ) from err
    bundled = ("breast_cancer", "diabetes", "digits", "iris", "linnerud", "wine")
    if name not in bundled:
        raise ValueError(f"dataset: {spec!r}: allowed: {[f'sklearn:{b}' for b in bundled]}.")
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[: len(x) // 5], order[len(x) // 5 :]
    if np.issubdtype(y.dtype, np.floating):
        mean, std = y[train].mean(0), y[train].std(0)
        y = (y - mean) / std
    return from_arrays(x[train], y[train], x[test], y[test], val_size, spec)


def load_dataset(name: str, val_size: int, normalization: str = "standard") -> Dataset:
    """Load data set `name`: `mnist1d`, `text:<corpus>[:<length>]`, `sklearn:<name>` or
    `tfds:<name>[:<config>]`.

    Args:
      name: the embedded `mnist1d`; `text:pydoc[:64]`, next-token windows of 64 byte tokens of
        the Python documentation every Python ships (`sweepjax.text`); `sklearn:diabetes` and
        the other small sets scikit-learn ships (extra `datasets`); or a tensorflow-datasets
        classification set as `tfds:<name>[:<config>]` (read through `tfds.data_source`, which
        needs no TensorFlow).
      val_size: examples carved from train (with a fixed seed) for validation (for text, the
        windows of validation and of test).
      normalization: see `normalize`.

    >>> load_dataset("mnist1d", val_size=500).describe()
    'mnist1d: 3500 train / 500 val / 1000 test, features (40,), 10 classes'
    """
    if name == "mnist1d":
        a = _mnist1d_arrays()
        dataset = from_arrays(a["x"], a["y"], a["x_test"], a["y_test"], val_size, name, 10)
    elif name.startswith("tfds:"):
        dataset = _load_tfds(name, val_size)
    elif name.startswith("text:"):
        dataset = _load_text(name, val_size)
    elif name.startswith("sklearn:"):
        dataset = _load_sklearn(name, val_size)
    else:
        raise ValueError(
            f"dataset: unknown data set {name!r}; allowed: the embedded {list(EMBEDDED)}, "
            "'text:pydoc[:<length>]', 'sklearn:<name>' (e.g. 'sklearn:diabetes'), "
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
