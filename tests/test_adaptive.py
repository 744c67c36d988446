"""Adaptive sweeps on the device: slots freed and refilled, PBT's copies, compaction, resume.

The schedulers' and searchers' own rules are tested host-side (test_schedulers.py,
test_searchers.py); here they drive real populations on two devices.
"""

from __future__ import annotations

import os
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import assert_same, count_compiles
from test_checkpoint import assert_same_results

import sweepjax
from sweepjax.engine.evaluation import make_evaluate
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.engine.reassign import reassign
from sweepjax.runner.run import program_of
from sweepjax.sweep import checkpoint, loop
from sweepjax.sweep.sweep_state import trial_columns

ASHA = {"name": "asha", "min_steps": 10, "eta": 3}


@pytest.fixture(scope="module")
def asha_config(tiny_config):
    return tiny_config.replace(
        population=6, trials=18, steps=90, eval_every=10, scheduler=ASHA, out_dir=None
    )


@pytest.fixture(scope="module")
def asha_result(asha_config, tiny_data):
    return sweepjax.run(asha_config, quiet=True, dataset=tiny_data)


def test_asha_stops_at_rungs_and_refills_the_freed_slots(asha_result, asha_config):
    rows, summary = asha_result.rows, asha_result.summary
    assert len(rows) == asha_config.trials == summary["trials"]
    assert summary["trials_running"] == 0
    stopped = [r for r in rows if r["status"] == "stopped"]
    finished = [r for r in rows if r["status"] == "ok"]
    assert stopped and finished
    for row in stopped:  # stopped at a rung: 10 or 30 steps, with the rung in the reason
        assert row["steps_trained"] in (10, 30)
        assert row["stop_reason"] == f"asha rung {row['rung']}"
    assert all(r["steps_trained"] == asha_config.steps for r in finished)
    # Trials beyond the population started later, in freed slots, at their own step 0.
    assert max(r["start_step"] for r in rows) > 0
    assert summary["member_steps"] == sum(r["steps_trained"] for r in rows)
    assert summary["member_steps"] < asha_config.trials * asha_config.steps
    assert summary["slot_steps"] >= summary["member_steps"]
    assert asha_result.best["status"] == "ok"
    assert "stopped early by the scheduler" in asha_result.leaderboard()


def test_a_refilled_trial_reproduces_its_row_alone(asha_result, asha_config, tiny_data):
    """Invariant 2: a trial started in a freed slot, re-trained alone from its offset in the
    shared stream, gives its row's numbers (bitwise on the CPU)."""
    row = max((r for r in asha_result.rows if r["status"] == "ok"), key=lambda r: r["start_step"])
    assert row["start_step"] > 0
    config = asha_config.replace(population=2, trials=None, scheduler="none")
    program = program_of(config)
    hparams = {"learning_rate": row["learning_rate"], "momentum": row["momentum"]}
    columns = trial_columns(config, [{**hparams, "seed": row["seed"]}] * 2, [row["start_step"]] * 2)
    x = tiny_data.train["inputs"][: config.batch_size]
    pop = init_population(program, columns, x).replace(step=jax.numpy.int32(row["start_step"]))
    train = jax.device_put(tiny_data.train)
    chunk = make_train_chunk(program, row["steps_trained"])
    pop, _ = chunk(pop, columns, train, jax.random.key(config.seed))
    val = make_evaluate(program, config.eval_batch)(pop, jax.device_put(tiny_data.val))
    assert_same(np.float32(val["accuracy"][0]), np.float32(row["final_val_accuracy"]))
    assert_same(np.float32(val["loss"][0]), np.float32(row["final_val_loss"]))


def test_a_refilled_trial_starts_its_schedule_at_its_own_step_0(tiny_config, tiny_data):
    """At the sweep's step 50, a trial that entered its slot then takes its first step at
    the schedule's step 0 (the peak of a cosine); one that started at 0 is at its step 50."""
    config = tiny_config.replace(population=2, schedule="cosine", space={"learning_rate": 0.2})
    program = program_of(config)
    rows = [{"learning_rate": 0.2, "seed": i} for i in range(2)]
    columns = trial_columns(config.replace(steps=100), rows, [50, 0])
    x = tiny_data.train["inputs"][: config.batch_size]
    pop = init_population(program, columns, x).replace(step=jax.numpy.int32(50))
    pop, _ = make_train_chunk(program, 1)(pop, columns, jax.device_put(tiny_data.train),
                                          jax.random.key(0))  # fmt: skip
    rates = np.asarray(pop.opt_state.hyperparams["learning_rate"])
    np.testing.assert_allclose(rates, [0.2, 0.2 * 0.5 * (1 + np.cos(np.pi * 50 / 100))], rtol=1e-6)


def _population(tiny_config, tiny_data, rates):
    config = tiny_config.replace(population=len(rates))
    program = program_of(config)
    rows = [{"learning_rate": r, "momentum": 0.5, "seed": i} for i, r in enumerate(rates)]
    columns = trial_columns(config, rows, [0] * len(rows))
    x = tiny_data.train["inputs"][: config.batch_size]
    pop = init_population(program, columns, x)
    train = jax.device_put(tiny_data.train)
    pop, _ = make_train_chunk(program, 5)(pop, columns, train, jax.random.key(0))
    return program, columns, pop, x, train


