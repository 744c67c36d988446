"""Optuna's samplers as searchers, the Optuna study export and the Pareto front held to
references written apart from the code, in both ranking directions: Optuna's own reading of a
study (`best_trial`, `best_trials`), a brute-force numpy non-dominated set, CMA-ES's own
population rule. Host-side only: nothing here trains or compiles."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import warnings

import numpy as np
import pytest
from test_search_references import DIRECTIONS, SPACE, TOLD

import sweepjax
from sweepjax.search.distributions import Choice, LogUniform, Uniform
from sweepjax.search.optuna_search import OptunaSearcher, default_options, quiet_optuna
from sweepjax.sweep.policies import make_searcher
from sweepjax.sweep.trial_results import pareto_front

pytestmark = pytest.mark.quick

optuna = pytest.importorskip("optuna", reason="Optuna comes with the optuna and dev extras")

OPTUNA_DIRECTION = {"max": "MAXIMIZE", "min": "MINIMIZE"}


def best_of(values, direction):
    """Index of the best finite value in `direction` (numpy's own arg-reduction)."""
    values = np.asarray(values, float)
    masked = np.where(np.isfinite(values), values, -np.inf if direction == "max" else np.inf)
    return int(np.argmax(masked) if direction == "max" else np.argmin(masked))


def non_dominated(values, steps, direction):
    """Brute force: indices no other point beats on value (in `direction`) and steps (fewer)."""
    v = np.asarray(values, float) * (1.0 if direction == "max" else -1.0)
    n = np.asarray(steps, float)
    no_worse = (v[None, :] >= v[:, None]) & (n[None, :] <= n[:, None])  # [i, j]: j vs i
    better = (v[None, :] > v[:, None]) | (n[None, :] < n[:, None])
    return sorted(int(i) for i in np.flatnonzero(~(no_worse & better).any(axis=1)))


def test_optuna_default_options_follow_the_samplers_own_rules():
    one_numeric = {"lr": LogUniform(1e-4, 1e-1), "act": Choice(["relu", "gelu"]), "bs": 32}
    cma = {"warn_independent_sampling": False}
    assert default_options("cmaes", 2, one_numeric) == {"popsize": 4, **cma}  # 4 + 3 ln 1
    assert default_options("cmaes", 2, SPACE) == {"popsize": 7, **cma}  # 4 + floor(3 ln 3)
    assert default_options("gp", 4, {}) == {"n_startup_trials": 4, **cma}
    assert default_options("gp", 12, {})["n_startup_trials"] == 10
    assert default_options("nsga2", 1, {}) == {"population_size": 2}
    assert default_options("tpe", 4, {}) == {"n_startup_trials": 4, "constant_liar": True}
    with pytest.raises(ValueError, match=r"searcher: unknown sampler 'bohb'; allowed: \['tpe'"):
        default_options("bohb", 4, {})


def test_optuna_searcher_checks_its_own_arguments_and_keeps_optuna_quiet():
    with pytest.raises(ValueError, match="direction: 'up' is not a direction"):
        OptunaSearcher(SPACE, "tpe", "up", seed=0)
    with pytest.raises(ValueError, match="hidden: Choice.*not numbers or strings"):
        OptunaSearcher({"hidden": Choice([64, [64, 64]])}, "tpe", "max", seed=0)
    limited = OptunaSearcher(SPACE, "tpe", "max", seed=0, trials=3)
    assert len(limited.ask(2) + limited.ask(5)) == 3 and limited.ask(1) == []
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(ValueError, match="searcher: 'gp' needs PyTorch"):
            OptunaSearcher(SPACE, "gp", "max", seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_searcher("tpe", {}, space=SPACE, trials=4, population=4, direction="max", seed=0)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    before = optuna.logging.get_verbosity()
    try:
        for outside, inside in [(optuna.logging.INFO, optuna.logging.WARNING), (40, 40)]:
            optuna.logging.set_verbosity(outside)
            with quiet_optuna():
                assert optuna.logging.get_verbosity() == inside
            assert optuna.logging.get_verbosity() == outside
    finally:
        optuna.logging.set_verbosity(before)


# ----------------------------------------------------------------------------- Optuna searchers


def optuna_searcher(name, direction, warm_start=None):
    if name == "gp":
        pytest.importorskip("torch", reason="Optuna's GPSampler needs PyTorch")
    return make_searcher(
        name, {}, space=SPACE, trials=12, population=4, direction=direction, seed=0,
        warm_start=warm_start,
    )  # fmt: skip


def tell_all(searcher):
    rows = searcher.ask(len(TOLD))
    for trial, (value, steps, status) in enumerate(TOLD):
        searcher.tell(trial, value, steps, status)
    return rows


def study_record(study):
    return [
        (t.number, t.state, t.values, t.params, t.intermediate_values, t.user_attrs)
        for t in study.trials
    ]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", ["tpe", "cmaes", "gp"])
def test_single_objective_study_holds_what_was_told(name, direction):
    searcher = optuna_searcher(name, direction)
    rows = tell_all(searcher)
    study, state = searcher.study, optuna.trial.TrialState
    assert study.direction.name == OPTUNA_DIRECTION[direction]
    for row, trial, (value, steps, status) in zip(rows, study.trials, TOLD, strict=True):
        assert trial.params == {k: row[k] for k in trial.params} and len(trial.params) == 4
        if status == "finished" and math.isfinite(value):
            assert (trial.state, trial.value) == (state.COMPLETE, value)
        elif status == "stopped":
            assert trial.state == state.PRUNED and trial.intermediate_values == {steps: value}
        else:
            assert trial.state == state.FAIL and trial.value is None
    finished = [v if s == "finished" else math.nan for v, _, s in TOLD]
    assert (
        study.best_trial.number == best_of(finished, direction) == (3 if direction == "max" else 4)
    )
    resumed = optuna_searcher(name, direction)
    resumed.ask(3)  # a study of its own before: replaced by the replayed one
    resumed.tell(0, 0.5, 10, "finished")
    resumed.load_state_dict(json.loads(json.dumps(searcher.state_dict(), allow_nan=False)))
    assert study_record(resumed.study) == study_record(study)
    assert resumed.ask(2) == searcher.ask(2)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_optuna_warm_rows_rank_in_the_sweeps_direction(direction):
    warm = [
        {"params": {"learning_rate": 1e-3, "width": 16, "dropout": 0.1, "activation": "relu"},
         "value": v, "steps": n}
        for v, n in [(0.2, 50), (0.8, 200), (0.5, 10), (math.nan, 5)]
    ]  # fmt: skip
    for name in ("tpe", "nsga2"):
        study = optuna_searcher(name, direction, warm_start=warm).study
        assert [t.values[0] for t in study.trials] == [0.2, 0.8, 0.5]  # the NaN row left out
        assert study.directions[0].name == OPTUNA_DIRECTION[direction]
    searcher = optuna_searcher("tpe", direction, warm_start=warm)
    assert searcher.study.best_trial.number == best_of([0.2, 0.8, 0.5], direction)
    assert searcher.ask(1)[0]["seed"] == 0
    front = sorted(t.number for t in study.best_trials)  # nsga2: (value, steps) of the warm rows
    assert front == non_dominated([0.2, 0.8, 0.5], [50, 200, 10], direction)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_nsga2_front_is_optunas_and_the_brute_force_one(direction):
    searcher = optuna_searcher("nsga2", direction)
    tell_all(searcher)
    study = searcher.study
    assert [d.name for d in study.directions] == [OPTUNA_DIRECTION[direction], "MINIMIZE"]
    healthy = [t for t, (v, _, s) in enumerate(TOLD) if s != "diverged" and math.isfinite(v)]
    for trial, (value, steps, _) in zip(study.trials, TOLD, strict=True):
        if trial.number in healthy:  # a stopped trial is a point (value, steps) as well
            assert trial.state.name == "COMPLETE" and trial.values == [value, steps]
        else:
            assert trial.state.name == "FAIL"
    front = non_dominated([TOLD[t][0] for t in healthy], [TOLD[t][1] for t in healthy], direction)
    expected = [healthy[i] for i in front]
    assert sorted(t.number for t in study.best_trials) == expected
    assert expected == ([1, 3, 5] if direction == "max" else [4, 5])


# ----------------------------------------------------------------------------- Pareto front


def front_rows(seed):
    """Rows on a coarse grid (ties on both objectives), a diverged and a NaN row among them."""
    rng = np.random.default_rng(seed)
    values = rng.choice([0.1, 0.2, 0.3, 0.4], size=14)
    steps = rng.choice([10, 20, 30], size=14)
    statuses = ["ok"] * 10 + ["stopped"] * 4
    statuses[2], values[5] = "diverged", np.nan
    return [
        {"member": i, "status": s, "final_val_mse": float(v), "steps_trained": int(n)}
        for i, (s, v, n) in enumerate(zip(statuses, values, steps, strict=True))
    ]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_front_is_the_non_dominated_set(direction, seed):
    rows = front_rows(seed)
    healthy = [r for r in rows if r["status"] != "diverged" and math.isfinite(r["final_val_mse"])]
    values = [r["final_val_mse"] for r in healthy]
    steps = [r["steps_trained"] for r in healthy]
    expected = [healthy[i]["member"] for i in non_dominated(values, steps, direction)]
    assert pareto_front(rows, "final_val_mse", direction) == expected
    study = optuna.create_study(directions=[OPTUNA_DIRECTION[direction].lower(), "minimize"])
    study.add_trials(
        [optuna.trial.create_trial(values=[v, n]) for v, n in zip(values, steps, strict=True)]
    )
    assert sorted(healthy[t.number]["member"] for t in study.best_trials) == expected


# ----------------------------------------------------------------------------- study export

CONFIG = sweepjax.Config(
    space={"learning_rate": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.9)},
    schedule=["constant", "cosine"],
).to_json()
# member, learning_rate, momentum, schedule, status, the ranking metric
EXPORTED = [
    (0, 0.01, 0.1, "constant", "ok", 0.40),
    (1, 0.30, 0.5, "cosine", "stopped", 0.90),
    (2, 0.90, 0.8, "cosine", "diverged", math.nan),
    (3, 0.05, 0.2, "constant", "ok", 0.75),
    (4, 0.02, 0.0, "cosine", "ok", 0.20),
    (5, 0.10, 0.9, "constant", "ok", math.nan),
]


def write_sweep(out, direction):
    """A sweep folder ranking by accuracy (max) or mse (min), with curves at steps 10, 20."""
    metric = "accuracy" if direction == "max" else "mse"
    header = f"member,learning_rate,momentum,schedule,seed,status,final_val_{metric},test_{metric}"
    lines = [f"{m},{lr},{mo},{s},{m + 7},{st},{v},{'nan' if m == 0 else v}"
             for m, lr, mo, s, st, v in EXPORTED]  # fmt: skip
    (out / "results.csv").write_text("\n".join([header, *lines]) + "\n")
    curve = np.asarray([[0.5 * r[5] + m for m, r in enumerate(EXPORTED)], [r[5] for r in EXPORTED]])
    curve[0, 2] = 9.0  # the diverged trial's first evaluation was finite
    np.savez(out / "curves.npz", steps=np.asarray([10, 20]), **{f"val_{metric}": curve})
    summary = {"config": CONFIG, "rank_by": f"final_val_{metric}", "rank_direction": direction}
    (out / "sweep.json").write_text(json.dumps({**summary, "members": len(EXPORTED)}))
    return curve


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_exported_study_matches_the_rows_in_the_sweeps_direction(direction, tmp_path):
    from sweepjax.integrations.optuna_study import export_study

    out = tmp_path / f"sweep-{direction}"
    out.mkdir()
    curve = write_sweep(out, direction)
    study = export_study(out)
    assert study.study_name == out.name and study.direction.name == OPTUNA_DIRECTION[direction]
    states = {"ok": "COMPLETE", "stopped": "PRUNED", "diverged": "FAIL"}
    metric = "accuracy" if direction == "max" else "mse"
    for trial, (member, lr, mo, schedule, status, value) in zip(
        study.trials, EXPORTED, strict=True
    ):
        finite = math.isfinite(value)
        assert trial.state.name == (states[status] if finite else "FAIL")
        assert trial.value == (value if status == "ok" and finite else None)
        assert trial.params == {"schedule": schedule, "learning_rate": lr, "momentum": mo}
        column = curve[:, member]
        assert trial.intermediate_values == {
            s: float(v) for s, v in zip([10, 20], column, strict=True) if math.isfinite(v)
        }
        attrs = {"member": member, "seed": member + 7, "status": status}
        attrs |= {f"{k}_{metric}": value for k in ("final_val", "test") if finite}
        if member == 0:
            del attrs[f"test_{metric}"]
        assert trial.user_attrs == attrs
    completed = [v if s == "ok" else math.nan for *_, s, v in EXPORTED]
    assert (
        study.best_trial.number == best_of(completed, direction) == (3 if direction == "max" else 4)
    )
    assert export_study(out, study_name="mine").study_name == "mine"


def test_study_of_a_result_whose_curves_miss_a_trial():
    from sweepjax.integrations.optuna_study import study_of
    from sweepjax.sweep.results import Result

    rows = [{"member": m, "status": "ok", "final_val_accuracy": 0.5 + m / 10, "learning_rate": 0.1}
            for m in range(3)]  # fmt: skip
    curves = {"steps": np.asarray([10]), "val_accuracy": np.asarray([[0.3, 0.4]])}
    summary = {"config": CONFIG}
    study = study_of(Result(rows, curves, summary), {"learning_rate": optuna_lr()})
    assert [t.intermediate_values for t in study.trials] == [{10: 0.3}, {10: 0.4}, {}]
    assert study.best_trial.number == 2 and study.study_name == "sweep"
    uncurved = study_of(Result(rows, {}, summary), {"learning_rate": optuna_lr()})
    assert [t.intermediate_values for t in uncurved.trials] == [{}, {}, {}]


def optuna_lr():
    return optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)


