"""One sweep per folder: the lock refuses a second process, writes nothing, and is never stale;
a folder's results are never replaced by another sweep's without --overwrite."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from command import LONG_EXPERIMENT, clean_stderr, finish, start, wait_until

import sweepjax
from sweepjax import cli
from sweepjax.sweep import checkpoint
from sweepjax.sweep.lock import LOCK_FILE, FolderBusy, FolderLock, holder


def _files(folder: Path) -> dict[str, str]:
    """Every file's digest but the lock's (each process that takes the folder signs it)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path):
    with FolderLock(tmp_path) as lock:
        lock.update(step=40, steps=100)
        with pytest.raises(FolderBusy) as refused:
            FolderLock(tmp_path).__enter__()
        assert holder(tmp_path)["step"] == 40
    message = str(refused.value)
    assert f"PID {os.getpid()} on host {socket.gethostname()}" in message
    assert "at step 40" in message and "Nothing was written" in message
    assert holder(tmp_path) is None
    with FolderLock(tmp_path):  # free again
        pass


def test_a_folder_the_lock_created_goes_when_nothing_was_written(tmp_path):
    with FolderLock(tmp_path / "new"):
        assert (tmp_path / "new" / LOCK_FILE).exists()
    assert not (tmp_path / "new").exists()
    with FolderLock(tmp_path / "kept"):
        (tmp_path / "kept" / "results.csv").write_text("member\n")
    assert (tmp_path / "kept" / "results.csv").exists()


@pytest.mark.subprocess
def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time; from sweepjax.sweep.lock import FolderLock\n"
        "with FolderLock(sys.argv[1]) as lock:\n"
        "    lock.update(step=7); time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    info = wait_until(lambda: (holder(tmp_path) or {}).get("step") and holder(tmp_path), process)
    assert info["pid"] == process.pid
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert holder(tmp_path) is None
    with FolderLock(tmp_path):
        pass


def test_run_overwrite_and_resume_into_a_held_folder_change_nothing(
    tiny_config, tiny_data, tmp_path
):
    config = tiny_config.replace(steps=20, out_dir=str(tmp_path))
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    before = _files(tmp_path)
    with FolderLock(tmp_path):
        with pytest.raises(FolderBusy, match=f"PID {os.getpid()}"):
            sweepjax.run(config.replace(seed=1), quiet=True, dataset=tiny_data)
        with pytest.raises(FolderBusy):
            sweepjax.run(config.replace(seed=1), quiet=True, dataset=tiny_data, overwrite=True)
        with pytest.raises(FolderBusy):
            sweepjax.resume(tmp_path, overrides=["steps=30"], quiet=True, dataset=tiny_data)
    assert _files(tmp_path) == before


def test_results_without_checkpoints_are_not_replaced_by_another_sweep(
    tiny_config, tiny_data, tmp_path
):
    config = tiny_config.replace(steps=20, out_dir=str(tmp_path))
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    sweepjax.write_report(tmp_path)
    shutil.rmtree(tmp_path / "checkpoints")
    before = _files(tmp_path)
    other = config.replace(seed=1)
    with pytest.raises(sweepjax.CheckpointMismatch, match=r"results of a different sweep: seed"):
        sweepjax.run(other, quiet=True, dataset=tiny_data)
    assert _files(tmp_path) == before

    sweepjax.run(other, quiet=True, dataset=tiny_data, overwrite=True)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report.md").exists()
    assert json.loads((tmp_path / "sweep.json").read_text())["config"]["seed"] == 1


@pytest.mark.subprocess
def test_two_commands_into_one_folder_the_second_refused_the_first_intact(tmp_path, capsys):
    experiment = tmp_path / "long.py"
    experiment.write_text(LONG_EXPERIMENT)
    out = tmp_path / "out"
    first = start("run", str(experiment), "--out", str(out), "--quiet")
    wait_until(lambda: (holder(out) or {}).get("step"), first)

    second = start("run", str(experiment), "--set", "seed=1", "--out", str(out), "--quiet")
    code, stderr = finish(second)
    clean_stderr(stderr)
    assert code == 2 and f"in use by another sweepjax process: PID {first.pid}" in stderr
    assert stderr.count("\n") == 1
    overwrite = ["run", str(experiment), "--out", str(out), "--overwrite", "--quiet"]
    for argv in (overwrite, ["resume", str(out), "--quiet"]):
        capsys.readouterr()
        assert cli.main(argv) == 2
        assert f"is in use by another sweepjax process: PID {first.pid}" in capsys.readouterr().err
    assert cli.main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert re.search(rf"running at step \d+ of 1000000 \(PID {first.pid} on .*, since ", shown)

    first.send_signal(signal.SIGTERM)
    code, stderr = finish(first)
    clean_stderr(stderr)
    assert code == sweepjax.EXIT_INTERRUPTED, stderr
    result = sweepjax.read_result(out)
    assert result.summary["config"]["seed"] == 0 and len(result.rows) == 4
    assert result.summary["steps_done"] == max(checkpoint.saved_steps(out))
