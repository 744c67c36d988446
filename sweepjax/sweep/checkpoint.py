"""Orbax checkpoints of a whole population and its sweep metadata (invariant 6 of docs/architecture.md).

A sweep's checkpoints live in `out_dir/checkpoints/<step>/`, written by an Orbax
`CheckpointManager` with asynchronous saves. Each step holds two items:

  * `state` (`ocp.args.StandardSave`): `{"population": Population, "hparams": {...},
    "curves": {...}}`. In one process these are host (numpy) arrays, so a checkpoint records no
    device. With several processes (`sweepjax.engine.distributed`) the population stays a global
    array and each process writes its members' shards into the same directory (Orbax's
    multi-host saving; the primary process writes the metadata). Either way a checkpoint
    restores onto whatever devices the restoring run has (`restore_latest`'s target);
  * `meta` (`ocp.args.JsonSave`): the step, the config, the data set's identity, the data
    stream's state (seed and step), the shapes needed to restore, the sweep state beside the
    arrays, and a `checksum` of every saved array (`sweepjax.sweep.metadata.CheckpointMeta`).

Orbax commits a step atomically (a temporary directory, then a rename), so a save torn by a
kill never replaces a good one. A finalized step whose bytes were damaged later (a bad disk, a
truncated file) fails to restore or fails its checksum; `restore_latest` then warns and falls
back to the previous step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from sweepjax.engine import distributed
from sweepjax.errors import StorageError
from sweepjax.sweep.library_logs import drop_failed_restore_noise
from sweepjax.sweep.metadata import FORMAT, CheckpointMeta

_TMP_MARK = ".orbax-checkpoint-tmp"  # Orbax's suffix of a step folder not yet committed
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(StorageError):
    """A checkpoint could not be saved, or no saved checkpoint could be read (exit code 1)."""


class CheckpointMismatch(ValueError):
    """`out_dir` holds a checkpoint of another sweep (another structure, space or data)."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older one."""


@dataclasses.dataclass
class Snapshot:
    """What one checkpoint holds, restored.

    Attributes:
      step: the step of the checkpoint.
      state: `{"population": ..., "hparams": {...}, "curves": {...}}`.
      meta: its metadata (config, data identity, data stream, sweep state, checksum).
    """

    step: int
    state: dict[str, Any]
    meta: CheckpointMeta


def checkpoint_dir(out_dir: str | os.PathLike) -> Path:
    """The folder holding a sweep's checkpoints.

    >>> checkpoint_dir("runs/a").as_posix()
    'runs/a/checkpoints'
    """
    return Path(out_dir) / CHECKPOINT_DIR


