"""Every rule experiment in experiments/ runs end to end on a tiny budget and prints its rule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import pytest
from conftest import count_compiles

from sweepjax.cli import main
from sweepjax.experiment import available_experiments, find_experiment, load_experiment

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# A tiny budget: the same structure for every experiment (model, optimizer hyperparameter names,
# batch size, population), so they share one compiled program.
TINY = [
    "population=4",
    "steps=20",
    "eval_every=10",
    "batch_size=32",
    'model={"name": "mlp", "hidden": [8]}',
    "searcher=random",
]
RULES = ["learning_rate", "lr_boundary", "weight_decay", "momentum", "random_vs_grid"]
STRUCTURAL = {
    "hidden_units": ["space.model.hidden=Choice([[4], [8]])"],
    "kernel_width": [
        'model={"name": "cnn1d", "channels": [4], "kernel": 3}',
        "space.model.kernel=Choice([3, 5])",
    ],
    "initializer": [
        "space.model.initializer=Choice(['he', 'xavier'])",
        "space.learning_rate=LogUniform(1e-3, 0.3, num=2)",
        "trials=4",
        "scheduler.min_steps=2",
    ],
    "activation": [
        "space.learning_rate=LogUniform(0.01, 1.0, num=1)",
        "trials=4",
        "scheduler.patience=2",
    ],
}
# Rule experiments with a structure of their own (a dropout rate, a clipping threshold).
OWN_PROGRAM = {
    "dropout": (
        ["space.dropout=Choice([0.0, 0.25])", "space.learning_rate=LogUniform(0.01, 0.1, num=2)"],
        "best with dropout (keep 0.75) against none",
    ),
    "grad_clip": (
        [
            "space.clip_norm=LogUniform(0.01, 100.0, num=2)",
            "space.learning_rate=LogUniform(0.01, 1.0, num=2)",
        ],
        "clip_norm 100",
    ),
}


def _run(name, out, *extra):
    args = sum((["--set", o] for o in [*TINY, *extra]), [])
    assert main(["run", name, *args, "--out", str(out), "--quiet"]) == 0


def _summary(name, *out_dirs, capsys):
    capsys.readouterr()
    assert main(["summarize", name, *map(str, out_dirs)]) == 0
    return capsys.readouterr().out


def test_every_experiment_loads_and_documents_its_run_command():
    names = set(available_experiments())
    expected = {*RULES, *STRUCTURAL, *OWN_PROGRAM, "batch_size", "mnist1d_paper", "regression"}
    assert {*expected, "next_token"} <= names
    for name in names:
        config = load_experiment(name)
        spec = importlib.util.spec_from_file_location(name, find_experiment(name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert "sweepjax run" in module.__doc__ or "python experiments/" in module.__doc__, name
        assert not config.dataset.startswith("tfds:"), name  # nothing to download


def test_rule_experiments_share_one_program_and_print_their_rule(tmp_path, capsys):
    _run(RULES[0], tmp_path / "warm")  # compiles the shared program
    with count_compiles() as compiles:
        for name in RULES:
            _run(name, tmp_path / name)
    assert compiles[0] == 0  # same structure: every numeric hyperparameter is data

    assert "under-fits" in _summary("learning_rate", tmp_path / "learning_rate", capsys=capsys)
    assert "largest stable learning rate" in _summary(
        "lr_boundary", tmp_path / "lr_boundary", capsys=capsys
    )
    assert "collapses" in _summary("weight_decay", tmp_path / "weight_decay", capsys=capsys)
    text = _summary("momentum", tmp_path / "momentum", capsys=capsys)
    assert "largest learning rate that learned" in text


def test_random_vs_grid_counts_distinct_values_of_the_important_dimension(tmp_path, capsys):
    grid = [
        "space.learning_rate=LogUniform(1e-3, 1.0, num=2)",
        "space.weight_decay=LogUniform(1e-6, 1e-4, num=2)",
    ]
    _run("random_vs_grid", tmp_path / "grid", *grid, "searcher=grid")
    _run("random_vs_grid", tmp_path / "random", "searcher=random")
    _run("random_vs_grid", tmp_path / "quasi", "searcher=quasi_random")
    text = _summary(
        "random_vs_grid", *(tmp_path / d for d in ("grid", "random", "quasi")), capsys=capsys
    )
    lines = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines()}
    assert lines["grid"][2] == "2" and lines["random"][2] == "4" and lines["quasi_random"][2] == "4"


def test_batch_size_experiment_is_one_program_over_member_batch_sizes(tmp_path, capsys):
    _run("batch_size", tmp_path / "bs", "space.batch_size=Choice([8, 32])")
    text = _summary("batch_size", tmp_path / "bs", capsys=capsys)
    assert text.splitlines()[0].startswith("batch_size | learning_rate")


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_structural_experiments_bucket_by_model_option(name, tmp_path, capsys):
    _run(name, tmp_path / name, *STRUCTURAL[name])
    text = _summary(name, tmp_path / name, capsys=capsys)
    assert text.splitlines()[0].startswith(f"model.{name.split('_')[0][:6]}")
    rule = {"initializer": "learning rates", "activation": "stalled at chance level"}
    assert rule.get(name, "best by validation") in text


@pytest.mark.parametrize("name", sorted(OWN_PROGRAM))
def test_dropout_and_clipping_grids_print_their_rule(name, tmp_path, capsys):
    changes, rule = OWN_PROGRAM[name]
    _run(name, tmp_path / name, *changes, "searcher=grid")
    text = _summary(name, tmp_path / name, capsys=capsys)
    assert text.splitlines()[0].startswith(name.replace("grad_", ""))
    assert rule in text


def test_grad_clip_finds_the_thresholds_no_gradient_reached():
    module = _module("grad_clip")
    row = {"status": "ok", "final_val_accuracy": 0.6}
    rows = [
        {**row, "clip_norm": c, "learning_rate": lr, "final_train_loss": loss}
        for c, lr, loss in [
            (100.0, 0.1, 0.5),
            (100.0, 1.0, 2.3),  # did not learn: not compared
            (10.0, 0.1, 0.5),
            (10.0, 1.0, 2.4),
            (1.0, 0.1, 0.7),  # clipped: another result
            (1.0, 1.0, 2.3),
        ]
    ]
    assert module.unreached(rows) == [100.0, 10.0]


def test_mnist1d_paper_prints_the_paper_beside_ours(tmp_path, capsys):
    module = _module("mnist1d_paper")
    configs = module.get_configs()
    assert configs["mlp"].model["name"] == "mlp" and configs["cnn"].model["name"] == "cnn1d"
    overrides = sum((["--set", o] for o in TINY), [])
    assert module.main(["--out", str(tmp_path), "--models", "mlp", "--quiet", *overrides]) == 0
    text = capsys.readouterr().out
    assert "| mlp | 68% |" in text
    summary = json.loads((tmp_path / "mlp" / "sweep.json").read_text())
    assert summary["steps_done"] == 20
    both = _summary("mnist1d_paper", tmp_path / "mlp", tmp_path / "mlp", capsys=capsys)
    assert "| cnn | 94% |" in both


def test_summarize_rejects_an_experiment_without_it_or_wrong_dirs(tmp_path, capsys):
    assert main(["summarize", "default", str(tmp_path)]) == 2
    assert "has no summarize()" in capsys.readouterr().err
    assert main(["summarize", "learning_rate", str(tmp_path), str(tmp_path)]) == 2
    assert "does not take 2 sweep directories" in capsys.readouterr().err


def _module(name):
    spec = importlib.util.spec_from_file_location(name, find_experiment(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Every file in experiments/, run as its docstring says, with its own model, optimizer, families
# and search, on a budget of a few steps; the session's two devices split each population.
BUDGET = ["steps=4", "eval_every=2", "checkpoint_every=2"]
SMALLER = {  # the schedule benchmark's grid, one peak learning rate and one seed per family
    "schedules": [
        "space.learning_rate=LogUniform(3e-3, 1.0, num=1)",
        "space.seed=Choice([0])",
        "population=14",
    ],
    # a warmup within the budget
    "next_token": ["space.warmup_steps=IntUniform(1, 3)", "population=4"],
    # the joint sweep, with one small structure (buckets of odd sizes would run on one device)
    "staged": ["space.model.hidden=Choice([[4]])", "population=4"],
    # two small structures, 2 members each, instead of one program per width up to 512
    **{name: [*changes, "population=4"] for name, changes in STRUCTURAL.items()},
    **{name: [*changes, "population=4"] for name, (changes, _) in OWN_PROGRAM.items()},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("[!_]*.py")))
def test_every_experiment_file_runs_through_the_command_on_two_devices(name, tmp_path, capsys):
    assert jax.device_count() == 2
    overrides = sum((["--set", o] for o in [*BUDGET, *SMALLER.get(name, [])]), [])
    path, out = str(EXPERIMENTS / f"{name}.py"), str(tmp_path / name)
    if name == "schedules":
        argv = ["bench-schedules", path, *overrides, "--out", out, "--quiet"]
    elif name == "mnist1d_paper":  # its own command: the MLP and the CNN, one after the other
        assert _module(name).main(["--out", out, "--quiet", *overrides]) == 0
        return
    else:
        argv = ["run", path, *overrides, "--out", out, "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / name / "sweep.json").read_text())
    assert summary["steps_done"] == 4
    assert summary["population_devices"] == (2 if summary["members"] % 2 == 0 else 1)
