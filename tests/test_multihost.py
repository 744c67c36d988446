"""Several hosts: two processes on localhost (two CPU devices each) train one sweep, checkpoint it
into one directory and resume it, with the results of the same sweep in one process."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from command import environment, tiny_experiment
from conftest import xla_flags

import sweepjax
from sweepjax import cli
from sweepjax.errors import EXIT_INTERRUPTED
from sweepjax.experiment import load_experiment
from sweepjax.sweep import checkpoint
from sweepjax.sweep.read_results import read_rows

TIMEOUT = 150  # seconds for a pair of processes; a hung coordinator fails the test instead

EXPERIMENT = tiny_experiment(20)

# Run to step 10 with the launch flags of the CLI, then resume to step 20 with the Python API
# (from the checkpoint, in the same processes: no second compilation), printing the `Result`
# every process returns. Process 1 must write no result file.
DRIVER = """
import json, sys
import sweepjax.runner.run
from sweepjax import cli

port, pid, experiment, out = sys.argv[1:]
if pid == "1":
    def refuse(*args):
        raise AssertionError("process 1 wrote the result files")
    sweepjax.runner.run.write_result = refuse
hosts = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", pid]
code = cli.main(["run", experiment, "--out", out, "--quiet", "--set", "steps=10", *hosts])
assert code == 0, code
first = sweepjax.sweep.checkpoint.saved_steps(out)
result = sweepjax.resume(out, overrides=["steps=20"], quiet=True)
print(json.dumps({"first": first, "rows": result.rows, "devices": result.summary["population_devices"]}))
"""


# Process 1 alone receives SIGTERM during the second chunk of a sweep far too long to finish:
# both processes must stop after that chunk, with one checkpoint at step 20.
SIGNAL_DRIVER = """
import json, os, signal, sys
import sweepjax.runner.run
from sweepjax import cli
from sweepjax.engine import distributed

port, pid, experiment, out = sys.argv[1:]
if pid == "1":
    to_host, chunks = distributed.to_host, []
    def signalled_to_host(tree):
        chunks.append(tree)
        if len(chunks) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return to_host(tree)
    distributed.to_host = signalled_to_host
