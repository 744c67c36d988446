"""The user's own code (registered schedules, a `Task`, a Flax model) is recorded in a sweep
folder as `module:name` references (or an experiment file's path) and imported again by
`resume` and `report` in a fresh process; code that cannot be is named, never dropped silently.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
from command import clean_stderr, command, environment

import sweepjax
from sweepjax.cli import main
from sweepjax.engine import code_refs
from sweepjax.engine.schedules import SCHEDULES, unregister_schedule
from sweepjax.sweep import code_record, same_sweep

SCHEDULE = "halving_ucr"  # unregistered after every test: the registry is the process's
CODE = f'''
import flax.linen as nn
import jax.numpy as jnp
import optax
import sweepjax


def halving(step, hp):
    return hp["learning_rate"] * 0.5 ** (step / hp["half_life"])


sweepjax.register_schedule("{SCHEDULE}", halving, {{"half_life": 10.0}})


def _loss(outputs, batch):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])


def _metrics(outputs, batch):
    return {{"accuracy": (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)}}


smooth_task = sweepjax.Task("smooth", _loss, _metrics, rank_by="accuracy", direction="max")


def make_task():
    return sweepjax.Task("made", _loss, _metrics, rank_by="loss", direction="min")


class Net(nn.Module):
    hidden: tuple = (16,)

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's on `sys.path` (its own folder), imported: it registers SCHEDULE."""
    name = f"ucr_code_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(CODE)
    monkeypatch.syspath_prepend(str(folder))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)
    if SCHEDULE in SCHEDULES:
        unregister_schedule(SCHEDULE)


def forget(module: types.ModuleType, monkeypatch) -> None:
    """As a fresh process has it: the module not imported, not on the path, SCHEDULE unknown."""
    sys.modules.pop(module.__name__, None)
    monkeypatch.setattr(
        sys, "path", [p for p in sys.path if p != str(Path(module.__file__).parent)]
    )
    if SCHEDULE in SCHEDULES:
        unregister_schedule(SCHEDULE)


def tiny(**changes) -> sweepjax.Config:
    config = sweepjax.Config(
        space={"learning_rate": sweepjax.LogUniform(1e-2, 0.5)},
        population=2,
        steps=20,
        batch_size=32,
        eval_every=10,
        val_size=200,
    )
    return config.replace(**changes)


def test_the_code_is_recorded_where_it_is_found(user_module):
    name = user_module.__name__
    config = tiny(schedule=SCHEDULE, task=user_module.smooth_task, model=user_module.Net((8,)))
    code = config.to_json()["code"]
    assert code == {
        "schedules": {
            SCHEDULE: {
                "fn": {"ref": f"{name}:halving"},
                "defaults": {"literal": "{'half_life': 10.0}"},
                "registered_in": name,
            }
        },
        "task": {"ref": f"{name}:smooth_task"},
        "model": {"call": f"{name}:Net", "kwargs": {"hidden": {"literal": "(8,)"}}},
    }
    assert (
        sweepjax.Config.from_json(config.to_json()).schedule == SCHEDULE
    )  # the record is read apart
    assert "code" not in tiny().to_json()  # a sweep of built-ins records nothing, as before
    # A task a factory made, and an nnx-style class: its fields, and its class by name.
    made = code_refs.encode(user_module.make_task())
    assert made["call"] == "sweepjax.engine.tasks:Task"
    assert made["kwargs"]["loss"] == {"ref": f"{name}:_loss"}
    assert code_refs.decode(made) == user_module.make_task()
    assert code_refs.decode({"ref": f"{name}:Net"}) is user_module.Net


def test_code_that_cannot_be_imported_again_is_recorded_missing_and_warned(tmp_path):
    sweepjax.register_schedule(SCHEDULE, lambda step, hp: hp["learning_rate"])
    try:

        def local_loss(outputs, batch):
            return outputs.sum(-1)

        task = sweepjax.Task("local", local_loss, lambda o, b: {}, "loss", "min")
        code = tiny(schedule=SCHEDULE, task=task).to_json()["code"]
        with pytest.warns(code_record.UserCodeWarning) as caught:
            texts = code_record.warn_unrecorded({"code": code})
    finally:
        unregister_schedule(SCHEDULE)
    assert "a lambda" in code["schedules"][SCHEDULE]["fn"]["missing"]
    assert "local_loss is defined inside a function" in code["task"]["missing"]
    assert len(texts) == len(caught) == 2 and all("sweepjax resume" in t for t in texts)
    with pytest.raises(ValueError, match="the task: not recorded when the sweep ran: Task: its"):
        code_record.restore({"code": code}, "resume: here")