def _manager(out_dir: str | os.PathLike, *, keep: int | None = None, read_only: bool = False):
    """An Orbax manager of `out_dir`'s checkpoints; `read_only`: one that only reads.

    A reading manager creates nothing, cleans nothing and is never asked to save or delete.
    It is not opened with Orbax's own `read_only` flag, whose only other effect is a warning
    on the terminal ("Given directory is read only") each time one is opened.
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=not read_only,
    )
    return ocp.CheckpointManager(checkpoint_dir(out_dir).absolute(), options=options)


def open_manager(out_dir: str | os.PathLike, keep: int) -> ocp.CheckpointManager:
    """A writing manager that keeps the last `keep` steps and saves asynchronously.

    Opening it removes temporary folders left by saves that were killed before they committed.
    """
    return _manager(out_dir, keep=keep)


def close_manager(manager: ocp.CheckpointManager, *, remove_empty: bool) -> None:
    """Close a writing manager, ignoring a failed save (its error was raised already); with
    `remove_empty`, remove its folder if it holds nothing (the manager created it)."""
    with contextlib.suppress(Exception):
        manager.close()
    if remove_empty:
        with contextlib.suppress(OSError):  # not empty, or removed by another process
            Path(manager.directory).rmdir()


def saved_steps(out_dir: str | os.PathLike) -> list[int]:
    """The committed checkpoint steps in `out_dir`, oldest first; reads only.

    >>> saved_steps("no/such/dir")
    []
    """
    if not checkpoint_dir(out_dir).is_dir():
        return []
    with _manager(out_dir, read_only=True) as manager:
        return sorted(manager.all_steps())


def data_identity(dataset: Any) -> dict[str, str]:
    """The description and a fingerprint (digest of every split's arrays) of a `Dataset`.

    Leaves are named `<split><path>`, but a split's `inputs` and `targets` are named
    `<split>_x` and `<split>_y`, so a classification set keeps the fingerprint it had before
    splits were pytrees (and its checkpoints still resume).
    """
    short = {"['inputs']": "_x", "['targets']": "_y"}

    def named(split: str, tree: Any):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            key = jax.tree_util.keystr(path)
            yield f"{split}{short.get(key, key)}", np.asarray(leaf)

    leaves = [
        item for split in ("train", "val", "test") for item in named(split, getattr(dataset, split))
    ]
    return {"describe": dataset.describe(), "fingerprint": _digest(leaves)}


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def checksum(tree: Any) -> str:
    """A digest of every array leaf of `tree`: its path, dtype, shape and the CRC-32 of each row.

    The path is spelled by names only, so a tree restored without a target (namedtuples as
    dicts, tuples as lists) has the same checksum as the tree that was saved. A row is an
    index of the leading axis (a member, for the population), so an array spread over several
    processes is digested where it lies: each process takes the CRC-32 of its own rows and
    only those small numbers travel (all processes must call it together). The digest is the
    same however the rows are laid out, one process or many. CRC-32 detects damaged bytes at
    several GB/s, so checkpointing a large population stays cheap.

    >>> checksum({"a": np.zeros(2)}) == checksum({"a": np.zeros(2)})
    True
    >>> checksum({"a": np.zeros(2)}) == checksum({"a": np.ones(2)})
    False
    """
    leaves = dict(_named_leaves(tree))
    spread = {k: v for k, v in leaves.items() if _spread(v)}
    crcs = {k: _row_crcs(v) for k, v in leaves.items() if k not in spread}
    crcs.update(distributed.process_sum({k: _row_crcs(v) for k, v in spread.items()}))
    digest = hashlib.sha256()
    for name in sorted(leaves):
        leaf = leaves[name]
        digest.update(f"{name}:{np.dtype(leaf.dtype)}:{tuple(leaf.shape)}:".encode())
        digest.update(np.asarray(crcs[name], np.uint32).tobytes())
    return digest.hexdigest()


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
    return [
        ("/".join(_key_name(k) for k in path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _spread(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _rows(array: np.ndarray) -> np.ndarray:
    return array if array.ndim else array[None]


def _row_crcs(leaf: Any) -> np.ndarray:
    """CRC-32 of each row (a scalar is one row); of a spread array, those of the rows this
    process holds (zero for the others'), from its shards that no other shard repeats."""
    if not _spread(leaf):
        return np.array([_crc(row) for row in _rows(np.asarray(leaf))], np.uint32)
    crcs = np.zeros(leaf.shape[0] if leaf.ndim else 1, np.uint32)
    for shard in leaf.addressable_shards:
        if shard.replica_id == 0:
            rows = _rows(np.asarray(shard.data))
            start = (shard.index[0].start or 0) if leaf.ndim else 0
            crcs[start : start + len(rows)] = [_crc(row) for row in rows]
    return crcs


def _whole_checksum(tree: Any) -> str:
    """The checksum of format-1 checkpoints: the CRC-32 of each leaf's whole bytes."""
    host = distributed.to_host(tree)
    return _digest(sorted(_named_leaves(host), key=lambda item: item[0]))


def _digest(named_arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for name, array in named_arrays:
        digest.update(f"{name}:{array.dtype}:{array.shape}:{_crc(array)};".encode())
    return digest.hexdigest()


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Mapping[str, Any],
    meta: CheckpointMeta,
) -> None:
    """Save `state` (a pytree of arrays) and `meta` at `step`, asynchronously; `meta` is
    saved with this format, `step` and the checksum of `state`.

    The arrays are copied to the host first (by Orbax, for arrays spread over several
    processes), so the caller may donate its device buffers right away; the files are written
    in the background. A failure of the previous background save surfaces here.

    Raises:
      CheckpointError: this save or the previous one failed; the message names the step and
        the last committed step.
    """
    host = jax.tree.map(lambda x: x if _spread(x) else np.asarray(x), dict(state))
    meta = dataclasses.replace(meta, format=FORMAT, step=step, checksum=checksum(host))
    try:
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta.to_json())
            ),
            force=True,
        )
    except Exception as err:
        raise save_error(manager, err) from err


