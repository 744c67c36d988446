"""The sweep folder: who may use it, what it may already hold, and whether it can take a sweep.

A sweep writes into `out_dir` only while it holds the folder's lock (`sweepjax.sweep.lock`), only
after checking that whatever the folder holds (checkpoints, or result files alone) is the same
sweep, and only if the folder is writable with room for its checkpoints. Every refusal is a
`ValueError` that names the folder and says that nothing was changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sweepjax.engine import distributed
from sweepjax.errors import StorageError, describe_os_error
from sweepjax.sweep import checkpoint, code_record, keys, same_sweep
from sweepjax.sweep.buckets import PLAN_FILE
from sweepjax.sweep.config import Config, is_adaptive
from sweepjax.sweep.lock import FolderBusy, FolderLock
from sweepjax.sweep.metadata import CheckpointMeta

RESULT_FILES = ("results.csv", "curves.npz", "sweep.json")
REPORT_FILES = ("report.html", "report.md")
_DISCARDED = (*RESULT_FILES, *REPORT_FILES, PLAN_FILE)  # what --overwrite removes, with folders


@contextlib.contextmanager
def hold(out_dir: str | None) -> Iterator[FolderLock | None]:
    """`out_dir`'s lock for the whole sweep, taken by process 0; a refusal stops every process.

    >>> import tempfile
    >>> with hold(tempfile.mkdtemp()) as lock:
    ...     lock.update(step=0)
    """
    if out_dir is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        refusal = None
        lock = None
        if distributed.is_primary():
            try:
                lock = stack.enter_context(FolderLock(out_dir))
            except ValueError as err:
                refusal = err
        if distributed.any_process(refusal is not None):
            raise refusal or FolderBusy(f"out_dir: process 0 could not take {out_dir!r}.")
        yield lock


def discard(out_dir: str) -> None:
    """Remove a previous sweep's checkpoints, result files, report, buckets and tracker runs
    (`--overwrite`)."""
    folder = Path(out_dir)
    found = checkpoint.saved_steps(out_dir) or any((folder / n).exists() for n in _DISCARDED)
    if not found:
        return
    print(f"sweepjax: overwriting the sweep in {out_dir}", file=sys.stderr)
    checkpoint.remove_checkpoints(out_dir)
    for name in _DISCARDED:
        (folder / name).unlink(missing_ok=True)
    for name in ("buckets", "figures", "tensorboard", "mlflow", "wandb"):
        shutil.rmtree(folder / name, ignore_errors=True)


def keep_advice(out_dir: str, *, resuming: bool) -> str:
    """What to do about a folder that holds another sweep, for `run` or for `resume`."""
    if resuming:
        allowed = ", ".join(keys.RESUME_OVERRIDES)
        return (
            f"Nothing was changed; a resume may change only {allowed}. To start the changed "
            f"sweep in this folder instead: sweepjax run EXPERIMENT --out {out_dir} --overwrite "
            "(sweepjax.run(config, overwrite=True))."
        )
    return (
        "Nothing was changed; pass --overwrite (overwrite=True) to discard it, or choose "
        "another out_dir."
    )


def check_contents(config: Config, data: dict[str, str], *, resuming: bool) -> None:
    """Refuse a checkpoint or result files of another sweep in `config.out_dir`; reads only.
    Warns of the user's code that the folder cannot record for `resume` and `report`."""
    code_record.warn_unrecorded(config.to_json())
    meta = checkpoint.read_meta(config.out_dir)
    if meta is None:
        if resuming:
            raise ValueError(
                f"resume: {config.out_dir} holds no readable checkpoint to resume; start the "
                "sweep with `sweepjax run`."
            )
        check_results(config, data, resuming=resuming)
        return
    saved = {"config": meta.config, "data": meta.data}
    diffs = same_sweep.differences(saved, config.to_json(), data)
    if diffs:
        raise checkpoint.CheckpointMismatch(
            f"{config.out_dir} holds a checkpoint (step {meta.step}) of a different sweep: "
            + "; ".join(diffs)
            + ". "
            + keep_advice(config.out_dir, resuming=resuming)
        )
    check_budget(config, meta, resuming=resuming)