def test_an_exploit_copies_bitwise_and_compiles_nothing_the_second_time(tiny_config, tiny_data):
    program, columns, pop, x, train = _population(tiny_config, tiny_data, [0.1, 0.2, 0.3, 0.4])
    keep, fresh = np.ones(4, bool), np.zeros(4, bool)
    copied = reassign(program, pop, columns, np.array([0, 0, 2, 3]), fresh, keep, x)
    for leaf in jax.tree.leaves((copied.params, copied.opt_state, copied.model_state)):
        np.testing.assert_array_equal(np.asarray(leaf[1]), np.asarray(leaf[0]))
    refilled = reassign(program, pop, columns, np.arange(4), fresh | [0, 1, 0, 0], keep, x)
    assert bool(refilled.alive.all())
    other = sweepjax.HParams({**columns.values, "seed": columns.values["seed"] + 7})
    with count_compiles() as compiles:  # other slots, other values: the same programs
        reassign(program, pop, other, np.array([3, 1, 1, 0]), fresh, keep, x)
        reassign(program, pop, other, np.arange(4), ~fresh, keep & [1, 0, 1, 1], x)
    assert compiles == [0]


def test_new_hyperparameters_take_effect_at_the_next_step(tiny_config, tiny_data):
    program, columns, pop, x, train = _population(tiny_config, tiny_data, [0.1, 0.2, 0.3, 0.4])
    new_rate = columns.values["learning_rate"].copy()
    new_rate[1] = 0.05  # slot 1 continues from slot 0's state at a new learning rate
    explored = sweepjax.HParams({**columns.values, "learning_rate": new_rate})
    keep, fresh = np.ones(4, bool), np.zeros(4, bool)
    copied = reassign(program, pop, explored, np.array([0, 0, 2, 3]), fresh, keep, x)
    # The reference: slot 0's state placed in every slot, the new rate in slot 3.
    reference_rate = columns.values["learning_rate"].copy()
    reference_rate[3] = 0.05
    reference_hp = sweepjax.HParams({**columns.values, "learning_rate": reference_rate})
    reference = reassign(program, pop, reference_hp, np.zeros(4, int), fresh, keep, x)
    chunk = make_train_chunk(program, 1)
    after, _ = chunk(copied, explored, train, jax.random.key(0))
    expected, _ = chunk(reference, reference_hp, train, jax.random.key(0))
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(expected.params), strict=True):
        assert_same(np.asarray(a[1]), np.asarray(b[3]))
        assert not np.array_equal(np.asarray(a[1]), np.asarray(a[0]))  # not slot 0's rate


def test_pbt_copies_the_top_into_the_bottom_and_records_the_lineage(tiny_config, tiny_data):
    config = tiny_config.replace(
        population=8, steps=60, eval_every=10,
        scheduler={"name": "pbt", "ready": 20, "quantile": 0.25},
    )  # fmt: skip
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    rows = result.rows
    assert len(rows) == 8 and all(r["steps_trained"] == 60 for r in rows)
    children = [r for r in rows if r["parent"] >= 0]
    assert children  # two exploit rounds (at 20 and 40 steps), two trials each
    for child in children:
        assert child["parent"] != child["member"]
    assert result.summary["member_steps"] == 8 * 60


def _interrupted_at(monkeypatch, step: int):
    """Make the chunk that ends at `step` send this process SIGTERM (as a preemption would)."""
    make = loop.make_train_chunk

    def signalled(program, length, *args):
        chunk = make(program, length, *args)

        def run(pop, *rest):
            pop, losses = chunk(pop, *rest)
            if int(pop.step) == step:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
            return pop, losses

        return run

    monkeypatch.setattr(loop, "make_train_chunk", signalled)


SCHEDULED = {
    "asha": {"scheduler": ASHA},
    "pbt": {"scheduler": {"name": "pbt", "ready": 20}, "trials": None},
    "tpe": {"scheduler": ASHA, "searcher": "tpe"},
}


@pytest.mark.parametrize("name", sorted(SCHEDULED))
def test_resume_mid_sweep_equals_the_uninterrupted_sweep(
    name, asha_config, tiny_data, tmp_path, monkeypatch
):
    if name == "tpe":
        pytest.importorskip("optuna")
    config = asha_config.replace(steps=60, **SCHEDULED[name])
    straight = config.replace(out_dir=str(tmp_path / "straight"))
    sweepjax.run(straight, quiet=True, dataset=tiny_data)
    stopped = config.replace(out_dir=str(tmp_path / "stopped"))
    with monkeypatch.context() as patch:
        _interrupted_at(patch, 40)
        with pytest.raises(sweepjax.Interrupted):
            sweepjax.run(stopped, quiet=True, dataset=tiny_data)
    assert max(checkpoint.saved_steps(stopped.out_dir)) == 40
    sweepjax.resume(stopped.out_dir, config=stopped, quiet=True, dataset=tiny_data)
    assert_same_results(tmp_path / "straight", tmp_path / "stopped")


