"""An exported member loads with its own Flax API alone, and scores what the sweep reported.

nnx: the checkpoint is the pure dict `nnx.replace_by_pure_dict` takes; linen: the variables
`module.apply` takes. `hparams.json` lists only what the member's families read.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import sweepjax
from sweepjax.engine.models import build_model
from sweepjax.sweep.config import Config
from sweepjax.sweep.export import member_hyperparameters, nnx_pure_dicts

MEMBER = 1
CLIPPING = ("clip_norm", "clip_value")


class Buffer(nnx.Variable):
    """A non-parameter variable: it goes to the export's `state/`."""


class Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(12, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)
        self.shift = Buffer(jnp.full((3,), 0.25))

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x))) + self.shift[...]


def _sweep_and_export(config, data, out) -> tuple[dict, dict]:
    """Run `config`, export `MEMBER`: its results.csv row and its export folder's contents."""
    sweepjax.run(config, quiet=True, dataset=data)
    to = sweepjax.export_member(config.out_dir, MEMBER, out / f"member{MEMBER}")
    restore = ocp.StandardCheckpointer().restore
    files = {
        "checkpoint": restore(to / "checkpoint"),
        "state": restore(to / "state") if (to / "state").exists() else None,
        "info": json.loads((to / "hparams.json").read_text()),
    }
    return sweepjax.read_result(config.out_dir).rows[MEMBER], files


@pytest.fixture(scope="module")
def nnx_export(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("nnx")
    config = sweepjax.Config(
        model=Net,
        optimizer="sgd",
        space={"learning_rate": sweepjax.LogUniform(0.05, 0.5), "momentum": 0.9},
        population=2,
        steps=30,
        batch_size=16,
        eval_every=10,
        out_dir=str(out / "sweep"),
    )
    return _sweep_and_export(config, tiny_data, out)


@pytest.fixture(scope="module")
def linen_export(tiny_data, tmp_path_factory):
    """The built-in MLP with batch norm (a `batch_stats` collection), clipping by norm."""
    out = tmp_path_factory.mktemp("linen")
    config = sweepjax.Config(
        model={"name": "mlp", "hidden": [16], "num_classes": 3, "norm": True},
        optimizer="sgd",
        space={"learning_rate": sweepjax.LogUniform(0.05, 0.5), "momentum": 0.9, "clip_norm": 1.0},
        population=2,
        steps=30,
        batch_size=16,
        eval_every=10,
        out_dir=str(out / "sweep"),
    )
    return config, *_sweep_and_export(config, tiny_data, out)


def _assert_reported_accuracy(logits, row, data) -> None:
    """The sweep evaluated all members at once (vmapped, in padded batches), so XLA may sum the
    float32 products in another order than this plain call: logits differ by some ulps, which
    can flip an argmax only at a near-tie. One example of slack, 1/n, allows one such flip."""
    targets = np.asarray(data.test["targets"])
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == targets))
    assert row["test_accuracy"] > 0.5  # trained, not a constant guess among 3 classes
    assert abs(row["test_accuracy"] - accuracy) <= 1 / len(targets) + 1e-9  # + csv rounding


