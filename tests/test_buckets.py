"""Structural hyperparameters: one bucket, one compiled program per structure, one merged table."""

import csv

import numpy as np
import pytest

import sweepjax
from sweepjax.engine.population import make_train_chunk
from sweepjax.runner.run import program_of
from sweepjax.runner.training import train_population
from sweepjax.sweep.buckets import plan_buckets
from sweepjax.sweep.signals import StopOnSignal


@pytest.fixture(scope="module")
def hidden_sweep(tiny_config):
    return tiny_config.replace(
        space={
            "learning_rate": sweepjax.Choice([0.05, 0.2]),
            "model.hidden": sweepjax.Choice([[4], [6], [10]]),
        },
        searcher="grid",
        population=6,
        steps=20,
    )


@pytest.mark.slow
def test_three_widths_run_as_three_buckets_with_one_program_each(hidden_sweep, tiny_data, tmp_path):
    before = make_train_chunk.cache_info().currsize
    result = sweepjax.run(
        hidden_sweep.replace(out_dir=str(tmp_path)), quiet=True, dataset=tiny_data
    )
    assert make_train_chunk.cache_info().currsize - before == 3  # one chunk program per bucket
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["member"] for r in rows] == [str(i) for i in range(6)]
    assert sorted({r["model.hidden"] for r in rows}) == ["[10]", "[4]", "[6]"]
    assert {(r["model.hidden"], round(float(r["learning_rate"]), 3)) for r in rows} == {
        (h, lr) for h in ("[4]", "[6]", "[10]") for lr in (0.05, 0.2)
    }
    assert result.curves["val_accuracy"].shape == (2, 6)
    assert len(result.summary["buckets"]) == 3 and (tmp_path / "buckets.json").exists()


def test_a_bucket_trains_as_its_structure_alone(hidden_sweep, tiny_data):
    result = sweepjax.run(hidden_sweep, quiet=True, dataset=tiny_data)
    bucket = plan_buckets(hidden_sweep)[1]
    program = program_of(bucket.config)
    alone = train_population(
        bucket.config,
        tiny_data,
        program,
        rows=bucket.rows,
        stop=StopOnSignal(enabled=False),
        quiet=True,
    )
    for local, member in enumerate(bucket.members):
        row = result.rows[member]
        assert row["model.hidden"] == "[6]" and row["seed"] == member
        for key in ("final_val_loss", "final_val_accuracy", "test_accuracy"):
            assert row[key] == alone.rows[local][key]


def test_resume_continues_every_bucket(hidden_sweep, tiny_data, tmp_path):
    config = hidden_sweep.replace(out_dir=str(tmp_path), steps=10)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    resumed = sweepjax.resume(tmp_path, overrides=["steps=20"], quiet=True, dataset=tiny_data)
    straight = sweepjax.run(hidden_sweep, quiet=True, dataset=tiny_data)
    np.testing.assert_array_equal(resumed.curves["val_loss"], straight.curves["val_loss"])
    assert [r["test_accuracy"] for r in resumed.rows] == [r["test_accuracy"] for r in straight.rows]


def test_structural_values_are_validated(hidden_sweep, tiny_data):
    bad = hidden_sweep.replace(
        space={"model.activation": sweepjax.Choice(["relu", "swishy"])}, searcher="random"
    )
    with pytest.raises(
        ValueError, match=r"space.model.activation: 'swishy' does not build a model"
    ):
        sweepjax.run(bad, quiet=True, dataset=tiny_data)
    with pytest.raises(ValueError, match=r"space.model.kernel: .* is continuous"):
        sweepjax.run(
            hidden_sweep.replace(space={"model.kernel": sweepjax.Uniform(1, 3)}),
            quiet=True,
            dataset=tiny_data,
        )
