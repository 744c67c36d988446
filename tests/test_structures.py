"""Structure under every scheduler and searcher: one population per structure in play.

A sweep over `model.<option>` whose trials come and go trains one block of slots per structure
(`sweepjax/sweep/structures.py`, `block_plan.py`, `block_loop.py`). Checked here: an ASHA + TPE
sweep over width and learning rate on two devices resumes bitwise from every checkpoint kept
(its process-level kills: `tests/test_kill_matrix.py`); a Hyperband sweep's stops against a
replay written in this file; how freed slots are refilled within and across structures, by
hand; PBT copying only within a structure.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_budgets import rewind
from test_checkpoint import assert_same_results

import sweepjax
from sweepjax.engine.models import build_model
from sweepjax.engine.population import START
from sweepjax.engine.tasks import task_of
from sweepjax.report.analysis import categorical_dimensions
from sweepjax.report.figure_groups import figure_groups
from sweepjax.report.importance import fanova_importance
from sweepjax.search.distributions import Choice, IntUniform, LogUniform
from sweepjax.search.pbt import PBT
from sweepjax.search.protocol import Observation
from sweepjax.search.space import HParams
from sweepjax.sweep import checkpoint
from sweepjax.sweep.block_plan import plan_blocks
from sweepjax.sweep.buckets import plan_buckets
from sweepjax.sweep.config import Config
from sweepjax.sweep.policies import FixedRows, make_policies
from sweepjax.sweep.structures import Blocks, trains_in_blocks
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trials import Curves, TrialTable
from sweepjax.sweep.validation import validate

WIDTHS = Choice([[8], [16], [32]])


@pytest.fixture(scope="module")
def asha_tpe(tiny_config, tiny_data, tmp_path_factory):
    """A finished ASHA + TPE sweep over width and learning rate, every checkpoint kept."""
    out = tmp_path_factory.mktemp("structure") / "reference"
    config = tiny_config.replace(
        space={"model.hidden": WIDTHS, "learning_rate": LogUniform(1e-2, 0.5)},
        population=4,
        trials=10,
        steps=30,
        scheduler={"name": "asha", "min_steps": 10},
        searcher="tpe",
        keep_checkpoints=100,
        out_dir=str(out),
    )
    sweepjax.run(config, dataset=tiny_data, quiet=True)
    return config, out, tiny_data


def test_trials_of_every_structure_train_in_their_own_block(asha_tpe):
    config, out, _ = asha_tpe
    assert trains_in_blocks(config)
    rows = sweepjax.read_result(out).rows
    assert len(rows) == 10 and len({r["model.hidden"] for r in rows}) >= 2
    assert any(r["stop_reason"].startswith("asha") for r in rows)
    metas = [_meta(out, step) for step in checkpoint.saved_steps(out)]
    assert jax.device_count() == 2  # the session's two CPU devices, as the command makes
    for meta in metas:
        blocks = Blocks.from_json(meta.blocks)
        assert sum(blocks.sizes) == len(meta.slots)
        for part, options in zip(blocks.slices(), blocks.options, strict=True):
            assert part.stop - part.start in (2, 4)  # a multiple of the devices, a power of two
            for trial in meta.slots[part]:
                if trial >= 0:  # each slot holds a trial of its block's structure
                    hidden = meta.trials[trial]["hparams"]["model.hidden"]
                    assert json.loads(hidden) == options["hidden"]


def _meta(out: Path, step: int):
    with checkpoint._manager(out, read_only=True) as manager:
        read = manager.restore(
            step,
            args=checkpoint.ocp.args.Composite(meta=checkpoint.ocp.args.JsonRestore()),
        )
    return checkpoint.CheckpointMeta.from_json(read["meta"])


def test_every_checkpoint_resumes_bitwise(asha_tpe, tmp_path):
    """Rewound to seeded random checkpoints, the tail past `steps` and the last included."""
    config, out, data = asha_tpe
    steps = checkpoint.saved_steps(out)
    tail = [s for s in steps if s > config.steps]
    rng = np.random.default_rng(30)
    chosen = sorted({*rng.choice(steps[:-1], 2, replace=False).tolist(), tail[0], steps[-1]})
    for step in chosen:
        folder = rewind(out, tmp_path / f"at{step}", step)
        sweepjax.resume(folder, dataset=data, quiet=True)
        assert_same_results(out, folder)


def test_a_hyperband_sweep_over_structure_stops_as_replayed_by_hand(tiny_config, tiny_data):
    """One slot, so trials arrive one after another: each trial's value at each rung of its
    bracket is kept only if it is among the top `n // eta` (at least one) recorded there."""
    config = tiny_config.replace(
        space={"model.hidden": Choice([[8], [16]]), "learning_rate": LogUniform(1e-2, 0.5)},
        population=1,
        trials=8,
        steps=90,
        scheduler={"name": "hyperband", "min_steps": 10, "eta": 3},
        searcher="random",
    )
    result = sweepjax.run(config, dataset=tiny_data, quiet=True)
    rows, curves = result.rows, result.curves
    assert {r["model.hidden"] for r in rows} == {"[8]", "[16]"}
    rungs = {0: [10, 30], 1: [30]}  # brackets: min_steps 10 and 30, eta 3, below 90 steps
    records: dict[tuple[int, int], list[float]] = {}
    expected = {}
    for row in sorted(rows, key=lambda r: r["member"]):
        trial, bracket = row["member"], row["member"] % 2
        expected[trial] = ("finished", "")
        for k, budget in enumerate(rungs[bracket]):
            at = list(curves["steps"]).index(row["start_step"] + budget)
            value = float(curves["val_accuracy"][at, trial])
            recorded = records.setdefault((bracket, k), [])
            recorded.append(value)
            top = sorted(recorded, reverse=True)[: max(len(recorded) // 3, 1)]
            if value < top[-1]:
                expected[trial] = ("stopped", f"asha rung {k}")
                break
    got = {r["member"]: (r["status"], r["stop_reason"]) for r in rows}
    assert got == {t: ("ok" if s == "finished" else s, why) for t, (s, why) in expected.items()}
    assert any(s == "stopped" for s, _ in expected.values())


def _state(config: Config, rows: list[dict]) -> SweepState:
    scheduler, _ = make_policies(config, task_of("classification"))
    return SweepState(
        config, "accuracy", "max", HParams({}), np.zeros(0, int), TrialTable(),
        Curves.empty(("accuracy",)), scheduler, FixedRows(rows), blocks=Blocks([], []),
    )  # fmt: skip


def _row(width: int, lr: float = 0.1) -> dict:
    return {"model.hidden": json.dumps([width]), "learning_rate": lr}


def test_freed_slots_refill_within_and_across_structures():
    config = Config(
        space={"model.hidden": Choice([[4], [8], [16]]), "learning_rate": LogUniform(1e-3, 1.0)},
        population=8,
        trials=20,
        scheduler={"name": "asha", "min_steps": 10},
        steps=30,
        eval_every=10,
    )
    first = [_row(4)] * 4 + [_row(8)] * 4
    later = [_row(4, 0.2), _row(16, 0.3), _row(8, 0.4)]
    state = _state(config, first + later)
    plan_blocks(state, 0, [], devices=2)
    assert state.blocks.sizes == [4, 4] and state.slot_trials.tolist() == list(range(8))
    # trial 1 (width 4) stopped; trials 4, 5 and 6 (width 8) finished: four slots free
    state.table.rows[1].status = "stopped"
    for trial in (4, 5, 6):
        state.table.rows[trial].status = "finished"
    plan = plan_blocks(state, 10, [], devices=2)
    # width 4 refills its own free slot 1; width 8 keeps trial 7 and seats trial 10 in a free
    # slot of its block (at most half runs, but a new trial came: no narrowing); width 16 is
    # a new block of two slots (a multiple of the two devices), trial 9 and an idle slot.
    assert state.blocks.labels == ["model.hidden=[4]", "model.hidden=[8]", "model.hidden=[16]"]
    assert state.blocks.sizes == [4, 4, 2]
    assert state.slot_trials.tolist() == [0, 8, 2, 3, 10, -1, -1, 7, 9, -1]
    assert plan.origins == [0, 1, None]
    fresh = [c.reassignment.fresh.tolist() for c in plan.changes]
    assert fresh == [[False, True, False, False], [True, False, False, False], [True, False]]
    assert state.hparams[START].tolist() == [0, 10, 0, 0, 10, 0, 0, 0, 10, 10]
    # every trial of width 4 ends and none is proposed: its block is dropped
    for trial in (0, 2, 3, 8):
        state.table.rows[trial].status = "finished"
    state.searcher = FixedRows([])
    plan_blocks(state, 20, [], devices=2)
    assert state.blocks.labels == ["model.hidden=[8]", "model.hidden=[16]"]
    assert state.slot_trials.tolist()[-2:] == [9, -1]


def test_a_block_grows_to_the_next_power_of_two_for_its_new_trials():
    config = Config(
        space={"model.hidden": Choice([[4], [8]]), "learning_rate": LogUniform(1e-3, 1.0)},
        population=8,
        trials=20,
        scheduler={"name": "asha", "min_steps": 10},
        steps=30,
        eval_every=10,
    )
    state = _state(config, [_row(4)] * 2 + [_row(8)] * 6 + [_row(4)] * 3)
    plan_blocks(state, 0, [], devices=1)
    assert state.blocks.sizes == [2, 8]  # six trials of width 8: the next power of two
    for trial in (2, 3, 4):
        state.table.rows[trial].status = "stopped"
    plan_blocks(state, 10, [], devices=1)
    # width 4: two running and three new need five slots: grown to eight, its running trials
    # first, then the new ones; width 8: three of eight run and none comes: narrowed to four
    # (no compile cost weighed here), its running trials packed first
    assert state.blocks.sizes == [8, 4]
    assert state.slot_trials.tolist() == [0, 1, 8, 9, 10, -1, -1, -1, 5, 6, 7, -1]


def test_pbt_copies_only_within_a_structure():
    space = {"lr": LogUniform(1e-3, 1.0)}
    pbt = PBT("max", space, ready=10, quantile=0.5, group_by=["model.hidden"])

    def obs(trial, value, width):
        return Observation(trial, trial, 10, value, {"lr": 0.1, "model.hidden": width})

    # width [8]: trials 0 (0.9) and 1 (0.8); width [16]: trials 2 (0.3) and 3 (0.2). Across
    # structures the bottom half would be trials 2 and 3 copying trial 0 or 1; within each,
    # trial 1 copies trial 0 and trial 3 copies trial 2.
    actions = pbt.decide([obs(0, 0.9, "[8]"), obs(1, 0.8, "[8]"), obs(2, 0.3, "[16]"),
                          obs(3, 0.2, "[16]")], 10)  # fmt: skip
    assert sorted((a.trial, a.source_trial) for a in actions) == [(1, 0), (3, 2)]
    restored = PBT("max", space, ready=10, quantile=0.5, group_by=["model.hidden"])
    restored.load_state_dict(pbt.state_dict())
    ungrouped = PBT("max", space, ready=10, quantile=0.5)
    with pytest.raises(ValueError, match="scheduler state"):
        ungrouped.load_state_dict(pbt.state_dict())


def test_a_pbt_sweep_over_structure_exploits_within_each(tiny_config, tiny_data):
    config = tiny_config.replace(
        space={"model.hidden": Choice([[8], [16]]), "learning_rate": LogUniform(1e-2, 0.5)},
        population=8,
        steps=40,
        scheduler={"name": "pbt", "ready": 10, "quantile": 0.25},
        searcher="random",
    )
    result = sweepjax.run(config, dataset=tiny_data, quiet=True)
    width = {r["member"]: r["model.hidden"] for r in result.rows}
    parents = {r["member"]: r["parent"] for r in result.rows if r["parent"] >= 0}
    assert parents  # some trial copied another
    assert all(width[child] == width[parent] for child, parent in parents.items())


def test_a_trial_exports_with_its_own_structure(asha_tpe, tmp_path):
    """The kept best trial and a trial still in a slot each load into their own model."""
    config, out, data = asha_tpe
    last = _meta(out, checkpoint.saved_steps(out)[-1])
    held = next(t for t in last.slots if t >= 0 and t != last.kept_trial)
    x = np.asarray(data.val["inputs"][:4])
    for member in (last.kept_trial, held):
        to = sweepjax.export_member(out, member, tmp_path / f"m{member}")
        info = json.loads((to / "hparams.json").read_text())
        hidden = json.loads(last.trials[member]["hparams"]["model.hidden"])
        assert info["model"]["hidden"] == hidden
        variables = ocp.StandardCheckpointer().restore(to / "checkpoint")
        assert np.asarray(variables["params"]["Dense_0"]["kernel"]).shape[1] == hidden[0]
        logits = build_model(info["model"]).apply(variables, x, train=False)
        assert logits.shape == (4, 3) and np.isfinite(logits).all()


def test_the_report_treats_structure_as_a_dimension(asha_tpe):
    """Structure as a category: grouped, and ranked by fANOVA first where the metric follows
    it (made so here: a mean by width, a little noise, the learning rate irrelevant)."""
    pytest.importorskip("optuna")
    pytest.importorskip("sklearn")
    _, out, _ = asha_tpe
    summary = sweepjax.read_result(out).summary
    rng = np.random.default_rng(5)
    means = {"[8]": 0.3, "[16]": 0.6, "[32]": 0.9}
    rows = []
    for member in range(24):
        hidden = list(means)[member % 3]
        accuracy = means[hidden] + 0.01 * rng.normal()
        rows.append(
            {"member": member, "model.hidden": hidden,
             "learning_rate": float(10 ** rng.uniform(-2, -0.3)), "seed": member,
             "status": "ok", "diverged_at_step": -1, "final_val_accuracy": accuracy,
             "best_val_accuracy": accuracy, "test_accuracy": accuracy}
        )  # fmt: skip
    result = sweepjax.Result(rows, {}, summary)
    assert "model.hidden" in categorical_dimensions(result)
    shares = fanova_importance(result).shares
    assert shares[0].name == "model.hidden" and shares[0].share > 0.9
    assert figure_groups(result) is not None


def test_a_grid_crosses_layer_lists_of_different_depths():
    space = {"model.hidden": Choice([[8, 8], [8, 8, 8]]), "learning_rate": Choice([0.1, 0.2])}
    config = Config(space=space, population=4, searcher="grid", steps=4, eval_every=2)
    validate(config)
    assert [b.label for b in plan_buckets(config)] == [
        "model.hidden=[8, 8]",
        "model.hidden=[8, 8, 8]",
    ]
    validate(
        config.replace(scheduler={"name": "asha", "min_steps": 2}, trials=8, searcher="random")
    )


@pytest.mark.parametrize("searcher", ["tpe", "coarse_to_fine"])
def test_model_based_searchers_take_structure_as_a_dimension(searcher):
    """TPE sees a categorical of the lists' labels (and an int for an `IntUniform`) and is told
    every trial; coarse-to-fine keeps the structures seen among its best trials."""
    if searcher == "tpe":
        optuna = pytest.importorskip("optuna")
    space = {
        "model.hidden": WIDTHS,
        "model.depth": IntUniform(1, 3),
        "learning_rate": LogUniform(1e-3, 1.0),
    }
    config = Config(space=space, population=4, trials=12, searcher=searcher, seed=1)
    _, policy = make_policies(config, task_of("classification"))
    rows = policy.ask(4)
    assert {r["model.hidden"] for r in rows} <= {"[8]", "[16]", "[32]"}
    assert all(r["model.depth"] in (1, 2, 3) for r in rows)
    for trial, row in enumerate(rows):  # the widest trial is the best
        policy.tell(trial, json.loads(row["model.hidden"])[0] / 32, 30, "finished")
    later = policy.ask(4)
    assert len(later) == 4 and all(r["model.hidden"] in {"[8]", "[16]", "[32]"} for r in later)
    if searcher == "tpe":
        dists = policy.study.trials[0].distributions
        assert isinstance(dists["model.hidden"], optuna.distributions.CategoricalDistribution)
        assert isinstance(dists["model.depth"], optuna.distributions.IntDistribution)
        assert [t.value for t in policy.study.trials[:4]] == [
            json.loads(r["model.hidden"])[0] / 32 for r in rows
        ]
