"""Failures a user meets, each one clear error of the right kind: result files that cannot be
written, the mode they are written with, experiment files that fail to load."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest
from conftest import result_row

from sweepjax import errors
from sweepjax.errors import StorageError
from sweepjax.experiment import load_experiment, summarize
from sweepjax.sweep import results
from sweepjax.sweep.results import Result, write_result

FILES = ["curves.npz", "results.csv", "sweep.json"]


def _result(accuracy: float) -> Result:
    row = result_row(0, accuracy, learning_rate=0.1)
    curves = {"steps": np.arange(2), "val_accuracy": np.full((2, 1), accuracy)}
    return Result([row], curves, {"steps_done": 2, "config": {"steps": 2}})


def _contents(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask-022", "umask-002"])
def test_result_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_result(_result(0.5), tmp_path)
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys([*FILES, "plain"], 0o666 & ~umask)


def test_a_full_disk_while_writing_results_is_one_storage_error(tmp_path, monkeypatch):
    write_result(_result(0.5), tmp_path)
    before = _contents(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(StorageError) as err:
        write_result(_result(0.9), tmp_path)
    assert str(err.value) == (
        f"could not write {tmp_path / 'results.csv'}: No space left on device; free some space "
        "and try again. The previous results.csv and the sweep's checkpoint are intact; then "
        f"`sweepjax resume {tmp_path}` rewrites the result files."
    )
    assert errors.exit_code(err.value) == errors.EXIT_STORAGE
    assert isinstance(err.value.__cause__, OSError)  # the chain, for --verbose
    assert _contents(tmp_path) == before  # the previous files, and no temporary file


def test_a_read_only_folder_is_one_storage_error(tmp_path, monkeypatch):
    write_result(_result(0.5), tmp_path)
    before = _contents(tmp_path)
    tmp_path.chmod(0o555)
    if os.geteuid() == 0:  # root ignores a folder's mode: give the answer anyone else gets
        real_open = os.open

        def denied(path, *args, **kwargs):
            if os.path.dirname(path) == str(tmp_path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(results.os, "open", denied)
    try:
        with pytest.raises(
            StorageError,
            match=r"could not write .*/results\.csv: Permission denied; check the folder's "
            r"permissions .* `sweepjax resume ",
        ):
            write_result(_result(0.9), tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert _contents(tmp_path) == before


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import math\n\nx = math.sqrt(-1)\n", "ValueError: math domain error (line 3)"),
        (
            "def get_config():\n    return helper()\n\n\ndef helper():\n    raise KeyError('lr')\n",
            "KeyError: 'lr' (line 6)",
        ),
        ("def get_config(:\n    pass\n", "SyntaxError: invalid syntax (line 1)"),
    ],
    ids=["body", "get_config", "syntax"],
)
def test_an_experiment_that_fails_to_load_names_its_file_and_line(tmp_path, source, error):
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(ValueError) as err:
        load_experiment(str(path))
    assert str(err.value) == f"experiment: {path} failed to load: {error}"
    assert err.value.__cause__ is not None  # the chain, for --verbose
    if "get_config" not in source:  # summarize() loads the file the same way
        with pytest.raises(ValueError, match=f"experiment: .* failed to load: {error[:9]}"):
            summarize(str(path), [str(tmp_path)])
