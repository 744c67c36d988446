"""Data sets: MNIST-1D, tensorflow-datasets through mocked data sources, arrays, the stream."""

import re
import warnings

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import sweepjax
from sweepjax.engine import loaders
from sweepjax.engine.data import batch_indices, from_arrays, normalize
from sweepjax.engine.loaders import DataCacheWarning, load_dataset


def test_mnist1d_is_the_papers_default_split():
    ds = load_dataset("mnist1d", val_size=500, normalization="none")
    assert (len(ds.train["targets"]) + len(ds.val["targets"]), len(ds.test["targets"])) == (
        4000,
        1000,
    )
    assert ds.train["inputs"].shape[1:] == (40,) and ds.num_classes == 10
    again = load_dataset("mnist1d", val_size=500, normalization="none")  # from the cache
    np.testing.assert_array_equal(ds.val["inputs"], again.val["inputs"])


def test_a_damaged_mnist1d_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPJAX_CACHE", str(tmp_path))
    cached = tmp_path / "mnist1d.npz"
    cached.write_bytes(b"PK\x03\x04 torn by a full disk")
    expected = rf"the cached MNIST-1D {re.escape(str(cached))} is damaged .*; regenerating it\.$"
    with pytest.warns(DataCacheWarning, match=expected):
        ds = load_dataset("mnist1d", val_size=500, normalization="none")
    assert (len(ds.train["targets"]), len(ds.test["targets"])) == (3500, 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist1d.npz"]  # no temporary file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read back from the new cache, without a warning
        again = load_dataset("mnist1d", val_size=500, normalization="none")
    np.testing.assert_array_equal(ds.val["inputs"], again.val["inputs"])


def test_mnist1d_loads_when_the_cache_cannot_be_written(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("")  # ~/.cache cannot be created in it, even by root
    monkeypatch.delenv("SWEEPJAX_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(home))
    x = np.random.default_rng(0).normal(size=(60, 40))
    fake = {"x": x[:50], "y": np.arange(50) % 10, "x_test": x[50:], "y_test": np.arange(10)}
    monkeypatch.setattr(loaders, "_generate_mnist1d", lambda: fake)
    expected = (
        rf"could not cache MNIST-1D in {re.escape(str(home))}/.cache/sweepjax \(Not a "
        r"directory\); it is generated again in each run\. To cache it, set SWEEPJAX_CACHE"
    )
    with pytest.warns(DataCacheWarning, match=expected):
        ds = load_dataset("mnist1d", val_size=10)
    assert ds.describe() == "mnist1d: 40 train / 10 val / 10 test, features (40,), 10 classes"


@pytest.mark.parametrize(
    ("name", "shape"),
    [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))],
)
def test_tfds_sets_train_end_to_end(name, shape):
    config = sweepjax.Config(
        dataset=f"tfds:{name}",
        val_size=8,
        model={"name": "mlp", "hidden": [8]},
        space={"learning_rate": 0.01},
        population=2,
        steps=4,
        batch_size=8,
        eval_every=2,
        out_dir=None,
    )
    with tfds.testing.mock_data(num_examples=40):
        result = sweepjax.run(config, quiet=True)
        dataset = load_dataset(config.dataset, 8)
    assert dataset.train["inputs"].shape[1:] == shape and dataset.num_classes == 10
    assert len(result.rows) == 2 and result.summary["steps_done"] == 4


def test_unknown_names_explain_what_is_allowed():
    with pytest.raises(
        ValueError,
        match=r"dataset: unknown data set 'mnist2d'; allowed: the embedded \['mnist1d'\], "
        r"'text:pydoc\[:<length>\]', 'sklearn:<name>' .* 'tfds:<name>",
    ):
        load_dataset("mnist2d", 10)
    with pytest.raises(
        ValueError, match=r"dataset: tfds has no data set 'no_such_set' .*tfds names look like"
    ):
        load_dataset("tfds:no_such_set", 10)


def test_from_arrays_validates_labels_and_split():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"'arrays' train labels span \[-1, -1\]; allowed: 0 to"):
        from_arrays(x, -np.ones(10, int), x, np.zeros(10, int), 2)
    with pytest.raises(ValueError, match=r"sklearn:nope'?: allowed: \['sklearn:breast_cancer'"):
        load_dataset("sklearn:nope", 10)
    with pytest.raises(ValueError, match=r"val_size: 10 must be >= 0 and below the 10 training"):
        from_arrays(x, np.zeros(10), x, np.zeros(10), 10)


def test_normalisation_uses_train_statistics_per_channel():
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, size=(50, 4, 4, 3)) * np.array([1.0, 10.0, 100.0])
    ds = normalize(from_arrays(images, np.zeros(50), images[:5], np.zeros(5), 10), "standard")
    np.testing.assert_allclose(ds.train["inputs"].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.train["inputs"].std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match=r"normalize: unknown 'zscore'; allowed: \['standard'"):
        normalize(ds, "zscore")


def test_batch_stream_visits_every_example_once_per_epoch():
    key = jax.random.key(3)
    seen = np.concatenate([np.asarray(batch_indices(key, t, 20, 5)) for t in range(4)])
    assert sorted(seen.tolist()) == list(range(20))
    next_epoch = np.concatenate([np.asarray(batch_indices(key, t, 20, 5)) for t in range(4, 8)])
    assert sorted(next_epoch.tolist()) == list(range(20)) and (seen != next_epoch).any()
