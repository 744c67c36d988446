"""SIGINT and SIGTERM at any moment: a clean stop before training, a save after a chunk, a
second signal that stops at once; never a traceback, a crash or a silent completion.

The subprocess tests run the real `sweepjax` command (`command.py`). A signal can be handled
only once the interpreter runs the command's first lines; a moment earlier than that on this
machine (about 0.1 to 0.3 s) moves to it, which `test_handlers_are_in_place_before_jax` bounds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from command import (
    LONG_EXPERIMENT,
    clean_stderr,
    environment,
    finish,
    handles_signals,
    send_and_wait_delivered,
    start,
    tiny_experiment,
    wait_until,
)

import sweepjax
import sweepjax.sweep.loop as training
from sweepjax.sweep import checkpoint
from sweepjax.sweep.lock import holder
from sweepjax.sweep.signals import StopOnSignal

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads a process's signal mask from /proc"
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("signals") / "long.py"
    path.write_text(LONG_EXPERIMENT)
    return str(path)


def _run(experiment: str, out: Path):
    return start("run", experiment, "--out", str(out), "--quiet")


def test_handlers_are_in_place_before_jax(experiment, tmp_path):
    began = time.monotonic()
    process = _run(experiment, tmp_path / "out")
    wait_until(lambda: handles_signals(process), process, timeout=30)
    ready = time.monotonic() - began
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    assert code == sweepjax.EXIT_INTERRUPTED, stderr
    # Importing JAX alone takes seconds on these machines; the handlers come long before it.
    assert ready < 2.0, f"signal handlers installed {ready:.2f} s after start"


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", [0.1, 0.5, 1.2, 2.5])
def test_a_signal_before_training_stops_cleanly_and_writes_nothing(
    experiment, tmp_path, name, moment
):
    out = tmp_path / "out"
    began = time.monotonic()
    process = _run(experiment, out)
    wait_until(lambda: handles_signals(process), process, timeout=30)
    time.sleep(max(0.0, moment - (time.monotonic() - began)))
    process.send_signal(getattr(signal, name))
    code, stderr = finish(process)
    clean_stderr(stderr)
    assert code == sweepjax.EXIT_INTERRUPTED, stderr
    assert f"sweepjax: {name} received" in stderr
    if checkpoint.saved_steps(out):  # this machine had reached the first chunk by then
        assert f"sweepjax resume {out}" in stderr
    else:
        assert f"stopped by {name} before training; nothing was trained or written" in stderr
        assert not out.exists()


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_after_a_chunk_saves_it_and_exits_resumable(experiment, tmp_path, name):
    out = tmp_path / "out"
    process = _run(experiment, out)
    wait_until(lambda: (holder(out) or {}).get("step"), process)
    process.send_signal(getattr(signal, name))
    code, stderr = finish(process)
    clean_stderr(stderr)
    assert code == sweepjax.EXIT_INTERRUPTED, stderr
    stopped_at = max(checkpoint.saved_steps(out))
    assert f"interrupted by {name} at step {stopped_at} of 1000000" in stderr
    partial = sweepjax.read_result(out)
    assert partial.summary["interrupted"] and partial.summary["steps_done"] == stopped_at


def test_a_second_signal_stops_at_once_and_leaves_the_checkpoints_usable(experiment, tmp_path):
    out = tmp_path / "out"
    process = _run(experiment, out)
    wait_until(lambda: (holder(out) or {}).get("step", 0) >= 20, process)
    send_and_wait_delivered(process, signal.SIGINT)
    process.send_signal(signal.SIGINT)
    code, stderr = finish(process, timeout=30)
    clean_stderr(stderr)
    assert code == 128 + signal.SIGINT == 130, stderr
    assert "a second signal (SIGINT); stopped at once" in stderr
    assert holder(out) is None  # the lock went with the process
    last = max(checkpoint.saved_steps(out))
    result = sweepjax.resume(out, overrides=[f"steps={last + 10}"], quiet=True)
    assert result.summary["steps_done"] == last + 10 and not result.summary["interrupted"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_in_the_last_chunk_finishes_the_sweep_and_says_so(
    tiny_config, tiny_data, tmp_path, monkeypatch, capsys
):
    config = tiny_config.replace(steps=20, eval_every=10, out_dir=str(tmp_path / "out"))
    make_train_chunk = training.make_train_chunk

    def signalled_in_the_last_chunk(program, length, *args):
        chunk = make_train_chunk(program, length, *args)

        def run(pop, *args):
            pop, losses = chunk(pop, *args)
            if int(pop.step) == config.steps:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the watcher thread announces it meanwhile
            return pop, losses

        return run

    monkeypatch.setattr(training, "make_train_chunk", signalled_in_the_last_chunk)
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    stderr = capsys.readouterr().err
    assert "SIGTERM arrived during the last chunk; the sweep finished anyway" in stderr
    assert result.summary["steps_done"] == config.steps and not result.summary["interrupted"]


def test_a_signal_before_training_in_process_raises_interrupted(tiny_config, tiny_data, tmp_path):
    out = tmp_path / "out"
    with StopOnSignal() as stop, pytest.raises(sweepjax.Interrupted, match="before training"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.received == "SIGINT"
        sweepjax.run(tiny_config.replace(out_dir=str(out)), quiet=True, dataset=tiny_data)
    assert not out.exists()


# Runs the command as the `sweepjax` script does, pausing at three moments once the sweep has
# finished: inside the command (results written, its handlers still in place), after the
# command returned, and at the process's exit after the command's exit handlers (where no Python
# code runs any more in a real exit, only the libraries' teardown). Each pause lasts until the
# test has signalled it.
LATE_DRIVER = """
import atexit, os, sys, time
from pathlib import Path

marker = Path(os.environ["MARKER"])


def pause(moment):
    marker.write_text(moment)
    while not marker.with_name(f"go {moment}").exists():
        time.sleep(0.01)


atexit.register(pause, "exiting")  # registered before the command's own: runs after them
from sweepjax import cli

train = cli._train
cli._train = lambda args: (train(args), pause("finished"))
code = cli.main()
pause("returned")
sys.exit(code)
"""


@pytest.mark.parametrize(
    "names", [("SIGINT", "SIGTERM", "SIGINT"), ("SIGTERM", "SIGINT", "SIGTERM")]
)
@pytest.mark.subprocess
def test_signals_after_the_sweep_finished_are_answered_and_the_exit_code_is_0(tmp_path, names):
    (tmp_path / "driver.py").write_text(LATE_DRIVER)
    (tmp_path / "tiny.py").write_text(tiny_experiment(10))
    out, marker = tmp_path / "out", tmp_path / "marker"
    env = environment(MARKER=str(marker))
    env.pop("XLA_FLAGS", None)  # the command's own devices, as `command.start` gives it
    argv = ["run", str(tmp_path / "tiny.py"), "--out", str(out), "--quiet"]
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for moment, name in zip(("finished", "returned", "exiting"), names, strict=True):
        wait_until(lambda m=moment: marker.exists() and marker.read_text() == m, process)
        send_and_wait_delivered(process, getattr(signal, name))
        (tmp_path / f"go {moment}").touch()
    code, stderr = finish(process)
    clean_stderr(stderr)
    assert code == 0, stderr
    answer = "sweepjax: {} arrived after the sweep finished; its results are complete."
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [answer.format(name) for name in names[:2]]  # the last one is ignored
    assert not sweepjax.read_result(out).summary["interrupted"]
