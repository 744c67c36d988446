"""The experiment trackers' logs (`mlflow`, `wandb`): one run per trial, resumed with the sweep.

Every sweep here has the same program (4 members, `learning_rate` and `momentum` swept), so the
module compiles once. Two of the four members diverge in their first chunk, so runs end with
both statuses and some curves hold non-finite values that are not logged. What the trackers
hold is read back with MLflow's client and, for W&B, from the offline runs' transaction logs;
nothing leaves the machine or the test's folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import struct

import numpy as np
import pytest

import sweepjax
from sweepjax.sweep import loop
from sweepjax.sweep.config import apply_overrides

# learning rate 1e4 diverges at once: members 2 and 3 end `diverged` in the first chunk
SPACE = {"learning_rate": sweepjax.Choice([0.1, 1e4]), "momentum": sweepjax.Choice([0.0, 0.5])}
HPARAMS = ("learning_rate", "momentum", "seed")
CURVES = ("train_loss", "val_loss", "val_accuracy")
MEMBERS = [f"member_{i:04d}" for i in range(4)]
ASHA = {"name": "asha", "min_steps": 10, "eta": 3}


@pytest.fixture(scope="module")
def config(tiny_config):
    return tiny_config.replace(space=SPACE, searcher="grid", population=4)


def _interrupted_at(step, config, data, monkeypatch):
    """Run `config` until a SIGINT after the chunk that ends at `step` stops it."""
    make_train_chunk = loop.make_train_chunk

    def interrupting(program, length, *args):
        chunk = make_train_chunk(program, length, *args)

        def run(pop, *args):
            pop, losses = chunk(pop, *args)
            if int(pop.step) == step:
                signal.raise_signal(signal.SIGINT)
            return pop, losses

        return run

    with monkeypatch.context() as patch:
        patch.setattr(loop, "make_train_chunk", interrupting)
        with pytest.raises(sweepjax.Interrupted, match=f"at step {step}"):
            sweepjax.run(config, quiet=True, dataset=data)


def _logged(curves, member):
    """`{curve: (steps, values)}` of a member where its curves are finite: what a tracker holds."""
    out = {}
    for name in CURVES:
        values = curves[name][:, member]
        finite = np.isfinite(values)
        out[name] = (curves["steps"][finite].tolist(), values[finite].tolist())
    return out


def _series(points):
    """`(steps, values)` of `[(step, value), ...]`, in step order."""
    points = sorted(points)
    return [step for step, _ in points], [value for _, value in points]


def _mlflow_runs(uri, experiment):
    """`{run name: (run, {curve: (steps, values)})}` of an MLflow experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = {}
    for run in client.search_runs([experiment_id]):
        history = {
            name: _series(
                (m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)
            )
            for name in CURVES
        }
        runs[run.info.run_name] = (run, history)
    return runs


def _assert_mlflow_holds_the_results(uri, out):
    """One run per member, its params, curves (each step once) and status as the results."""
    result = sweepjax.read_result(out)
    runs = _mlflow_runs(uri, out.name)
    assert sorted(runs) == [f"member_{i:04d}" for i in range(len(result.rows))]
    for row in result.rows:
        run, history = runs[f"member_{row['member']:04d}"]
        assert run.data.params == {k: str(row[k]) for k in HPARAMS}
        assert history == _logged(result.curves, row["member"])
        assert (run.data.tags["status"], run.info.status) == (row["status"], "FINISHED")
    return {name: run.info.run_id for name, (run, _) in runs.items()}


