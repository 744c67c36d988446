"""Named data sets: the embedded MNIST-1D, a text corpus, scikit-learn's and tfds' sets.

`load_dataset(name)` returns a `Dataset` with train, validation and test splits. The embedded
default, MNIST-1D, is generated offline by the `mnist1d` package with the paper's default
arguments (4,000 train and 1,000 test examples of length 40) and cached as `.npz` in
`cache_dir()`; a damaged cache is regenerated, and a cache folder that cannot be written only
costs the generation in each run (each with a `DataCacheWarning`).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from sweepjax.engine.data import SPLIT_SEED, Dataset, from_arrays, normalize, read_examples
from sweepjax.files import atomic_write, load_npz

EMBEDDED = ("mnist1d",)
MNIST1D_ARRAYS = ("x", "y", "x_test", "y_test")


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
    """`text:<corpus>[:<length>]`: next-token windows of a text (`sweepjax.engine.text`)."""
    from sweepjax.engine.text import token_windows

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
        the Python documentation every Python ships (`sweepjax.engine.text`); `sklearn:diabetes` and
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
            "or arrays through sweepjax.engine.data.from_arrays(...)."
        )
    return normalize(dataset, normalization)
