"""Keep the noise of sweepjax's libraries out of the user's terminal.

Three sources are known, and each is handled at its cause where sweepjax can:

* Orbax warns through absl about the options of a read-only `CheckpointManager` ("Given
  directory is read only"); `sweepjax.sweep.checkpoint` opens no such manager. Any other absl log
  is kept off the command's terminal by `silence_library_logs` (unless `--verbose`).
* A failed Orbax restore (a damaged checkpoint, which `sweepjax.sweep.checkpoint.restore_latest`
  reports in one warning and falls back from) leaves tensorstore reads in flight on an event
  loop that Orbax has closed. When they finish, each raises `RuntimeError: Event loop is
  closed` in a tensorstore thread (printed by `sys.unraisablehook`), or its task or future logs
  "... exception was never retrieved" on the `asyncio` logger. `drop_failed_restore_noise`
  filters exactly these, whoever calls sweepjax.
* A library's error quoted in a sweepjax warning may span lines (TensorStore's spec of a
  damaged array, in `restore_latest`'s warning): the command prints it on one line.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import warnings

_NOISY_LOGGERS = ("absl", "matplotlib")  # what silence_library_logs quiets
# What asyncio logs when a task or future (of any kind: Task, Future, _GatheringFuture) that
# Orbax left behind is collected: the first line of the record.
_STRAGGLER_LOGS = re.compile(r"\w+ (exception was never retrieved|was destroyed but it is pending)")


def _is_closed_loop_callback(unraisable) -> bool:
    """Whether an unraisable exception is a late callback to an asyncio loop already closed."""
    err = unraisable.exc_value
    if not isinstance(err, RuntimeError) or str(err) != "Event loop is closed":
        return False
    frames = traceback.extract_tb(unraisable.exc_traceback)
    return any(frame.name == "call_soon_threadsafe" for frame in frames)


class _UnraisableFilter:
    """`sys.unraisablehook` that drops late callbacks to closed loops, passing on the rest."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable) -> None:
        if not _is_closed_loop_callback(unraisable):
            self.previous(unraisable)


class _OrbaxTaskFilter(logging.Filter):
    """Drops the `asyncio` records of Orbax's tasks and tensorstore's futures left behind by a
    failed restore (their text names an Orbax function or a tensorstore spec)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = "orbax" in message or "tensorstore" in message
        return not (_STRAGGLER_LOGS.match(message) and ours)


def drop_failed_restore_noise() -> None:
    """Filter the late errors a failed Orbax restore leaves behind (idempotent).

    Only `RuntimeError("Event loop is closed")` raised in `call_soon_threadsafe`, and the
    `asyncio` logger's records about unretrieved or pending Orbax tasks, are dropped; every
    other unraisable exception and log record passes.
    """
    if not isinstance(sys.unraisablehook, _UnraisableFilter):
        sys.unraisablehook = _UnraisableFilter(sys.unraisablehook)
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _OrbaxTaskFilter) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_OrbaxTaskFilter())


_format_warning = warnings.formatwarning


def _one_line(message, category, filename, lineno, line=None) -> str:
    """A sweepjax warning as one line, its text's line breaks (a library's error quoted in it,
    such as TensorStore's spec of a damaged array) run together; others as Python has them."""
    if category.__module__.split(".")[0] == "sweepjax":
        return f"sweepjax: warning: {' '.join(str(message).split())}\n"
    return _format_warning(message, category, filename, lineno, line)


def silence_library_logs() -> None:
    """Keep libraries' logs off the command's terminal; sweepjax's own warnings on one line.

    The `sweepjax` command calls it unless `--verbose`: the logs of absl (Orbax logs through
    it, a failed save as tracebacks that the command's one error line sums up) and matplotlib
    (it warns of a home it cannot write) are dropped but critical ones; the noise of a failed restore is dropped
    (`drop_failed_restore_noise`); and a sweepjax warning (a damaged checkpoint skipped, a data
    cache regenerated) prints as one line `sweepjax: warning: ...` instead of two.
    """
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    drop_failed_restore_noise()
    warnings.formatwarning = _one_line
