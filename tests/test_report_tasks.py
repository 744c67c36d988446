"""The report follows the sweep's ranking metric and its direction: a regression sweep ranks its
members by the lowest final validation mse everywhere (leaderboard, status, best member,
figures, the heat map's pair), from one tiny sweep and from results tables made by hand."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from conftest import result_row
from matplotlib import colormaps

import sweepjax
from sweepjax.engine.data import from_arrays
from sweepjax.report import analysis, read, read_sweep, render, show, write_report
from sweepjax.report.figure_axes import by_ranking
from sweepjax.report.figure_history import optimization_history
from sweepjax.report.figures import FIGURES, figure_curves, figure_heatmap, figure_parallel
from sweepjax.sweep import results
from sweepjax.sweep.columns import hyperparameter_columns

MIN = ("final_val_mse", "min")
NAN = float("nan")


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """A tiny regression sweep (linear targets in 2 columns) with its report written."""
    out = tmp_path_factory.mktemp("regression")
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 2))
    x, x_test = rng.normal(size=(200, 6)), rng.normal(size=(50, 6))
    data = from_arrays(x, x @ weights, x_test, x_test @ weights, val_size=40, name="linear")
    config = sweepjax.Config(
        task="regression",
        model={"name": "mlp", "hidden": [8], "num_classes": 2},
        space={
            "learning_rate": sweepjax.LogUniform(1e-3, 0.1),
            "momentum": sweepjax.Uniform(0, 0.9),
        },
        population=4,
        steps=20,
        eval_every=10,
        batch_size=32,
        out_dir=str(out),
    )
    sweepjax.run(config, dataset=data, quiet=True)
    write_report(out)
    return out


def _lowest_first(out) -> list[str]:
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["member"] for r in sorted(rows, key=lambda r: float(r["final_val_mse"]))]


def test_the_report_ranks_the_lowest_mse_first(regression):
    order = _lowest_first(regression)
    markdown = (regression / "report.md").read_text()
    section = markdown.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    assert section.startswith(
        " (top 4 of 4 healthy members, ranked by final_val_mse, lowest first)"
    )
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["rank", "member", "learning_rate", "momentum", "seed", "final_val_mse",
                      "best_val_mse", "final_val_loss", "final_train_loss", "test_mse"]  # fmt: skip
    members = [line.strip("|").split("|")[1].strip() for line in lines[2:]]
    assert members == order
    page = (regression / "report.html").read_text()
    table = page.split("<h2>Leaderboard", 1)[1].split("</table>", 1)[0]
    assert "ranked by final_val_mse, lowest first" in table
    assert re.findall(r"<tr><td>\d+</td><td>(\d+)</td>", table) == order


def test_the_best_member_named_is_the_lowest_mse(regression):
    best = _lowest_first(regression)[0]
    result = read_sweep(regression)
    assert str(result.rows[analysis.best_index(result)]["member"]) == best
    assert f"best #{best} at final_val_mse " in (regression / "report.md").read_text()
    text = show(regression)
    assert f"best #{best} at final_val_mse " in text.splitlines()[0]
    assert "ranked by final_val_mse (lowest first; ties by best_val_mse, then member)" in text
    assert text.splitlines()[3].split()[0] == best  # the first row of the leaderboard


def test_the_figures_are_labelled_with_the_mse(regression):
    # Not the adaptive sweeps' figures; no category to group by; four members: too few for fANOVA
    drawn = set(FIGURES) - {"trials", "lineage", "groups", "importance"}
    assert {p.stem for p in (regression / "figures").glob("*.png")} == drawn
    markdown = (regression / "report.md").read_text()
    assert "| Too few finished members for fANOVA importance: 4, it needs 5 at least. |" in markdown
    assert "## Final validation mse over the two main hyperparameters" in markdown
    result = read_sweep(regression)
    curves = figure_curves(result)
    titles = [ax.get_title() for ax in curves.axes if ax.get_title()]
    assert titles == ["train loss", "validation loss", "validation mse", "validation mae",
                      "validation r2"]  # fmt: skip
    assert [ax.get_yscale() for ax in curves.axes[:4]] == ["log"] * 4  # lower is better: log
    bars = [ax.get_ylabel() for ax in figure_heatmap(result).axes[1:]]
    assert bars == ["final validation mse (lower is better)"]
    parallel = figure_parallel(result)
    assert parallel.axes[0].get_xticklabels()[-1].get_text() == "final validation mse"
    assert parallel.axes[1].get_ylabel() == "final validation mse (lower is better)"


def test_the_lowest_mse_gets_the_bright_end_of_the_colours(regression):
    result = read_sweep(regression)
    colours = by_ranking(result)
    best = analysis.best_index(result)
    assert colours.of(best) == colormaps["viridis"](1.0)
    worst = int(np.nanargmax(colours.values))
    assert colours.of(worst) == colormaps["viridis"](0.0)


def test_the_history_keeps_the_lowest_mse_so_far(regression):
    result = read_sweep(regression)
    history = optimization_history(result)
    healthy = [i for i, r in enumerate(result.rows) if r["status"] == "ok"]
    lowest = np.fmin.accumulate(np.nanmin(result.curves["val_mse"][:, healthy], axis=1))
    np.testing.assert_array_equal(history.best, lowest)  # values picked, not computed
    assert history.measured and len(history.seconds) == len(result.curves["steps"])


def _mse_rows(mse, lr=(1.0, 2.0, 3.0, 4.0)):
    """Regression rows: final_val_mse `mse` per member (NaN: diverged), `lr` its learning rate."""
    return [
        {"member": i, "learning_rate": rate, "seed": 0,
         "status": "ok" if m == m else "diverged", "diverged_at_step": -1 if m == m else 5,
         "final_train_loss": m, "final_val_loss": m, "final_val_mse": m, "final_val_r2": 1 - m,
         "best_val_mse": m, "test_loss": m, "test_mse": m}
        for i, (m, rate) in enumerate(zip(mse, lr, strict=True))
    ]  # fmt: skip


def test_a_min_metric_ranks_the_lowest_first():
    rows = _mse_rows([0.3, 0.1, NAN, 0.2])
    assert [r["member"] for r in results.rank_rows(rows, *MIN)] == [1, 3, 0]  # no NaN
    assert [
        r["member"] for r in results.rank_rows(rows, results.RANK_BY, "max")
    ] == []  # no accuracy column
    summary = dict(zip(("rank_by", "rank_direction"), MIN, strict=True))
    assert analysis.best_index(sweepjax.Result(rows, {}, summary)) == 1
    assert analysis.best_index(sweepjax.Result(rows[2:3], {}, summary)) is None
    best, diverged = render.leaderboard_rows(rows, 2, *MIN)
    assert [r["member"] for r in best] == [1, 3] and [r["member"] for r in diverged] == [2]
    line = read.status_line(sweepjax.Result(rows, {}, summary))
    assert line == "unknown, 4 members, 1 diverged, best #1 at final_val_mse 0.1"
    assert hyperparameter_columns(rows) == ["learning_rate", "seed"]


def test_the_rank_correlation_is_positive_when_higher_values_rank_better():
    worse = _mse_rows([0.1, 0.2, 0.4, 0.3])  # a higher learning rate, a higher mse: worse
    assert analysis.rank_correlation(worse, *MIN) == {"learning_rate": pytest.approx(-0.8)}
    better = _mse_rows([0.4, 0.3, 0.1, 0.2])
    assert analysis.rank_correlation(better, *MIN) == {"learning_rate": pytest.approx(0.8)}
    # The same members ranked by a max metric that orders them alike: the same correlation.
    accuracy = [{**r, "final_val_accuracy": -r["final_val_mse"]} for r in worse]
    assert analysis.rank_correlation(accuracy) == analysis.rank_correlation(worse, *MIN)


def test_the_heat_map_pair_takes_correlations_of_either_sign():
    rows = [
        result_row(i, a, momentum=m, dropout=d)
        for i, (a, m, d) in enumerate([(0.1, 0.9, 0.1), (0.2, 0.7, 0.3), (0.3, 0.5, 0.2)])
    ]
    rows = [{**r, "batch": 0} for r in rows]  # after the metrics: not a hyperparameter
    assert analysis.rank_correlation(rows) == {"momentum": -1.0, "dropout": pytest.approx(0.5)}
    assert analysis.important_pair(rows) == ("momentum", "dropout")
