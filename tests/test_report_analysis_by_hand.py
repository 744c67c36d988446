"""The numbers and words of the report and `show` (`sweepjax.report`), from results tables made
by hand: the status, which columns vary, log scales, the rank correlation and the heat map's
pair, the divergence boundary, the statistics per category and the best value so far."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import result_row

import sweepjax
from sweepjax.report import analysis, figure_groups, figure_history, read, render
from sweepjax.report.figure_axes import by_hyperparameter
from sweepjax.sweep.columns import hyperparameter_columns

pytestmark = pytest.mark.quick

NAN = float("nan")


@pytest.mark.parametrize(
    ("summary", "status"),
    [
        ({"steps_done": 30, "config": {"steps": 30}}, "finished"),
        ({"steps_done": 31, "config": {"steps": 30}}, "finished"),
        ({"steps_done": 29, "config": {"steps": 30}}, "interrupted"),
        ({"status": "running", "steps_done": 30, "config": {"steps": 30}}, "running"),
        ({"status": "", "steps_done": 30, "config": {"steps": 30}}, "finished"),
        ({"status": 3, "steps_done": 10, "config": {"steps": 30}}, "interrupted"),
        ({"steps_done": 10}, "unknown"),
        ({"config": {"steps": 30}}, "unknown"),
        ({"steps_done": 10, "config": ["steps"]}, "unknown"),
    ],
)
def test_the_status_of_a_sweep_from_its_summary(summary, status):
    assert read.sweep_status(summary) == status


def test_the_status_line_names_progress_size_and_best():
    rows = [result_row(0, 0.5), result_row(1, 0.9), result_row(2, NAN, 4)]
    summary = {"steps_done": 20, "config": {"steps": 30}}
    line = read.status_line(sweepjax.Result(rows, {}, summary))
    assert (
        line == "interrupted, step 20/30, 3 members, 1 diverged, best #1 at final_val_accuracy 0.9"
    )
    line = read.status_line(sweepjax.Result(rows[2:], {}, {"steps_done": 20}))
    assert line == "unknown, step 20, 1 members, 1 diverged"


def test_columns_that_vary_are_the_hyperparameters_with_two_values_or_more():
    rows = [result_row(i, 0.5, learning_rate=0.1 * (i + 1), momentum=0.9, seed=i) for i in range(3)]
    assert hyperparameter_columns(rows) == ["learning_rate", "momentum", "seed"]
    assert hyperparameter_columns(rows[:1]) == ["learning_rate", "momentum", "seed"]
    assert analysis.varying_dimensions(rows) == ["learning_rate"]  # not the seed, not a constant


@pytest.mark.parametrize(
    ("entry", "values", "log"),
    [
        ({"distribution": "LogUniform", "low": 1.0, "high": 2.0}, [1.0, 2.0], True),
        ({"distribution": "Uniform", "low": 1e-4, "high": 1.0}, [1e-4, 1.0], False),
        ({"low": 1e-4}, [1e-4, 1.0], True),  # no distribution: the values decide
        (None, [1e-4, 0.1], True),  # three decades
        (None, [0.01, 1.005], True),  # just above two decades
        (None, [0.01, 1.0], False),  # exactly two
        (None, [0.2, 10.0], False),
        (None, [0.0, 1.0], False),  # not positive
        (None, [-1.0, 1.0], False),
        (None, [NAN, 1e-4, 1.0], True),  # NaN left out
        (None, [2e-6, 1e-4, 3e-4], True),  # the spread of the extremes, wherever they are
        (None, [], False),
    ],
)
def test_a_dimension_is_log_scaled_by_its_distribution_or_its_spread(entry, values, log):
    space = {"lr": entry} if entry is not None else {}
    assert analysis.is_log_scale({"config": {"space": space}}, "lr", values) is log


def test_the_rank_correlation_is_spearmans_over_healthy_members():
    accuracy = [0.1, 0.3, 0.2, 0.4]
    rows = [result_row(i, a, lr=lr, wd=0.1 * (i % 2)) for i, (a, lr) in enumerate(zip(accuracy, [1, 2, 3, 4], strict=True))]  # fmt: skip
    # ranks of lr 0 1 2 3 against accuracy's 0 2 1 3: Spearman 1 - 6 * 2 / (4 * 15) = 0.8
    # wd ties share mean ranks: 1.5 3.5 1.5 3.5, a correlation of 4 / (2 * sqrt(5))
    assert analysis.rank_correlation(rows) == {
        "lr": pytest.approx(0.8),
        "wd": pytest.approx(0.8944272),
    }
    shuffled = [result_row(i, a, lr=lr) for i, (a, lr) in enumerate(zip(accuracy, [3, 1, 2, 4], strict=True))]  # fmt: skip
    assert analysis.rank_correlation(shuffled)["lr"] == pytest.approx(0.2)  # 1 - 6 * (4 + 4) / 60
    wild = [*rows, result_row(4, NAN, 3, lr=1e6, wd=0.0)]
    assert analysis.rank_correlation(wild) == analysis.rank_correlation(
        rows
    )  # the diverged never enter


def test_the_rank_correlation_needs_three_healthy_members_and_numbers():
    rows = [result_row(i, 0.1 * i, lr=float(i), optimizer=["sgd", "adam"][i % 2]) for i in range(3)]
    assert analysis.rank_correlation(rows) == {
        "lr": 1.0
    }  # three suffice; the family names never count
    assert analysis.rank_correlation(rows[:2]) == {}
    flat = [*rows, result_row(3, NAN, 2, lr=9.0, optimizer="sgd")]
    flat = [{**r, "final_val_accuracy": 0.5} if r["status"] == "ok" else r for r in flat]
    assert analysis.rank_correlation(flat) == {
        "lr": 0.0
    }  # accuracy constant: no correlation to speak of


def test_the_heat_map_pairs_the_two_most_important_numbers():
    table = [(0.1, 0.9, 0.1, 8), (0.2, 0.5, 0.3, 16), (0.3, 0.7, 0.2, 32), (0.4, 0.1, 0.4, 64)]
    rows = [
        result_row(i, a, momentum=m, dropout=d, batch=b) for i, (a, m, d, b) in enumerate(table)
    ]
    assert analysis.important_pair(rows) == ("batch", "momentum")  # |rho| 1.0, 0.8, dropout 0.8
    with_lr = [
        result_row(i, a, momentum=m, dropout=d, batch=b, learning_rate=lr)
        for i, ((a, m, d, b), lr) in enumerate(zip(table, [0.1, 0.2, 0.1, 0.2], strict=True))
    ]
    assert analysis.important_pair(with_lr) == ("learning_rate", "batch")  # the learning rate first
    assert analysis.important_pair([result_row(0, 0.1, lr=0.1), result_row(1, 0.2, lr=0.2)]) is None


def test_the_divergence_boundary_per_setting_of_the_repeated_dimensions():
    grid = [(0.1, 0.0, "ok"), (1.0, 0.0, "diverged"), (3.0, 0.0, "diverged"),
            (0.1, 0.9, "diverged"), (0.01, 0.9, "ok"), (0.03, 0.9, "ok")]  # fmt: skip
    rows = [
        result_row(i, 0.5, 2 if s != "ok" else -1, learning_rate=lr, momentum=m, wd=0.1 * i)
        for i, (lr, m, s) in enumerate(grid)
    ]
    boundary = analysis.divergence_boundary(rows)  # wd: six values in six rows, no grouping
    assert boundary == [
        {"setting": {"momentum": 0.0}, "members": 3, "diverged": 2,
         "smallest_diverged": 1.0, "largest_healthy": 0.1},
        {"setting": {"momentum": 0.9}, "members": 3, "diverged": 1,
         "smallest_diverged": 0.1, "largest_healthy": 0.03},
    ]  # fmt: skip
    assert analysis.divergence_boundary(rows[:2])[0]["setting"] == {}  # 2 values in 2 rows
    halves = analysis.divergence_boundary(rows[:2] + rows[3:5])  # 2 values in 4 rows: grouped
    assert [b["setting"] for b in halves] == [{"momentum": 0.0}, {"momentum": 0.9}]
    assert analysis.divergence_boundary(rows, "momentum")[0]["smallest_diverged"] == 0.0
    assert analysis.divergence_boundary(rows, "batch") == []
    assert analysis.divergence_boundary([]) == []
    assert analysis.divergence_boundary(rows[:1])[0]["members"] == 1
    named = [{**r, "learning_rate": "high"} for r in rows]
    assert analysis.divergence_boundary(named) == []


def test_the_leaderboard_tables_order_and_the_best_member():
    rows = [result_row(3, 0.5), result_row(1, NAN, 9), result_row(0, 0.9), result_row(2, NAN, 4)]
    rows.append(result_row(4, NAN, 4))
    best, diverged = render.leaderboard_rows(rows, top=1)
    assert [r["member"] for r in best] == [0]
    assert [r["member"] for r in diverged] == [2, 4, 1]  # by step, then by member
    assert analysis.best_index(sweepjax.Result(rows, {}, {})) == 2  # its position in the table
    assert analysis.best_index(sweepjax.Result(rows[1:2], {}, {})) is None


def test_the_reports_facts_come_from_the_summary_and_its_config():
    config = {"optimizer": "adam", "steps": 30, "model": {"name": "mlp"}, "space": {"lr": 0.1}}
    summary = {"dataset": "mnist1d (4000 examples)", "config": config, "steps_done": 30,
               "train_seconds": 1.5, "device": "cpu", "member_steps_per_second": 22649.6}  # fmt: skip
    facts = dict(render._facts(sweepjax.Result([result_row(0, 0.5)], {}, summary)))
    assert facts == {
        "status": "finished, step 30/30, 1 members, 0 diverged, best #0 at final_val_accuracy 0.5",
        "dataset": "mnist1d (4000 examples)",
        "optimizer": "adam",
        "steps": "30",
        "model": '{"name": "mlp"}',
        "space": '{"lr": 0.1}',
        "device": "cpu",
        "train_seconds": "1.5",
        "member_steps_per_second": "22,650",
    }


def test_schedules_are_drawn_at_num_steps_or_at_every_step():
    rows = [result_row(0, 0.5, learning_rate=0.1)]
    result = sweepjax.Result(rows, {}, {"config": sweepjax.Config(steps=40).to_json()})
    assert analysis.member_schedules(result, num=5)[0].tolist() == [0, 10, 20, 30, 40]
    assert analysis.member_schedules(result, num=200)[0].tolist() == list(range(41))


def _grouped_rows(**columns):
    """Nine members over three optimizers: adam's third member diverged with a value that would
    move its mean, lion's second was stopped early, lion's first has no finite value; `columns`:
    more hyperparameters, a function of the member each."""
    table = [("adam", "ok", 0.61), ("sgd", "ok", 0.52), ("adam", "ok", 0.7), ("sgd", "ok", 0.4),
             ("adam", "diverged", 0.01), ("sgd", "ok", 0.55), ("lion", "ok", NAN),
             ("lion", "stopped", 0.9), ("lion", "ok", 0.66)]  # fmt: skip
    return [
        {
            **result_row(
                i, a, 3 if s == "diverged" else -1, optimizer=o,
                **{name: f(i) for name, f in columns.items()},
            ),
            "status": s,
        }
        for i, (o, s, a) in enumerate(table)
    ]  # fmt: skip


def test_the_statistics_per_category_are_numpys_over_the_finished_members():
    rows = _grouped_rows()
    groups = figure_groups.group_stats(rows, ["optimizer"], "final_val_accuracy")
    assert [g.key for g in groups] == [("adam",), ("lion",), ("sgd",)]  # alphabetical
    assert [(g.members, g.diverged, g.stopped) for g in groups] == [(3, 1, 0), (3, 0, 1), (3, 0, 0)]
    for group, values in zip(groups, [[0.61, 0.7], [0.66], [0.52, 0.4, 0.55]], strict=True):
        np.testing.assert_array_equal(group.values, values)
        assert group.mean == pytest.approx(np.mean(values), rel=1e-12)
        if len(values) > 1:  # the sample standard deviation
            assert group.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        else:
            assert np.isnan(group.std)
    with warnings.catch_warnings():  # a single value has no sample deviation: NaN, no warning
        warnings.simplefilter("error")
        assert np.isnan(figure_groups.group_stats(rows[6:7], ["optimizer"], "test_loss")[0].std)
        assert np.isnan(figure_groups.group_stats(rows[7:9], ["optimizer"], "test_loss")[0].std)
    population = figure_groups.group_stats(rows, ["optimizer"], "final_val_accuracy", ddof=0)
    assert population[2].std == pytest.approx(np.std([0.52, 0.4, 0.55]), rel=1e-12)
    assert population[1].std == 0.0  # one value: no spread, but defined with ddof=0
    grid = _grouped_rows(lr=lambda i: [0.1, 0.01, 0.001][i % 3])
    keys = [g.key for g in figure_groups.group_stats(grid, ["optimizer", "lr"], "test_accuracy")]
    assert keys[:4] == [("adam", 0.001), ("adam", 0.01), ("adam", 0.1), ("lion", 0.001)]


def test_categories_are_names_and_swept_seeds_the_seed_last():
    rows = [
        result_row(i, 0.5, seed=i % 2, optimizer=["sgd", "adam"][i % 2], lr=0.1) for i in range(4)
    ]
    swept = {"config": {"space": {"seed": {"distribution": "Choice", "values": [0, 1]}}}}
    assert analysis.categorical_dimensions(sweepjax.Result(rows, {}, swept)) == [
        "optimizer",
        "seed",
    ]
    assert analysis.categorical_dimensions(sweepjax.Result(rows, {}, {})) == ["optimizer"]
    colours = by_hyperparameter(sweepjax.Result(rows, {}, swept))  # no number varies
    assert colours.label == "optimizer" and colours.categories == ("adam", "sgd")
    assert by_hyperparameter(sweepjax.Result(rows, {}, swept), "seed").categories == ("0", "1")


def test_the_groups_figure_has_a_panel_per_categorical_dimension():
    rows = _grouped_rows(seed=lambda i: i % 2)
    swept = {"config": {"space": {"seed": {"distribution": "Choice", "values": [0, 1]}}}}
    fig = figure_groups.figure_groups(sweepjax.Result(rows, {}, swept))
    assert [ax.get_xlabel() for ax in fig.axes] == ["optimizer", "seed"]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["adam\nn=3, 1 diverged", "lion\nn=3, 1 stopped", "sgd\nn=3"]
    assert figure_groups.figure_groups(sweepjax.Result(rows, {}, {})).axes[0].get_xlabel() == (
        "optimizer"
    )  # a seed the space does not sweep is the member's index: no category
    numbers = [result_row(i, 0.5, lr=0.1 * i) for i in range(4)]
    assert figure_groups.figure_groups(sweepjax.Result(numbers, {}, {})) is None


def _history_result(direction, summary=()):
    """Four evaluations of three members; the third diverged after reaching the best values."""
    values = np.array([[0.5, 0.3, 0.01], [0.4, NAN, 0.001], [0.6, 0.2, NAN], [0.45, 0.35, NAN]])
    rows = [result_row(i, 0.5, 25 if i == 2 else -1, lr=0.1 * i) for i in range(3)]
    curves = {"steps": np.array([10, 20, 30, 40]), "val_mse": values, "val_accuracy": values}
    column = "final_val_mse" if direction == "min" else "final_val_accuracy"
    ranked = {"rank_by": column, "rank_direction": direction, **dict(summary)}
    return sweepjax.Result(rows, curves, ranked)


@pytest.mark.parametrize(
    ("direction", "each", "best"),
    [("min", [0.3, 0.4, 0.2, 0.35], [0.3, 0.3, 0.2, 0.2]),
     ("max", [0.5, 0.4, 0.6, 0.45], [0.5, 0.5, 0.6, 0.6])],
)  # fmt: skip
def test_the_best_value_so_far_follows_the_direction_over_members_that_did_not_diverge(
    direction, each, best
):
    history = figure_history.optimization_history(_history_result(direction))
    assert history.each.tolist() == each and history.best.tolist() == best  # values picked
    assert np.all(np.diff(history.best) <= 0 if direction == "min" else np.diff(history.best) >= 0)
    assert history.spent is None and history.seconds is None  # no timing recorded
    caption = figure_history.history_caption(_history_result(direction))
    assert caption.endswith("over the members that did not diverge, against the step")


def test_the_history_in_seconds_is_measured_or_mapped_from_steps():
    measured = _history_result("min", {"chunk_seconds": [3.0, 3.5, 4.0, 4.5]})
    history = figure_history.optimization_history(measured)
    assert history.measured and history.seconds.tolist() == [3.0, 3.5, 4.0, 4.5]
    assert "wall-clock seconds" in figure_history.history_caption(measured)
    summary = {"chunk_seconds": [4.5], "train_seconds": 2.0, "steps_done": 40}  # a resumed sweep
    mapped = _history_result("min", summary)
    history = figure_history.optimization_history(mapped)
    assert not history.measured
    np.testing.assert_allclose(history.seconds, [0.5, 1.0, 1.5, 2.0], rtol=1e-12)
    assert "mapped linearly from steps" in figure_history.history_caption(mapped)
    assert len(figure_history.figure_history(mapped).axes) == 2
    steps = np.array([10, 20])
    assert figure_history.seconds_at({"train_seconds": 2.0, "steps_done": 0}, steps) == (
        None,
        False,
    )
    one = figure_history.seconds_at({"train_seconds": 2.0, "steps_done": 1}, steps)[0]
    np.testing.assert_allclose(one, [20.0, 40.0], rtol=1e-12)
    assert len(figure_history.figure_history(_history_result("min")).axes) == 1


def test_a_sweep_without_curves_has_no_history_and_one_member_has_one():
    result = _history_result("min")
    assert figure_history.optimization_history(sweepjax.Result(result.rows, {}, {})) is None
    assert figure_history.optimization_history(sweepjax.Result([], result.curves, {})) is None
    curves = {k: v if k == "steps" else v[:, :1] for k, v in result.curves.items()}
    alone = figure_history.optimization_history(sweepjax.Result(result.rows[:1], curves, {}))
    assert alone.best.tolist() == [0.5, 0.5, 0.6, 0.6]  # accuracy, the highest first


def test_an_adaptive_sweeps_history_is_against_the_member_steps_spent():
    result = _history_result("max")
    for row, (start, trained) in zip(result.rows, [(0, 40), (0, 10), (10, 15)], strict=True):
        row.update(start_step=start, steps_trained=trained)
    history = figure_history.optimization_history(result)
    assert history.spent.tolist() == [10 + 10 + 0, 20 + 10 + 10, 30 + 10 + 15, 40 + 10 + 15]
    assert history.best.tolist() == [0.5, 0.5, 0.6, 0.6]
    assert "member-steps" in figure_history.history_caption(result)
