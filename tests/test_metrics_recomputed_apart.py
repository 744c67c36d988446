"""What a sweep reports is what it measured: every metric of `results.csv` recomputed here, apart
from the engine, with a plain Flax `apply` on the right split from each exported member.

The data's classes overlap, so accuracies do not saturate at 1.0 and the final validation
accuracy is not the best for every member: a swapped split or column shows. The model has batch
normalization and dropout, so evaluation in training mode shows too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import CLASSIFICATION_METRICS, make_tiny_data, result_row

import sweepjax
from sweepjax import Choice
from sweepjax.engine.evaluation import _eval_batches
from sweepjax.engine.models import build_model
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams
from sweepjax.sweep import read_results, results
from sweepjax.sweep.trials import Curves


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished 4-member sweep on overlapping classes, and each member's exported variables."""
    out = tmp_path_factory.mktemp("reported")
    # close centers, unit noise: about 60% separable
    data = make_tiny_data(0.6, seed=7, sizes=(400, 120), val_size=100, name="overlapping")
    config = sweepjax.Config(
        model={"name": "mlp", "hidden": [16], "num_classes": 3, "norm": "batch"},
        optimizer="sgd",
        space={"learning_rate": sweepjax.LogUniform(0.01, 1.0), "momentum": 0.9, "dropout": 0.3},
        population=4,
        steps=60,
        batch_size=16,
        eval_every=10,
        out_dir=str(out / "sweep"),
    )
    result = sweepjax.run(config, quiet=True, dataset=data)
    restore = ocp.StandardCheckpointer().restore
    variables = []
    for member in range(config.population):
        to = sweepjax.export_member(config.out_dir, member, out / f"member{member}")
        variables.append(restore((to / "checkpoint").absolute()))
    return config, data, sweepjax.read_result(config.out_dir), result, variables


