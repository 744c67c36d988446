"""Results as pandas DataFrames: the trial table, the long curves, seeds aggregated."""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
import pytest

import sweepjax
from sweepjax import Choice
from sweepjax.sweep.results import Result

pd = pytest.importorskip("pandas")

HEALTHY_LR, DIVERGING_LR = 0.05, 1e4


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A tiny grid sweep: two learning rates (one diverges) times two seeds; its result and
    its folder."""
    out = tmp_path_factory.mktemp("frames")
    config = sweepjax.Config(
        population=4,
        steps=20,
        eval_every=10,
        model={"name": "mlp", "hidden": [8]},
        searcher="grid",
        space={"learning_rate": Choice([HEALTHY_LR, DIVERGING_LR]), "seed": Choice([0, 1])},
        out_dir=str(out),
    )
    return sweepjax.run(config, quiet=True), out


def csv_table(out) -> tuple[list[str], list[list[str]]]:
    with open(out / "results.csv", newline="") as f:
        header, *lines = list(csv.reader(f))
    return header, lines


def test_to_pandas_equals_results_csv(sweep):
    result, out = sweep
    header, lines = csv_table(out)
    frame = result.to_pandas()
    assert list(frame.columns) == header and len(frame) == len(lines) == 4
    for i, line in enumerate(lines):
        for name, text in zip(header, line, strict=True):
            value = frame.at[i, name]
            if pd.api.types.is_numeric_dtype(frame[name]):
                assert value == float(text) or (math.isnan(value) and text == "nan"), (i, name)
            else:
                assert value == text, (i, name)
    pd.testing.assert_frame_equal(sweepjax.read_result(out).to_pandas(), frame)


def test_numeric_columns_are_numeric(sweep):
    frame = sweep[0].to_pandas()
    for name in ("member", "seed", "diverged_at_step"):
        assert frame[name].dtype == np.int64, name
    floats = [c for c in frame.columns if c == "learning_rate" or c.startswith(("final", "test"))]
    assert len(floats) >= 5 and all(frame[c].dtype == np.float64 for c in floats)
    assert not pd.api.types.is_numeric_dtype(frame["status"])
    assert sorted(set(frame["status"])) == ["diverged", "ok"]


def test_curves_frame_matches_curves_npz(sweep):
    result, out = sweep
    npz = np.load(out / "curves.npz")
    frame = sweepjax.read_result(out).curves_frame()
    assert list(frame.columns) == ["member", "step", "metric", "value"]
    assert list(frame["metric"].unique()) == [k for k in npz.files if k != "steps"]
    assert not frame["value"].isna().any()
    step_index = {int(s): i for i, s in enumerate(npz["steps"])}
    for name in npz.files[1:]:
        rebuilt = np.full(npz[name].shape, np.nan)
        part = frame[frame["metric"] == name]
        rebuilt[[step_index[s] for s in part["step"]], part["member"]] = part["value"]
        np.testing.assert_array_equal(rebuilt, npz[name])
        assert len(part) == np.count_nonzero(~np.isnan(npz[name]))
    assert np.isnan(npz["val_loss"]).any()  # the diverged trials' missing steps were dropped
    pd.testing.assert_frame_equal(result.curves_frame(), frame)


def test_curves_frame_selects_metrics(sweep):
    frame = sweep[0].curves_frame(["val_accuracy"])
    assert set(frame["metric"]) == {"val_accuracy"}
    with pytest.raises(ValueError, match=r"metrics: 'val_mse' .* allowed: \['train_loss'"):
        sweep[0].curves_frame(["val_mse"])


def test_curves_frame_without_curves_is_empty():
    frame = Result([], {}, {}).curves_frame()
    assert list(frame.columns) == ["member", "step", "metric", "value"] and frame.empty


def test_summarize_by_aggregates_seeds_like_numpy(sweep):
    result, out = sweep
    header, lines = csv_table(out)
    rows = [dict(zip(header, line, strict=True)) for line in lines]
    summary = sweepjax.read_result(out).summarize_by()
    assert list(summary.columns[:3]) == ["learning_rate", "n", "n_diverged"]
    assert summary["n"].tolist() == [2, 2] and summary["n_diverged"].tolist() == [0, 2]
    healthy = [r for r in rows if r["status"] == "ok"]
    assert {float(r["learning_rate"]) for r in healthy} == {summary.at[0, "learning_rate"]}
    for metric in ("final_val_accuracy", "test_loss", "best_val_accuracy"):
        values = np.array([float(r[metric]) for r in healthy])
        assert summary.at[0, f"{metric}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert summary.at[0, f"{metric}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert np.isnan(summary.at[1, f"{metric}_mean"])  # every trial diverged
    pd.testing.assert_frame_equal(result.summarize_by(["learning_rate"]), summary)


def hand_made() -> Result:
    """Two learning rates by three seeds; one trial of the first diverged."""
    grid = [(lr, seed) for lr in (0.1, 0.3) for seed in range(3)]
    rows = [
        {
            "member": i,
            "learning_rate": lr,
            "seed": seed,
            "status": "diverged" if i == 1 else "ok",
            "diverged_at_step": 7 if i == 1 else -1,
            "final_val_mse": math.inf if i == 1 else 0.1 * i,
            "test_mse": math.nan if i == 1 else 0.2 * i,
        }
        for i, (lr, seed) in enumerate(grid)
    ]
    return Result(rows, {}, {})


def test_diverged_trials_are_counted_not_averaged():
    summary = hand_made().summarize_by()
    assert summary.columns.tolist() == [
        "learning_rate",
        "n",
        "n_diverged",
        "final_val_mse_mean",
        "final_val_mse_std",
        "test_mse_mean",
        "test_mse_std",
    ]
    assert summary["n"].tolist() == [3, 3] and summary["n_diverged"].tolist() == [1, 0]
    np.testing.assert_allclose(summary["final_val_mse_mean"], [np.mean([0.0, 0.2]), 0.4])
    np.testing.assert_allclose(
        summary["test_mse_std"], [np.std([0.0, 0.4], ddof=1), np.std([0.6, 0.8, 1.0], ddof=1)]
    )


def test_trials_stopped_early_are_counted_not_averaged():
    rows = hand_made().rows
    rows[5] = {**rows[5], "status": "stopped", "final_val_mse": 9.0}  # stopped at a rung
    summary = Result(rows, {}, {}).summarize_by()
    assert summary["n"].tolist() == [3, 3]
    np.testing.assert_allclose(summary["final_val_mse_mean"], [np.mean([0.0, 0.2]), 0.35])


def test_summarize_by_other_groupings():
    result = hand_made()
    everything = result.summarize_by([])
    assert len(everything) == 1 and everything.at[0, "n"] == 6
    assert everything.at[0, "final_val_mse_mean"] == pytest.approx(np.mean([0, 0.2, 0.3, 0.4, 0.5]))
    by_seed = result.summarize_by("seed")
    assert by_seed["seed"].tolist() == [0, 1, 2] and by_seed["n_diverged"].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"by: 'final_val_mse' .*allowed: \['member', "):
        result.summarize_by(["final_val_mse"])
    with pytest.raises(ValueError, match=r"by: 'momentum' is not a column"):
        result.summarize_by(["momentum"])


def test_without_pandas_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    result = hand_made()
    for method in (result.to_pandas, result.curves_frame, result.summarize_by):
        with pytest.raises(ImportError, match=r"pip install 'sweepjax\[pandas\]'"):
            method()