def test_an_nnx_export_loads_with_replace_by_pure_dict_and_update(nnx_export, tiny_data):
    row, files = nnx_export
    model = Net(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    fresh = nnx.to_pure_dict(params)
    restored = files["checkpoint"]
    assert jnp.asarray(restored["out"]["bias"]).shape == (3,)  # not {"bias": {"value": ...}}
    nnx.replace_by_pure_dict(params, restored)
    nnx.update(model, params)
    loaded = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert not np.allclose(loaded["hidden"]["kernel"], fresh["hidden"]["kernel"])
    np.testing.assert_array_equal(loaded["out"]["kernel"], restored["out"]["kernel"])

    model.shift[...] = jnp.zeros(3)
    rest = nnx.state(model, nnx.Not(nnx.Param))
    nnx.replace_by_pure_dict(rest, files["state"])
    nnx.update(model, rest)
    np.testing.assert_array_equal(model.shift[...], np.full(3, 0.25, np.float32))

    x = jnp.asarray(tiny_data.test["inputs"], jnp.float32)
    _assert_reported_accuracy(model(x), row, tiny_data)
    assert files["info"]["api"] == "flax.nnx" and files["info"]["member"] == MEMBER


def test_a_linen_export_is_the_variables_module_apply_takes(linen_export, tiny_data):
    config, row, files = linen_export
    variables = files["checkpoint"]
    assert sorted(variables) == ["batch_stats", "params"] and files["state"] is None
    x = jnp.asarray(tiny_data.test["inputs"], jnp.float32)
    logits = build_model(config.model).apply(variables, x, train=False)
    _assert_reported_accuracy(logits, row, tiny_data)
    assert files["info"]["api"] == "flax.linen"


def test_hparams_name_clipping_only_where_the_sweep_clips(nnx_export, linen_export):
    unclipped = nnx_export[1]["info"]["hyperparameters"]
    clipped = linen_export[2]["info"]["hyperparameters"]
    assert sorted(unclipped) == sorted(
        ["optimizer", "schedule", "learning_rate", "momentum", "seed", "warmup_steps", "batch_size"]
    )
    assert not set(CLIPPING) & set(unclipped) and "l2" not in unclipped
    assert clipped["clip_norm"] == 1.0 and "clip_value" not in clipped  # only the one named
    assert (clipped["optimizer"], clipped["schedule"], clipped["batch_size"]) == (
        "sgd",
        "constant",
        16,
    )
    row = nnx_export[0]
    assert np.float32(unclipped["learning_rate"]) == np.float32(row["learning_rate"])


def test_each_member_names_only_its_own_familys_hyperparameters():
    """A mixed sweep: an adam member has no momentum, an sgd member no betas; a trial as the
    searcher gave it (an adaptive sweep's kept best) gets its family's defaults filled in."""
    config = Config(
        space={
            "optimizer": sweepjax.Choice(["adam", "sgd"]),
            "schedule": sweepjax.Choice(["cosine", "constant"]),
            "momentum": 0.9,
            "weight_decay": 1e-4,
        },
        schedules={"momentum": "linear"},
        steps=100,
    )
    columns = {"learning_rate": 0.1, "momentum": 0.9, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    columns |= {"momentum.decay_steps": 100.0, "momentum.end_learning_rate": 0.0}
    columns |= {"weight_decay": 1e-4, "clip_norm": 1.0, "seed": 0, "batch_size": 100.0}
    # Index columns count in the registries' order: ("sgd", "adam"), ("constant", "cosine").
    adam = member_hyperparameters(config, {**columns, "optimizer": 1, "schedule": 1})
    sgd = member_hyperparameters(config, {**columns, "optimizer": 0, "schedule": 0})
    assert (adam["optimizer"], adam["schedule"], sgd["optimizer"]) == ("adam", "cosine", "sgd")
    assert {"b1", "b2", "eps", "weight_decay", "decay_steps", "alpha"} <= set(adam)
    assert not {"momentum", "momentum.decay_steps", "clip_norm"} & set(adam)
    assert {"momentum", "momentum.decay_steps", "weight_decay"} <= set(sgd)
    assert not {"b1", "decay_steps", "alpha"} & set(sgd)
    trial = {"optimizer": "sgd", "learning_rate": 0.2, "momentum": 0.9, "weight_decay": 1e-4}
    kept = member_hyperparameters(config, {**trial, "schedule": "constant", "seed": 5})
    assert kept["momentum.end_learning_rate"] == 0.0 and kept["batch_size"] == 100
    assert kept["warmup_steps"] == 0 and "b1" not in kept


def test_an_earlier_nnx_export_converts_to_the_pure_dicts():
    """Exports written before held `{"params": ..., "state": ...}`, each array `{"value": a}`."""
    model = Net(nnx.Rngs(0))
    params, rest = nnx.state(model, nnx.Param), nnx.state(model, nnx.Not(nnx.Param))
    wrap = {"params": nnx.to_pure_dict(params), "state": nnx.to_pure_dict(rest)}
    earlier = jax.tree.map(lambda a: {"value": np.asarray(a) + 1}, wrap)
    pure_params, pure_rest = nnx_pure_dicts(earlier)
    nnx.replace_by_pure_dict(params, pure_params)
    nnx.replace_by_pure_dict(rest, pure_rest)
    nnx.update(model, params, rest)
    np.testing.assert_array_equal(model.shift[...], np.full(3, 1.25, np.float32))
    np.testing.assert_array_equal(model.out.bias[...], np.ones(3, np.float32))
    assert nnx_pure_dicts({"params": pure_params}) is None  # a linen model's variables
