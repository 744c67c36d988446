"""No hyperparameter is silently ignored: two members equal but for one key (the same seed, the
same batches) must train differently. One compiled program per key."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import sweepjax
from sweepjax.engine import stream
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams

CASES = [  # (optimizer, schedule, key, two values, other fixed names)
    ("sgd", "constant", "momentum", [0.0, 0.9], {}),
    ("sgd", "constant", "weight_decay", [0.0, 0.5], {}),
    ("sgd", "constant", "l2", [0.0, 0.5], {}),
    ("sgd", "constant", "clip_norm", [1e-3, 100.0], {}),
    ("sgd", "constant", "clip_value", [1e-4, 100.0], {}),
    ("sgd", "constant", "dropout", [0.0, 0.5], {}),
    ("sgd", "constant", "batch_size", [8, 16], {}),
    ("adam", "constant", "b1", [0.5, 0.9], {}),
    ("adam", "constant", "b2", [0.9, 0.999], {}),
    ("adam", "constant", "eps", [1e-8, 1e-1], {}),
    ("rmsprop", "constant", "decay", [0.5, 0.9], {}),
    ("sgd", "cosine", "decay_steps", [3, 100], {}),
    ("sgd", "cosine", "alpha", [0.0, 0.9], {"decay_steps": 3}),
    ("sgd", "exponential", "decay_rate", [0.1, 0.99], {"decay_steps": 1}),
    ("sgd", "constant", "warmup_steps", [0, 5], {}),
]


@pytest.mark.parametrize(
    ("optimizer", "schedule", "key", "values", "fixed"),
    CASES,
    ids=[f"{o}-{s}-{k}" for o, s, k, _, _ in CASES],
)
def test_a_key_that_changes_training_is_not_ignored(
    tiny_config, tiny_data, optimizer, schedule, key, values, fixed
):
    config = tiny_config.replace(
        optimizer=optimizer,
        schedule=schedule,
        searcher="grid",
        population=2,
        steps=6,
        space={"learning_rate": 0.05, **fixed, key: sweepjax.Choice(values)},
    )
    program, hparams = program_of(config), sample_hparams(config)
    hparams = sweepjax.HParams({**hparams.values, "seed": np.zeros(2, np.int32)})
    np.testing.assert_allclose(np.sort(hparams[key]), sorted(values), rtol=1e-6)  # float32
    train = jax.device_put(tiny_data.train)
    x = train["inputs"]
    pop = init_population(program, hparams, x[: config.batch_size])
    _, losses = make_train_chunk(program, config.steps)(
        pop, hparams, train, jax.random.key(config.seed)
    )
    losses = np.asarray(losses)
    assert np.isfinite(losses).all()
    assert not np.array_equal(losses[:, 0], losses[:, 1]), f"{key} changed nothing"


STRUCTURAL = [  # (key, the default, another value): keys of the whole sweep, not of a member
    ("precision", "float32", "bfloat16"),
    ("augment", None, {"crop_padding": 1, "flip": True}),
    ("schedules", {}, {"momentum": "cosine"}),
]


@pytest.mark.parametrize(("key", "default", "other"), STRUCTURAL, ids=[k for k, *_ in STRUCTURAL])
def test_a_sweep_key_that_changes_training_is_not_ignored(
    tiny_config, tiny_images, key, default, other
):
    """From the config through `sweepjax.run`: the same sweep with the key changed trains
    differently."""
    config = tiny_config.replace(population=2, steps=10, batch_size=12, eval_every=10)
    curves = [
        sweepjax.run(config.replace(**{key: value}), quiet=True, dataset=tiny_images).curves
        for value in (default, other)
    ]
    assert np.isfinite(curves[1]["train_loss"]).all()
    assert not np.array_equal(curves[0]["train_loss"], curves[1]["train_loss"]), key


def test_streamed_placement_trains_from_host_blocks(tiny_config, tiny_images, monkeypatch):
    """`data_placement="stream"` gathers every step's batch on the host (and gives the device
    path's numbers: `test_stream.py`); `"device"` gathers none there."""
    blocks = []
    host_block = stream.host_block

    def counted(train, data_key, start, length, batch):
        blocks.append((start, length))
        return host_block(train, data_key, start, length, batch)

    monkeypatch.setattr(stream, "host_block", counted)
    config = tiny_config.replace(population=2, steps=20, batch_size=12, eval_every=10)
    sweepjax.run(config.replace(data_placement="device"), quiet=True, dataset=tiny_images)
    assert blocks == []
    result = sweepjax.run(config.replace(data_placement="stream"), quiet=True, dataset=tiny_images)
    assert sorted(blocks) == [(0, 10), (10, 10)] and result.summary["data_placement"] == "stream"
