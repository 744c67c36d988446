"""One spec per config key (`sweepjax.sweep.keys`): every `Config` field has exactly one, its
default passes it, and what reads the specs (the resume checks, the command's help, the guide's
table) says what they say.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from sweepjax.cli import main
from sweepjax.sweep import keys, same_sweep
from sweepjax.sweep.config import Config
from sweepjax.sweep.keys import KEYS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import key_table  # noqa: E402

FIELDS = [field.name for field in dataclasses.fields(Config)]
RESUMABLE = sorted(name for name, spec in KEYS.items() if spec.resumable)
# A value of each key other than its default, all of one valid config.
CHANGED = {
    "steps": 2000,
    "out_dir": "runs/elsewhere",
    "checkpoint_every": 200,
    "keep_checkpoints": 5,
    "eval_every": 50,
    "eval_batch": 500,
    "data_placement": "stream",
    "population_width": 4,
    "compile_cache": "off",
    "tensorboard": True,
    "mlflow": True,
    "wandb": "project",
    "dataset": "sklearn:digits",
    "task": "regression",
    "val_size": 100,
    "normalize": "scale",
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": "adam",
    "nesterov": True,
    "schedule": "cosine",
    "schedules": {"momentum": "cosine"},
    "space": {"learning_rate": 0.1},
    "searcher": "random",
    "scheduler": "asha",
    "trials": 32,
    "population": 8,
    "batch_size": 50,
    "seed": 7,
    "augment": True,
    "precision": "bfloat16",
}


def test_every_field_has_one_spec_and_every_spec_a_field():
    assert list(KEYS) == FIELDS  # the same keys, in the same order
    assert all(spec.name == name for name, spec in KEYS.items())


@pytest.mark.parametrize("name", FIELDS)
def test_a_default_passes_its_own_spec(name):
    KEYS[name].check(getattr(Config(), name))


def _resume_differences(name: str) -> list[str]:
    """What the same-sweep check finds in a checkpoint of `Config()` resumed with `name` changed."""
    saved = {"config": Config().to_json(), "data": {}}
    return same_sweep.differences(saved, Config().replace(**{name: CHANGED[name]}).to_json(), {})


@pytest.mark.parametrize("name", FIELDS)
def test_a_resume_may_change_exactly_the_resumable_keys(name):
    differences = _resume_differences(name)
    if KEYS[name].resumable:
        assert differences == []
    else:
        assert differences and all(d.startswith(name) for d in differences), differences


def test_a_resume_override_is_a_resumable_key_but_the_folder():
    assert sorted(keys.RESUME_OVERRIDES) == sorted(set(RESUMABLE) - {"out_dir"})


def test_the_resume_help_names_exactly_the_keys_a_resume_may_change(capsys):
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    set_help = help_text.rpartition("--set KEY=VALUE")[2].partition("--quiet")[0]
    named = {word for word in re.findall(r"\w+", set_help) if word in KEYS}
    assert sorted(named) == sorted(set(RESUMABLE) - {"out_dir"})


def test_the_guides_table_is_the_generated_one():
    table = key_table.guide_table(key_table.GUIDE.read_text())
    assert table == key_table.current_table(), "run: python tools/key_table.py"
