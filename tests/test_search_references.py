"""Searchers held to references written apart from the code, in both ranking directions:
coarse-to-fine's box against numpy in the test, its rounds against scipy's scrambled Halton
points, warm-start rows and the factory's policies against hand-made sweep folders. Host-side
only: nothing here trains or compiles. Optuna's side is in `test_optuna_references.py`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import qmc

import sweepjax
from sweepjax.engine.tasks import task_of
from sweepjax.search.distributions import Choice, IntUniform, LogUniform, Uniform
from sweepjax.search.optuna_search import OptunaSearcher
from sweepjax.search.protocol import DIRECTIONS
from sweepjax.search.searchers import CoarseToFine, Sampled, usable_warm_rows
from sweepjax.sweep.policies import check_policies, make_policies, make_scheduler, make_searcher
from sweepjax.sweep.warm_start import warm_start_rows

pytestmark = pytest.mark.quick

SPACE = {
    "learning_rate": LogUniform(1e-4, 1e-1),
    "width": IntUniform(8, 64),
    "dropout": Uniform(0.0, 0.5),
    "activation": Choice(["relu", "tanh", "gelu"]),
    "batch_size": 32,
}
NUMERIC = ("learning_rate", "width", "dropout")
# (value, steps, status) told for trials 0..7: the best finished trial is 3 when maximising
# and 4 when minimising; trial 6 diverged after a value better than any in both directions,
# trial 7 finished without a finite value.
TOLD = [
    (0.30, 100, "finished"),
    (0.70, 40, "stopped"),
    (0.55, 100, "finished"),
    (0.90, 100, "finished"),
    (0.10, 100, "finished"),
    (0.50, 30, "stopped"),
    (5.00, 12, "diverged"),
    (math.inf, 100, "finished"),
]


# ----------------------------------------------------------------------------- coarse to fine


def reference_box(told, direction, keep, margin):
    """numpy: the box around the best `keep` share (at least 2) of `told` (params, value) pairs,
    log space for the log dimension, widened by `margin`, clipped to SPACE."""
    values = np.asarray([v for _, v in told])
    order = np.argsort(-values if direction == "max" else values, kind="stable")
    kept = [told[i][0] for i in order[: max(2, math.ceil(keep * len(told)))]]
    box = {}
    for name in NUMERIC:
        dim, log = SPACE[name], SPACE[name].log_scale
        xs = np.asarray([p[name] for p in kept], float)
        bounds = np.asarray([dim.low, dim.high], float)
        xs, bounds = (np.log(xs), np.log(bounds)) if log else (xs, bounds)
        width = xs.max() - xs.min()
        low = max(xs.min() - margin * width, bounds[0])
        high = min(xs.max() + margin * width, bounds[1])
        box[name] = (np.exp(low), np.exp(high)) if log else (low, high)
    box["width"] = (math.ceil(box["width"][0] - 1e-9), math.floor(box["width"][1] + 1e-9))
    box["activation"] = {p["activation"] for p in kept}
    return box


def assert_box(box, expected):
    for name in NUMERIC:
        assert (box[name].low, box[name].high) == pytest.approx(expected[name], rel=1e-12)
    assert set(box["activation"].values) == expected["activation"]
    assert "batch_size" not in box


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_coarse_to_fine_box_is_the_best_share_of_the_told_trials(direction):
    searcher = CoarseToFine(SPACE, direction, round_size=8, trials=16, seed=1, keep=0.4, margin=0.2)
    rows = searcher.ask(8)
    for trial, (value, steps, status) in enumerate(TOLD):
        searcher.tell(trial, value, steps, status)
    counted = [
        (rows[t], v) for t, (v, _, s) in enumerate(TOLD) if s != "diverged" and math.isfinite(v)
    ]
    expected = reference_box(counted, direction, keep=0.4, margin=0.2)
    assert_box(searcher.box(), expected)
    following = searcher.ask(8)
    assert [r["seed"] for r in following] == list(range(8, 16))
    for row in following:
        for name in NUMERIC:
            low, high = expected[name]
            assert low * (1 - 1e-6) <= row[name] <= high * (1 + 1e-6), (name, row)
        assert row["activation"] in expected["activation"] and row["batch_size"] == 32


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_coarse_to_fine_ranks_warm_rows_with_its_own_trials(direction):
    warm = [
        {"params": {"learning_rate": lr, "width": w, "dropout": d, "activation": a}, "value": v}
        for lr, w, d, a, v in [
            (2e-4, 60, 0.45, "gelu", 0.95),
            (5e-4, 50, 0.40, "gelu", 0.92),
            (3e-2, 10, 0.05, "relu", 0.02),
            (6e-2, 12, 0.10, "tanh", 0.05),
        ]
    ]
    searcher = CoarseToFine(SPACE, direction, round_size=4, trials=8, seed=0, warm_start=warm)
    expected = reference_box([(r["params"], r["value"]) for r in warm], direction, 0.25, 0.1)
    assert_box(searcher.box(), expected)  # before any trial: the warm rows alone
    rows = searcher.ask(4)
    for trial in range(len(rows)):
        searcher.tell(trial, 0.5, 100, "finished")  # between the warm rows in both directions
    told = [(r["params"], r["value"]) for r in warm] + [(row, 0.5) for row in rows]
    assert_box(searcher.box(), reference_box(told, direction, 0.25, 0.1))


def test_coarse_to_fine_resumed_box_equals_the_uninterrupted_one():
    searcher = CoarseToFine(SPACE, "min", round_size=4, trials=8, seed=2)
    searcher.ask(4)
    for trial, value in enumerate([0.4, math.nan, 0.1, 0.3]):
        searcher.tell(trial, value, 10, "diverged" if math.isnan(value) else "finished")
    resumed = CoarseToFine(SPACE, "min", round_size=4, trials=8, seed=2)
    resumed.load_state_dict(json.loads(json.dumps(searcher.state_dict(), allow_nan=False)))
    assert resumed.box() == searcher.box() and resumed.ask(4) == searcher.ask(4)


def halton_round(seed, round_index, size, box):
    """Scrambled Halton points (scipy) seeded by (seed, round), mapped onto `box` by hand."""
    rng = np.random.default_rng([seed, round_index])
    unit = qmc.Halton(d=3, scramble=True, seed=rng).random(size)
    (lr_lo, lr_hi), (w_lo, w_hi), (d_lo, d_hi) = (box[k] for k in NUMERIC)
    lr = np.exp(np.log(lr_lo) + unit[:, 0] * (np.log(lr_hi) - np.log(lr_lo)))
    width = np.minimum(w_lo + np.floor(unit[:, 1] * (w_hi - w_lo + 1)), w_hi)
    dropout = d_lo + unit[:, 2] * (d_hi - d_lo)
    return lr.astype(np.float32), width.astype(int), dropout.astype(np.float32)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_coarse_to_fine_rounds_are_the_documented_halton_points(direction):
    space = {k: SPACE[k] for k in NUMERIC}
    searcher = CoarseToFine(space, direction, round_size=6, trials=12, seed=5, margin=0.0)
    first = searcher.ask(6)
    whole = {k: (space[k].low, space[k].high) for k in NUMERIC}
    for column, expected in zip(NUMERIC, halton_round(5, 0, 6, whole), strict=True):
        assert [r[column] for r in first] == pytest.approx(expected.tolist(), rel=1e-6)
    for trial, row in enumerate(first):
        searcher.tell(trial, row["dropout"] - row["width"] / 100, 10, "finished")
    best = sorted(first, key=lambda r: r["dropout"] - r["width"] / 100)
    best = best[-2:] if direction == "max" else best[:2]  # a quarter of 6, at least 2
    box = {k: (min(r[k] for r in best), max(r[k] for r in best)) for k in NUMERIC}
    second = searcher.ask(6)
    for column, expected in zip(NUMERIC, halton_round(5, 1, 6, box), strict=True):
        assert [r[column] for r in second] == pytest.approx(expected.tolist(), rel=1e-6)
    assert [r["seed"] for r in second] == list(range(6, 12))
    for trial in range(6, 12):
        searcher.tell(trial, 0.0, 10, "finished")
    assert searcher.ask(6) == [] and searcher.state_dict()["rounds"] == 2


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_coarse_to_fine_boxes_two_told_trials_and_not_one(direction):
    searcher = CoarseToFine(SPACE, direction, round_size=3, trials=6, seed=0, margin=0.0)
    rows = searcher.ask(3)
    searcher.tell(0, 0.5, 10, "finished")
    searcher.tell(1, math.nan, 10, "diverged")
    searcher.tell(2, 0.1, 10, "stopped")
    box = searcher.box()
    for name in NUMERIC:  # margin 0: exactly the two trials' span
        assert (box[name].low, box[name].high) == pytest.approx(
            (min(rows[0][name], rows[2][name]), max(rows[0][name], rows[2][name])), rel=1e-12
        )
    lonely = CoarseToFine(SPACE, direction, round_size=2, trials=4, seed=0)
    lonely.ask(2)
    lonely.tell(0, 0.5, 10, "finished")
    lonely.tell(1, math.nan, 10, "diverged")
    assert lonely.box() == {k: v for k, v in SPACE.items() if k != "batch_size"}


def test_coarse_to_fine_settings_at_their_bounds():
    args = dict(round_size=2, trials=4, seed=0)
    assert CoarseToFine(SPACE, "max", keep=1.0, margin=0.0, **args).keep == 1.0
    for key, value in [("keep", 0.0), ("keep", math.nan), ("margin", -0.1), ("margin", math.inf)]:
        with pytest.raises(ValueError, match=rf"searcher\.{key}: {value!r} is not allowed"):
            CoarseToFine(SPACE, "max", **{key: value}, **args)
    with pytest.raises(ValueError, match="direction: 'up' is not a direction"):
        CoarseToFine(SPACE, "up", **args)
    with pytest.raises(ValueError, match="hidden: Choice.*not numbers or strings"):
        CoarseToFine({"hidden": Choice([64, [64, 64]])}, "max", **args)


def searchers_of_every_kind():
    return [
        Sampled(SPACE, "random", 4, seed=0),
        CoarseToFine(SPACE, "min", round_size=4, trials=4, seed=0),
        OptunaSearcher(SPACE, "tpe", "min", seed=0),  # no options, no trial limit
    ]


def test_every_searcher_refuses_what_it_never_asked_and_a_foreign_state():
    pytest.importorskip("optuna")
    for searcher in searchers_of_every_kind():
        assert searcher.ask(0) == [] and len(searcher.ask(2)) == 2
        for trial in (2, -1):
            with pytest.raises(
                ValueError, match=rf"trial: {trial} was never asked; allowed: 0 to 1"
            ):
                searcher.tell(trial, 0.5, 10, "finished")
        searcher.tell(1, 0.5, 10, "finished")
        if not isinstance(searcher, Sampled):  # a fixed population learns nothing from tells
            with pytest.raises(ValueError, match="trial: 1 was told already"):
                searcher.tell(1, 0.5, 10, "finished")
        with pytest.raises(ValueError, match="searcher: the saved state is of searcher 'other'"):
            searcher.load_state_dict({**searcher.state_dict(), "name": "other"})
    unlimited = OptunaSearcher(SPACE, "tpe", "max", seed=0)
    assert [r["seed"] for r in unlimited.ask(3) + unlimited.ask(2)] == [0, 1, 2, 3, 4]


def test_warm_rows_take_their_steps_and_forgive_float32_rounding_only(tmp_path):
    (tmp_path / "results.csv").write_text(
        "member,x,seed,status,final_val_accuracy\n0,0.5,0,ok,0.9\n"
    )
    for summary, steps in [({"config": {"steps": 300}}, 300), ({}, 0), ({"steps_done": 0}, 0)]:
        (tmp_path / "sweep.json").write_text(json.dumps(summary))
        assert warm_start_rows(tmp_path)[0]["steps"] == steps
    tol = 2e-6  # a millionth of the widest of |low|, |high| and the width, 2
    cases = {
        "x": (Uniform(-1.0, 1.0), [-1.0, 1.0, 1 + tol, -1 - tol, 1 + 1.5 * tol]),  # edges in
        "lr": (LogUniform(1e-4, 1e-1), [1e-4, 1e-1 + 5e-8, 1e-1 + 2e-7]),
        "n": (IntUniform(8, 64), [8, 64, 16.5, 65, 7]),
        "m": (Choice([0.0, 0.9]), [float(np.float32(0.9)), 0.0, 0.5]),
        "act": (Choice(["relu", "gelu"]), ["gelu", 0.5, "swish"]),
    }
    expected = {
        "x": [-1.0, 1.0, 1.0, -1.0],
        "lr": [1e-4, 1e-1],
        "n": [8, 64],
        "m": [0.9, 0.0],
        "act": ["gelu"],
    }
    for name, (dim, values) in cases.items():
        rows = [{"params": {name: v}, "value": 0.5} for v in values]
        kept = usable_warm_rows({name: dim}, rows)
        assert [r["params"][name] for r in kept] == expected[name], name
        assert all(r["steps"] == 0 for r in kept)
    timed = usable_warm_rows(
        {"x": Uniform(-1.0, 1.0)}, [{"params": {"x": 0.5}, "value": 1, "steps": 9}]
    )
    assert timed == [{"params": {"x": 0.5}, "value": 1.0, "steps": 9}]
    for row in ([0.5], {"params": [0.5], "value": 0.5}):
        with pytest.raises(ValueError, match=r"warm_start: .* is not a row; allowed: rows of"):
            usable_warm_rows({"x": Uniform(-1.0, 1.0)}, [row])


# ----------------------------------------------------------------------------- factory


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_policies_take_the_tasks_direction_and_its_warm_sweep(task, tmp_path):
    pytest.importorskip("optuna")
    direction, metric = task_of(task).direction, task_of(task).rank_by
    other = "min" if direction == "max" else "max"
    for folder, ranked in (("same", direction), ("other", other)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.csv").write_text(
            f"member,learning_rate,seed,status,final_val_{metric}\n"
            "0,0.001,0,ok,0.2\n1,0.01,1,ok,0.6\n2,0.1,2,ok,0.9\n"
        )
        summary = {"rank_by": f"final_val_{metric}", "rank_direction": ranked}
        (tmp_path / folder / "sweep.json").write_text(json.dumps(summary))
    space = {"learning_rate": LogUniform(1e-4, 1.0)}
    for name in ("coarse_to_fine", "tpe"):
        searcher_config = {"name": name, "warm_start": str(tmp_path / "same")}
        config = sweepjax.Config(task=task, space=space, searcher=searcher_config, population=4)
        _, searcher = make_policies(config, task_of(task))
        assert searcher.direction == direction
        assert [r["value"] for r in searcher.warm] == [0.2, 0.6, 0.9]
        with pytest.raises(ValueError, match=rf"warm_start: .* \({other}\), this sweep"):
            bad = {**searcher_config, "warm_start": str(tmp_path / "other")}
            make_policies(sweepjax.Config(task=task, space=space, searcher=bad), task_of(task))
    rows = warm_start_rows(tmp_path / "same")
    best = CoarseToFine(space, direction, 4, 4, 0, keep=0.5, warm_start=rows).box()
    kept = (0.001, 0.01) if direction == "min" else (0.01, 0.1)
    tenth = 10**0.1
    assert (best["learning_rate"].low, best["learning_rate"].high) == pytest.approx(
        (kept[0] / tenth, kept[1] * tenth), rel=1e-12
    )


def test_factory_checks_its_arguments_and_hands_fixed_rows_in_order():
    space = {"learning_rate": LogUniform(1e-4, 1.0)}
    with pytest.raises(ValueError, match=r"searcher\.keep: 2 is not allowed"):
        check_policies(sweepjax.Config(space=space, searcher={"name": "coarse_to_fine", "keep": 2}))
    args = dict(space=SPACE, trials=4, population=2, seed=0)
    with pytest.raises(ValueError, match="direction: 'up' is not a direction"):
        make_searcher("random", {}, direction="up", **args)
    with pytest.raises(
        ValueError, match=r"searcher: options \[\('keep', 0\.5\)\] are not a mapping"
    ):
        make_searcher("coarse_to_fine", [("keep", 0.5)], direction="max", **args)
    sampled = make_searcher("random", None, direction="max", **args).ask(4)
    assert sampled == Sampled(SPACE, "random", 4, seed=0).ask(4)
    rows = [{"learning_rate": 10.0**-i, "seed": i} for i in range(3)]
    config, task = sweepjax.Config(space=space), task_of("classification")
    _, fixed = make_policies(config, task, rows=rows)
    assert fixed.ask(2) + fixed.ask(2) == rows and fixed.ask(1) == []
    _, resumed = make_policies(config, task, rows=rows)
    resumed.load_state_dict(json.loads(json.dumps(fixed.state_dict())))
    assert resumed.ask(1) == []


def test_warm_rows_of_an_adaptive_sweep_take_each_trials_own_steps(tmp_path):
    (tmp_path / "results.csv").write_text(
        "member,learning_rate,seed,status,start_step,steps_trained,final_val_accuracy\n"
        "0,0.001,0,ok,0,60,0.9\n1,0.01,1,stopped,0,20,0.5\n2,0.1,2,ok,10,60,0.7\n"
    )  # a refill sweep: its global step (70) runs past a trial's budget (60)
    (tmp_path / "sweep.json").write_text(json.dumps({"steps_done": 70, "config": {"steps": 60}}))
    assert [(r["params"]["learning_rate"], r["steps"]) for r in warm_start_rows(tmp_path)] == [
        (0.001, 60),
        (0.1, 60),
    ]


def scheduler(name, options, max_steps=100, eval_every=1):
    args = dict(direction="min", population=4, space={}, seed=0)
    return make_scheduler(name, options, max_steps=max_steps, eval_every=eval_every, **args)


def test_factory_scheduler_defaults_and_checks_at_their_edges():
    # Hyperband's default brackets: how many of min_steps * eta**b, b < 3, lie below max_steps
    assert scheduler("hyperband", {"min_steps": 10}, max_steps=1000).brackets == 3  # capped
    assert scheduler("hyperband", {"min_steps": 10}, max_steps=90).brackets == 2  # 10, 30
    assert scheduler("hyperband", {"min_steps": 10}, max_steps=70).brackets == 2  # 10, 30
    assert scheduler("median", {}, max_steps=1, eval_every=1).name == "median"
    for key, value in [("max_steps", 0), ("eval_every", 0)]:
        with pytest.raises(ValueError, match=rf"scheduler\.{key}: 0 is not an integer >= 1"):
            scheduler("median", {}, **{key: value})
    with pytest.raises(ValueError, match=r"scheduler\.eta: 1 must be > 1"):
        scheduler("asha", {"eta": 1})
    with pytest.raises(ValueError, match=r"scheduler\.eta: not an option of none; allowed: no opt"):
        scheduler("none", {"eta": 2})