@pytest.mark.parametrize("guarded", [True, False])
def test_a_script_is_recorded_by_its_path_only_behind_a_main_guard(tmp_path, guarded):
    script = tmp_path / "train.py"
    body = 'if __name__ == "__main__":\n    run()\n' if guarded else "run()\n"
    script.write_text(f"def halving(step, hp):\n    return 1.0\n\n\n{body}")
    main_module = types.ModuleType("__main__")
    main_module.__file__ = str(script)
    if guarded:
        assert code_refs._main_place(main_module) == str(script.resolve())
    else:
        with pytest.raises(code_refs.NotImportable, match="no `if __name__"):
            code_refs._main_place(main_module)
    with pytest.raises(code_refs.NotImportable, match="interactive session"):
        code_refs._main_place(types.ModuleType("__main__"))  # a notebook, a REPL


def test_restore_names_every_missing_reference_and_how_to_provide_it(tmp_path):
    saved = {
        "schedule": "gone_family",
        "code": {
            "schedules": {"gone_family": {"fn": {"ref": "no_such_module_ucr:halving"}}},
            "model": {"ref": str(tmp_path / "moved.py") + ":Net"},
        },
    }
    with pytest.raises(ValueError) as err:
        code_record.restore(saved, "resume: runs/x")
    message = str(err.value)
    assert "schedule 'gone_family': no_such_module_ucr:halving: No module named" in message
    assert f"the file {tmp_path / 'moved.py'} is not there" in message
    assert "PYTHONPATH" in message and "config=" in message
    problems = code_record.schedule_problems(saved)  # the report's words: one line each
    assert problems == [
        "schedule 'gone_family': no_such_module_ucr:halving: No module named 'no_such_module_ucr'"
    ]
    old = code_record.schedule_problems({"schedule": "gone_family"})  # a folder before records
    assert "records no code for it" in old[0]


def test_a_function_registered_elsewhere_is_registered_again_with_its_defaults(
    user_module, monkeypatch
):
    """`python script.py` registered a module's function: importing the module registers
    nothing, so its recorded function and defaults are registered."""
    unregister_schedule(SCHEDULE)
    sweepjax.register_schedule(SCHEDULE, user_module.halving, {"half_life": 7.0})
    code = tiny(schedule=SCHEDULE).to_json()["code"]
    assert "registered_in" not in code["schedules"][SCHEDULE]  # a test function registered it
    unregister_schedule(SCHEDULE)
    assert code_record.restore({"code": code}, "resume") == {}
    assert SCHEDULES[SCHEDULE].fn is user_module.halving
    assert SCHEDULES[SCHEDULE].defaults(100) == {"half_life": 7.0}


def test_where_the_code_comes_from_is_no_difference_between_a_sweep_and_its_resume():
    code = {"model": {"ref": "/runs/train.py:Net"}}
    saved = {"config": {"model": "<class '__main__.Net'>", "code": code, "steps": 5}}
    now = {"model": "<class 'sweepjax_experiment_train.Net'>", "code": code, "steps": 5}
    assert same_sweep.differences(saved, now, {}) == []
    other = {**now, "code": {"model": {"ref": "other:Net"}}}
    assert same_sweep.differences(saved, other, {}) == [
        'model: "<class \'__main__.Net\'>" (checkpoint) != "<class '
        "'sweepjax_experiment_train.Net'>\" (now)"
    ]


EXPERIMENT = f'''"""sweepjax run THIS_FILE --out DIR"""
import sweepjax


def halving(step, hp):
    return hp["learning_rate"] * 0.5 ** (step / hp["half_life"])


sweepjax.register_schedule("{SCHEDULE}", halving, lambda steps: {{"half_life": steps / 4}})


def get_config():
    return sweepjax.Config(
        model={{"name": "mlp", "hidden": [8]}}, schedule="{SCHEDULE}", population=2, steps=20,
        batch_size=32, eval_every=10, val_size=200,
        space={{"learning_rate": sweepjax.LogUniform(1e-2, 0.5)}},
    )
'''


