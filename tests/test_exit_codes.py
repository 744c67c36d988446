"""Every failure through the `sweepjax` command: one line on stderr, no traceback, its exit code
(1 storage, 2 bad input, 70 internal error; `sweepjax.errors`)."""

from __future__ import annotations

import errno
import os
from shutil import _ntuple_diskusage as disk_usage

import pytest

from sweepjax import cli, errors, report
from sweepjax.sweep import checkpoint, out_dir, results

TINY = ["--set", "population=2", "--set", "steps=10", "--set", "eval_every=10"]
TINY += ["--set", "model.hidden=[8]", "--set", "val_size=100", "--quiet"]


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.fixture
def broken_sweep(tmp_path):
    """A folder whose results.csv is garbled, and an experiment file with a syntax error."""
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "results.csv").write_bytes(b"member,\x00\xff\n1,2,3,4\n")
    (tmp_path / "broken.py").write_text("def get_config(:\n")
    (tmp_path / "a_file").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["run", "--out", "{tmp}/a_file"], 2, "out_dir: '{tmp}/a_file' is a file"),
        (["run", "--out", "/proc/sweepjax"], 2, "out_dir: '/proc/sweepjax': could not create"),
        (["run", "--out", ""], 2, "out_dir: '' names no folder"),
        (["run", "{tmp}/broken.py"], 2, "broken.py failed to load: SyntaxError"),
        (["export", "{tmp}/sweep", "--member", "0", "--to", "{tmp}/a_file"], 2, "is a file"),
        (["show", "{tmp}/sweep"], 1, "results.csv is damaged"),
        (["report", "{tmp}/sweep"], 1, "results.csv is damaged"),
        (["show", "{tmp}/sweep", "--top", "-1"], 2, "top: -1"),
        (["resume", "{tmp}/sweep"], 2, "holds no checkpoint to resume"),
        (["resume", "{tmp}/nowhere"], 2, "is not a folder"),
        (
            ["resume", "{tmp}/sweep", "--set", "learning_rate=0.1"],
            2,
            "learning_rate cannot change when a sweep resumes; allowed: checkpoint_every,",
        ),
    ],
    ids=lambda value: value if isinstance(value, int) else None,
)
def test_each_failure_is_one_line_and_its_exit_code(broken_sweep, capsys, argv, code, message):
    argv = [arg.format(tmp=broken_sweep) for arg in argv]
    assert cli.main(argv) == code
    line = _one_line(capsys)
    assert line.startswith("sweepjax: error: ") and message.format(tmp=broken_sweep) in line


def test_an_internal_error_is_code_70_with_where_it_happened(tmp_path, monkeypatch, capsys):
    def broken(*args):
        raise KeyError("bug")

    monkeypatch.setattr(report, "show", broken)
    assert cli.main(["show", str(tmp_path)]) == errors.EXIT_INTERNAL == 70
    line = _one_line(capsys)
    assert line.startswith("sweepjax: internal error: KeyError: 'bug' at ")
    assert "test_exit_codes.py:" in line and "please report it" in line


def test_a_folder_without_room_is_refused_before_training(tmp_path, monkeypatch, capsys):
    def no_room(path):
        return disk_usage(total=1 << 30, used=(1 << 30) - 4096, free=4096)

    monkeypatch.setattr(out_dir.shutil, "disk_usage", no_room)
    assert cli.main(["run", *TINY, "--out", str(tmp_path / "out")]) == errors.EXIT_STORAGE
    line = _one_line(capsys)
    assert "has 0 MiB free; this sweep needs about" in line and "Nothing was trained" in line
    assert not (tmp_path / "out" / "results.csv").exists()


def test_results_that_cannot_be_written_after_training_name_the_file_and_resume(
    tmp_path, monkeypatch, capsys
):
    atomic_write = results.atomic_write

    def immutable_results_csv(path, *args):  # what `chattr +i results.csv` makes of a write
        if path.name == "results.csv":
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        atomic_write(path, *args)

    monkeypatch.setattr(results, "atomic_write", immutable_results_csv)
    out = tmp_path / "out"
    assert cli.main(["run", *TINY, "--out", str(out)]) == errors.EXIT_STORAGE
    line = _one_line(capsys)
    assert f"could not write {out / 'results.csv'}: Operation not permitted" in line
    assert f"sweepjax resume {out}" in line
    assert checkpoint.saved_steps(out) == [10]  # what the advice resumes from
