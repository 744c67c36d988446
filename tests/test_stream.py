"""The streaming data path, the prefetch thread, on-device augmentation and data errors."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest
from conftest import assert_same, count_compiles

import sweepjax
from sweepjax.engine import stream
from sweepjax.engine.data import Augment, augment_batch, augment_key, augmentation_of
from sweepjax.engine.population import init_population, make_stream_chunk, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams


def _image_config(tiny_config, **changes) -> sweepjax.Config:
    """One program for every test here (chunks of 10 steps), so they share compiled functions."""
    return tiny_config.replace(
        **{
            "population": 4,
            "steps": 20,
            "batch_size": 12,
            "eval_every": 10,
            "augment": {"crop_padding": 1, "flip": True},
            **changes,
        }
    )


def test_device_and_stream_chunks_are_bitwise_the_same(tiny_config, tiny_images):
    config = _image_config(tiny_config)
    program, hparams = program_of(config), sample_hparams(config)
    data, key, steps = tiny_images, jax.random.key(config.seed), 10  # an epoch is 8 steps
    train = jax.device_put(data.train)
    x = train["inputs"]

    def fresh():
        return init_population(program, hparams, x[: config.batch_size])

    on_device, device_losses = make_train_chunk(program, steps)(fresh(), hparams, train, key)
    block = stream.host_block(data.train, key, 0, steps, config.batch_size)
    assert block["inputs"].shape == (steps, config.batch_size, 6, 6, 2)
    streamed, stream_losses = make_stream_chunk(program, steps)(fresh(), hparams, block, key)
    # Two programs (the batch gathered inside one, passed to the other) with the same
    # arithmetic: bitwise on the CPU, to float32 rounding on a GPU (`conftest.assert_same`).
    assert_same(np.asarray(stream_losses), np.asarray(device_losses))
    for a, b in zip(jax.tree.leaves(on_device), jax.tree.leaves(streamed), strict=True):
        assert_same(np.asarray(b), np.asarray(a))


def test_streamed_sweep_matches_the_device_sweep_and_resumes_exactly(
    tiny_config, tiny_images, tmp_path
):
    config = _image_config(tiny_config, steps=30)
    device = sweepjax.run(config.replace(data_placement="device"), quiet=True, dataset=tiny_images)
    assert device.summary["data_placement"] == "device"

    streamed = config.replace(data_placement="stream", out_dir=str(tmp_path / "s"))
    sweepjax.run(streamed.replace(steps=20), quiet=True, dataset=tiny_images)
    resumed = sweepjax.resume(  # at step 20
        streamed.out_dir, overrides=["steps=30"], config=streamed, quiet=True, dataset=tiny_images
    )
    assert resumed.summary["data_placement"] == "stream"
    for name, curve in device.curves.items():  # as above: bitwise on the CPU
        assert_same(resumed.curves[name], curve)
    assert_same(
        np.float32([r["test_accuracy"] for r in resumed.rows]),
        np.float32([r["test_accuracy"] for r in device.rows]),
    )
    assert not [t for t in threading.enumerate() if t.name == "sweepjax-prefetch"]


def _plan(n):
    return [(i * 10, 10) for i in range(n)]


def test_prefetch_builds_the_next_block_ahead_and_in_order():
    built = []

    def make_block(start, length):
        built.append(start)
        return np.full((length,), start)

    with stream.Prefetcher(make_block, _plan(3)) as prefetcher:
        np.testing.assert_array_equal(np.asarray(prefetcher.get(0, 10)), np.zeros(10))
        deadline = time.monotonic() + 10
        while built != [0, 10, 20] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert built == [0, 10, 20]  # one block queued, the next being made, while chunk 0 runs
        with pytest.raises(RuntimeError, match=r"chunk \(20, 10\) requested, but the plan's next"):
            prefetcher.get(20, 10)
        assert int(prefetcher.get(10, 10)[0]) == 10 and int(prefetcher.get(20, 10)[0]) == 20
    assert not prefetcher.alive


def test_prefetch_error_reaches_the_consumer_and_the_thread_ends():
    def make_block(start, length):
        if start == 10:
            raise OSError("disk gone")
        return np.zeros(length)

    prefetcher = stream.Prefetcher(make_block, _plan(5))
    prefetcher.get(0, 10)
    with pytest.raises(RuntimeError, match="reading the chunk at step 10 failed") as info:
        prefetcher.get(10, 10)
    assert isinstance(info.value.__cause__, OSError)
    prefetcher.close()
    assert not prefetcher.alive


def test_prefetch_thread_stops_when_the_consumer_is_interrupted():
    """A full queue does not keep the thread alive after an interrupt leaves the `with`."""
    with (
        pytest.raises(KeyboardInterrupt),
        stream.Prefetcher(lambda start, length: np.zeros(length), _plan(100)) as prefetcher,
    ):
        prefetcher.get(0, 10)
        time.sleep(0.1)  # the thread fills the queue and blocks on the next block
        raise KeyboardInterrupt
    assert not prefetcher.alive


class _Device:
    def __init__(self, stats):
        self._stats = stats

    def memory_stats(self):
        return self._stats


def test_auto_placement_streams_what_does_not_fit():
    gpu = _Device({"bytes_limit": 16 << 30, "bytes_in_use": 4 << 30})  # 12 GiB free
    assert stream.choose_placement("auto", 5 << 30, gpu) == "device"
    assert stream.choose_placement("auto", 7 << 30, gpu) == "stream"  # over half the free memory
    assert stream.choose_placement("device", 7 << 30, gpu) == "device"
    cpu = _Device(None)
    assert stream.choose_placement("auto", 1 << 20, cpu) == "device"
    assert stream.choose_placement("auto", 1 << 60, cpu) == "stream"
    with pytest.raises(ValueError, match=r"data_placement: unknown 'disk'; allowed: \['auto'"):
        sweepjax.validate(sweepjax.Config(data_placement="disk"))


def test_augmentation_is_reproducible_and_changes_the_batch():
    augment = jax.jit(augment_batch, static_argnums=0)
    x = jax.random.normal(jax.random.key(0), (16, 8, 8, 3))
    key = augment_key(jax.random.key(0), 7)
    a = augment(Augment(crop_padding=2), x, key)
    np.testing.assert_array_equal(a, augment(Augment(crop_padding=2), x, key))
    assert a.shape == x.shape and not np.array_equal(a, x)
    other = augment(Augment(crop_padding=2), x, augment_key(jax.random.key(0), 8))
    assert not np.array_equal(a, other)
    flipped, images = np.asarray(augment(Augment(crop_padding=0), x, key)), np.asarray(x)
    mirrored = [np.array_equal(f, e[:, ::-1]) for f, e in zip(flipped, images, strict=True)]
    kept = [np.array_equal(f, e) for f, e in zip(flipped, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)


def test_augmentation_is_shared_by_every_member(tiny_config, tiny_images):
    """Member i trains the same alone as in the population: its batches do not depend on i."""
    config = _image_config(tiny_config)
    program, hparams = program_of(config), sample_hparams(config)
    data, key = jax.device_put(tiny_images.train), jax.random.key(0)

    def train(hp):
        pop = init_population(program, hp, data["inputs"][: config.batch_size])
        return make_train_chunk(program, 10)(pop, hp, data, key)[1]

    losses = np.asarray(train(hparams))
    alone = np.asarray(train(hparams.select([2])))
    np.testing.assert_allclose(alone[:, 0], losses[:, 2], rtol=1e-5)


def test_augmentation_config_errors(tiny_config, tiny_data):
    assert augmentation_of({"crop_padding": 0, "flip": False}) is None
    with pytest.raises(ValueError, match=r"augment.crop: 2 is not an option; allowed: \['crop_"):
        sweepjax.validate(tiny_config.replace(augment={"crop": 2}))
    with pytest.raises(ValueError, match=r"augment.crop_padding: -1 is not allowed; allowed: an"):
        sweepjax.validate(tiny_config.replace(augment={"crop_padding": -1}))
    with pytest.raises(ValueError, match=r"augment: 'yes' is not allowed"):
        sweepjax.validate(tiny_config.replace(augment="yes"))
    with (
        count_compiles() as compiles,
        pytest.raises(
            ValueError,
            match=r"augment: .* needs image features .* 'tiny' has features of shape \(12,\)",
        ),
    ):
        sweepjax.run(tiny_config.replace(augment=True), quiet=True, dataset=tiny_data)
    assert compiles[0] == 0


def test_labels_out_of_range_are_refused_before_compiling(tiny_config, tiny_data):
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"'arrays' train labels span \[0, 5\]; allowed: 0 to 2"):
        sweepjax.from_arrays(x, np.arange(10) % 6, x, np.zeros(10), 2, num_classes=3)
    bad = tiny_data._replace(val={**tiny_data.val, "targets": tiny_data.val["targets"] + 3})
    with (
        count_compiles() as compiles,
        pytest.raises(
            ValueError,
            match=r"dataset: 'tiny' val targets do not fit task 'classification'; allowed: labels "
            r"from 0 to 2 \(the model's 3 outputs\), got labels in \[3, 5\]",
        ),
    ):
        sweepjax.run(tiny_config, quiet=True, dataset=bad)
    assert compiles[0] == 0
