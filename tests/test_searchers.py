"""Searchers: the sampled population in order, coarse-to-fine boxes, Optuna's samplers, the
factory's checks. All host-side: nothing here compiles."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from sweepjax.search.distributions import Choice, IntUniform, LogUniform, Uniform
from sweepjax.search.searchers import CoarseToFine, Sampled, usable_warm_rows
from sweepjax.search.space import SearchSpace
from sweepjax.sweep.policies import make_searcher
from sweepjax.sweep.warm_start import warm_start_rows

pytestmark = pytest.mark.quick

SPACE = {
    "learning_rate": LogUniform(1e-4, 1e-1),
    "width": IntUniform(8, 64),
    "activation": Choice(["relu", "tanh", "gelu"]),
    "momentum": Choice([0.0, 0.9]),
    "dropout": Uniform(0.0, 0.5),
    "batch_size": 32,
    "optimizer": "adam",
}


def factory(name, options=None, **kwargs):
    args = dict(space=SPACE, trials=24, population=4, direction="max", seed=3)
    return make_searcher(name, options or {}, **{**args, **kwargs})


def roundtrip(state):
    return json.loads(json.dumps(state, allow_nan=False))


# ----------------------------------------------------------------------------- sampled


@pytest.mark.parametrize("method", ["random", "quasi_random"])
def test_sampled_hands_out_the_population_in_order(method):
    expected = SearchSpace(SPACE).sample(5, method, 7)
    searcher = Sampled(SPACE, method, 5, 7)
    rows = searcher.ask(2) + searcher.ask(10)
    assert rows == [expected.member(i) for i in range(5)]
    assert searcher.ask(3) == []
    assert [r["seed"] for r in rows] == [0, 1, 2, 3, 4]
    assert all(type(r["activation"]) is str and r["optimizer"] == "adam" for r in rows)
    resumed = Sampled(SPACE, method, 5, 7)
    resumed.load_state_dict(roundtrip(Sampled(SPACE, method, 5, 7).state_dict()))
    assert resumed.ask(5) == rows


def test_sampled_grid_and_its_size():
    space = {"a": Choice([1, 2]), "b": Choice(["x", "y"])}
    rows = make_searcher("grid", {}, space=space, trials=4, population=2, direction="max", seed=0)
    assert [(r["a"], r["b"]) for r in rows.ask(4)] == [(1, "x"), (1, "y"), (2, "x"), (2, "y")]
    with pytest.raises(ValueError, match="grid's 4 points"):
        make_searcher("grid", {}, space=space, trials=3, population=3, direction="max", seed=0)


# ----------------------------------------------------------------------------- coarse to fine


def told_round(searcher, values, status="finished"):
    rows = searcher.ask(len(values))
    for row, value in zip(rows, values, strict=True):
        trial = row["seed"]
        searcher.tell(trial, value, 100, "diverged" if math.isnan(value) else status)
    return rows


def expected_log_box(lrs, margin, low, high):
    lo, hi = math.log(min(lrs)), math.log(max(lrs))
    width = hi - lo
    lo, hi = max(lo - margin * width, math.log(low)), min(hi + margin * width, math.log(high))
    return math.exp(lo), math.exp(hi)


@pytest.mark.parametrize("direction", ["max", "min"])
def test_coarse_to_fine_box_is_the_best_quarter_in_log_space(direction):
    searcher = CoarseToFine(SPACE, direction, round_size=8, trials=16, seed=0)
    rows = told_round(searcher, [float(i) for i in range(8)])  # trial i scores i
    best = [rows[7], rows[6]] if direction == "max" else [rows[0], rows[1]]  # 25% of 8, >= 2
    box = searcher.box()
    low, high = expected_log_box([r["learning_rate"] for r in best], 0.1, 1e-4, 1e-1)
    assert box["learning_rate"].low == pytest.approx(low, rel=1e-9)
    assert box["learning_rate"].high == pytest.approx(high, rel=1e-9)
    widths = sorted(r["width"] for r in best)
    assert box["width"].low <= widths[0] and box["width"].high >= widths[1]
    assert set(box["activation"].values) == {r["activation"] for r in best}
    assert "batch_size" not in box
    following = searcher.ask(8)
    assert [r["seed"] for r in following] == list(range(8, 16))
    for row in following:
        assert low * (1 - 1e-6) <= row["learning_rate"] <= high * (1 + 1e-6)
        assert row["activation"] in box["activation"].values
        assert (row["batch_size"], row["optimizer"]) == (32, "adam")


def test_coarse_to_fine_hand_made_box_and_clipping():
    warm = [
        {
            "params": {
                "learning_rate": lr,
                "width": w,
                "activation": a,
                "momentum": 0.9,
                "dropout": d,
            },
            "value": v,
        }
        for lr, w, a, d, v in [
            (1e-3, 10, "relu", 0.1, 0.9),
            (1e-2, 20, "tanh", 0.2, 0.8),
            (1e-4, 64, "gelu", 0.5, 0.2),
            (1e-1, 8, "gelu", 0.0, 0.1),
        ]
    ]
    box = CoarseToFine(SPACE, "max", 4, 8, 0, warm_start=warm).box()
    tenth = 10**0.1  # the log box [1e-3, 1e-2] widened by a tenth of a decade on each side
    assert box["learning_rate"].low == pytest.approx(1e-3 / tenth, rel=1e-12)
    assert box["learning_rate"].high == pytest.approx(1e-2 * tenth, rel=1e-12)
    assert (box["width"].low, box["width"].high) == (9, 21)
    assert (box["dropout"].low, box["dropout"].high) == pytest.approx((0.09, 0.21))
    assert box["activation"].values == ("relu", "tanh")
    assert box["momentum"].values == (0.9,)
    clipped = CoarseToFine(SPACE, "min", 4, 8, 0, warm_start=warm).box()  # best at the bounds
    assert clipped["learning_rate"].low == 1e-4 and clipped["learning_rate"].high == 1e-1
    assert (clipped["dropout"].low, clipped["dropout"].high) == (0.0, 0.5)


def test_coarse_to_fine_waits_for_its_round_and_stops_at_trials():
    searcher = CoarseToFine(SPACE, "max", round_size=4, trials=10, seed=1)
    first = searcher.ask(3) + searcher.ask(3)
    assert len(first) == 4 and searcher.ask(2) == []
    for trial in range(3):
        searcher.tell(trial, 0.5 + trial, 10, "stopped")
    assert searcher.ask(2) == []  # trial 3 is still running
    searcher.tell(3, math.nan, 5, "diverged")
    assert [r["seed"] for r in searcher.ask(8)] == [4, 5, 6, 7]
    for trial in range(4, 8):
        searcher.tell(trial, 0.1, 10, "finished")
    last = searcher.ask(8)
    assert [r["seed"] for r in last] == [8, 9] and searcher.rounds == 3
    for trial in (8, 9):
        searcher.tell(trial, 0.1, 10, "finished")
    assert searcher.ask(8) == []


def test_coarse_to_fine_respects_bounds_and_resumes():
    searcher = CoarseToFine(SPACE, "min", round_size=6, trials=18, seed=2, keep=0.5, margin=1.0)
    rows = []
    for _ in range(3):
        batch = searcher.ask(6)
        rows += batch
        for row in batch:
            searcher.tell(row["seed"], row["learning_rate"] * row["width"], 10, "finished")
        if len(rows) == 6:
            state = roundtrip(searcher.state_dict())
            resumed = CoarseToFine(
                SPACE, "min", round_size=6, trials=18, seed=2, keep=0.5, margin=1.0
            )
            resumed.load_state_dict(state)
    for row in rows:
        assert 1e-4 <= row["learning_rate"] <= 1e-1 * (1 + 1e-7)
        assert type(row["width"]) is int and 8 <= row["width"] <= 64
        assert 0.0 <= row["dropout"] <= 0.5 and row["momentum"] in (0.0, pytest.approx(0.9))
    assert resumed.ask(6) == rows[6:12]


def test_coarse_to_fine_fixed_seed_and_bad_options():
    searcher = CoarseToFine({**SPACE, "seed": 5}, "max", 2, 4, 0)
    assert [r["seed"] for r in searcher.ask(2)] == [5, 5]
    with pytest.raises(ValueError, match=r"searcher\.keep: 1\.5"):
        factory("coarse_to_fine", {"keep": 1.5})
    with pytest.raises(ValueError, match=r"searcher\.round_size: 0"):
        factory("coarse_to_fine", {"round_size": 0})
    with pytest.raises(ValueError, match=r"status: unknown status 'ok'"):
        searcher.tell(0, 1.0, 1, "ok")
    with pytest.raises(ValueError, match=r"trial: 7 was never asked"):
        searcher.tell(7, 1.0, 1, "finished")
    searcher.tell(0, 1.0, 1, "finished")
    with pytest.raises(ValueError, match=r"trial: 0 was told already"):
        searcher.tell(0, 1.0, 1, "finished")


# ----------------------------------------------------------------------------- warm start


def write_sweep(out, rank_by="final_val_accuracy", direction="max"):
    (out / "results.csv").write_text(
        "member,learning_rate,width,activation,seed,status,diverged_at_step,"
        f"final_train_loss,{rank_by}\n"
        "0,0.001,16,relu,0,ok,-1,0.2,0.9\n"
        "1,0.05,32,tanh,1,diverged,40,nan,nan\n"
        "2,0.01,64,swish,2,ok,-1,0.3,0.7\n"
        "3,0.002,8,gelu,3,ok,-1,0.4,inf\n"
    )
    summary = {"rank_by": rank_by, "rank_direction": direction, "steps_done": 200}
    (out / "sweep.json").write_text(json.dumps(summary))


def test_warm_start_rows(tmp_path):
    write_sweep(tmp_path)
    rows = warm_start_rows(tmp_path, rank_by="final_val_accuracy", direction="max")
    assert [r["value"] for r in rows] == [0.9, 0.7]
    assert rows[0] == {
        "params": {"learning_rate": 0.001, "width": 16, "activation": "relu", "seed": 0},
        "value": 0.9,
        "steps": 200,
    }
    space = {k: SPACE[k] for k in ("learning_rate", "width", "activation")}
    (usable,) = usable_warm_rows(space, rows)  # 'swish' is not in the space; `seed` is not searched
    assert usable == {
        "params": {"learning_rate": 0.001, "width": 16, "activation": "relu"},
        "value": 0.9,
        "steps": 200,
    }
    assert usable_warm_rows({**space, "momentum": SPACE["momentum"]}, rows) == []  # no column
    assert usable_warm_rows({"learning_rate": SPACE["learning_rate"]}, rows) == [
        {"params": {"learning_rate": 0.001}, "value": 0.9, "steps": 200},
        {"params": {"learning_rate": 0.01}, "value": 0.7, "steps": 200},
    ]
    with pytest.raises(ValueError, match="warm_start: .* ranks by final_val_accuracy"):
        warm_start_rows(tmp_path, direction="min")
    with pytest.raises(ValueError, match="warm_start: .* holds no results.csv"):
        warm_start_rows(tmp_path / "missing")


def test_warm_start_counts_as_told_in_coarse_to_fine(tmp_path):
    write_sweep(tmp_path)
    space = {"learning_rate": LogUniform(1e-4, 1e-1), "width": IntUniform(8, 64)}
    searcher = factory("coarse_to_fine", space=space, warm_start=warm_start_rows(tmp_path))
    box = searcher.box()
    low, high = expected_log_box([0.001, 0.01], 0.1, 1e-4, 1e-1)
    assert (box["learning_rate"].low, box["learning_rate"].high) == pytest.approx((low, high))
    assert all(low <= r["learning_rate"] <= high * (1 + 1e-6) for r in searcher.ask(4))


# ----------------------------------------------------------------------------- Optuna


def check_rows(rows, first_trial=0):
    for trial, row in enumerate(rows, first_trial):
        assert 1e-4 <= row["learning_rate"] <= 1e-1 and type(row["learning_rate"]) is float
        assert type(row["width"]) is int and 8 <= row["width"] <= 64
        assert row["activation"] in ("relu", "tanh", "gelu") and type(row["activation"]) is str
        assert row["momentum"] in (0.0, 0.9) and 0.0 <= row["dropout"] <= 0.5
        assert (row["batch_size"], row["optimizer"], row["seed"]) == (32, "adam", trial)


def score(row):
    return -abs(math.log10(row["learning_rate"]) + 2) + row["width"] / 64


def run(searcher, batches, first=0, size=4):
    """Ask batches of `size` and tell them: every fifth diverges, a third are stopped."""
    asked = []
    for _ in range(batches):
        rows = searcher.ask(size)
        asked += rows
        for trial, row in enumerate(rows, first + len(asked) - len(rows)):
            status = "diverged" if trial % 5 == 4 else ("stopped" if trial % 3 == 2 else "finished")
            value = math.nan if status == "diverged" else score(row)
            searcher.tell(trial, value, 10 + trial, status)
    return asked


@pytest.mark.parametrize("name", ["tpe", "cmaes", "nsga2"])
def test_optuna_rows_are_in_the_space(name):
    pytest.importorskip("optuna")
    searcher = factory(name)
    check_rows(run(searcher, 3))
    assert searcher.name == name and len(searcher.study.trials) == 12
    assert len(searcher.ask(20)) == 12 and searcher.ask(1) == []  # 24 trials in all


def test_optuna_tell_maps_statuses_to_states():
    optuna = pytest.importorskip("optuna")
    searcher = factory("tpe")
    searcher.ask(3)
    searcher.tell(0, 0.8, 100, "finished")
    searcher.tell(1, 0.6, 40, "stopped")
    searcher.tell(2, math.nan, 7, "diverged")
    trials = searcher.study.trials
    state = optuna.trial.TrialState
    assert [t.state for t in trials] == [state.COMPLETE, state.PRUNED, state.FAIL]
    assert trials[0].value == 0.8 and trials[1].intermediate_values == {40: 0.6}
    with pytest.raises(ValueError, match="trial: 0 was told already"):
        searcher.tell(0, 0.8, 100, "finished")


def test_nsga2_is_multi_objective():
    optuna = pytest.importorskip("optuna")
    searcher = factory("nsga2", direction="min")
    searcher.ask(2)
    searcher.tell(0, 0.3, 100, "finished")
    searcher.tell(1, 0.5, 40, "stopped")
    study = searcher.study
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert [t.values for t in study.trials] == [[0.3, 100], [0.5, 40]]


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_optuna_resume_by_replay_equals_uninterrupted(name, tmp_path):
    pytest.importorskip("optuna")
    write_sweep(tmp_path)
    warm = warm_start_rows(tmp_path)
    searcher = factory(name, warm_start=warm)
    run(searcher, 3)
    pending = searcher.ask(2)  # asked, not yet told, when the sweep stops
    resumed = factory(name, warm_start=warm)
    resumed.load_state_dict(roundtrip(searcher.state_dict()))
    assert len(resumed.study.trials) == len(searcher.study.trials)
    for trial, row in enumerate(pending, 12):
        for s in (searcher, resumed):
            s.tell(trial, score(row), 20, "finished")
    assert run(resumed, 2, first=14) == run(searcher, 2, first=14)  # bitwise equal rows


def test_optuna_warm_start_adds_complete_trials(tmp_path):
    optuna = pytest.importorskip("optuna")
    write_sweep(tmp_path)
    space = {"learning_rate": LogUniform(1e-4, 1e-1), "activation": Choice(["relu", "gelu"])}
    warm = warm_start_rows(tmp_path)  # 'tanh' diverged, 'swish' is not in the space
    searcher = factory("tpe", space=space, warm_start=warm)
    (trial,) = searcher.study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.9
    assert trial.params == {"learning_rate": 0.001, "activation": "relu"}
    assert searcher.ask(1)[0]["seed"] == 0  # the searcher's own trials still count from 0
    nsga2 = factory("nsga2", space=space, warm_start=warm)
    assert nsga2.study.trials[0].values == [0.9, 200]


def test_optuna_options_and_defaults():
    pytest.importorskip("optuna")
    assert factory("tpe").options == {"n_startup_trials": 4, "constant_liar": True}
    assert factory("tpe", population=64).options["n_startup_trials"] == 10
    assert factory("tpe", {"n_startup_trials": 2}).options["n_startup_trials"] == 2
    assert factory("cmaes").options["popsize"] == 7  # 4 + 3 ln 3 numeric dimensions
    assert factory("cmaes", population=16).options["popsize"] == 16
    assert factory("nsga2").options == {"population_size": 4}
    with pytest.raises(
        ValueError, match=r"searcher\.foo: unknown option \(= 1\) of searcher 'tpe'"
    ):
        factory("tpe", {"foo": 1})
    with pytest.raises(ValueError, match=r"searcher\.seed: unknown option"):
        factory("cmaes", {"seed": 1})
    with pytest.raises(ValueError, match="structures: Choice.*numbers or strings"):
        factory("tpe", space={"structures": Choice([[64], [64, 64]])})


# ----------------------------------------------------------------------------- factory


def test_factory_defaults():
    searcher = factory("coarse_to_fine")
    assert (searcher.round_size, searcher.keep, searcher.margin) == (4, 0.25, 0.1)
    assert (searcher.trials, searcher.seed, searcher.direction) == (24, 3, "max")
    assert factory("quasi_random").ask(24) == [
        SearchSpace(SPACE).sample(24, "quasi_random", 3).member(i) for i in range(24)
    ]


def test_factory_refuses_bad_inputs():
    with pytest.raises(ValueError, match=r"searcher: unknown searcher 'hyperband'; allowed: \["):
        factory("hyperband")
    with pytest.raises(
        ValueError, match=r"searcher\.keep: unknown option \(= 0\.5\) of searcher 'random'"
    ):
        factory("random", {"keep": 0.5})
    with pytest.raises(ValueError, match=r"searcher\.rounds: unknown option .* allowed: \['keep'"):
        factory("coarse_to_fine", {"rounds": 3})
    with pytest.raises(ValueError, match="direction: 'up' is not a direction"):
        factory("tpe", direction="up")
    with pytest.raises(ValueError, match="warm_start: searcher 'grid' samples a fixed population"):
        factory("grid", warm_start=[{"params": {}, "value": 1.0}])
    with pytest.raises(ValueError, match="trials: 0 is not an integer >= 1"):
        factory("random", trials=0)


def test_optuna_missing_is_a_value_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    message = (
        r"searcher: 'tpe' needs Optuna; allowed: install it with pip install 'sweepjax\[optuna\]'"
    )
    with pytest.raises(ValueError, match=message):
        factory("tpe")
    assert factory("random").ask(1)  # the others need no Optuna


def test_gp_without_torch_names_it(monkeypatch):
    pytest.importorskip("optuna")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match=r"searcher: 'gp' needs PyTorch.*pip install torch"):
        factory("gp")


def test_row_values_are_plain_python():
    pytest.importorskip("optuna")
    for name in ("random", "coarse_to_fine", "tpe"):
        for row in factory(name).ask(4):
            assert all(not isinstance(v, np.generic) for v in row.values()), (name, row)
