"""Run many short pytest sessions fast: import the heavy libraries once, then fork a child per
session, which imports only the project (from its own folder) and its tests.

A fresh `python -m pytest` spends most of a short run importing JAX, Flax, Optax, Optuna and
SciPy; a forked child inherits them already imported. No JAX backend exists in the parent
(importing JAX starts none), so each child starts its own, with the devices its `conftest.py`
asks for. Children run in their own process group, so a timeout kills the commands a test
started too.

    forks = Forks(jobs=2)
    forks.start("a", folder, ["tests/test_x.py"], timeout=120)
    key, outcome = forks.next_done()   # ("a", {"returncode": 0, "seconds": 4.1, "last_line": ...})
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PRELOADED = ["numpy", "scipy.stats", "pandas", "jax", "flax.linen", "optax", "orbax.checkpoint",
             "optuna", "pytest"]  # fmt: skip
PYTEST_ARGS = ["-x", "-q", "-n", "0", "-p", "no:cacheprovider"]


def preload() -> None:
    """Import the libraries every child needs (those installed), once, in this process."""
    for name in PRELOADED:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


class Forks:
    """Up to `jobs` forked pytest sessions at once; call from the main thread only."""

    def __init__(self, jobs: int):
        preload()
        self.jobs = jobs
        self.running: dict[int, tuple[Any, float, float, str]] = {}  # pid: key, start, limit, log
        self.finished: list[tuple[Any, dict]] = []  # ended while `start` waited for a free job

    def start(self, key: Any, folder: str | Path, tests: Sequence[str], timeout: float) -> None:
        while len(self.running) >= self.jobs:
            self.finished.append(self._reap_one())
        descriptor, log = tempfile.mkstemp(prefix="pytest-fork-", suffix=".log")
        os.close(descriptor)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(str(folder), list(tests), log)
        self.running[pid] = (key, time.perf_counter(), timeout, log)

    def next_done(self) -> tuple[Any, dict]:
        """The next session to end: its key and `{returncode (None: timed out), seconds,
        last_line}`."""
        if self.finished:
            return self.finished.pop(0)
        return self._reap_one()

    def _reap_one(self) -> tuple[Any, dict]:
        while True:
            for pid, (key, began, limit, log) in list(self.running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                late = not done and time.perf_counter() - began > limit
                if late:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                if done or late:
                    del self.running[pid]
                    code = None if late else os.waitstatus_to_exitcode(status)
                    return key, _outcome(code, time.perf_counter() - began, log)
            time.sleep(0.05)


def _child(folder: str, tests: list[str], log: str) -> None:
    code = 3
    try:
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_TRUNC)
        os.dup2(fd, 1), os.dup2(fd, 2)
        os.chdir(folder)
        sys.path.insert(0, folder)  # the copy's `sweepjax`, first, here and in any subprocess
        os.environ.update(PYTHONPATH=folder, PYTHONDONTWRITEBYTECODE="1")
        import pytest

        code = int(pytest.main([*PYTEST_ARGS, *tests]))
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)


def _outcome(code: int | None, seconds: float, log: str) -> dict:
    lines = Path(log).read_text(errors="replace").strip().splitlines()
    os.unlink(log)
    return {
        "returncode": code,
        "seconds": round(seconds, 1),
        "last_line": lines[-1] if lines else "",
    }