def check_budget(config: Config, meta: CheckpointMeta, *, resuming: bool) -> None:
    """Refuse a `steps` (a trial's budget) that the checkpoint's trials cannot all train to.

    The budget is a trial's own clock, never the sweep's global step (which runs past `steps`
    with refill), so any checkpoint resumes with the budget it was written with. Changing the
    budget is `resume --set steps=N` alone: forward only, and only where every trial still
    holds its slot (a fixed population), since a trial that has left its slot cannot go on.
    """
    saved = meta.budget_steps
    if config.steps == saved:
        return
    where = config.out_dir
    if not resuming:
        raise ValueError(
            f"steps: {config.steps} is not the trial budget {saved} of the sweep in {where}; "
            f"to extend it: sweepjax resume {where} --set steps={config.steps}. Nothing was "
            "changed; to start the changed sweep instead pass --overwrite (overwrite=True)."
        )
    if is_adaptive(config):
        raise ValueError(
            f"steps: {config.steps} is not the trial budget {saved} of the sweep in {where}; "
            "a sweep with a scheduler or refill keeps its budget (its trials that already left "
            f"their slots could not train on to {config.steps}). Nothing was changed; resume "
            "without steps=, or run the longer sweep in another out_dir."
        )
    trained = meta.most_trial_steps()
    if config.steps < trained:
        raise ValueError(
            f"steps: {config.steps} is below the {trained} steps its trials trained in "
            f"{where}; a sweep's budget only grows (set steps >= {trained}). Nothing was changed."
        )


def check_results(config: Config, data: dict[str, str], *, resuming: bool = False) -> None:
    """Refuse result files (without a checkpoint) that another sweep wrote into `out_dir`."""
    folder = Path(config.out_dir)
    present = [n for n in RESULT_FILES if (folder / n).exists()]
    if not present:
        return
    keep = keep_advice(config.out_dir, resuming=resuming)
    saved = _summary_config(folder / "sweep.json")
    if saved is None:
        raise checkpoint.CheckpointMismatch(
            f"{config.out_dir} holds {', '.join(present)} without a readable sweep.json, so "
            f"whether they are this sweep's cannot be told. {keep}"
        )
    diffs = same_sweep.differences({"config": saved}, config.to_json(), data)
    if diffs:
        raise checkpoint.CheckpointMismatch(
            f"{config.out_dir} holds the results of a different sweep: {'; '.join(diffs)}. {keep}"
        )


def _summary_config(path: Path) -> dict[str, Any] | None:
    try:
        config = json.loads(path.read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return config if isinstance(config, dict) else None


def check_room(out_dir: str, checkpoint_bytes: int, keep: int) -> None:
    """Refuse to train into a folder that is not writable or lacks room for its checkpoints.

    At its peak a sweep holds `keep + 1` checkpoints (the kept ones and the one being written)
    and needs a megabyte for the result files. The checkpoints already in the folder (a resumed
    sweep's) count towards that peak, as the new ones replace them, so a resume asks no more
    room than the run that wrote them; but a new checkpoint is written before any old one goes,
    so room for one is asked at least.
    """
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
        free = shutil.disk_usage(out_dir).free
        present = _bytes_on_disk(checkpoint.checkpoint_dir(out_dir))
    except OSError as err:
        raise StorageError(f"out_dir: {describe_os_error(err, 'write in ' + out_dir)}") from err
    size = f"{checkpoint_bytes / 2**20:,.1f} MiB"
    new = (keep + 1) * checkpoint_bytes - present
    if new >= checkpoint_bytes:
        room = f"{keep} kept checkpoints of {size} and one being written"
        room += f", less the {present / 2**20:,.1f} MiB of those here" if present else ""
    else:
        new, room = checkpoint_bytes, f"a new checkpoint of {size}, written before old ones go"
    need = new + (1 << 20)
    if free < need:
        raise StorageError(
            f"out_dir: {out_dir} has {free / 2**20:,.0f} MiB free; this sweep needs about "
            f"{need / 2**20:,.0f} MiB ({room}). Nothing was trained; free some space, lower "
            "keep_checkpoints, or choose another out_dir."
        )


def _bytes_on_disk(folder: Path) -> int:
    """The bytes the files under `folder` take on disk (their blocks); 0 if it is absent.

    Orbax removes the temporary folders of interrupted saves in the background while the
    manager opens, so a file or folder may vanish during the walk: it then counts as gone.
    """
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += info.st_blocks * 512 if stat.S_ISREG(info.st_mode) else 0
    return total
