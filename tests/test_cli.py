"""The default experiment end to end through the CLI, with a small override."""

import csv
import json

from sweepjax.cli import main
from sweepjax.experiment import load_experiment


def test_default_experiment_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    overrides = ["population=4", "steps=40", "eval_every=20", "model.hidden=[16]"]
    code = main(["run", *sum((["--set", o] for o in overrides), []), "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4
    assert {
        "member",
        "learning_rate",
        "weight_decay",
        "momentum",
        "seed",
        "status",
        "diverged_at_step",
        "final_train_loss",
        "final_val_loss",
        "final_val_accuracy",
        "best_val_accuracy",
        "test_accuracy",
    } <= set(rows[0])
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["steps_done"] == 40 and summary["member_steps_per_second"] > 0
    assert summary["config"]["model"]["hidden"] == [16]
    assert "compile_seconds" in summary and "device" in summary
    assert "member" in capsys.readouterr().err  # the leaderboard

    assert main(["show", str(out)]) == 0
    assert "test_accuracy" in capsys.readouterr().out


def test_cli_rejects_unknown_keys_with_exit_code_2(tmp_path, capsys):
    assert main(["run", "--set", "hiden=3", "--out", str(tmp_path)]) == 2
    assert "hiden: unknown key" in capsys.readouterr().err
    assert main(["run", "nosuch"]) == 2
    assert "experiment: 'nosuch' not found" in capsys.readouterr().err


def test_default_experiment_matches_the_issue():
    config = load_experiment("default")
    assert config.population == 64 and config.dataset == "mnist1d" and config.model["name"] == "mlp"
    assert {"learning_rate", "weight_decay", "momentum"} <= set(config.space)


def test_version_and_a_top_level_help_with_examples(capsys):
    from importlib import metadata

    import pytest

    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.strip() == f"sweepjax {metadata.version('sweepjax')}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "one compiled JAX program" in text and "examples:" in text
    assert "sweepjax resume runs/small" in text
