"""A full disk: a failed save names the checkpoint that is still good, a resume asks no more room
than the run that wrote the folder, and a refusal before the first checkpoint leaves the folder
as it was found.

A full disk is simulated: the commit of one checkpoint step fails with ENOSPC inside Orbax's
background save (where a real full disk fails it), and the free space is what a patched
`shutil.disk_usage` reports for a disk of a given size.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from shutil import _ntuple_diskusage as disk_usage

import pytest
from orbax.checkpoint._src.path import atomicity

import sweepjax
from sweepjax.errors import StorageError
from sweepjax.runner import training
from sweepjax.sweep import checkpoint, out_dir

MIB = 1 << 20


@pytest.fixture
def config(tiny_config, tmp_path):
    return tiny_config.replace(steps=30, keep_checkpoints=1, out_dir=str(tmp_path / "out"))


def _no_space_at(monkeypatch, step: int) -> None:
    """The commit of checkpoint `step` fails as on a full disk."""
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def full_disk(self, *args, **kwargs):
        if self._final_path.name == str(step):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._final_path))
        return await finalize(self, *args, **kwargs)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", full_disk)


def test_a_save_failing_on_a_full_disk_names_the_checkpoint_still_there(
    config, tiny_data, monkeypatch
):
    _no_space_at(monkeypatch, 20)
    with pytest.raises(checkpoint.CheckpointError) as failed:
        sweepjax.run(config, quiet=True, dataset=tiny_data)
    message = str(failed.value)
    assert "(step 20 not committed)" in message and "No space left on device" in message
    assert message.endswith("the checkpoint at step 10 is intact and resumable.")
    assert checkpoint.saved_steps(config.out_dir) == [10]

    monkeypatch.undo()  # space freed: the resume continues from step 10
    result = sweepjax.resume(config.out_dir, quiet=True, dataset=tiny_data)
    assert result.summary["steps_done"] == 30 and not result.summary["interrupted"]


def test_a_first_save_failing_says_no_earlier_checkpoint_exists(config, tiny_data, monkeypatch):
    _no_space_at(monkeypatch, 10)
    with pytest.raises(checkpoint.CheckpointError, match="no earlier checkpoint exists.$"):
        sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert checkpoint.saved_steps(config.out_dir) == []


def _disk_of(monkeypatch, size: int, holding: Path) -> None:
    """`shutil.disk_usage` of a disk of `size` bytes that holds only the files under `holding`."""

    def usage(path):
        used = sum(p.stat().st_blocks * 512 for p in holding.rglob("*") if p.is_file())
        return disk_usage(total=size, used=used, free=size - used)

    monkeypatch.setattr(out_dir.shutil, "disk_usage", usage)


def _write_checkpoint(folder: Path, step: int, size: int) -> None:
    """A checkpoint of `size` bytes on disk (random, so no file system compresses it)."""
    (folder / "checkpoints" / str(step)).mkdir(parents=True)
    (folder / "checkpoints" / str(step) / "state").write_bytes(os.urandom(size))


def test_a_resume_needs_no_more_room_than_the_run_that_wrote_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    (folder / "checkpoints").mkdir(parents=True)
    # Checkpoints of 4 MiB, one kept: a run needs room for two of them and 1 MiB of results.
    _disk_of(monkeypatch, 8 * MIB + MIB // 2, tmp_path)
    with pytest.raises(StorageError, match=r"has 8 MiB free; this sweep needs about 9 MiB \("):
        out_dir.check_room(str(folder), 4 * MIB, keep=1)

    _disk_of(monkeypatch, 9 * MIB + MIB // 2, tmp_path)
    out_dir.check_room(str(folder), 4 * MIB, keep=1)  # the run starts
    _write_checkpoint(folder, 10, 4 * MIB)  # and stops after its first checkpoint
    out_dir.check_room(str(folder), 4 * MIB, keep=1)  # its resume, on the same disk
    with pytest.raises(StorageError, match=r"needs about 9 MiB \(2 kept .* less the 4\.0 MiB"):
        out_dir.check_room(str(folder), 4 * MIB, keep=2)  # a resume keeping one more

    # More checkpoints than kept (keep_checkpoints lowered on resume): the old ones stay until
    # the first new one is written, which needs room of its own.
    _write_checkpoint(folder, 20, 4 * MIB)
    _disk_of(monkeypatch, 12 * MIB + MIB // 2, tmp_path)
    with pytest.raises(StorageError, match=r"has 4 MiB free; this sweep needs about 5 MiB \(a new"):
        out_dir.check_room(str(folder), 4 * MIB, keep=1)


def test_the_room_check_counts_a_save_folder_that_orbax_removes_meanwhile(tmp_path, monkeypatch):
    # Orbax deletes the temporary folder of a killed save in the background while the manager
    # opens; the walk that sums the checkpoints' bytes must count such a folder as gone.
    folder = tmp_path / "out"
    _write_checkpoint(folder, 10, MIB)
    walk = os.walk

    def walk_that_races(top, *args, **kwargs):
        for root, dirs, names in walk(top, *args, **kwargs):
            yield root, dirs, [*names, "vanished-during-the-walk"]

    monkeypatch.setattr(out_dir.os, "walk", walk_that_races)
    _disk_of(monkeypatch, 4 * MIB + MIB // 2, tmp_path)
    out_dir.check_room(str(folder), MIB, keep=2)  # counts the 1 MiB present, not the vanished file
    with pytest.raises(StorageError, match=r"less the 1\.0 MiB"):
        out_dir.check_room(str(folder), MIB, keep=3)


def _refuse_room(monkeypatch, tmp_path):
    _disk_of(monkeypatch, MIB // 2, tmp_path)
    return StorageError, "Nothing was trained"


def _refuse_searcher(monkeypatch, tmp_path):
    def bad_searcher(*args, **kwargs):
        raise ValueError("searcher: 'grid' cannot sample 'momentum'; allowed: a finite space.")

    monkeypatch.setattr(training, "make_policies", bad_searcher)
    return ValueError, "searcher: 'grid'"


def _contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("refusal", [_refuse_room, _refuse_searcher], ids=["room", "ValueError"])
@pytest.mark.parametrize("found", ["absent", "empty", "with a file"])
def test_a_refusal_before_the_first_checkpoint_leaves_the_folder_as_found(
    config, tiny_data, tmp_path, monkeypatch, refusal, found
):
    folder = Path(config.out_dir)
    if found != "absent":
        folder.mkdir()
    if found == "with a file":
        (folder / "notes.txt").write_text("mine\n")
    before = _contents(folder) if folder.exists() else None
    kind, message = refusal(monkeypatch, tmp_path)
    with pytest.raises(kind, match=message):
        sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert (_contents(folder) if folder.exists() else None) == before