hosts = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", pid]
code = cli.main(["run", experiment, "--out", out, "--quiet", "--set", "steps=100000", *hosts])
print(json.dumps({"code": code, "saved": sweepjax.sweep.checkpoint.saved_steps(out)}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(folder: Path, driver: str = "driver.py", out: str = "multi") -> list[subprocess.Popen]:
    """Start `folder/driver` as processes 0 and 1 of a sweep in `folder/out`."""
    env = environment(
        JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(2), JAX_DEFAULT_MATMUL_PRECISION="highest"
    )
    port = str(_free_port())
    return [
        subprocess.Popen(
            [sys.executable, str(folder / driver), port, pid]
            + [str(folder / "experiment.py"), str(folder / out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in ("0", "1")
    ]


def _finish(processes: list[subprocess.Popen]) -> list[dict]:
    """Wait for both processes (at most `TIMEOUT` seconds); what each printed last."""
    outputs = []
    try:
        for pid, process in enumerate(processes):
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, f"process {pid}: {stderr[-3000:]}"
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:
            process.kill()
    return outputs


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Two processes: a run to step 10, resumed to 20; one process (meanwhile): straight to 20."""
    folder = tmp_path_factory.mktemp("multihost")
    (folder / "experiment.py").write_text(EXPERIMENT)
    (folder / "driver.py").write_text(DRIVER)
    processes = _start(folder)
    config = load_experiment(str(folder / "experiment.py"))
    sweepjax.run(config.replace(out_dir=str(folder / "single")), quiet=True)
    return folder, _finish(processes)


def _close(a, b) -> None:
    # Four devices against one: XLA may order a float32 reduction differently.
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_two_processes_checkpoint_into_one_directory(sweeps):
    folder, returned = sweeps
    assert [output["first"] for output in returned] == [[10], [10]]
    assert checkpoint.saved_steps(folder / "multi") == [10, 20]
    for step in (10, 20):  # each process wrote its own members' shards
        shards = (folder / f"multi/checkpoints/{step}/state").glob("ocdbt.process_*")
        assert sorted(p.name for p in shards) == ["ocdbt.process_0", "ocdbt.process_1"]


def test_results_match_one_process(sweeps):
    folder, returned = sweeps
    multi, single = (
        read_rows(folder / "multi/results.csv"),
        read_rows(folder / "single/results.csv"),
    )
    assert [r.keys() for r in multi] == [r.keys() for r in single]
    for a, b in zip(multi, single, strict=True):
        assert a["status"] == b["status"] == "ok"
        _close(
            [v for v in a.values() if isinstance(v, float)],
            [v for v in b.values() if isinstance(v, float)],
        )
    curves_a, curves_b = np.load(folder / "multi/curves.npz"), np.load(folder / "single/curves.npz")
    for key in curves_b.files:
        _close(curves_a[key], curves_b[key])
    summary = json.loads((folder / "multi/sweep.json").read_text())
    assert summary["process_count"] == 2 and summary["population_devices"] == 4
    # Every process returns the whole merged result, not its share.
    for output in returned:
        assert output["devices"] == 4
        assert [r["member"] for r in output["rows"]] == [0, 1, 2, 3]
        _close(
            [r["final_val_accuracy"] for r in output["rows"]],
            [r["final_val_accuracy"] for r in single],
        )


def test_final_parameters_match_one_process(sweeps):
    """The two processes' checkpoint reads back in one process (checksum included)."""
    folder = sweeps[0]
    states = []
    for name in ("multi", "single"):
        with checkpoint._manager(folder / name, read_only=True) as manager:
            snapshot, bad = checkpoint.restore_latest(manager)
        assert not bad and snapshot.step == 20
        states.append(jax.device_get(snapshot.state["population"]))
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
        _close(a, b)


def test_a_two_process_sweep_resumes_in_one_process(sweeps, tmp_path):
    """Resumed on another number of processes (and devices), the sweep goes on as one process's."""
    folder = sweeps[0]
    results = []
    for name in ("multi", "single"):
        shutil.copytree(folder / name, tmp_path / name)
        results.append(sweepjax.resume(tmp_path / name, overrides=["steps=30"], quiet=True))
    multi, single = results
    assert multi.summary["process_count"] == 1
    assert [r["member"] for r in multi.rows] == [0, 1, 2, 3]
    _close(
        [r["final_val_accuracy"] for r in multi.rows],
        [r["final_val_accuracy"] for r in single.rows],
    )
    _close(multi.curves["val_loss"], single.curves["val_loss"])


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_signal_to_one_process_stops_every_process_after_the_chunk(tmp_path):
    (tmp_path / "experiment.py").write_text(EXPERIMENT)
    (tmp_path / "signal_driver.py").write_text(SIGNAL_DRIVER)
    returned = _finish(_start(tmp_path, "signal_driver.py", "stopped"))
    assert returned == [{"code": EXIT_INTERRUPTED, "saved": [10, 20]}] * 2
    summary = json.loads((tmp_path / "stopped/sweep.json").read_text())
    assert summary["interrupted"] and summary["steps_done"] == 20


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--coordinator", "node0", "--num-processes", "2", "--process-id", "0"],
            "--coordinator: 'node0' is not HOST:PORT",
        ),
        (["--coordinator", "node0:1", "--num-processes", "2"], "--process-id: missing"),
        (
            ["--coordinator", "node0:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id: 2; allowed: 0 to 1",
        ),
        (["--distributed", "--process-id", "0"], "--process-id: --distributed takes every"),
    ],
)
def test_launch_flags_are_validated(flags, message, capsys, tmp_path):
    code = cli.main(["resume", str(tmp_path), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