@pytest.fixture
def mlflow_home(monkeypatch):
    """No tracking URI from the environment, and no usage reports."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def test_mlflow_logs_a_run_per_trial_that_a_resumed_sweep_continues(
    config, tiny_data, tmp_path, monkeypatch, mlflow_home
):
    out = tmp_path / "sweep"
    config = config.replace(mlflow=True, out_dir=str(out))
    uri = f"sqlite:///{out}/mlflow/mlflow.db"  # the default: a local store in out_dir
    _interrupted_at(20, config, tiny_data, monkeypatch)
    runs = _mlflow_runs(uri, "sweep")
    assert sorted(runs) == MEMBERS
    for name in MEMBERS[:2]:  # still running when the sweep stopped
        run, history = runs[name]
        assert run.info.status == "KILLED" and "status" not in run.data.tags
        assert history["val_loss"][0] == [10, 20]
    for name in MEMBERS[2:]:
        run, history = runs[name]
        assert (run.data.tags["status"], run.info.status) == ("diverged", "FINISHED")
        assert history["val_accuracy"][0] == [10] and history["val_loss"] == ([], [])

    sweepjax.run(config, quiet=True, dataset=tiny_data)  # resumes from step 20
    ids = _assert_mlflow_holds_the_results(uri, out)
    assert ids == {name: run.info.run_id for name, (run, _) in runs.items()}

    # A sweep that logged step 30 but lost its checkpoint there trains it again: not logged twice.
    shutil.rmtree(out / "checkpoints" / "30")
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert _assert_mlflow_holds_the_results(uri, out) == ids


def test_a_tracker_turned_on_at_a_resume_changes_no_result(
    config, tiny_data, tmp_path, monkeypatch, mlflow_home
):
    """A tracker says where curves go, never what a member trains on (a resumable key): the
    resumed sweep ends as the uninterrupted one, its runs holding the steps after the resume."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    sweepjax.run(config.replace(out_dir=str(whole)), quiet=True, dataset=tiny_data)
    _interrupted_at(20, config.replace(out_dir=str(resumed)), tiny_data, monkeypatch)
    logged = config.replace(out_dir=str(resumed), mlflow=True)
    sweepjax.run(logged, quiet=True, dataset=tiny_data)  # resumes from step 20, now logging
    assert (resumed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    with np.load(whole / "curves.npz") as a, np.load(resumed / "curves.npz") as b:
        assert set(a) == set(b)
        for key in a:  # bitwise, NaN where a member had diverged
            np.testing.assert_array_equal(a[key], b[key])
    runs = _mlflow_runs(f"sqlite:///{resumed}/mlflow/mlflow.db", "resumed")
    assert sorted(runs) == MEMBERS[:2]  # the diverged members had ended before the resume
    steps = sweepjax.read_result(resumed).curves["steps"]
    for _, history in runs.values():
        assert history["val_loss"][0] == [int(s) for s in steps if s > 20]


def test_an_adaptive_sweep_logs_to_the_tracking_uri_of_its_config(
    config, tiny_data, tmp_path, monkeypatch, mlflow_home
):
    """Trials that enter freed slots mid-sweep or stop early get a run each; the config's
    tracking URI wins over the environment's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/environment.db")
    out, uri = tmp_path / "sweep", f"sqlite:///{tmp_path}/chosen.db"
    space = {**SPACE, "learning_rate": sweepjax.LogUniform(1e-2, 0.5)}  # the same program
    adaptive = config.replace(space=space, searcher="random", trials=7, scheduler=ASHA)
    sweepjax.run(adaptive.replace(mlflow=uri, out_dir=str(out)), quiet=True, dataset=tiny_data)
    _assert_mlflow_holds_the_results(uri, out)
    rows = sweepjax.read_result(out).rows
    assert {"ok", "stopped"} <= {row["status"] for row in rows}
    assert max(row["start_step"] for row in rows) > 0
    assert not (tmp_path / "environment.db").exists()
    assert sorted(p.name for p in (out / "mlflow").iterdir()) == ["runs.json"]  # no local store


BLOCK = 32768  # a W&B transaction log is a LevelDB log: 32 KiB blocks of framed records


def _records(path):
    """The protobuf `Record`s of a W&B transaction log (`run-<id>.wandb`)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, records, pending, at = path.read_bytes(), [], b"", 7  # header: ":W&B", magic, version
    while at + 7 <= len(data):
        if BLOCK - at % BLOCK < 7:  # a block's tail too short for a frame is padding
            at += BLOCK - at % BLOCK
            continue
        length, kind = struct.unpack("<HB", data[at + 4 : at + 7])  # after a CRC-32
        pending += data[at + 7 : at + 7 + length]
        at += 7 + length
        if kind in (1, 4):  # a whole record, or the last fragment of one
            records.append(Record.FromString(pending))
            pending = b""
    return records


def _key(item):
    return item.key or "/".join(item.nested_key)


def _wandb_runs(folder):
    """What the offline runs in `folder` hold, by run id, across the legs (one folder each)."""
    runs = {}
    for log in sorted(folder.glob("offline-run-*/run-*.wandb")):
        for record in _records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = runs.setdefault(record.run.run_id, {"legs": 0, "history": {}, "summary": {}})
                run["legs"] += 1
                run["name"], run["group"] = record.run.display_name, record.run.run_group
                run["project"] = record.run.project
                items = record.run.config.update
                run["config"] = {_key(i): json.loads(i.value_json) for i in items}
                del run["config"]["_wandb"]
            elif kind == "history":
                for item in record.history.item:
                    point = (record.history.step.num, json.loads(item.value_json))
                    run["history"].setdefault(_key(item), []).append(point)
            elif kind == "summary":
                run["summary"].update({_key(i): i.value_json for i in record.summary.update})
            elif kind == "exit":
                run["exit"] = record.exit.exit_code
    return runs


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    """W&B's own folders in the test's; no mode, project or key from the environment (nor
    `WANDB_SILENT`: the log keeps W&B quiet itself), and a server address where nothing
    listens: a run that went online would fail, not upload."""
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


def test_wandb_logs_a_run_per_trial_offline_that_a_resumed_sweep_continues(
    config, tiny_data, tmp_path, monkeypatch, wandb_home, capfd
):
    out = tmp_path / "sweep"
    config = config.replace(wandb=True, out_dir=str(out))
    _interrupted_at(20, config, tiny_data, monkeypatch)
    stopped = _wandb_runs(out / "wandb")
    assert sorted(r["exit"] for r in stopped.values()) == [0, 0, 1, 1]  # 2 diverged, 2 stopped
    sweepjax.run(config, quiet=True, dataset=tiny_data)  # resumes from step 20

    runs, result = _wandb_runs(out / "wandb"), sweepjax.read_result(out)
    assert runs.keys() == stopped.keys()  # the same runs, continued
    by_name = {run["name"]: run for run in runs.values()}
    assert sorted(by_name) == MEMBERS
    for row in result.rows:
        run = by_name[MEMBERS[row["member"]]]
        assert (run["project"], run["group"], run["exit"]) == ("sweepjax", "sweep", 0)
        assert run["config"] == {k: row[k] for k in HPARAMS}
        history = {name: _series(run["history"].get(name, [])) for name in CURVES}
        assert history == _logged(result.curves, row["member"])  # each step once
        assert json.loads(run["summary"]["status"]) == row["status"]
        assert run["legs"] == (2 if row["status"] == "ok" else 1)
    terminal = capfd.readouterr()
    assert "wandb" not in terminal.out and "wandb:" not in terminal.err  # W&B keeps quiet


def test_tracker_keys_are_validated(config, monkeypatch):
    config = config.replace(out_dir="runs/x")
    for key, allowed in (("mlflow", "a tracking URI"), ("wandb", "a name of 1 to 128")):
        with pytest.raises(ValueError, match=f"^{key}: 3 has type int; allowed: bool or str"):
            sweepjax.validate(config.replace(**{key: 3}))
        with pytest.raises(ValueError, match=f"^{key}: ' ' .*allowed: True .*{allowed}"):
            sweepjax.validate(config.replace(**{key: " "}))
        with pytest.raises(ValueError, match=f"^{key}: True needs an out_dir .* set {key}=False"):
            sweepjax.validate(config.replace(**{key: True}, out_dir=None))
    with pytest.raises(ValueError, match=r"^wandb: 'team/x' is not a W&B project name"):
        sweepjax.validate(config.replace(wandb="team/x"))
    sweepjax.validate(config.replace(mlflow=False, wandb=False, out_dir=None))

    found, missing = importlib.util.find_spec, {"mlflow", "wandb", "sqlalchemy"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else found(name, *a)
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value, modules in (
        ("mlflow", True, "mlflow, sqlalchemy"),  # the local store needs SQLAlchemy too
        ("mlflow", "http://host:5000", "mlflow"),
        ("wandb", "demo", "wandb"),
    ):
        message = (
            f"{key}: {value!r} needs {modules} (not installed); install with "
            f"`pip install 'sweepjax[{key}]'`, or set {key}=False."
        )
        with pytest.raises(ValueError) as refused:
            sweepjax.validate(config.replace(**{key: value}))
        assert str(refused.value) == message


def test_tracker_keys_from_the_command_line(config):
    changed = apply_overrides(config, ["mlflow=true", "wandb=my-project", "tensorboard=false"])
    assert (changed.mlflow, changed.wandb, changed.tensorboard) == (True, "my-project", False)
    changed = apply_overrides(config, ["mlflow=sqlite:///runs/mlflow.db", "wandb=false"])
    assert (changed.mlflow, changed.wandb) == ("sqlite:///runs/mlflow.db", False)
    assert sweepjax.Config.from_json(changed.to_json()) == changed
