"""Files written whole or not at all, and arrays read back without trusting the file.

Every layer that writes a file (a data set's cache, the result files, the report, a tracker's
book of runs) writes it through `atomic_write`.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def atomic_write(path: Path, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write `path` through a temporary file in the same folder and an atomic rename.

    The file gets the mode a plain `open()` gives a new file (0o666 less the umask, so shared
    folders stay shared). A crash or a full disk leaves the previous file intact and no
    temporary file behind.

    Raises:
      OSError: the folder or the file could not be written; it names `path`, not the
        temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # as open() does
        created = True
        _write_and_close(
            os.fdopen(fd, "wb" if binary else "w", newline=None if binary else ""), write
        )
        os.replace(tmp, path)
    except BaseException as err:
        if created:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, err.strerror, os.fspath(path)) from err
        raise


def _write_and_close(f: io.IOBase, write: Callable[[io.IOBase], None]) -> None:
    """`write(f)`, then flush it to the disk and close it; a failed write closes it quietly
    (closing flushes again, and on a full disk that would only fail again)."""
    try:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        raise
    f.close()


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file.

    Raises:
      FileNotFoundError: there is no such file.
      zipfile.BadZipFile, ValueError, EOFError: it is damaged. (Unlike `np.load`, a file that
        is not a zip archive is not taken for a pickle, whose error suggests unpickling it.)
    """
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise zipfile.BadZipFile("File is not a zip file")
        file.seek(0)
        with np.load(file) as arrays:
            return {k: np.asarray(arrays[k]) for k in arrays.files}
