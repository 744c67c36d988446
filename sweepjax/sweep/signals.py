"""SIGINT and SIGTERM at any moment: the first asks the sweep to stop, the second stops at once.

While a `StopOnSignal` is entered, the first SIGINT or SIGTERM is recorded and announced in
one line; the sweep polls `received` before training and between chunks, then saves and exits
(resumable). A second signal ends the process at once with exit code 128 + signal number
(130 for Ctrl-C) and one line, no traceback, even while the main thread is inside a long
compilation: signals are read by a small thread from the interpreter's wakeup file descriptor,
so they do not wait for the main thread to return to Python. Stopping at once is safe for the
files: checkpoints and result files are replaced atomically.

Once the sweep has finished (`finish`: its results are written), a signal no longer stops
anything: it is answered with one line and ignored, and the command still exits 0. The
command's `StopOnSignal` (`ends_process`) keeps answering so until the process exits, and
ignores them without a word after the process's exit handlers, in the libraries' teardown,
where no Python code runs to answer them; any other restores the previous handlers when it
exits.

Handlers are installed only from the main thread and only when `enabled`; entering a second
`StopOnSignal` while one is active shares the outer one (a new sweep: not finished) and
installs its handlers again (the command installs one before it imports JAX, and
`sweepjax.run` finds it after `jax.distributed.initialize` may have replaced the SIGTERM
handler).

>>> with StopOnSignal(enabled=True) as stop:
...     stop.received is None
True
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Records the first SIGINT or SIGTERM; a second one exits the process at once.

    Args:
      enabled: install the handlers (only ever from the main thread).
      ends_process: the process exits when this block does (the command): after `finish`,
        signals stay answered and ignored instead of the previous handlers coming back.
    """

    def __init__(self, enabled: bool = True, *, ends_process: bool = False):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.ends_process = ends_process
        self._finished = False
        self._received: str | None = None
        self._outer: StopOnSignal | None = None
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._pipe: tuple[int, int] | None = None
        self._watcher: threading.Thread | None = None
        self._count = 0  # signals seen by `_watch`, the one place that counts them

    @property
    def received(self) -> str | None:
        """The name of the first signal received (`"SIGINT"`), or None."""
        return self._outer.received if self._outer is not None else self._received

    def finish(self) -> None:
        """The sweep finished and its results are written: from now on a signal is answered
        with one line and ignored."""
        (self._outer or self)._finished = True

    def __enter__(self) -> StopOnSignal:
        if not self.enabled:
            return self
        current = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
        if isinstance(current, StopOnSignal):
            self._outer = current
            current._finished = False
            # Take the signals back from native code that replaced the handlers since (JAX's
            # distributed runtime installs its own SIGTERM handler), unseen by getsignal.
            for sig in SIGNALS:
                signal.signal(sig, current._handle)
            return self
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        self._pipe = (reader, writer)
        self._previous_wakeup = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._watcher = threading.Thread(target=self._watch, args=(reader,), daemon=True)
        self._watcher.start()
        if self.ends_process:  # before JAX registers its own: runs after them
            atexit.register(self._at_exit)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        """The main thread's handler: records at once what `_watch` announces and counts, and
        answers a signal after `finish` (written straight to the standard error's file
        descriptor: the main thread may be inside a write to `sys.stderr` this instant)."""
        name = signal.Signals(signum).name
        if self._finished:
            line = (
                f"\nsweepjax: {name} arrived after the sweep finished; its results are complete.\n"
            )
            with contextlib.suppress(OSError):
                os.write(2, line.encode())
        elif self._received is None:
            self._received = name

    def _watch(self, reader: int) -> None:
        while True:
            try:
                data = os.read(reader, 64)
            except OSError:
                return
            if not data:  # the write end was closed: `__exit__`
                return
            for signum in data:
                if signum in SIGNALS:
                    self._on_signal(signal.Signals(signum).name, signum)

    def _on_signal(self, name: str, signum: int) -> None:
        if self._finished:  # `_handle` answers it
            return
        self._count += 1
        if self._count == 1:
            self._received = self._received or name
            print(
                f"\nsweepjax: {name} received; stopping at the next safe point: before training, "
                "or after the current chunk with a checkpoint (send it again to stop at once).",
                file=sys.stderr,
                flush=True,
            )
            return
        print(
            f"\nsweepjax: a second signal ({name}); stopped at once.", file=sys.stderr, flush=True
        )
        os._exit(128 + signum)

    def _at_exit(self) -> None:
        """The process's last exit handler: a finished sweep's signals are ignored from here on
        (Python would otherwise give them back their default, fatal action)."""
        if self._finished:
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc: Any) -> None:
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        if not (self.ends_process and self._finished):
            for sig, handler in self._previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        reader, writer = self._pipe
        os.close(writer)  # the watcher's read returns empty: it ends
        self._watcher.join(timeout=1.0)
        os.close(reader)
        self._pipe = None