def wait(manager: ocp.CheckpointManager) -> None:
    """Wait for the background save, raising `CheckpointError` if it failed."""
    try:
        manager.wait_until_finished()
    except Exception as err:
        raise save_error(manager, err) from err


def save_error(manager: ocp.CheckpointManager, err: BaseException) -> CheckpointError:
    """A `CheckpointError` saying what failed and which checkpoint is still good: read from
    the folder, as a failed save may have dropped the steps it was to replace (beyond `keep`)
    from the manager's own list while they are still on disk."""
    directory = Path(manager.directory)
    try:
        good = max(saved_steps(directory.parent), default=None)
        kept = (
            "no earlier checkpoint exists"
            if good is None
            else f"the checkpoint at step {good} is intact and resumable"
        )
    except Exception as listing:  # a broken disk may fail the listing too
        kept = f"whether an earlier checkpoint is intact could not be read ({listing})"
    torn = sorted(p.name.split(".")[0] for p in directory.glob(f"*{_TMP_MARK}*"))
    which = f" (step {', '.join(torn)} not committed)" if torn else ""
    return CheckpointError(
        f"could not save a checkpoint in {directory}{which}: {type(err).__name__}: {err}; {kept}."
    )


def read_meta(out_dir: str | os.PathLike) -> CheckpointMeta | None:
    """The metadata of the latest checkpoint whose metadata reads, or None; reads only."""
    if not checkpoint_dir(out_dir).is_dir():
        return None
    with _manager(out_dir, read_only=True) as manager:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                read = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
                return CheckpointMeta.from_json(read["meta"])
            except Exception:  # a damaged step: try the one before
                continue
    return None


def restore_latest(
    manager: ocp.CheckpointManager, target: Callable[[CheckpointMeta], Any] | None = None
) -> tuple[Snapshot, list[int]]:
    """Restore the newest checkpoint that reads and passes its checksum.

    Args:
      manager: the sweep's manager.
      target: builds the abstract restore target from a checkpoint's metadata (arrays as
        `jax.ShapeDtypeStruct` with the sharding they should land on, see
        `placement.abstract`); None restores arrays in plain containers (dicts and lists) on
        this process's first device, whatever devices wrote them.

    Returns:
      The snapshot and the damaged steps that were skipped (newest first); a
      `CheckpointWarning` names each skipped step and the step fallen back to.

    Raises:
      CheckpointError: no checkpoint could be restored.
    """
    drop_failed_restore_noise()  # what Orbax's failed reads print later (see library_logs)
    bad: list[tuple[int, str]] = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            snapshot = _restore_step(manager, step, target)
        except Exception as err:
            bad.append((step, f"{type(err).__name__}: {err}"[:300]))
            continue
        for bad_step, reason in bad:
            warnings.warn(
                f"checkpoint at step {bad_step} in {manager.directory} is damaged ({reason}); "
                f"falling back to the checkpoint at step {step}.",
                CheckpointWarning,
                stacklevel=2,
            )
        return snapshot, [s for s, _ in bad]
    detail = "; ".join(f"step {s}: {r}" for s, r in bad) or "none was found"
    raise CheckpointError(
        f"no readable checkpoint in {manager.directory} ({detail}); to start the sweep again: "
        "sweepjax run EXPERIMENT --out OUT_DIR --overwrite (sweepjax.run(config, overwrite=True))."
    )


def _restore_step(manager: ocp.CheckpointManager, step: int, target) -> Snapshot:
    read = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    saved = dict(read["meta"])
    refused = CheckpointError(f"metadata of step {step} is not a sweepjax checkpoint: {saved}")
    try:
        meta = CheckpointMeta.from_json(saved)
    except ValueError as err:
        raise refused from err
    if meta.step != step:
        raise refused
    restore = ocp.args.StandardRestore(
        target(meta) if target is not None else None,
        fallback_sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]),
    )
    state = manager.restore(step, args=ocp.args.Composite(state=restore))["state"]
    found = (checksum if meta.format == FORMAT else _whole_checksum)(state)
    if found != meta.checksum:
        raise CheckpointError(f"checksum mismatch ({found[:12]} != {meta.checksum[:12]})")
    if meta.data_stream.step != step:
        raise CheckpointError(f"data stream at step {meta.data_stream.step}, not {step}")
    return Snapshot(step, dict(state), meta)


def remove_checkpoints(out_dir: str | os.PathLike) -> None:
    """Delete every checkpoint of `out_dir`."""
    shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)
