"""The trial bookkeeping (`trials.py`, `sweep_state.py`, `trial_results.py`) held
to references written in the test: hand-computed sequences, and numpy, in both ranking
directions (invariant 10), budgets and divergence on each trial's own clock (invariant 9).

No training: states are built from tiny tables, hand-written chunks and sampled searchers.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import same

from sweepjax import Choice, Config
from sweepjax.engine.population import START
from sweepjax.search.distributions import LogUniform
from sweepjax.search.protocol import Exploit, Stop
from sweepjax.search.schedulers import ASHA, FIFO
from sweepjax.search.searchers import Sampled
from sweepjax.search.space import HParams
from sweepjax.sweep.slot_changes import Reassignment, packed, slots_for
from sweepjax.sweep.sweep_state import Chunk, SweepState
from sweepjax.sweep.trial_results import pareto_front, trial_result
from sweepjax.sweep.trials import Curves, TrialTable, _chunk_mean, last_finite

pytestmark = pytest.mark.quick

TASKS = {"max": ("classification", "accuracy"), "min": ("regression", "mse")}
DIRECTIONS = pytest.mark.parametrize("direction", ["max", "min"])
SPACE = {"learning_rate": LogUniform(1e-3, 1.0)}
NAN = math.nan


class RecordingSearcher(Sampled):
    """Sampled trials (more than a sweep's budget, as Optuna's samplers); remembers every
    `tell`."""

    def __init__(self, space, trials):
        super().__init__(space, "random", trials, seed=0)
        self.told = []

    def tell(self, trial, value, steps, status):
        super().tell(trial, value, steps, status)
        self.told.append((trial, value, steps, status))


class Scripted(FIFO):
    """A scheduler that answers each `decide` with the next list of `actions`."""

    def __init__(self, actions=(), rungs=None):
        self.actions, self.rungs, self.seen = list(actions), rungs or {}, []

    def decide(self, observations, step):
        self.seen.append((step, list(observations)))
        return self.actions.pop(0) if self.actions else []

    def rung_of(self, trial):
        return self.rungs.get(trial, -1)


def seated(direction="max", starts=(0, 0, 0), policy=None, **options):
    """A state whose slot `i` holds trial `i`, started at global step `starts[i]`."""
    task, metric = TASKS[direction]
    settings = {"population": len(starts), "trials": 8, "steps": 6, "eval_every": 2, **options}
    config = Config(task=task, **{"space": SPACE, **settings})
    searcher = RecordingSearcher(config.space, 2 * (config.trials or config.population))
    state = SweepState(
        config, metric, direction, HParams({}), np.zeros(0, int), TrialTable(),
        Curves.empty((metric,)), policy or FIFO(), searcher,
    )  # fmt: skip
    columns = [state.admit(state.searcher.ask(1), start)[1].values for start in starts]
    state.hparams = HParams({k: np.concatenate([c[k] for c in columns]) for k in columns[0]})
    state.slot_trials = np.arange(len(starts))
    return state


def mark(state, *statuses):
    """Set the status of trials 0, 1, ... in order."""
    for trial, status in zip(state.table.rows, statuses, strict=False):
        trial.status = status


def chunk(state, step, values, alive=None, diverged_at=None, losses=None):
    """A chunk ending at `step` with the ranking metric `values` per slot."""
    size = len(values)
    return Chunk(
        step,
        np.ones((2, size)) if losses is None else np.asarray(losses, float),
        {state.rank_by: np.asarray(values, float)},
        np.ones(size, bool) if alive is None else np.asarray(alive),
        np.full(size, -1) if diverged_at is None else np.asarray(diverged_at),
    )


def between_chunks(state, data, test=None):
    """What the loop does after a chunk (`loop._decide` without the device)."""
    exploits = state.apply_decisions(state.observe(data), data.step)
    leaving = state.leaving()
    state.end_trials(data, test)
    keep = state.to_keep(leaving)
    if keep is not None:
        state.kept_trial = int(state.slot_trials[keep])
    return state.plan(data.step, exploits, 1), keep


def test_curves_store_each_chunk_under_the_trial_its_slot_held():
    curves = Curves.empty(("mse",))
    for step, values, slot_trials in [(2, [1, 2, 3], [0, 1, 2]), (4, [4, 5, 6], [3, -1, 1])]:
        losses, mse = np.array([values], float), {"mse": np.array(values) / 10}
        curves.append(step, losses, mse, np.array(slot_trials), max(slot_trials) + 1)
    arrays = curves.arrays(5)
    np.testing.assert_array_equal(arrays["steps"], [2, 4])
    expected_mse = [[0.1, 0.2, 0.3, NAN, NAN], [NAN, 0.6, NAN, 0.4, NAN]]
    np.testing.assert_allclose(arrays["val_mse"], expected_mse, rtol=1e-7)
    expected_loss = [[1.0, 2.0, 3.0, NAN, NAN], [NAN, 6.0, NAN, 4.0, NAN]]
    np.testing.assert_array_equal(arrays["train_loss"], expected_loss)
    assert curves.arrays()["val_mse"].shape == (2, 4)  # as wide as the widest chunk
    assert Curves.empty(("mse",)).arrays()["val_mse"].shape == (0, 0)
    again = Curves.from_arrays(curves.arrays(4), ("mse",)).arrays(5)
    np.testing.assert_array_equal(again["val_mse"], arrays["val_mse"])


def test_a_chunks_train_loss_averages_only_the_steps_each_slot_was_alive():
    losses = np.array([[1.0, 2.0, NAN, 5.0], [3.0, np.inf, NAN, 7.0], [5.0, NAN, NAN, NAN]])
    expected = [(1.0 + 3.0 + 5.0) / 3, 2.0, NAN, (5.0 + 7.0) / 2]
    np.testing.assert_allclose(_chunk_mean(losses), expected, rtol=1e-12)


def test_last_finite_skips_trailing_and_inner_gaps():
    assert last_finite(np.array([1.0, 2.0, NAN, 3.0, np.inf, NAN])) == 3.0
    assert last_finite(np.array([4.0])) == 4.0
    assert math.isnan(last_finite(np.array([NAN, np.inf])))


def test_the_trial_table_round_trips_as_plain_json():
    table = TrialTable()
    trial = table.add({"learning_rate": np.float32(0.5), "seed": np.int32(3)}, start=4)
    trial.history.append({"step": np.int64(8), "new": (np.float64(0.25),)})
    rows = json.loads(json.dumps(table.to_json()))  # numpy scalars would not serialize
    assert rows[0]["hparams"] == {"learning_rate": 0.5, "seed": 3}
    assert rows[0]["history"] == [{"step": 8, "new": [0.25]}]
    again = TrialTable.from_json(rows)
    assert (len(again), again.rows[0].start, again.rows[0].status) == (1, 4, "running")
    assert table.add({"seed": 0}, start=6).id == 1


def test_steps_and_divergence_are_counted_on_each_trials_own_clock():
    state = seated("min", starts=(0, 3, 4), steps=6, eval_every=10)
    data = chunk(state, 6, [0.5, 0.25, 0.125], alive=[True, True, False], diverged_at=[-1, -1, 5])
    observations = state.observe(data)
    assert [(o.trial, o.slot, o.steps, o.value) for o in observations] == [
        (0, 0, 6, 0.5),
        (1, 1, 3, 0.25),
    ]
    rows = state.table.rows
    assert [(t.status, t.steps, t.diverged_at) for t in rows] == [
        ("finished", 6, -1),
        ("running", 3, -1),
        ("diverged", 2, 1),  # diverged at global step 5, its own step 1
    ]
    assert state.next_length(6) == 3  # trial 1's budget: 3 of its 6 steps left
    assert state.member_steps_left(6) == 3 + (8 - 3) * 6
    assert state.leaving().tolist() == [True, False, True]


def test_the_next_chunk_stops_at_the_next_eval_or_a_running_trials_budget():
    state = seated(starts=(0, 3), steps=10, eval_every=8)
    assert [state.next_length(s) for s in (0, 5, 9)] == [8, 3, 1]
    state.table.rows[0].status = "finished"
    assert not state.done and state.next_length(11) == 2  # trial 1 at its own step 8 of 10
    assert state.member_steps_left(11) == 2 + (8 - 2) * 10
    state.table.rows[1].status = "stopped"
    assert state.done and state.member_steps_left(12) == (8 - 2) * 10


@DIRECTIONS
def test_ended_trials_keep_their_final_metrics_and_tell_the_searcher_their_value(direction):
    state = seated(direction, starts=(0, 2, 2, 2), policy=Scripted([[Stop(1, 1, "rule")]]))
    metric = state.rank_by
    data = chunk(
        state, 6, [0.75, 0.5, 0.25, 0.125], alive=[1, 1, 0, 1], diverged_at=[-1, -1, 3, -1]
    )
    test = {metric: np.array([0.7, 0.6, 0.4, 0.3])}
    between_chunks(state, data, test)
    rows = state.table.rows
    assert [t.status for t in rows[:4]] == ["finished", "stopped", "diverged", "running"]
    assert rows[1].reason == "rule"
    assert rows[0].metrics == {f"final_val_{metric}": 0.75, f"test_{metric}": 0.7}
    assert rows[1].metrics == {f"final_val_{metric}": 0.5, f"test_{metric}": 0.6}
    assert rows[3].metrics == {}
    told = state.searcher.told
    assert [t for t in told if t[0] != 2] == [(0, 0.75, 6, "finished"), (1, 0.5, 4, "stopped")]
    (diverged,) = [t for t in told if t[0] == 2]
    assert diverged[2:] == (4, "diverged") and math.isnan(diverged[1])
    state.end_trials(data, test)  # a trial is told once
    assert len(state.searcher.told) == 3


@DIRECTIONS
def test_the_kept_trial_is_the_best_finished_one_in_the_tasks_direction(direction):
    state = seated(direction, starts=(0,) * 5)
    column = f"final_val_{state.rank_by}"
    values = [0.3, 0.7, 0.5, NAN, 0.9 if direction == "min" else 0.1]
    statuses = ["finished", "finished", "finished", "finished", "stopped"]
    for trial, value, status in zip(state.table.rows, values, statuses, strict=True):
        trial.status, trial.metrics = status, {column: value}
    leaving = np.ones(5, bool)
    assert state.to_keep(leaving) == {"max": 1, "min": 0}[direction]
    assert state.to_keep(np.array([0, 0, 1, 1, 1], bool)) == 2
    extra = state.table.add({"learning_rate": 0.1, "seed": 5}, start=0)
    extra.status, extra.metrics = "finished", {column: 0.6}
    state.kept_trial = extra.id  # slot 2's 0.5 beats 0.6 only when minimising
    assert state.to_keep(np.array([0, 0, 1, 0, 0], bool)) == {"max": None, "min": 2}[direction]
    same = state.table.add({"learning_rate": 0.1, "seed": 6}, start=0)
    same.status, same.metrics = "finished", {column: 0.5}
    state.kept_trial = same.id  # a tie keeps the trial kept already
    assert state.to_keep(leaving) == {"max": 1, "min": 0}[direction]
    assert state.to_keep(np.array([0, 0, 1, 0, 0], bool)) is None
    state.kept_trial = 0  # 0.3
    assert state.to_keep(np.array([0, 0, 1, 0, 0], bool)) == {"max": 2, "min": None}[direction]
    fixed = seated(direction, starts=(0, 0), trials=None)  # every trial keeps its slot
    fixed.table.rows[0].status, fixed.table.rows[0].metrics = "finished", {column: 0.5}
    assert fixed.to_keep(np.array([True, False])) is None


def test_the_schedulers_stops_apply_to_running_trials_and_exploits_are_returned():
    exploit = Exploit(2, 2, 1, 1, {"learning_rate": 0.5})
    scheduler = Scripted([[Stop(0, 0, "late"), Stop(1, 1, "asha rung 1"), exploit]], {1: 1, 2: 0})
    state = seated(starts=(0, 2, 2), policy=scheduler, steps=8)
    observations = state.observe(chunk(state, 8, [0.1, 0.2, 0.3]))  # trial 0 at its step 8
    assert state.table.rows[0].status == "finished"
    assert state.apply_decisions(observations, 8) == [exploit]
    rows = state.table.rows
    assert [(t.status, t.reason, t.rung) for t in rows] == [
        ("finished", "", -1),  # finished in this chunk: the stop is moot
        ("stopped", "asha rung 1", 1),
        ("running", "", 0),
    ]
    assert scheduler.seen == [(8, observations)]
    assert state.apply_decisions([], 10) == [] and len(scheduler.seen) == 1


@DIRECTIONS
def test_asha_stops_the_worse_trial_in_the_tasks_direction(direction):
    asha = ASHA(direction, max_steps=6, min_steps=2, eta=2)
    state = seated(direction, starts=(0, 0), policy=asha)
    values = {"max": [0.5, 0.25], "min": [0.25, 0.5]}[direction]
    state.apply_decisions(state.observe(chunk(state, 2, values)), 2)
    rows = state.table.rows[:2]
    assert [(t.status, t.rung, t.reason) for t in rows] == [
        ("running", 0, ""),
        ("stopped", 0, "asha rung 0"),
    ]


def test_free_slots_take_new_trials_that_start_at_the_current_step():
    state = seated(starts=(0, 0, 2, 2), steps=10, trials=8)
    mark(state, "running", "finished", "stopped")
    change = state.plan(6, [], devices=1)
    assert state.slot_trials.tolist() == [0, 4, 5, 3] and len(state.table) == 6
    np.testing.assert_array_equal(change.source, [0, 1, 2, 3])
    assert change.fresh.tolist() == [False, True, True, False]
    assert change.running.tolist() == [True] * 4 and not change.freezes and change.changes
    assert change.hparams[START].tolist() == [0, 6, 6, 2]
    assert change.hparams["seed"].tolist() == [0, 4, 5, 3]
    assert [t.start for t in state.table.rows[4:]] == [6, 6]
    assert state.trial_steps(1, 9) == 3 and state.trial_steps(3, 9) == 7


def test_without_new_trials_the_running_ones_pack_into_a_narrower_population():
    state = seated(starts=(0, 3, 0, 0), steps=10, trials=4)
    mark(state, "finished", "running", "stopped", "running")
    asked = []
    narrow_pays = lambda size, narrower, left: asked.append((size, narrower, left)) or False  # noqa: E731
    kept = state.plan(6, [], 1, narrow_pays)
    assert asked == [(4, 2, 7)]  # trial 1 has 7 of its 10 steps left, trial 3 has 4
    assert kept.source.tolist() == [1, 3, 0, 2] and kept.running.tolist() == [1, 1, 0, 0]
    assert kept.freezes and state.slot_trials.tolist() == [1, 3, -1, -1]
    narrow = seated(starts=(0, 3, 0, 0), steps=10, trials=4)
    mark(narrow, "finished", "running", "finished", "stopped")
    change = narrow.plan(6, [], 1)
    assert change.source.tolist() == [1, 0] and change.running.tolist() == [True, False]
    assert change.fresh.tolist() == [False, False] and change.freezes
    assert narrow.slot_trials.tolist() == [1, -1] and change.hparams[START].tolist() == [3, 0]


def test_a_population_narrows_even_where_its_running_slots_stay_in_place():
    state = seated(starts=(0,) * 8, steps=10, trials=8)
    mark(state, "running", "running", *["diverged"] * 6)
    change = state.plan(6, [], 1, lambda *sizes: True)
    assert change.source.tolist() == [0, 1] and state.slot_trials.tolist() == [0, 1]
    assert change.changes  # eight slots on the device become two


def test_a_narrow_population_grows_back_for_new_trials():
    state = seated(starts=(0, 2), steps=10, trials=4, population=4)
    state.table.rows[0].status = "stopped"
    change = state.plan(4, [], 1)
    assert state.slot_trials.tolist() == [1, 2, 3, -1]
    assert change.source.tolist() == [1, 0, 0, 0] and change.fresh.tolist() == [0, 1, 1, 0]
    assert change.running.tolist() == [True, True, True, False]
    assert change.hparams[START].tolist() == [2, 4, 4, 0]
    assert state.plan(8, [], 1) is not None and len(state.table) == 4  # the budget is spent


def test_an_exploited_trial_continues_from_its_source_with_its_own_seed():
    state = seated(starts=(0, 2, 4), steps=20)
    state.observe(chunk(state, 8, [0.1, 0.2, 0.3]))
    source_values = dict(state.table.rows[0].hparams)
    old = dict(state.table.rows[2].hparams)
    asked = []
    exploit = Exploit(2, 2, 0, 0, {"learning_rate": 0.5})
    change = state.plan(8, [exploit], 1, lambda *sizes: asked.append(sizes))
    assert asked == []  # every slot runs: nothing to narrow
    trial = state.table.rows[2]
    assert trial.hparams == {**source_values, "learning_rate": 0.5, "seed": 2}
    assert (trial.parent, trial.steps, trial.start) == (0, 8, 4)
    assert trial.history == [{"step": 8, "source_trial": 0, "old": old, "new": trial.hparams}]
    assert change.source.tolist() == [0, 1, 0] and not change.fresh.any()
    assert change.hparams[START].tolist() == [0, 2, 0]  # its clock is its source's
    np.testing.assert_allclose(change.hparams["learning_rate"][2], 0.5)
    assert change.hparams["seed"].tolist() == [0, 1, 2] and state.trial_steps(2, 9) == 9
    result = trial_result(state, ("accuracy",), None)
    (event,) = result.summary["lineage"]
    assert (event["trial"], event["step"], event["source_trial"]) == (2, 8, 0)
    assert event["new"] == {"learning_rate": 0.5} and set(event["old"]) == {"learning_rate"}


def test_admitted_trials_are_seeded_by_their_id_unless_the_row_says():
    state = seated(starts=(0, 0))
    rows = [{"learning_rate": 0.1}, {"learning_rate": 0.2}, {"learning_rate": 0.3, "seed": 7}]
    ids, columns = state.admit(rows, 5)
    assert ids == [2, 3, 4] and [t.start for t in state.table.rows[2:]] == [5, 5, 5]
    assert columns["seed"].tolist() == [2, 3, 7] and columns[START].tolist() == [5, 5, 5]
    assert [t.hparams["seed"] for t in state.table.rows[2:]] == [2, 3, 7]


@pytest.mark.parametrize(
    "budget, slots, status, length, left",
    [
        (6, [-1, -1, -1, 3], "finished", 2, 2 + 3 * 6),
        (10, [0, -1, -1, 3], "running", 4, 10 + 3 * 10),
    ],
)
def test_a_raised_budget_runs_on_only_the_trials_that_finished_it(
    budget, slots, status, length, left
):
    state = seated(starts=(0, 0, 0, 2), steps=6, eval_every=10)
    mark(state, "finished", "stopped", "diverged", "running")
    for trial, steps in zip(state.table.rows, [6, 2, 3, 4], strict=True):
        trial.steps, trial.metrics = steps, {"final_val_accuracy": 0.5}
    gone = state.table.add({"learning_rate": 0.1, "seed": 4}, start=0)  # kept, out of its slot
    gone.status, gone.metrics, state.kept_trial, state.kept = "finished", {}, gone.id, "variables"
    state.config = state.config.replace(steps=budget)  # resumed with this budget
    state.extend_budget()
    assert state.slot_trials.tolist() == slots and state.table.rows[0].status == status
    assert state.table.rows[0].metrics == (
        {} if status == "running" else {"final_val_accuracy": 0.5}
    )
    assert (state.next_length(6), state.member_steps_left(6)) == (length, left)
    assert (state.kept_trial, state.kept) == (4, "variables")


@DIRECTIONS
def test_a_kept_trial_that_runs_on_under_a_raised_budget_is_kept_anew(direction):
    state = seated(direction, starts=(0, 0), steps=4, trials=None, scheduler="asha")
    first, later = {"max": ([0.8, 0.6], [0.9, 0.7]), "min": ([0.6, 0.8], [0.7, 0.9])}[direction]
    assert between_chunks(state, chunk(state, 4, first)) == (None, 0)
    state.config = state.config.replace(steps=8)  # resumed with a larger budget
    state.extend_budget()
    assert state.running_slots().all() and (state.kept_trial, state.kept) == (-1, None)
    assert between_chunks(state, chunk(state, 6, [0.5, 0.5]))[1] is None
    assert between_chunks(state, chunk(state, 8, later))[1] == 0  # its new variables
    assert [t[:2] for t in state.searcher.told] == [(0, first[0]), (1, first[1])]  # told once


def flow(direction):
    """Three chunks of a refill sweep: a divergence, a refill, a stop, a late divergence."""
    rungs = {0: 1, 2: 0, 3: 0}
    state = seated(
        direction, policy=Scripted([[], [Stop(2, 2, "asha rung 0")], []], rungs),
        trials=4, scheduler="asha", searcher="nsga2",
    )  # fmt: skip
    chunks = [
        chunk(state, 2, [0.5, 0.9, 0.3], [1, 0, 1], [-1, 1, -1], [[1, 2, 3], [1.5, NAN, 3.5]]),
        chunk(state, 4, [0.7, 0.2, 0.1], None, None, [[1.0, 4.0, 2.0], [0.0, 2.0, 2.0]]),
        chunk(state, 6, [0.6, 0.8, 0.4], [1, 0, 1], [-1, 5, -1], [[0.5, 1, 9], [0.25, NAN, 9]]),
    ]
    tests = [[0.55, 0.95, 0.35], [0.75, 0.25, 0.15], [0.65, 0.85, 0.45]]
    kept = []
    for data, test in zip(chunks, tests, strict=True):
        kept.append(between_chunks(state, data, {state.rank_by: np.array(test)})[1])
    return state, kept


@DIRECTIONS
def test_the_results_of_a_refill_sweep_follow_each_trials_own_history(direction):
    state, kept = flow(direction)
    metric = state.rank_by
    state.slot_steps = 18
    assert kept == [None, None, 0] and state.slot_trials.tolist() == [0, 3, -1]
    told = [(t, None if math.isnan(v) else v, n, s) for t, v, n, s in state.searcher.told]
    assert told == [
        (1, None, 2, "diverged"),
        (2, 0.1, 4, "stopped"),
        (0, 0.6, 6, "finished"),
        (3, None, 4, "diverged"),
    ]
    result = trial_result(state, (metric,), None)
    np.testing.assert_allclose(
        result.curves[f"val_{metric}"],
        [[0.5, 0.9, 0.3, NAN], [0.7, NAN, 0.1, 0.2], [0.6, NAN, NAN, 0.8]],
    )
    best = {"max": [0.7, 0.9, 0.3, 0.8], "min": [0.5, 0.9, 0.1, 0.2]}[direction]
    expected = {
        "status": ["ok", "diverged", "stopped", "diverged"],
        "diverged_at_step": [-1, 1, -1, 3],  # trial 3 entered at step 2, diverged at step 5
        "start_step": [0, 0, 0, 2],
        "steps_trained": [6, 2, 4, 4],
        "rung": [1, -1, 0, 0],
        "parent": [-1, -1, -1, -1],
        "stop_reason": ["", "", "asha rung 0", ""],
        "final_train_loss": [0.375, 2.0, 2.0, 1.0],
        f"final_val_{metric}": [0.6, 0.9, 0.1, 0.8],
        f"best_val_{metric}": best,
        f"test_{metric}": [0.65, 0.95, 0.15, 0.85],
    }
    for column, values in expected.items():
        got = [row[column] for row in result.rows]
        assert all(map(same, got, values)), column
    assert [row["seed"] for row in result.rows] == [0, 1, 2, 3]
    summary = result.summary
    assert (summary["steps_done"], summary["member_steps"], summary["slot_steps"]) == (6, 16, 18)
    counts = [summary[f"trials_{s}"] for s in ("finished", "stopped", "diverged", "running")]
    assert (summary["trials"], counts, summary["scheduler"]) == (4, [1, 1, 2, 0], "asha")
    assert summary["pareto_trials"] == {"max": [0, 2], "min": [2]}[direction]
    assert "lineage" not in summary


def test_a_running_trial_reports_its_latest_values_and_its_slots_test():
    state = seated("min", starts=(0, 0), trials=None)
    state.slot_trials = np.array([1, 0])
    state.observe(chunk(state, 2, [0.3, 0.4]))
    state.observe(chunk(state, 4, [NAN, 0.5], losses=[[1.0, 2.0], [NAN, 4.0]]))
    result = trial_result(state, ("mse",), {"mse": np.array([0.7, 0.8])})
    finals = [r[c] for r in result.rows for c in ("final_val_mse", "test_mse")]
    assert finals == pytest.approx([0.5, 0.8, 0.3, 0.7])
    assert [r["final_train_loss"] for r in result.rows] == [3.0, 1.0]
    assert [r["best_val_mse"] for r in result.rows] == pytest.approx([0.4, 0.3])
    assert list(result.rows[0]) == [
        "member", "learning_rate", "seed", "status", "diverged_at_step",
        "final_train_loss", "final_val_mse", "best_val_mse", "test_mse",
    ]  # fmt: skip
    assert "trials" not in result.summary and "pareto_trials" not in result.summary
    assert math.isnan(trial_result(state, ("mse",), None).rows[0]["test_mse"])
    alone = seated("min", starts=(0,))
    before = trial_result(alone, ("mse",), None)  # before the first chunk
    assert [r["status"] for r in before.rows] == ["ok"] and before.summary["steps_done"] == 0


def test_results_name_each_trials_family():
    space = {**SPACE, "optimizer": Choice(["sgd", "adam"])}
    state = seated(starts=(0, 0), space=space)
    state.table.rows[0].hparams["optimizer"] = "adam"
    state.table.rows[1].hparams["optimizer"] = "sgd"
    rows = trial_result(state, ("accuracy",), None).rows
    assert [r["optimizer"] for r in rows] == ["adam", "sgd"]
    assert list(rows[0])[:4] == ["member", "learning_rate", "seed", "optimizer"]


@DIRECTIONS
def test_the_pareto_front_is_the_brute_force_non_dominated_set(direction):
    rng = np.random.default_rng(0)
    statuses = rng.choice(["ok", "stopped", "diverged"], 60, p=[0.5, 0.4, 0.1])
    rows = [
        {"member": i, "status": str(s), "m": int(rng.integers(0, 6)) / 4, "steps_trained": int(n)}
        for i, (s, n) in enumerate(zip(statuses, rng.integers(1, 6, 60), strict=True))
    ]
    rows[3].update(m=NAN, status="ok")
    rows[4].update(m=math.inf if direction == "max" else -math.inf, status="ok", steps_trained=1)
    no_worse = (lambda a, b: a >= b) if direction == "max" else (lambda a, b: a <= b)
    healthy = [r for r in rows if r["status"] != "diverged" and math.isfinite(r["m"])]
    front = [
        r["member"]
        for r in healthy
        if not any(
            no_worse(o["m"], r["m"])
            and o["steps_trained"] <= r["steps_trained"]
            and (o["m"], o["steps_trained"]) != (r["m"], r["steps_trained"])
            for o in healthy
        )
    ]
    assert pareto_front(rows, "m", direction) == front and len(front) > 1
    hand = [{"member": i, "status": "ok", "m": m, "steps_trained": n}
            for i, (m, n) in enumerate([(0.9, 90), (0.8, 10), (0.7, 30)])]  # fmt: skip
    assert pareto_front(hand, "m", direction) == {"max": [0, 1], "min": [1, 2]}[direction]


def test_slots_for_and_packed_against_hand_sequences():
    assert [slots_for(n, 16, 16, 1) for n in (0, 1, 2, 3, 5, 8, 9, 17)] == [
        2, 2, 2, 4, 8, 8, 16, 16,
    ]  # fmt: skip
    assert [slots_for(n, 8, 16, 2) for n in (1, 3, 4, 5, 8, 9)] == [2, 4, 4, 8, 8, 16]
    assert slots_for(5, 12, 12, 3) == 9 and slots_for(2, 12, 12, 3) == 3
    running = np.array([True, True, True, False, False, False, True, False])
    assert packed(running, 2, 4).tolist() == [0, 1, 6, 2]  # slot 2 moves to device 1
    assert packed(running, 2, 8).tolist() == [0, 1, 2, 3, 6, 4, 5, 7]
    assert packed(running, 1, 8).tolist() == [0, 1, 2, 6, 3, 4, 5, 7]
    assert packed(np.array([False, True, False, False]), 2, 2).tolist() == [1, 0]
    assert packed(np.array([True, True]), 1, 4).tolist() == [0, 1, 0, 0]  # slot 0 again


def test_a_reassignment_changes_the_population_only_when_it_moves_starts_or_freezes():
    def change(source, fresh=(False, False), freezes=False):
        return Reassignment(np.array(source), np.array(fresh), np.ones(2, bool), None, freezes)

    assert not change([0, 1]).changes
    assert change([1, 1]).changes and change([0, 1], (False, True)).changes
    assert change([0, 1], freezes=True).changes


def test_the_checkpoint_metadata_records_slots_trials_and_policies():
    state, _ = flow("max")
    state.slot_steps = 18
    meta = json.loads(json.dumps(state.checkpoint_meta(6, {}, None).to_json()))
    assert (meta["budget_steps"], meta["slots"], meta["slot_steps"]) == (6, [0, 3, -1], 18)
    assert meta["kept_trial"] == 0 and meta["searcher"] == {"name": "random", "handed": 4}
    assert TrialTable.from_json(meta["trials"]).rows[3].diverged_at == 3


@DIRECTIONS
def test_a_trial_diverging_in_training_occupies_its_asha_rung_as_the_worst(direction):
    """By hand, eta 2, rungs at own steps 2 and 4 (of 6): trial 0 diverges in the first chunk,
    so rung 0 holds [NaN, v1, v2] in slot order. n = 3 keeps the best 3 // 2 = 1: trial 1 (the
    better) continues and trial 2 stops. Without the NaN, n = 2 would keep the best 1 as well,
    so the second chunk decides: trial 3 (refilled into slot 0) reaches rung 0 with n = 4 and
    the best 2 kept, where it ranks second; it would be alone behind trial 1 of n = 3 (best 1)
    if the NaN were not recorded."""
    asha = ASHA(direction, max_steps=6, min_steps=2, eta=2)
    state = seated(direction, policy=asha)
    good, poor = (0.9, 0.5) if direction == "max" else (0.1, 0.5)
    first = chunk(state, 2, [NAN, good, poor], alive=[False, True, True], diverged_at=[1, -1, -1])
    between_chunks(state, first)
    assert [t.status for t in state.table.rows[:3]] == ["diverged", "running", "stopped"]
    assert [t.rung for t in state.table.rows[:3]] == [0, 0, 0]
    assert state.slot_trials.tolist()[:3] == [3, 1, 4]  # slots 0 and 2 refilled
    middle = 0.7 if direction == "max" else 0.3  # between trial 1's and trial 2's values
    second = chunk(state, 4, [middle, good, good])
    between_chunks(state, second)
    assert state.table.rows[3].status == "running"  # 2nd of the best 4 // 2 at rung 0
    assert asha.rung_of(3) == 0
