"""What can go wrong, as exception kinds, and the exit code of each kind.

The `sweepjax` command maps every failure to one line on stderr and one of these codes:

| code | meaning | raised as |
| --- | --- | --- |
| 0 | done | |
| 1 | a file or checkpoint could not be written or read; the last good checkpoint is named | `StorageError` (and `OSError`) |
| 2 | bad input: a config key, a path, a folder another sweep holds | `ValueError` |
| 70 | an internal error (a bug in sweepjax); a short report says where | anything else |
| 75 | interrupted by SIGINT or SIGTERM; resumable (`sweepjax resume OUT_DIR`) | `Interrupted` |
| 130 | stopped at once by a second SIGINT | |

>>> exit_code(ValueError("steps: -1 ..."))
2
>>> exit_code(StorageError("results.csv: disk full"))
1
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_STORAGE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again later (resume)
EXIT_SIGINT = 130  # 128 + SIGINT, as a shell reports a process stopped by Ctrl-C


class StorageError(RuntimeError):
    """A file or checkpoint could not be written or read (disk full, permissions, damage)."""


class Interrupted(Exception):
    """SIGTERM or SIGINT stopped a sweep: before training (nothing was written), or between
    chunks (a checkpoint and partial results were written: resumable).

    Attributes:
      step: the step the checkpoint holds (0 when it stopped before training).
      out_dir: the sweep's output directory (`resume(out_dir)` continues it).
      result: the partial `Result` written there, or None when it stopped before training.
    """

    def __init__(self, message: str, *, step: int = 0, out_dir=None, result=None):
        super().__init__(message)
        self.step, self.out_dir, self.result = step, out_dir, result


def exit_code(err: BaseException) -> int:
    """The command's exit code for an exception that stopped it."""
    if isinstance(err, Interrupted):
        return EXIT_INTERRUPTED
    if isinstance(err, ValueError):
        return EXIT_BAD_INPUT
    if isinstance(err, (StorageError, OSError)):
        return EXIT_STORAGE
    return EXIT_INTERNAL


def describe_os_error(err: OSError, what: str) -> str:
    """One line for an `OSError` met while doing `what`: the path, the cause, what to do."""
    path = f" {err.filename}" if err.filename else ""
    advice = {
        errno.ENOSPC: "free some space and try again",
        errno.EDQUOT: "free some space and try again",
        errno.EACCES: "check the folder's permissions or choose another one",
        errno.EPERM: "check the file's permissions and attributes or choose another folder",
        errno.EROFS: "the file system is read-only; choose another folder",
    }.get(err.errno, "check the path and try again")
    return f"could not {what}{path}: {err.strerror or err}; {advice}."