def _measure(config, variables, x, y, train: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of one member on (x, y), in evaluation mode unless
    `train` (batch statistics of `x`, the running averages left as they were)."""
    module, x = build_model(config.model), np.asarray(x, np.float32)
    if train:
        logits, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
    else:
        logits = module.apply(variables, x, train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, np.asarray(y)).mean()
    return float(loss), float((np.argmax(logits, -1) == np.asarray(y)).mean())


def test_each_members_metrics_are_its_parameters_on_the_right_split(sweep):
    config, data, saved, _, variables = sweep
    accuracies = [row["final_val_accuracy"] for row in saved.rows]
    assert 0.4 < max(accuracies) < 0.95 and len(set(accuracies)) > 1  # not saturated
    for row, member_variables in zip(saved.rows, variables, strict=True):
        val_loss, val_acc = _measure(
            config, member_variables, data.val["inputs"], data.val["targets"]
        )
        train_loss, _ = _measure(
            config, member_variables, data.train["inputs"], data.train["targets"]
        )
        _, test_acc = _measure(config, member_variables, data.test["inputs"], data.test["targets"])
        # float32 sums over 100 examples in another order: a few ulps of the mean loss.
        np.testing.assert_allclose(row["final_val_loss"], val_loss, rtol=1e-5)
        assert abs(row["final_val_loss"] - train_loss) > 1e-3  # the validation split, not train's
        in_train_mode, _ = _measure(
            config, member_variables, data.val["inputs"], data.val["targets"], train=True
        )
        assert abs(row["final_val_loss"] - in_train_mode) > 1e-3  # running averages, not batch's
        # An argmax may flip on a near-tie under another summation order: one example at most.
        assert abs(row["final_val_accuracy"] - val_acc) <= 1 / len(data.val["targets"]) + 1e-6
        assert abs(row["test_accuracy"] - test_acc) <= 1 / len(data.test["targets"]) + 1e-6


def test_results_have_the_swept_hyperparameters_the_seed_and_the_metrics(sweep):
    config, _, saved, _, _ = sweep
    swept = list(config.space)  # the constants too: they are the config's values
    metrics = ["status", "diverged_at_step", *CLASSIFICATION_METRICS]
    assert list(saved.rows[0]) == ["member", *swept, "seed", *metrics]


def test_best_so_far_and_final_columns_follow_the_curves(sweep):
    _, _, saved, returned, _ = sweep
    curves = saved.curves
    assert curves["steps"].tolist() == [10, 20, 30, 40, 50, 60]
    for row in saved.rows:
        member = row["member"]
        val = curves["val_accuracy"][:, member]
        assert row["final_val_accuracy"] == pytest.approx(val[-1])
        assert row["best_val_accuracy"] == pytest.approx(val.max())
        assert row["final_val_loss"] == pytest.approx(curves["val_loss"][-1, member])
    assert any(row["best_val_accuracy"] > row["final_val_accuracy"] for row in saved.rows)
    assert [r["member"] for r in saved.rows] == [r["member"] for r in returned.rows]


def test_ranking_and_summary_follow_the_final_validation_accuracy(sweep):
    _, _, saved, _, _ = sweep
    ranked = saved.ranked()
    keys = [row["final_val_accuracy"] for row in ranked]
    assert keys == sorted(keys, reverse=True)
    best = max(saved.rows, key=lambda row: row["final_val_accuracy"])
    assert saved.best["member"] == best["member"]
    assert saved.summary["best_member"] == best["member"]
    assert saved.summary["best_test_accuracy"] == pytest.approx(best["test_accuracy"])
    board = saved.leaderboard().splitlines()
    assert board[2].split()[0] == str(best["member"])  # after the ranking and the header


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # a chunk after the divergence: NaN
def test_a_chunks_train_loss_averages_only_the_steps_a_member_was_alive(tiny_config, tiny_data):
    config = tiny_config.replace(
        searcher="grid", population=2, steps=30, space={"learning_rate": Choice([0.05, 1e4])}
    )
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    program, hparams = program_of(config), sample_hparams(config)
    train = jax.device_put(tiny_data.train)
    x = train["inputs"]
    pop = init_population(program, hparams, x[: config.batch_size])
    _, losses = make_train_chunk(program, config.steps)(
        pop, hparams, train, jax.random.key(config.seed)
    )
    per_chunk = np.asarray(losses).reshape(3, 10, 2)  # [chunk, step, member]; NaN once diverged
    diverged_at = result.rows[1]["diverged_at_step"]
    assert result.rows[1]["status"] == "diverged" and diverged_at % 10 > 0  # inside a chunk
    expected = np.nanmean(np.where(np.isfinite(per_chunk), per_chunk, np.nan), axis=1)
    # The same program on the same devices (invariant 2), summed in another order: rounding.
    np.testing.assert_allclose(result.curves["train_loss"], expected, rtol=1e-6)
    assert result.rows[1]["final_train_loss"] == pytest.approx(expected[diverged_at // 10, 1])
    assert result.summary["members"] == 2 and result.summary["diverged"] == 1


def test_a_chunks_mean_train_loss_counts_each_members_alive_steps():
    """By hand: 3 steps alive, 1 step alive, none. Losses of O(1), so a NaN counted as any
    number shows (the sweep above has a diverged member's losses near 1e31)."""
    nan = np.nan
    curves = Curves.empty(("loss", "accuracy"))
    losses = np.array([[1.0, 4.0, nan], [2.0, nan, nan], [6.0, nan, nan]], np.float32)
    curves.append(3, losses, {"loss": np.zeros(3), "accuracy": np.zeros(3)}, np.arange(3), 3)
    np.testing.assert_array_equal(curves.arrays()["train_loss"], [[3.0, 4.0, nan]])


def test_the_leaderboard_counts_what_it_leaves_out():
    nan = float("nan")
    rows = [
        result_row(0, 0.5),
        result_row(1, 0.9),
        result_row(2, 0.7),
        result_row(3, nan, 5),
        result_row(4, nan, 7),
    ]
    lines = results.leaderboard(rows, top=2).splitlines()
    assert lines[0] == (
        "ranked by final_val_accuracy (highest first; ties by best_val_accuracy, then member)"
    )
    assert [line.split()[0] for line in lines[2:4]] == ["1", "2"]  # by accuracy, best first
    assert lines[4:] == [
        "... and 1 more healthy members",
        "diverged (2): #3 at step 5, #4 at step 7",
    ]
    assert "more" not in results.leaderboard(rows, top=3)
    assert results.leaderboard(rows[:1]).splitlines()[2].split()[0] == "0"  # one member
    last = results.leaderboard(rows, top=1).splitlines()[-1]
    assert last == "diverged (2): #3 at step 5 and 1 more"


def test_a_split_is_evaluated_in_as_few_batches_as_hold_it():
    x, y = jnp.arange(10.0).reshape(10, 1), jnp.arange(10)
    (xs, ys), mask = _eval_batches((x, y), 4)
    assert xs.shape == (3, 4, 1) and ys.shape == (3, 4) and mask.shape == (3, 4)
    np.testing.assert_array_equal(mask.reshape(-1), np.arange(12) < 10)  # the padding masked
    np.testing.assert_array_equal(ys.reshape(-1)[:10], y)
    np.testing.assert_array_equal(xs.reshape(-1)[:10], x[:, 0])


def test_curves_that_disagree_with_the_results_are_refused(tmp_path):
    """A curves file from a sweep of another size, or cut short, is damaged, never trimmed."""
    (tmp_path / "results.csv").write_text("member,status\n0,ok\n1,ok\n")
    ones = np.ones
    np.savez(tmp_path / "curves.npz", steps=np.array([10, 20, 30]), train_loss=ones((3, 2)),
             val_loss=ones((2, 2)), val_accuracy=ones((3, 5)))  # fmt: skip
    message = r"curves\.npz is damaged \(val_loss has shape \(2, 2\); 3 evaluations of 2 members"
    with pytest.raises(sweepjax.StorageError, match=message):
        read_results.read_sweep(tmp_path)