def test_compaction_narrows_the_population_once_the_searcher_is_spent(
    tiny_config, tiny_data, monkeypatch
):
    monkeypatch.setattr(loop.Pace, "narrow_pays", lambda self, *sizes: True)
    config = tiny_config.replace(
        population=8, trials=8, steps=90, eval_every=10,
        scheduler={"name": "successive_halving", "min_steps": 10, "eta": 3},
    )  # fmt: skip
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    steps = {r["member"]: r["steps_trained"] for r in result.rows}
    assert sorted(steps.values()) == [10] * 6 + [30] + [90]  # 8 -> 2 -> 1 (floor(n / 3), >= 1)
    # 8 slots for 10 steps, then 2 running in 2 slots, then 1 in the narrowest (2) slots
    assert result.summary["slot_steps"] == 8 * 10 + 2 * 20 + 2 * 60


def test_the_population_narrows_only_when_the_compute_saved_outweighs_compiling():
    pace = loop.Pace()
    pace.record(seconds=3.0, compiling=1.5, slot_steps=800, size=8)  # first chunk: compile
    pace.record(seconds=0.8, compiling=0.0, slot_steps=800, size=8)
    assert (pace.compile_seconds, pace.slot_step_seconds) == (1.5, 0.001)
    assert pace.narrow_pays(8, 2, steps_left=300)  # 1.8 s saved > 1.5 s compiling
    assert not pace.narrow_pays(8, 2, steps_left=200)  # 1.2 s saved < 1.5 s


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scheduler": {"name": "asha", "eta": 1}}, "scheduler.eta"),
        ({"scheduler": {"name": "asha", "min_steps": 500}}, "scheduler.min_steps"),
        ({"scheduler": {"name": "pbt", "quantile": 0.7}}, "scheduler.quantile"),
        ({"scheduler": "hyperbandd"}, "scheduler"),
        ({"searcher": "bayes"}, "searcher"),
        ({"trials": 3}, "trials"),
        ({"searcher": {"name": "tpe", "n_startup": 3}}, "searcher.n_startup"),
    ],
)
def test_bad_adaptive_settings_are_refused_before_compiling(
    tiny_config, tiny_data, changes, message
):
    if "tpe" in str(changes):
        pytest.importorskip("optuna")
    with count_compiles() as compiles, pytest.raises(ValueError, match=message):
        sweepjax.run(tiny_config.replace(**changes), quiet=True, dataset=tiny_data)
    assert compiles == [0]


def test_optuna_missing_is_a_clear_error(tiny_config, tiny_data, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)
    with pytest.raises(ValueError, match=r"searcher: 'tpe' needs Optuna.*pip install"):
        sweepjax.run(tiny_config.replace(searcher="tpe"), quiet=True, dataset=tiny_data)


def test_scheduler_options_from_the_command_line():
    config = sweepjax.apply_overrides(
        sweepjax.Config(), ["scheduler=asha", "scheduler.eta=2", "trials=64", "searcher=tpe"]
    )
    assert config.scheduler == {"name": "asha", "eta": 2}
    assert (config.trials, config.searcher) == (64, "tpe")


def test_the_best_trial_exports_after_its_slot_was_handed_on(asha_config, tiny_data, tmp_path):
    config = asha_config.replace(out_dir=str(tmp_path / "sweep"))
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    best = result.best["member"]
    meta = checkpoint.read_meta(config.out_dir)
    assert meta.kept_trial == best
    to = sweepjax.export_member(config.out_dir, best, tmp_path / "best")
    variables = ocp.StandardCheckpointer().restore(to / "checkpoint")
    model = program_of(config).model
    logits, _ = model.apply(variables, tiny_data.val["inputs"], train=False, rng=jax.random.key(0))
    accuracy = float(np.mean(np.argmax(logits, -1) == tiny_data.val["targets"]))
    assert accuracy == pytest.approx(result.best["final_val_accuracy"], abs=1e-6)
    stopped = next(r["member"] for r in result.rows if r["status"] == "stopped")
    if stopped not in meta.slots:
        with pytest.raises(ValueError, match=f"trial {stopped} left its slot"):
            sweepjax.export_member(config.out_dir, stopped, tmp_path / "gone")


def test_a_diverged_trials_slot_goes_to_the_next_trial(tiny_config, tiny_data):
    """Invariant 4: a diverged member is quarantined, and its slot may take a new trial."""
    rates = sweepjax.Choice([0.05, 1e4, 0.1, 0.2])  # trial 1 overflows at once
    config = tiny_config.replace(
        population=2, trials=4, steps=30, searcher="grid", space={"learning_rate": rates}
    )
    rows = sweepjax.run(config, quiet=True, dataset=tiny_data).rows
    assert [r["status"] for r in rows] == ["ok", "diverged", "ok", "ok"]
    assert rows[1]["steps_trained"] < 30
    assert 0 < rows[2]["start_step"] < 30  # took trial 1's slot while trial 0 still trained
    assert all(np.isfinite(r["final_val_loss"]) for r in rows if r["status"] == "ok")
