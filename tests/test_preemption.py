"""Invariant 6 (docs/architecture.md) across processes: SIGKILL mid-training and mid-save, SIGTERM.

Each test runs the real `sweepjax` command in a subprocess through a small driver that can
pause training or a checkpoint commit at a chosen step (writing a marker file when it does), so
the kill lands exactly where the test wants it. Resuming happens in this process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import pytest
from command import environment, tiny_experiment
from conftest import xla_flags
from test_checkpoint import assert_same_results

import sweepjax
from sweepjax.sweep import checkpoint

pytestmark = pytest.mark.subprocess

STEPS = 60

EXPERIMENT = tiny_experiment(STEPS)

DRIVER = '''
"""Runs the sweepjax CLI; PAUSE_TRAIN_AT / PAUSE_SAVE_AT / SLOW_CHUNK hold it at a step."""
import asyncio
import os
import sys
import time
from pathlib import Path

from orbax.checkpoint._src.path import atomicity

import sweepjax.sweep.loop as training
from sweepjax.cli import main

marker = Path(os.environ["MARKER"])
pause_train = int(os.environ.get("PAUSE_TRAIN_AT", -1))
pause_save = os.environ.get("PAUSE_SAVE_AT", "")
slow = float(os.environ.get("SLOW_CHUNK", 0))
make_train_chunk = training.make_train_chunk


def paused_make_train_chunk(program, length, *args):
    chunk = make_train_chunk(program, length, *args)

    def run(pop, *args):
        pop, losses = chunk(pop, *args)
        step = int(pop.step)
        marker.write_text(f"trained {step}")
        if step == pause_train:
            time.sleep(600)
        time.sleep(slow)
        return pop, losses

    return run


finalize = atomicity.AtomicRenameTemporaryPath.finalize


async def paused_finalize(self):
    if self._final_path.name == pause_save:
        marker.write_text(f"saving {pause_save}")
        await asyncio.sleep(600)
    return await finalize(self)


training.make_train_chunk = paused_make_train_chunk
atomicity.AtomicRenameTemporaryPath.finalize = paused_finalize
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The experiment, the driver, and the uninterrupted run's results to compare with."""
    folder = tmp_path_factory.mktemp("preemption")
    (folder / "experiment.py").write_text(EXPERIMENT)
    (folder / "driver.py").write_text(textwrap.dedent(DRIVER))
    from sweepjax.experiment import load_experiment

    config = load_experiment(str(folder / "experiment.py"))
    sweepjax.run(config.replace(out_dir=str(folder / "reference")), quiet=True)
    return folder


def _start(files: Path, out: Path, args: list[str], **env: str) -> subprocess.Popen:
    env = environment(
        # the precision conftest sets in this process (it matters on GPUs, whose default is TF32)
        JAX_DEFAULT_MATMUL_PRECISION="highest",
        # this process's CPU devices (conftest's), not the command's one per core: one device
        # and several compile to programs that round differently (docs/performance.md), which
        # the bitwise comparison with this process's reference run would see
        XLA_FLAGS=xla_flags(len(jax.devices("cpu"))),
        MARKER=str(out.parent / f"{out.name}.marker"),
        **env,
    )
    command = [sys.executable, str(files / "driver.py"), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(process: subprocess.Popen, marker: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().startswith(text):
            return
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}: {process.stderr.read().decode()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {text!r} in {marker} after {timeout} s")


def test_sigkill_mid_training_and_mid_save_then_resume_is_exact(files, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "out.marker"
    run = ["run", str(files / "experiment.py"), "--out", str(out), "--quiet"]

    process = _start(files, out, run, PAUSE_TRAIN_AT="40")
    _wait_for(process, marker, "trained 40")
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL
    steps = checkpoint.saved_steps(out)
    assert steps and max(steps) < 40

    # Resume, and kill while the checkpoint of step 50 is being written (not yet committed).
    marker.unlink()
    process = _start(files, out, ["resume", str(out), "--quiet"], PAUSE_SAVE_AT="50")
    _wait_for(process, marker, "saving 50")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert 50 not in checkpoint.saved_steps(out)
    assert any(".orbax-checkpoint-tmp" in p.name for p in (out / "checkpoints").iterdir())

    result = sweepjax.resume(out, quiet=True)
    assert result.summary["steps_done"] == STEPS
    assert not any(".orbax-checkpoint-tmp" in p.name for p in (out / "checkpoints").iterdir())
    assert_same_results(files / "reference", out)


def test_sigterm_saves_within_one_chunk_and_exits_resumable(files, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "out.marker"
    run = ["run", str(files / "experiment.py"), "--out", str(out), "--quiet"]
    process = _start(files, out, run, SLOW_CHUNK="0.3")
    _wait_for(process, marker, "trained 20")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    stderr = stderr.decode()
    assert process.returncode == sweepjax.EXIT_INTERRUPTED == 75, stderr
    assert f"sweepjax resume {out}" in stderr
    stopped_at = max(checkpoint.saved_steps(out))
    assert 20 <= stopped_at <= 30 < STEPS  # the chunk in progress, no further
    partial = sweepjax.read_result(out)
    assert partial.summary["interrupted"] and partial.summary["steps_done"] == stopped_at

    result = sweepjax.resume(out, quiet=True)
    assert not result.summary["interrupted"]
    assert_same_results(files / "reference", out)


ASHA = ["--set", "scheduler=asha", "--set", "scheduler.min_steps=10", "--set", "trials=12"]


def test_sigkill_mid_asha_then_resume_makes_the_same_decisions(files, tmp_path):
    """Trials stopped at rungs and refilled before the kill; the resumed sweep stops, refills
    and ranks exactly as the uninterrupted one."""
    from sweepjax.experiment import load_experiment
    from sweepjax.sweep.config import apply_overrides

    config = apply_overrides(load_experiment(str(files / "experiment.py")), ASHA[1::2])
    reference = tmp_path / "reference"
    sweepjax.run(config.replace(out_dir=str(reference)), quiet=True)
    out, marker = tmp_path / "out", tmp_path / "out.marker"
    run = ["run", str(files / "experiment.py"), "--out", str(out), "--quiet", *ASHA]
    process = _start(files, out, run, PAUSE_TRAIN_AT="40")
    _wait_for(process, marker, "trained 40")
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL
    assert 0 < max(checkpoint.saved_steps(out)) < 40
    sweepjax.resume(out, quiet=True)
    stopped = [r for r in sweepjax.read_result(out).rows if r["status"] == "stopped"]
    assert stopped  # the scheduler acted
    assert_same_results(reference, out)
