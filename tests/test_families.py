"""Schedule and optimizer families as per-member data in a real sweep, their validation, and
the schedule benchmark end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import count_compiles

import sweepjax
from sweepjax import Choice
from sweepjax.benchmark import bench_schedules
from sweepjax.cli import main
from sweepjax.engine.schedules import learning_rate_at
from sweepjax.runner.run import sample_hparams
from sweepjax.sweep.config import families

FAMILIES = ["constant", "cosine", "sgdr", "piecewise_constant", "exponential"]
SWEPT = {
    "decay_steps": Choice([10.0, 25.0]),
    "warmup_steps": Choice([0, 5]),
    "T_0": Choice([4, 7]),
    "T_mult": Choice([1.0, 2.0]),
    "boundary_0": Choice([8, 15]),
    "decay_rate": Choice([0.5, 0.9]),
}


@pytest.fixture(scope="module")
def mixed(tiny_config):
    return tiny_config.replace(
        space={
            "schedule": Choice(FAMILIES),
            "learning_rate": sweepjax.LogUniform(1e-2, 0.3),
            "momentum": 0.9,
            **SWEPT,
        },
        searcher="random",
        population=10,
    )


def test_schedule_families_and_parameters_compile_once(mixed, tiny_data):
    first = sweepjax.run(mixed, quiet=True, dataset=tiny_data)
    names = {r["schedule"] for r in first.rows}
    assert names <= set(FAMILIES) and len(names) > 2  # readable names in the table
    other = mixed.replace(
        space={
            **mixed.space,
            "decay_steps": Choice([30, 40]),  # integers now: still float32 data
            "warmup_steps": 3,
            "T_0": sweepjax.Uniform(2.0, 9.0),
            "T_mult": 1.5,
            "boundary_0": sweepjax.IntUniform(5, 20),
            "decay_rate": sweepjax.Uniform(0.1, 0.99),
            "schedule": Choice(list(reversed(FAMILIES))),  # same set, other order
        },
        seed=3,
    )
    with count_compiles() as compiles:
        second = sweepjax.run(other, quiet=True, dataset=tiny_data)
    assert compiles[0] == 0
    assert all(r["status"] == "ok" for r in second.rows)


def test_each_member_gets_its_own_familys_defaults(tiny_config):
    config = tiny_config.replace(
        schedule=("cosine", "warmup_cosine", "sgdr"),
        optimizer=("sgd", "adamw"),
        space={"learning_rate": 0.1},
        population=12,
        searcher="random",
    )
    hp = sample_hparams(config)
    schedules, optimizers = np.asarray(hp["schedule"]), np.asarray(hp["optimizer"])
    assert set(schedules) == {0, 1, 2} and set(optimizers) == {0, 1}
    np.testing.assert_array_equal(hp["warmup_steps"] > 0, schedules == 2)  # warmup_cosine
    np.testing.assert_allclose(hp["weight_decay"], np.where(optimizers == 1, 1e-4, 0.0))
    members = [{k: np.asarray(v)[i] for k, v in hp.values.items()} for i in range(12)]
    families = ("cosine", "sgdr", "warmup_cosine")  # registry order
    for m in members:
        alone = learning_rate_at(families[m["schedule"]], 5, m)
        np.testing.assert_allclose(learning_rate_at(families, 5, m), alone, rtol=1e-6)


def test_mixed_optimizer_families_train_and_are_listed(tiny_config, tiny_data):
    config = tiny_config.replace(
        space={
            "optimizer": Choice(["sgd", "adam"]),
            "learning_rate": Choice([0.05, 0.01]),
            "clip_norm": 1.0,
        },
        searcher="grid",
        population=4,
        steps=20,
    )
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert sorted(r["optimizer"] for r in result.rows) == ["adam", "adam", "sgd", "sgd"]
    assert all(r["status"] == "ok" for r in result.rows)


# Family tuples in an order other than the registry's, so the member order is tested too.
FAMILY_TUPLES = {
    "schedule": ("cosine", "sgdr", "constant", "piecewise_constant"),
    "optimizer": ("adam", "sgd", "lion", "momentum"),
}


def _both_spellings(kinds: tuple[str, ...], **changes) -> tuple[sweepjax.Config, sweepjax.Config]:
    """`Config(<kind>=(...))` and `space={<kind>: Choice([...])}`, each with 3 seeds."""
    tuples = {kind: FAMILY_TUPLES[kind] for kind in kinds}
    seeds = {"seed": Choice([0, 1, 2])}
    as_tuple = sweepjax.Config(**tuples, space=seeds, out_dir=None, **changes)
    choices = {kind: Choice(names) for kind, names in tuples.items()}
    return as_tuple, sweepjax.Config(space={**choices, **seeds}, out_dir=None, **changes)


KINDS = pytest.mark.parametrize("kinds", [("schedule",), ("optimizer",), ("schedule", "optimizer")])


@KINDS
def test_a_family_tuple_counts_in_the_grid_like_a_choice(kinds):
    size = 3 * 4 ** len(kinds)
    for config in _both_spellings(kinds, searcher="grid", population=size):
        assert sweepjax.validate(config) is config
        too_few = config.replace(population=3)
        message = (
            rf"population: 3 does not match the grid's {size} points; allowed: population={size}\b"
        )
        for check in (sweepjax.validate, sample_hparams):
            with pytest.raises(ValueError, match=message):
                check(too_few)


@KINDS
@pytest.mark.parametrize("search", ["grid", "random", "quasi_random"])
def test_a_family_tuple_samples_like_a_choice(kinds, search):
    as_tuple, as_choice = _both_spellings(kinds, searcher=search, population=3 * 4 ** len(kinds))
    a, b = sample_hparams(as_tuple), sample_hparams(as_choice)
    assert a.names == b.names
    for name in a.names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    if search == "grid":  # every (family, seed) pair once, families in the order given
        rows = {tuple(a.member(i)[k] for k in (*kinds, "seed")) for i in range(a.size)}
        assert len(rows) == a.size
        first = families(as_tuple, kinds[0]).index(FAMILY_TUPLES[kinds[0]][0])
        assert a.member(0)[kinds[0]] == first


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "cosinus"}, r"schedule: unknown family 'cosinus'; allowed: \["),
        (
            {"space": {"schedule": Choice(["cosine", "sgdrr"])}},
            r"space.schedule: unknown family 'sgdrr'; allowed: \[",
        ),
        ({"optimizer": ("adam", "adamm")}, r"optimizer: unknown family 'adamm'"),
        (
            {"schedule": "exponential", "space": {"decay_rate": -0.5}},
            r"space.decay_rate: -0.5 is out of range; allowed: \[0.0, inf\)",
        ),
        (
            {"schedule": "cosine", "space": {"decay_steps": 0}},
            r"space.decay_steps: 0 is out of range; allowed: \(0.0, inf\)",
        ),
        (
            {"schedule": "sgdr", "space": {"T_mult": Choice([2.0, 0.5])}},
            r"space.T_mult: 0.5 is out of range; allowed: \[1.0, inf\)",
        ),
        (
            {"schedule": "cosine", "space": {"warmup_steps": 31}},
            r"space.warmup_steps: 31 is longer than the run \(steps=30\)",
        ),
        (
            {"schedule": "constant", "space": {"T_0": 5}},
            r"space.T_0: 5 is not a hyperparameter of optimizer 'sgd' with schedule 'constant'",
        ),
        (
            {"optimizer": "rmsprop", "space": {"clip_norm": 0.0}},
            r"space.clip_norm: 0.0 is out of range",
        ),
    ],
)
def test_bad_schedules_are_rejected_before_compiling(tiny_config, tiny_data, changes, message):
    with count_compiles() as compiles, pytest.raises(ValueError, match=message):
        sweepjax.run(tiny_config.replace(**changes), quiet=True, dataset=tiny_data)
    assert compiles[0] == 0


def test_schedule_benchmark_end_to_end(tiny_config, tiny_data, tmp_path):
    config = tiny_config.replace(
        space={
            "schedule": Choice(["constant", "cosine", "sgdr", "one_cycle"]),
            "learning_rate": sweepjax.LogUniform(0.01, 0.3, num=2),
            "momentum": 0.9,
            "seed": Choice([0, 1]),
        },
        searcher="grid",
        population=16,
        steps=20,
        out_dir=str(tmp_path / "bench"),
    )
    result, scores = bench_schedules(config, target=0.6, quiet=True, dataset=tiny_data)
    assert [s.family for s in scores] != [] and {s.family for s in scores} == {
        "constant",
        "cosine",
        "sgdr",
        "one_cycle",
    }
    for s in scores:
        assert min(abs(s.best_learning_rate - lr) for lr in (0.01, 0.3)) < 1e-6 and s.seeds == 2
        assert 0.0 <= s.mean_val_accuracy <= 1.0 and s.std_val_accuracy >= 0.0
    out = tmp_path / "bench"
    for name in ("leaderboard.txt", "leaderboard.csv", "lr_curves.png", "val_curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_lr.png").stat().st_size > 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["schedule"] for r in rows} == {"constant", "cosine", "sgdr", "one_cycle"}
    assert "steps_to_0.6" in (out / "leaderboard.txt").read_text()


def test_bench_schedules_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    overrides = [
        "steps=10",
        "eval_every=5",
        "population=4",
        "model.channels=[4, 4, 4]",
        "space.schedule=Choice(['cosine', 'sgdr'])",
        "space.learning_rate=Choice([0.05, 0.1])",
        "space.seed=0",
    ]
    args = ["bench-schedules", *sum((["--set", o] for o in overrides), []), "--out", str(out)]
    assert main(args) == 0
    assert "best_lr" in capsys.readouterr().out
    assert (out / "leaderboard.txt").exists()
