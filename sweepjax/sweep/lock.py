"""One sweep per folder: an advisory lock on `OUT_DIR/.sweepjax.lock` held for a whole run.

The lock is `fcntl.flock` on the lock file, so the operating system releases it when the
holder exits in any way (a kill -9 included): a lock is never stale. The file also says who
holds it (PID, host, command, since when) and the step its sweep has reached, for the refusal
message and for `sweepjax show`. A lock file the lock created is removed when it is released,
so the folder is left as it was found but for what the sweep wrote; one it found stays.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with FolderLock(folder) as lock:
...     lock.update(step=100)
...     holder(folder)["step"]
100
>>> holder(folder) is None
True
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from sweepjax.errors import describe_os_error

LOCK_FILE = ".sweepjax.lock"


class FolderBusy(ValueError):
    """Another process holds the folder's lock (a bad-input error: choose another folder)."""


def _ensure_folder(out_dir: Path) -> bool:
    """Create `out_dir` if needed; True when it was created here. Bad paths are ValueErrors."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {str(out_dir)!r} is a file; allowed: a new or existing folder.")
    try:
        out_dir.mkdir(parents=True, exist_ok=False)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        raise ValueError(f"out_dir: {str(out_dir)!r}: " + describe_os_error(err, "create")) from err


def _open(path: Path) -> tuple[int, bool]:
    """The lock file at `path`, opened for writing, and whether it was created here."""
    try:
        while True:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                pass
            try:
                return os.open(path, os.O_RDWR), False
            except FileNotFoundError:  # its holder removed it this instant: create it
                continue
    except OSError as err:
        raise ValueError(
            f"out_dir: {str(path.parent)!r} is not writable: "
            + describe_os_error(err, "create the lock file")
        ) from err


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path` (not removed by its holder)."""
    try:
        found, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def _read(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 1 << 16, 0).decode() or "{}")
    except (OSError, ValueError):  # being rewritten this instant, or damaged
        return {}


def _busy_message(out_dir: Path, info: dict[str, Any]) -> str:
    pid, host = info.get("pid", "?"), info.get("host", "?")
    since = f", since {info['since']}" if "since" in info else ""
    step = f", at step {info['step']}" if "step" in info else ""
    command = f" ({info['command']})" if info.get("command") else ""
    return (
        f"out_dir: {str(out_dir)!r} is in use by another sweepjax process: PID {pid} on host "
        f"{host}{since}{step}{command}. Nothing was written. Wait for it to finish, stop it "
        f"(kill -TERM {pid} on {host}; it saves and exits), or choose another out_dir."
    )


def _take(fd: int, tries: int = 5) -> None:
    """The exclusive lock, or `FolderBusy`; retried briefly past a reader's momentary look."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            if attempt + 1 < tries:
                time.sleep(0.02)
    raise FolderBusy()


def _lock(path: Path) -> tuple[int, bool]:
    """The lock file at `path`, open and locked, and whether it was created here; or
    `FolderBusy` with its holder's details.

    A holder removes the lock file it created when it releases it: a lock taken meanwhile on
    the removed file is dropped and the file now at `path` is locked instead.
    """
    while True:
        fd, created = _open(path)
        try:
            _take(fd)
        except FolderBusy:
            info = _read(fd)
            os.close(fd)
            raise FolderBusy(_busy_message(path.parent, info)) from None
        if _is_at(fd, path):
            return fd, created
        os.close(fd)


class FolderLock:
    """Holds `out_dir`'s lock while entered; a second holder gets `FolderBusy`, writing nothing.

    Entering creates `out_dir` if it does not exist (a file there, or a folder that cannot be
    created or written, is a `ValueError` naming `out_dir`). On exit the lock is released, and
    the lock file and the folder go if this lock created them (the folder if it is empty), so a
    run stopped before it wrote anything leaves the folder as it was.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self._fd: int | None = None
        self._created = False  # the folder
        self._created_file = False
        self._info: dict[str, Any] = {}

    def __enter__(self) -> FolderLock:
        self._created = _ensure_folder(self.out_dir)
        self._fd, self._created_file = _lock(self.out_dir / LOCK_FILE)
        self._info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
        }
        self._write()
        return self

    def update(self, **fields: Any) -> None:
        """Record progress (e.g. `step=`) for `holder()` readers; a failed write is ignored."""
        self._info.update(fields)
        self._write()

    def _write(self) -> None:
        text = json.dumps(self._info).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        except OSError:  # a full disk: the lock holds all the same
            pass

    def __exit__(self, *exc: Any) -> None:
        if self._created_file:  # still held: whoever opened it meanwhile drops it (`_lock`)
            (self.out_dir / LOCK_FILE).unlink(missing_ok=True)
        if self._created and not any(self.out_dir.iterdir()):
            self.out_dir.rmdir()
        os.close(self._fd)  # releases the lock
        self._fd = None


def holder(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Who holds `out_dir`'s lock (`pid`, `host`, `since`, `command`, `step`), or None if free.

    Reads only: a folder without a lock file is free.
    """
    path = Path(out_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # held for an instant (see `_take`)
        except OSError:
            return _read(fd) or {"pid": "?", "host": "?"}
        return None
    finally:
        os.close(fd)  # also releases a shared lock taken just now