def test_a_missing_optuna_names_the_searchers_that_need_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    others = "['grid', 'random', 'quasi_random', 'coarse_to_fine']"
    with pytest.raises(ValueError, match=re.escape(f"or a searcher from {others}.")):
        make_searcher("nsga2", {}, space=SPACE, trials=4, population=4, direction="min", seed=0)


def test_study_params_are_the_choices_a_float32_column_rounded():
    """Results keep float32: 0.1 reads back as 0.10000000149; each param is the choice it
    rounds from, a name or an integer as given, in a categorical mixing a name with floats."""
    from sweepjax.integrations.optuna_study import study_of
    from sweepjax.sweep.results import Result

    choices = {"wd": (0.01, 0.1, 0.3), "norm": ("none", 0.5, 1.5), "width": (16, 32, 64)}
    distributions = {k: optuna.distributions.CategoricalDistribution(v) for k, v in choices.items()}
    picks = [dict(zip(choices, p, strict=True)) for p in zip(*choices.values(), strict=True)]
    read_back = [{k: float(np.float32(v)) if isinstance(v, float) else v for k, v in p.items()}
                 for p in picks]  # fmt: skip
    assert read_back[1]["wd"] != 0.1  # the rounding the study undoes
    rows = [{"member": m, "status": "ok", "final_val_accuracy": 0.5, **p}
            for m, p in enumerate(read_back)]  # fmt: skip
    study = study_of(Result(rows, {}, {"config": CONFIG}), distributions)
    assert [t.params for t in study.trials] == picks
