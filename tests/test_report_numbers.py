"""The numbers and words of the report and `show` (`sweepjax.report`), from results tables made
by hand: the status, which columns vary, log scales, importance, the heat map's pair, the divergence boundary."""

from __future__ import annotations

import pytest
from conftest import result_row

import sweepjax
from sweepjax.report import analysis, read, render

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
    assert analysis.hyperparameter_columns(rows) == ["learning_rate", "momentum", "seed"]
    assert analysis.hyperparameter_columns(rows[:1]) == ["learning_rate", "momentum", "seed"]
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


def test_importance_is_the_rank_correlation_over_healthy_members():
    accuracy = [0.1, 0.3, 0.2, 0.4]
    rows = [result_row(i, a, lr=lr, wd=0.1 * (i % 2)) for i, (a, lr) in enumerate(zip(accuracy, [1, 2, 3, 4], strict=True))]  # fmt: skip
    # ranks of lr 0 1 2 3 against accuracy's 0 2 1 3: Spearman 1 - 6 * 2 / (4 * 15) = 0.8
    # wd ties share mean ranks: 1.5 3.5 1.5 3.5, a correlation of 4 / (2 * sqrt(5))
    assert analysis.importance(rows) == {"lr": pytest.approx(0.8), "wd": pytest.approx(0.8944272)}
    shuffled = [result_row(i, a, lr=lr) for i, (a, lr) in enumerate(zip(accuracy, [3, 1, 2, 4], strict=True))]  # fmt: skip
    assert analysis.importance(shuffled)["lr"] == pytest.approx(0.2)  # 1 - 6 * (4 + 4) / 60
    wild = [*rows, result_row(4, NAN, 3, lr=1e6, wd=0.0)]
    assert analysis.importance(wild) == analysis.importance(rows)  # the diverged never enter


def test_importance_needs_three_healthy_members_and_numbers():
    rows = [result_row(i, 0.1 * i, lr=float(i), optimizer=["sgd", "adam"][i % 2]) for i in range(3)]
    assert analysis.importance(rows) == {"lr": 1.0}  # three suffice; the family names never count
    assert analysis.importance(rows[:2]) == {}
    flat = [*rows, result_row(3, NAN, 2, lr=9.0, optimizer="sgd")]
    flat = [{**r, "final_val_accuracy": 0.5} if r["status"] == "ok" else r for r in flat]
    assert analysis.importance(flat) == {"lr": 0.0}  # accuracy constant: no correlation to speak of


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
               "train_seconds": 1.5, "device": "cpu"}  # fmt: skip
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
    }


def test_schedules_are_drawn_at_num_steps_or_at_every_step():
    rows = [result_row(0, 0.5, learning_rate=0.1)]
    result = sweepjax.Result(rows, {}, {"config": sweepjax.Config(steps=40).to_json()})
    assert analysis.member_schedules(result, num=5)[0].tolist() == [0, 10, 20, 30, 40]
    assert analysis.member_schedules(result, num=200)[0].tolist() == list(range(41))
