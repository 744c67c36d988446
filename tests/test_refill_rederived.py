"""A refill sweep's bookkeeping re-derived from its trials trained alone, in both ranking
directions (invariants 2, 4, 9 and 10 of docs/architecture.md).

One ASHA sweep per direction (a regression ranked by the lowest validation mse, a
classification by the highest accuracy) hands freed slots to new trials; trial `HUGE` starts
late with a rate that diverges. Each trial is then trained again without the sweep, from the
global step it started at: the trials sharing a start as one fixed population (its members are
independent), in chunks of `EVERY` steps, for the whole budget. What the sweep recorded of a
trial must be what its own run gives: its curve (under its own index, NaN while it held no
slot), where it diverged (on its own clock) and its row, bitwise on the CPU; the chunk means
of the train loss are summed on the host in float32 by the sweep and in float64 here, so they
agree to `EVERY` roundings. The best trial, the variables kept for export, the Optuna study
and the leaderboard follow the task's direction.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import assert_same, make_tiny_data
from test_tasks import _regression_data

import sweepjax
from sweepjax.engine.evaluation import make_evaluate
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.report.render import leaderboard_rows
from sweepjax.runner.run import program_of
from sweepjax.sweep import checkpoint
from sweepjax.sweep.results import Result, ranking
from sweepjax.sweep.sweep_state import trial_columns

EVERY, BUDGET, SLOTS = 10, 30, 4
ASHA = {"name": "asha", "min_steps": EVERY, "eta": 3}
MOMENTUM = 0.5
# A grid hands its points out in order: trial i trains at rate i with seed i. Trial HUGE enters
# a freed slot late, and its rate diverges within its first chunk.
HUGE = 8
RATES = {
    "min": (0.01, 0.003, 0.03, 0.1, 0.02, 0.05, 0.005, 0.08, 0.6, 0.04),
    "max": (0.05, 0.01, 0.2, 0.1, 0.3, 0.02, 0.15, 0.03, 300.0, 0.08),
}
SUM_ROUNDING = EVERY * 2.0**-24  # a float32 sum of EVERY positive terms, then a float32 quotient


@dataclasses.dataclass
class Alone:
    """A trial trained alone from global step `start` for the whole budget."""

    start: int
    losses: np.ndarray  # [BUDGET] its train loss at each of its own steps, NaN once diverged
    val: dict[str, np.ndarray]  # [BUDGET // EVERY] its validation metrics after each chunk
    test: dict[str, np.ndarray]  # [BUDGET // EVERY] its test metrics after each chunk
    params: list[Any]  # its parameters after each chunk
    diverged_at: int  # its own step at which it diverged, -1 if it did not


@dataclasses.dataclass
class Sweep:
    direction: str
    config: sweepjax.Config
    returned: Result  # what `sweepjax.run` returned
    result: Result  # what its folder reads back as
    alone: dict[int, Alone]  # every trial trained alone, by trial number
    expected: list[dict[str, Any]]  # every trial's row re-derived from its run alone
    curves: dict[str, np.ndarray]  # the curves re-derived from the runs alone

    @property
    def rank_by(self) -> str:
        return f"final_val_{self.metric}"

    @property
    def metric(self) -> str:
        return "mse" if self.direction == "min" else "accuracy"


def sweep_config(direction: str, out_dir: str) -> tuple[sweepjax.Config, sweepjax.Dataset]:
    """The sweep of one ranking direction and its data."""
    config = sweepjax.Config(
        optimizer="sgd",
        space={"learning_rate": sweepjax.Choice(RATES[direction]), "momentum": MOMENTUM},
        searcher="grid",
        scheduler=ASHA,
        population=SLOTS,
        trials=len(RATES[direction]),
        steps=BUDGET,
        eval_every=EVERY,
        batch_size=16,
        population_width=2,  # one width: no timing of candidate widths, fewer programs
        out_dir=out_dir,
    )
    if direction == "min":
        model = {"name": "mlp", "hidden": [8], "num_classes": 2}
        return config.replace(task="regression", model=model), _regression_data()
    model = {"name": "mlp", "hidden": [16], "num_classes": 3}
    return config.replace(model=model), make_tiny_data(spread=1.0)


def train_alone(config, data, rates, trials: list[int], start: int) -> list[Alone]:
    """`trials` (trial i at `rates[i]`, seed i) trained from global step `start` as one fixed
    population, padded with copies to the sweep's slot count (one program for every start)."""
    program = program_of(config)
    members = [trials[i % len(trials)] for i in range(SLOTS)]
    rows = [{"learning_rate": rates[t], "momentum": MOMENTUM, "seed": t} for t in members]
    columns = trial_columns(config, rows, [start] * SLOTS)
    x = data.train["inputs"][: config.batch_size]
    pop = init_population(program, columns, x).replace(step=jax.numpy.int32(start))
    chunk, evaluate = make_train_chunk(program, EVERY), make_evaluate(program, config.eval_batch)
    train, val, test = (jax.device_put(split) for split in (data.train, data.val, data.test))
    losses, vals, tests, params = [], [], [], []
    for _ in range(BUDGET // EVERY):  # copies (np.array): the chunk donates the population
        pop, chunk_losses = chunk(pop, columns, train, jax.random.key(config.seed))
        losses.append(np.array(chunk_losses))
        vals.append(jax.tree.map(np.array, evaluate(pop, val)))
        tests.append(jax.tree.map(np.array, evaluate(pop, test)))
        params.append(jax.tree.map(np.array, pop.params))
    alive, diverged_at = np.array(pop.alive), np.array(pop.diverged_at)
    return [
        Alone(
            start=start,
            losses=np.concatenate(losses)[:, i],
            val={m: np.asarray([v[m][i] for v in vals]) for m in vals[0]},
            test={m: np.asarray([v[m][i] for v in tests]) for m in tests[0]},
            params=[jax.tree.map(lambda leaf, i=i: leaf[i], p) for p in params],
            diverged_at=-1 if alive[i] else int(diverged_at[i]) - start,
        )
        for i in range(len(trials))
    ]


def lifetime(alone: Alone, row: dict[str, Any]) -> tuple[str, int]:
    """How a trial ended and the chunks it trained: from its run alone (its divergence, its
    budget), and for a trial the scheduler stopped, the steps its row says it trained."""
    budget = row["steps_trained"] if row["status"] == "stopped" else BUDGET
    if 0 <= alone.diverged_at < budget:
        return "diverged", alone.diverged_at // EVERY + 1
    return ("stopped" if budget < BUDGET else "ok"), budget // EVERY


def chunk_means(alone: Alone, chunks: int) -> np.ndarray:
    """The mean train loss of each of its first `chunks` chunks over its finite steps (the
    diverging step may give an infinite loss)."""
    losses = alone.losses[: chunks * EVERY].astype(np.float64).reshape(chunks, EVERY)
    finite = np.isfinite(losses)
    with np.errstate(invalid="ignore"):
        return np.where(finite, losses, 0.0).sum(1) / finite.sum(1)


def rederived_row(direction: str, trial: int, alone: Alone, row: dict[str, Any]) -> dict:
    """Trial `trial`'s row of the results as its run alone gives it."""
    status, chunks = lifetime(alone, row)
    means = chunk_means(alone, chunks)
    metric = "mse" if direction == "min" else "accuracy"
    best = np.min if direction == "min" else np.max
    points = alone.val[metric][:chunks]
    finite = points[np.isfinite(points)]  # a diverged trial's frozen state may evaluate to inf
    return {
        "learning_rate": float(np.float32(RATES[direction][trial])),
        "seed": trial,
        "status": status,
        "diverged_at_step": alone.diverged_at if status == "diverged" else -1,
        "steps_trained": chunks * EVERY,
        "final_train_loss": means[np.isfinite(means)][-1],
        **{f"final_val_{m}": v[chunks - 1] for m, v in alone.val.items()},
        f"best_val_{metric}": best(finite) if finite.size else np.nan,
        **{f"test_{m}": v[chunks - 1] for m, v in alone.test.items()},
    }


def rederived_curves(steps: np.ndarray, rows, alone: dict[int, Alone]) -> dict[str, np.ndarray]:
    """The curves `[C, T]` at the sweep's chunk ends `steps`: each trial's points at the end
    of each chunk it trained, in its own column, NaN elsewhere."""
    metrics = list(alone[0].val)
    curves = {"train_loss": np.full((steps.size, len(rows)), np.nan)}
    curves.update(
        {f"val_{m}": np.full((steps.size, len(rows)), np.nan, np.float32) for m in metrics}
    )
    for row in rows:
        trial, run = row["member"], alone[row["member"]]
        _, chunks = lifetime(run, row)
        ends = run.start + EVERY * np.arange(1, chunks + 1)
        assert np.isin(ends, steps).all(), (trial, ends, steps)
        at = np.searchsorted(steps, ends)
        curves["train_loss"][at, trial] = chunk_means(run, chunks)
        for m in metrics:
            curves[f"val_{m}"][at, trial] = run.val[m][:chunks]
    return curves


@pytest.fixture(scope="module", params=["min", "max"])
def sweep(request, tmp_path_factory) -> Sweep:
    direction = request.param
    out = tmp_path_factory.mktemp(f"refill_{direction}")
    config, data = sweep_config(direction, str(out))
    returned = sweepjax.run(config, quiet=True, dataset=data)
    result = sweepjax.read_result(out)
    starts = {row["member"]: row["start_step"] for row in result.rows}
    alone = {}
    for start in sorted(set(starts.values())):
        trials = [t for t, s in starts.items() if s == start]
        runs = train_alone(config, data, RATES[direction], trials, start)
        alone.update(zip(trials, runs, strict=True))
    expected = [rederived_row(direction, r["member"], alone[r["member"]], r) for r in result.rows]
    curves = rederived_curves(result.curves["steps"], result.rows, alone)
    return Sweep(direction, config, returned, result, alone, expected, curves)


def rederived_order(sweep: Sweep) -> list[int]:
    """The finished trials best first by their re-derived final value in the sweep's direction
    (ties: by the best value, then by number)."""
    sign = 1.0 if sweep.direction == "min" else -1.0
    done = [(t, r) for t, r in enumerate(sweep.expected) if r["status"] == "ok"]
    trials = np.asarray([t for t, _ in done])
    final = sign * np.asarray([r[sweep.rank_by] for _, r in done], np.float64)
    best = sign * np.asarray([r[f"best_val_{sweep.metric}"] for _, r in done], np.float64)
    return [int(t) for t in trials[np.lexsort((trials, best, final))]]


def test_trials_started_late_and_one_diverged_there(sweep):
    """The sweep these tests need: refills at nonzero global steps, trials of every ending."""
    rows = sweep.result.rows
    assert len(rows) == len(RATES[sweep.direction]) and rows[HUGE]["start_step"] > 0
    assert {r["status"] for r in rows} == {"ok", "stopped", "diverged"}
    assert len({r["start_step"] for r in rows}) >= 3


def test_every_curve_point_is_its_own_trial_alone(sweep):
    for curves in (sweep.returned.curves, sweep.result.curves):
        for name, expected in sweep.curves.items():
            if name == "train_loss":
                np.testing.assert_allclose(curves[name], expected, rtol=SUM_ROUNDING, atol=0)
            else:
                assert_same(curves[name], expected)


def test_every_row_is_its_trial_alone(sweep):
    for rows in (sweep.returned.rows, sweep.result.rows):
        for row, expected in zip(rows, sweep.expected, strict=True):
            exact = ("learning_rate", "seed", "status", "diverged_at_step", "steps_trained")
            assert {k: row[k] for k in exact} == {k: expected[k] for k in exact}, row["member"]
            np.testing.assert_allclose(
                row["final_train_loss"], expected["final_train_loss"], rtol=SUM_ROUNDING
            )
            measured = [k for k in expected if k not in exact and k != "final_train_loss"]
            assert_same(
                np.float32([row[k] for k in measured]), np.float32([expected[k] for k in measured])
            )


def test_the_late_trial_diverges_on_its_own_clock(sweep):
    """Invariants 4 and 9: where a trial diverged is its own step, not the sweep's."""
    row, alone = sweep.result.rows[HUGE], sweep.alone[HUGE]
    own = alone.diverged_at
    assert 0 < own < EVERY and row["start_step"] > 0
    assert np.isfinite(alone.losses[:own]).all() and np.isnan(alone.losses[own + 1 :]).all()
    assert row["status"] == "diverged" and row["diverged_at_step"] == own
    assert f"#{HUGE} at step {own}" in sweep.returned.leaderboard()


def test_the_best_trial_and_its_kept_variables_follow_the_direction(sweep, tmp_path):
    order = rederived_order(sweep)
    best = order[0]
    assert sweep.expected[order[-1]][sweep.rank_by] != sweep.expected[best][sweep.rank_by]
    value = np.float32(sweep.expected[best][sweep.rank_by])
    for result in (sweep.returned, sweep.result):
        assert result.best["member"] == result.summary["best_member"] == best
        assert np.float32(result.summary[f"best_val_{sweep.metric}"]) == value
    out = sweep.config.out_dir
    assert checkpoint.read_meta(out).kept_trial == best
    variables = ocp.StandardCheckpointer().restore(
        sweepjax.export_member(out, best, tmp_path / "best") / "checkpoint"
    )
    for kept, alone in zip(
        jax.tree.leaves(variables["params"]),
        jax.tree.leaves(sweep.alone[best].params[-1]),
        strict=True,
    ):
        assert_same(np.asarray(kept), alone)


def test_the_study_ranks_in_the_direction_on_each_trials_own_clock(sweep):
    """An exported study's value is the ranking metric in the task's direction; a trial's
    intermediate values are its validation curve against its own step (as the Optuna
    searchers report them)."""
    optuna = pytest.importorskip("optuna")
    study = sweepjax.export_study(sweep.config.out_dir)
    want = {"min": "MINIMIZE", "max": "MAXIMIZE"}[sweep.direction]
    assert study.direction == optuna.study.StudyDirection[want]
    assert study.best_value == sweep.expected[rederived_order(sweep)[0]][sweep.rank_by]
    for trial, row, expected in zip(study.trials, sweep.result.rows, sweep.expected, strict=True):
        alone = sweep.alone[trial.number]
        _, chunks = lifetime(alone, row)
        points = alone.val[sweep.metric][:chunks]
        curve = {EVERY * (k + 1): float(v) for k, v in enumerate(points) if np.isfinite(v)}
        assert trial.intermediate_values == curve, trial.number
        if expected["status"] == "ok":
            assert trial.value == float(expected[sweep.rank_by])


def test_the_leaderboards_rank_in_the_direction(sweep):
    rows, order = sweep.result.rows, rederived_order(sweep)
    assert ranking(sweep.result.summary) == (sweep.rank_by, sweep.direction)
    healthy, diverged = leaderboard_rows(rows, len(rows), sweep.rank_by, sweep.direction)
    assert [r["member"] for r in healthy] == order
    assert [r["member"] for r in diverged] == [HUGE]
    lines = sweep.result.leaderboard(top=len(rows)).splitlines()
    assert ("lowest first" if sweep.direction == "min" else "highest first") in lines[0]
    assert lines[1].split()[0] == "member"
    assert [int(line.split()[0]) for line in lines[2 : 2 + len(order)]] == order
