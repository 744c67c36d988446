"""Searchers driving real sweeps: coarse-to-fine rounds, Optuna's batches, warm starts, staged
tuning and the Pareto set. Their rules alone are in test_searchers.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sweepjax
from sweepjax.staged import staged_sweep


@pytest.fixture(scope="module")
def small(tiny_config):
    return tiny_config.replace(population=4, steps=20, eval_every=10)


def test_coarse_to_fine_samples_its_second_round_inside_the_first_rounds_best_box(small, tiny_data):
    config = small.replace(trials=8, searcher={"name": "coarse_to_fine", "keep": 0.5})
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    rows = result.rows
    first, second = rows[:4], rows[4:]
    assert [r["start_step"] for r in second] == [20] * 4  # the round waited for the first
    best = sorted(first, key=lambda r: -r["final_val_accuracy"])[:2]
    rates = np.log([r["learning_rate"] for r in best])
    width = rates.max() - rates.min()
    low, high = math.exp(rates.min() - 0.1 * width), math.exp(rates.max() + 0.1 * width)
    for row in second:
        assert low * (1 - 1e-6) <= row["learning_rate"] <= high * (1 + 1e-6)


def test_optuna_tpe_proposes_batches_of_the_free_slots(small, tiny_data):
    pytest.importorskip("optuna")
    config = small.replace(trials=12, searcher="tpe", scheduler={"name": "asha", "min_steps": 10})
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert len(result.rows) == 12 and result.summary["trials_running"] == 0
    low, high = config.space["learning_rate"].low, config.space["learning_rate"].high
    assert all(low <= r["learning_rate"] <= high for r in result.rows)


def test_nsga2_reports_its_pareto_set(small, tiny_data):
    pytest.importorskip("optuna")
    config = small.replace(trials=8, searcher="nsga2", scheduler={"name": "asha", "min_steps": 10})
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    front = result.summary["pareto_trials"]
    rows = {r["member"]: r for r in result.rows}
    assert front and all(rows[m]["status"] != "diverged" for m in front)
    best = result.best["member"]
    assert best in front  # the best by validation is never dominated


def test_a_warm_start_begins_where_an_earlier_sweep_found_the_best(small, tiny_data, tmp_path):
    earlier = small.replace(out_dir=str(tmp_path / "earlier"))
    first = sweepjax.run(earlier, quiet=True, dataset=tiny_data)
    rates = sorted(r["learning_rate"] for r in first.ranked()[:2])
    warm = small.replace(
        searcher={"name": "coarse_to_fine", "keep": 0.5, "warm_start": earlier.out_dir}
    )
    result = sweepjax.run(warm, quiet=True, dataset=tiny_data)
    # The first round already samples the box around the earlier sweep's best two.
    width = math.log(rates[1] / rates[0])
    low, high = rates[0] * math.exp(-0.1 * width), rates[1] * math.exp(0.1 * width)
    for row in result.rows:
        assert low * (1 - 1e-6) <= row["learning_rate"] <= high * (1 + 1e-6)


def test_staged_tuning_fixes_each_stages_best_and_spends_the_same_budget(small, tiny_data):
    results = staged_sweep(small, [["learning_rate"], ["momentum"]], dataset=tiny_data, quiet=True)
    assert len(results) == 2
    best_rate = results[0].best["learning_rate"]
    assert {r["learning_rate"] for r in results[1].rows} == {best_rate}
    assert len({r["momentum"] for r in results[1].rows}) == small.population
    with pytest.raises(ValueError, match=r"stages: space.momentum is in no stage"):
        staged_sweep(small, [["learning_rate"]], dataset=tiny_data, quiet=True)


def test_adaptive_results_read_back_and_report(small, tiny_data, tmp_path):
    config = small.replace(
        trials=8, scheduler={"name": "asha", "min_steps": 10}, out_dir=str(tmp_path)
    )
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    again = sweepjax.read_result(tmp_path)
    assert [r["member"] for r in again.rows] == list(range(8))
    assert again.curves["val_accuracy"].shape[1] == 8
    report = sweepjax.write_report(tmp_path)
    assert (tmp_path / "figures" / "trials.png").exists() and report.exists()
    assert "8 trials" in sweepjax.report.show(tmp_path)
    assert result.summary["trials"] == 8
