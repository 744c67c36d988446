"""Reading a sweep folder that is damaged, busy or unwritable: one clear line, promptly.

Result files that disagree with `sweep.json` (cut short, curves of another shape) are refused
by every reader; `export` to a folder it cannot create exits at once; `report` and `show` on a
running sweep say so; a damaged checkpoint or compile-cache entry is one warning line, and the
cache entry is replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from command import LONG_EXPERIMENT, clean_stderr, finish, start, tiny_experiment, wait_until

import sweepjax
from sweepjax import cli, errors
from sweepjax.errors import StorageError
from sweepjax.report import show
from sweepjax.sweep import export
from sweepjax.sweep.lock import FolderLock, holder

MEMBERS = 8


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished sweep of the real command, 8 members, checkpoints at steps 10 and 20, its
    compiled programs in a cache folder of its own (`sweep.parent / "cache"`)."""
    root = tmp_path_factory.mktemp("damaged")
    experiment = root / "tiny.py"
    experiment.write_text(tiny_experiment(steps=20))
    out = root / "sweep"
    argv = ["run", str(experiment), "--out", str(out), "--quiet", "--set", f"population={MEMBERS}"]
    code, stderr = finish(start(*argv, "--set", f"compile_cache={root / 'cache'}"), timeout=300)
    assert code == 0, stderr
    return out


@pytest.fixture
def copy(sweep, tmp_path) -> Path:
    """A copy of the sweep to damage."""
    return Path(shutil.copytree(sweep, tmp_path / "sweep"))


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def _refused_everywhere(out: Path, capsys) -> str:
    """The one line `show` and `report` print for `out`, after checking that both exit 1 and
    that `read_result` and `read_sweep` raise `StorageError` with the same text."""
    lines = set()
    for command in ("show", "report"):
        assert cli.main([command, str(out)]) == errors.EXIT_STORAGE
        lines.add(_error_line(capsys))
    for read in (sweepjax.read_result, sweepjax.read_sweep):
        with pytest.raises(StorageError) as err:
            read(out)
        lines.add(f"sweepjax: error: {err.value}")
    assert len(lines) == 1, lines
    assert not (out / "report.html").exists()
    return lines.pop()


def test_results_cut_at_a_line_boundary_are_damaged(copy, capsys):
    lines = (copy / "results.csv").read_bytes().splitlines(keepends=True)
    (copy / "results.csv").write_bytes(b"".join(lines[:4]))  # the header and 3 of 8 rows
    assert _refused_everywhere(copy, capsys) == (
        f"sweepjax: error: {copy / 'results.csv'} is damaged (it holds 3 rows, and sweep.json "
        f"records {MEMBERS} members); `sweepjax resume {copy}` rewrites the result files from "
        "the sweep's checkpoint."
    )


def test_results_cut_inside_their_last_row_are_damaged(copy, capsys):
    text = (copy / "results.csv").read_bytes()
    (copy / "results.csv").write_bytes(text[:-4])  # the last value loses its last digits
    assert _refused_everywhere(copy, capsys) == (
        f"sweepjax: error: {copy / 'results.csv'} is damaged (its last line is cut short: it has "
        f"no line end); `sweepjax resume {copy}` rewrites the result files from the sweep's "
        "checkpoint."
    )


@pytest.mark.parametrize("cut", ["members", "evaluations"])
def test_curves_of_another_shape_are_damaged(copy, capsys, cut):
    with np.load(copy / "curves.npz") as stored:
        curves = dict(stored)
    points = len(curves["steps"])
    if cut == "members":
        curves["val_accuracy"] = curves["val_accuracy"][:, :5]
        found = (points, 5)
    else:
        curves["train_loss"] = curves["train_loss"][:1]
        found = (1, MEMBERS)
    np.savez(copy / "curves.npz", **curves)
    name = "val_accuracy" if cut == "members" else "train_loss"
    shutil.rmtree(copy / "checkpoints")  # then the advice is to run the sweep again
    assert _refused_everywhere(copy, capsys) == (
        f"sweepjax: error: {copy / 'curves.npz'} is damaged ({name} has shape {found}; "
        f"{points} evaluations of {MEMBERS} members make {(points, MEMBERS)}); {copy} holds no "
        "checkpoint to rewrite it from: run the sweep again."
    )


def test_a_sweep_of_buckets_stopped_early_has_a_curve_column_per_member(tmp_path):
    """Its rows are the members of the buckets trained so far; its curves, every member's."""
    (tmp_path / "results.csv").write_text("member,status\n1,ok\n3,ok\n")
    summary = {"members": 2, "buckets": [{"members": [1, 3]}], "config": {"population": 4}}
    (tmp_path / "sweep.json").write_text(json.dumps(summary))
    np.savez(tmp_path / "curves.npz", steps=np.arange(3), train_loss=np.ones((3, 4)))
    assert sweepjax.read_result(tmp_path).curves["train_loss"].shape == (3, 4)
    assert sweepjax.read_sweep(tmp_path).curves == {}  # its rows do not index them
    np.savez(tmp_path / "curves.npz", steps=np.arange(3), train_loss=np.ones((3, 2)))
    with pytest.raises(StorageError, match=r"train_loss has shape \(3, 2\); 3 evaluations of 4"):
        sweepjax.read_sweep(tmp_path)


