"""The real `sweepjax` command in a subprocess, as a user runs it, for the process-level tests.

The command makes one JAX device per CPU core, as it does for users (two on the CI machine).
`LONG_EXPERIMENT` trains a tiny MNIST-1D population for a million steps: it is always still
training when a test stops it, and its folder's lock says which chunk it has reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tiny_experiment(steps: int) -> str:
    """The source of an experiment file: a tiny MNIST-1D sweep of `steps` steps, 4 members."""
    return f'''
"""A tiny MNIST-1D sweep for the process-level tests: sweepjax run THIS_FILE --out DIR"""
import sweepjax


def get_config():
    return sweepjax.Config(
        model={{"name": "mlp", "hidden": [16]}},
        optimizer="sgd",
        space={{"learning_rate": sweepjax.LogUniform(1e-2, 0.5), "momentum": 0.9}},
        population=4,
        steps={steps},
        batch_size=32,
        eval_every=10,
        val_size=200,
    )
'''


LONG_EXPERIMENT = tiny_experiment(1_000_000)  # never finishes on its own


def command() -> list[str]:
    """The installed `sweepjax` script next to this interpreter, else `python -m sweepjax.cli`."""
    script = Path(sys.executable).with_name("sweepjax")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sweepjax.cli"]


def environment(**changes: str) -> dict[str, str]:
    """This process's environment with this checkout first on PYTHONPATH, then `changes`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **changes}


def start(*args: str) -> subprocess.Popen:
    """`sweepjax ARGS...` started in the background, its output piped."""
    env = environment()
    env.pop("XLA_FLAGS", None)  # the command's own devices: one per core
    return subprocess.Popen(
        [*command(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Wait for `process` (killing it after `timeout` s: a test failure); its code and stderr."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"still running {timeout} s later; stderr:\n{stderr}")
    return process.returncode, stderr


def wait_until(
    ready: Callable[[], object], process: subprocess.Popen, timeout: float = 180
) -> object:
    """Poll `ready()` until it gives something true; fail if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}: {process.stderr.read()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"not ready after {timeout} s")


def _signal_mask(process: subprocess.Popen, field: str) -> int:
    """A signal mask of /proc/PID/status (Linux), bit N-1 for signal N; 0 once it has ended."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return 0
    line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1], 16)


def handles_signals(process: subprocess.Popen) -> bool:
    """Whether `process` has installed its own SIGTERM handler yet."""
    return bool(_signal_mask(process, "SigCgt") >> (signal.SIGTERM - 1) & 1)


def send_and_wait_delivered(process: subprocess.Popen, signum: int) -> None:
    """Send `signum` and wait until the kernel has delivered it (two pending ones would merge)."""
    process.send_signal(signum)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending = _signal_mask(process, "ShdPnd") | _signal_mask(process, "SigPnd")
        if not pending >> (signum - 1) & 1:
            return
        time.sleep(0.001)
    pytest.fail(f"signal {signum} still pending after 10 s")


def clean_stderr(stderr: str) -> None:
    """What a user sees is sweepjax's own lines: no traceback, no library noise, no crash."""
    for bad in ("Traceback", "Exception ignored", "Segmentation fault", "Fatal Python error"):
        assert bad not in stderr, stderr