def test_an_experiment_files_schedule_resumes_from_the_file_and_names_it_once_moved(
    tmp_path, capsys
):
    experiment, out = tmp_path / "exp_ucr.py", tmp_path / "out"
    experiment.write_text(EXPERIMENT)
    try:
        assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 0
        code = json.loads((out / "sweep.json").read_text())["config"]["code"]
        assert code["schedules"][SCHEDULE]["registered_in"] == str(experiment.resolve())
        unregister_schedule(SCHEDULE)  # as a fresh process: the file is run again
        sys.modules.pop(code_refs.FILE_PREFIX + "exp_ucr")
        assert main(["resume", str(out), "--set", "steps=30", "--quiet"]) == 0
        assert json.loads((out / "sweep.json").read_text())["steps_done"] == 30
        unregister_schedule(SCHEDULE)
        sys.modules.pop(code_refs.FILE_PREFIX + "exp_ucr")
        experiment.rename(tmp_path / "moved.py")
        capsys.readouterr()
        assert main(["resume", str(out), "--set", "steps=40", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert (
            f"{experiment.resolve()}:halving: the file {experiment.resolve()} is not there" in err
        )
    finally:
        if SCHEDULE in SCHEDULES:
            unregister_schedule(SCHEDULE)


def _sweepjax(*args: str, path: Path) -> subprocess.CompletedProcess:
    """`sweepjax ARGS...` in a fresh process, with `path` on PYTHONPATH."""
    env = environment()
    env["PYTHONPATH"] = f"{path}:{env['PYTHONPATH']}"
    env.pop("XLA_FLAGS", None)
    return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.subprocess
@pytest.mark.slow
def test_resume_and_report_import_the_code_in_a_fresh_process(
    user_module, tmp_path, monkeypatch, capsys
):
    """A schedule, a `Task` and a linen model of the user's module: `sweepjax resume` and
    `sweepjax report` in a new process find them on PYTHONPATH; without the module, resume
    names each `module:name` and the report says it leaves out the schedules figure."""
    out, name = tmp_path / "out", user_module.__name__
    model = user_module.Net((8,))
    config = tiny(schedule=SCHEDULE, task=user_module.smooth_task, model=model, out_dir=str(out))
    sweepjax.run(config, quiet=True)
    folder = Path(user_module.__file__).parent
    resumed = _sweepjax("resume", str(out), "--set", "steps=30", "--quiet", path=folder)
    assert resumed.returncode == 0, resumed.stderr
    clean_stderr(resumed.stderr)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["steps_done"] == 30 and summary["task"] == "smooth"
    report = _sweepjax("report", str(out), path=folder)
    assert report.returncode == 0 and "warning" not in report.stderr, report.stderr
    assert (out / "figures" / "schedules.png").is_file()
    assert "learning-rate schedule" in (out / "report.md").read_text()

    (out / "figures" / "schedules.png").unlink()
    forget(user_module, monkeypatch)  # this process now lacks the module, as a new one would
    capsys.readouterr()
    assert main(["resume", str(out), "--set", "steps=40", "--quiet"]) == 2
    err = capsys.readouterr().err
    for ref in (f"{name}:halving", f"{name}:smooth_task", f"{name}:Net"):
        assert f"{ref}: No module named '{name}'" in err, err
    assert "PYTHONPATH" in err and err.count("\n") == 1, err
    with pytest.warns(code_record.UserCodeWarning, match=f"schedules figure: .*{name}:halving"):
        sweepjax.write_report(out)
    assert not (out / "figures" / "schedules.png").exists()
    assert (
        f"left out**: the schedules figure: schedule '{SCHEDULE}'"
        in (out / "report.md").read_text()
    )


def test_a_folder_without_the_record_asks_for_the_config_as_before(tmp_path):
    from sweepjax.runner.run import _saved_config
    from sweepjax.sweep.buckets import PLAN_FILE

    saved = {**tiny().to_json(), "model": "MyNet(\n    # attributes\n    hidden = 8\n)"}
    (tmp_path / PLAN_FILE).write_text(json.dumps({"config": saved}))
    with pytest.raises(ValueError, match="model is the user's .* pass its config: sweepjax.resume"):
        _saved_config(str(tmp_path), None)
    given = tiny(steps=7)
    assert _saved_config(str(tmp_path), given) is given
    (tmp_path / PLAN_FILE).write_text(json.dumps({"config": {**saved, "model": {"name": "mlp"}}}))
    assert _saved_config(str(tmp_path), None) == tiny(out_dir="runs/default")