def test_whole_result_files_read_back(sweep):
    result = sweepjax.read_result(sweep)
    assert len(result.rows) == MEMBERS and result.curves["val_accuracy"].shape[1] == MEMBERS


@pytest.mark.subprocess
def test_export_to_a_folder_it_cannot_create_exits_at_once(sweep, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "member3"  # cannot be created, even by root
    # Orbax's save threads are not daemons: a save failed in them kept the process alive
    code, stderr = finish(start("export", str(sweep), "--member", "3", "--to", str(target)), 60)
    clean_stderr(stderr)
    assert code == errors.EXIT_BAD_INPUT
    assert stderr == (
        f"sweepjax: error: --to: {target}: could not create {target}: Not a directory; check "
        "the path and try again.\n"
    )


def test_a_save_that_fails_in_orbax_leaves_no_thread_behind(sweep, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(export, "_create_target", lambda to: None)  # let Orbax meet the path
    before = set(threading.enumerate())
    with pytest.raises(NotADirectoryError):
        export.export_member(sweep, 3, blocker / "member3")
    started = [t for t in threading.enumerate() if t not in before and not t.daemon]
    for thread in started:  # a reader's threads may take a moment to end; the bug's never did
        thread.join(timeout=30)
    assert [t.name for t in started if t.is_alive()] == []


@pytest.mark.subprocess
@pytest.mark.slow
def test_report_and_show_on_a_running_sweep_without_results(tmp_path, capsys):
    experiment = tmp_path / "long.py"
    experiment.write_text(LONG_EXPERIMENT)
    out = tmp_path / "out"
    running = start("run", str(experiment), "--out", str(out), "--quiet")
    try:
        wait_until(lambda: (holder(out) or {}).get("step"), running, timeout=600)
        assert cli.main(["report", str(out)]) == errors.EXIT_BAD_INPUT
        line = _error_line(capsys)
        assert cli.main(["show", str(out)]) == 0
        shown = capsys.readouterr().out
    finally:
        running.kill()
        finish(running)
    assert re.fullmatch(
        rf"sweepjax: error: out_dir: {out} is a sweep still running at step \d+ of 1000000 "
        rf"\(PID {running.pid} on .*, since .*\); it writes its results when it finishes or "
        rf"stops \(kill -TERM {running.pid} stops it after a checkpoint\): try again then\.",
        line,
    ), line
    assert re.fullmatch(
        rf"{out}: running at step \d+ of 1000000 \(PID {running.pid} on .*\); it writes its "
        r"results when it finishes or stops\n",
        shown,
    ), shown


def test_report_and_show_on_a_running_sweep_with_earlier_results(copy, capsys):
    with FolderLock(copy) as lock:  # what a resumed sweep's lock says once it has trained on
        lock.update(step=30, steps=40)
        assert cli.main(["report", str(copy)]) == 0
        shown = show(copy)
    pid = os.getpid()
    facts = (copy / "report.md").read_text()
    assert f"- **running**: running at step 30 of 40 (PID {pid} on " in facts
    assert (
        "; the results below were written at step 20\n- **status**: finished, step 20/20" in facts
    )
    assert re.match(
        rf"{copy}: running at step 30 of 40 \(PID {pid} on .*\); the results below were "
        rf"written at step 20\n{copy}: finished, step 20/20, {MEMBERS} members",
        shown,
    ), shown


@pytest.mark.subprocess
def test_a_damaged_newest_checkpoint_is_one_warning_line(sweep, tmp_path):
    copy = Path(shutil.copytree(sweep, tmp_path / "sweep"))
    # the newest checkpoint's array data gone: TensorStore's message spans several lines
    shutil.rmtree(copy / "checkpoints" / "20" / "state" / "ocdbt.process_0")
    code, stderr = finish(start("resume", str(copy), "--quiet", "--set", "compile_cache=auto"))
    assert code == 0, stderr
    clean_stderr(stderr)
    warning, resuming = stderr.splitlines()
    assert warning.startswith(f"sweepjax: warning: checkpoint at step 20 in {copy}/checkpoints ")
    assert warning.endswith("; falling back to the checkpoint at step 10.")
    assert resuming == f"sweepjax: resuming {copy} from the checkpoint at step 10 of 20"


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_damaged_compile_cache_entry_is_replaced(sweep, tmp_path):
    cache = sweep.parent / "cache"
    entries = sorted(cache.glob("*-cache"))
    assert entries
    for entry in entries:  # every program's entry cut in half
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    experiment = sweep.parent / "tiny.py"
    stderrs, summaries = [], []
    for run in ("replaces", "loads"):
        out = tmp_path / run
        argv = ["run", str(experiment), "--out", str(out), "--quiet"]
        argv += ["--set", f"population={MEMBERS}", "--set", f"compile_cache={cache}"]
        code, stderr = finish(start(*argv), timeout=300)
        assert code == 0, stderr
        clean_stderr(stderr)
        stderrs.append(stderr)
        summaries.append(json.loads((out / "sweep.json").read_text()))
    replaced = stderrs[0].splitlines()
    assert len(replaced) == 1 and replaced[0].startswith("sweepjax: warning: compile cache ")
    assert stderrs[1] == ""
    assert summaries[0]["programs_compiled"] > 0
    assert summaries[1]["programs_compiled"] == 0 and summaries[1]["programs_from_cache"] > 0
