"""The package as users install it: a built wheel, in a fresh environment, run from an empty folder.

The wheel is built from this checkout and installed, without its dependencies, into a new
virtual environment that borrows this environment's installed libraries (a `.pth` line; their
own `.pth` files, this checkout's editable install among them, are not read), so the test needs
no network and imports sweepjax only from the wheel. Then the `sweepjax` command runs the
built-in default experiment by name, from a folder with no `experiments/` of its own.
"""

from __future__ import annotations

import csv
import json
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh environment with the wheel installed; its `bin` folder."""
    root = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", root / "dist", ROOT)  # fmt: skip
    (wheel,) = (root / "dist").glob("sweepjax-*.whl")
    env = root / "env"
    venv.create(env, with_pip=False)
    packages = next(env.glob("lib/python*/site-packages"))
    (packages / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    bin_dir = env / "bin"
    _run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--no-deps",
         "--no-index", "-q", wheel)  # fmt: skip
    # the console script pip wrote for the fresh environment
    assert (bin_dir / "sweepjax").is_file()
    return bin_dir


def test_the_wheel_ships_the_built_in_experiments_and_every_subpackage(installed, tmp_path):
    subpackages = sorted(
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "sweepjax").rglob("__init__.py")
        if "__pycache__" not in p.parts
    )
    code = (
        f"import {', '.join(subpackages)}; import sweepjax.experiment as e; "
        "print(sweepjax.__file__); print(sorted(e.available_experiments()))"
    )
    out = _run(installed / "python", "-c", code, cwd=tmp_path)
    location, names = out.strip().splitlines()
    assert str(installed.parent) in location  # the wheel's copy, not this checkout
    assert {"default", "schedules", "learning_rate", "regression"} <= set(eval(names))


def test_the_installed_command_runs_the_default_sweep_from_an_empty_folder(installed, tmp_path):
    _run(installed / "sweepjax", "run", "--set", "population=4", "--set", "steps=20",
         "--set", "eval_every=10", "--quiet", cwd=tmp_path)  # fmt: skip
    out = tmp_path / "runs" / "default"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert json.loads((out / "sweep.json").read_text())["steps_done"] == 20


def test_a_users_own_experiments_folder_comes_first(installed, tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "default.py").write_text(
        '"""My default: sweepjax run"""\nimport sweepjax\n\n\n'
        "def get_config():\n"
        "    return sweepjax.Config(population=2, steps=4, eval_every=2, out_dir='mine')\n"
    )
    _run(installed / "sweepjax", "run", "--quiet", cwd=tmp_path)
    assert len(list(csv.DictReader((tmp_path / "mine" / "results.csv").open()))) == 2
