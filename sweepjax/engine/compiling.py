"""Compilation: where compiled programs are kept between runs, and what compiling cost.

**The persistent cache.** JAX's persistent compilation cache is on by default, in a per-user
folder: a rerun, a resume, or the next sweep of the same structure loads its compiled programs
from disk instead of compiling them; tracing and lowering still run (under a second for the
default sweep). The config key `compile_cache` chooses the folder:

* `"auto"` (the default): `$SWEEPJAX_COMPILE_CACHE` when set (a folder, or `off`), else the
  folder the user gave JAX itself (`JAX_COMPILATION_CACHE_DIR`), else
  `$XDG_CACHE_HOME/sweepjax/xla` (`~/.cache/sweepjax/xla`);
* a folder: that folder;
* `"off"`: no persistent cache.

Every program is cached, however quickly it compiled, and the folder is kept under
`MAX_BYTES` by evicting the least recently used programs. The cache holds executable code:
the folder is created readable and writable by its owner only, and should not be shared with
users you do not trust. JAX's own settings for these (`JAX_PERSISTENT_CACHE_*`,
`JAX_COMPILATION_CACHE_MAX_SIZE`) win when set. An entry that fails to load (a torn file) is
removed, with one `CompileCacheWarning`, and its program compiled and written again.

**The count.** `compile_count()` reads what this process has spent compiling (seconds,
programs, and how many of them came from the cache) since its first reading; a span is the
difference of two readings, or the count of a `counting_compiles()` block. A sweep reports its
own span in its summary (`compile_seconds`; `programs_compiled` by XLA and
`programs_from_cache`).

>>> cache_folder("off") is None
True
>>> str(cache_folder("/tmp/my-cache"))
'/tmp/my-cache'
>>> before = compile_count()
>>> (compile_count() - before).programs
0
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "SWEEPJAX_COMPILE_CACHE"
OFF = "off"
MAX_BYTES = 2 * 1024**3
# JAX option -> (its environment variable, the value sweepjax sets unless the user set it).
_JAX_DEFAULTS = {
    "jax_persistent_cache_min_compile_time_secs": (
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        0.0,
    ),
    "jax_persistent_cache_min_entry_size_bytes": ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", -1),
    "jax_compilation_cache_max_size": ("JAX_COMPILATION_CACHE_MAX_SIZE", MAX_BYTES),
}


def default_folder() -> Path:
    """The per-user cache folder: `$XDG_CACHE_HOME/sweepjax/xla`, or `~/.cache/sweepjax/xla`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "sweepjax", "xla")


def cache_folder(setting: str | None = "auto") -> Path | None:
    """The folder `setting` (the config key `compile_cache`) names; None for no cache.

    >>> cache_folder(None) is None
    True
    """
    if setting is None or setting == OFF:
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    from_env = os.environ.get(ENV)
    if from_env is not None:
        return None if from_env in ("", OFF) else Path(from_env).expanduser()
    own = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return Path(own).expanduser() if own else default_folder()


def use_compile_cache(setting: str | None = "auto") -> Path | None:
    """Point JAX's persistent compilation cache at `cache_folder(setting)`, or turn it off.

    This sets JAX's process-wide options, so it applies to every program compiled afterwards in
    the process; `sweepjax.run` calls it with the config's `compile_cache`. Returns the folder.
    A folder that cannot be created turns the cache off (compiling still works) and says so.

    >>> folder = use_compile_cache("auto")  # as `sweepjax.run` does by default
    """
    folder = cache_folder(setting)
    if folder is not None:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            print(f"sweepjax: compile cache off: {folder}: {error.strerror}", file=sys.stderr)
            folder = None
    for name, (variable, value) in _JAX_DEFAULTS.items():
        if variable not in os.environ:
            jax.config.update(name, value)
    wanted = None if folder is None else str(folder)
    if folder is not None:
        _replace_damaged_entries()
    if jax.config.jax_compilation_cache_dir != wanted:
        jax.config.update("jax_compilation_cache_dir", wanted)
        compilation_cache.reset_cache()  # the next compilation opens the new folder
    return folder


class CompileCacheWarning(UserWarning):
    """A damaged entry of the persistent compile cache was removed; its program is compiled
    again and the entry rewritten."""


def _replace_damaged_entries() -> None:
    """Make JAX's persistent cache remove an entry that fails to load (idempotent).

    JAX warns of such an entry (two lines each time it is read) and compiles the program, but
    never rewrites the entry, which it finds already there: every later run would warn again.
    Its cache read is wrapped so that the entry is removed instead, and the compiled program
    is then written in its place; one `CompileCacheWarning` says so, the first time.
    """
    from jax._src import compilation_cache as jax_cache  # the read JAX's compiler calls

    read = getattr(jax_cache, "get_executable_and_time", None)
    if read is not None and not hasattr(read, "replaces_damaged"):
        jax_cache.get_executable_and_time = _removing_damaged(read)


_warned = []  # whether this process has said that it removed a damaged entry


def _removing_damaged(read):
    """`read` (the cache read of JAX's compiler) removing an entry that fails to load; a miss
    then, unless JAX is told to raise such errors."""

    @functools.wraps(read)
    def replacing(cache_key: str, *args, **kwargs):
        try:
            return read(cache_key, *args, **kwargs)
        except Exception as err:
            if getattr(jax.config, "jax_raise_persistent_cache_errors", False):
                raise
            folder = Path(jax.config.jax_compilation_cache_dir)
            for path in folder.glob(f"{glob.escape(cache_key)}*"):  # the entry, its access time
                with contextlib.suppress(OSError):
                    path.unlink()
            if not _warned:
                _warned.append(cache_key)
                program = cache_key.rsplit("-", 1)[0]
                warnings.warn(
                    f"compile cache {folder}: a damaged entry is removed and its program "
                    f"compiled again ({program}: {type(err).__name__}: {err}); others found "
                    "in this run are replaced without a word.",
                    CompileCacheWarning,
                    stacklevel=2,
                )
            return None, None

    replacing.replaces_damaged = True
    return replacing


@dataclasses.dataclass(frozen=True)
class CompileCount:
    """Compilation in this process: seconds tracing, lowering and compiling (or loading),
    XLA programs compiled or loaded, and how many of those the persistent cache gave."""

    seconds: float = 0.0
    programs: int = 0
    from_cache: int = 0

    def __sub__(self, before: CompileCount) -> CompileCount:
        return CompileCount(
            self.seconds - before.seconds,
            self.programs - before.programs,
            self.from_cache - before.from_cache,
        )


_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_PROGRAM_EVENT = "/jax/core/compile/backend_compile_duration"  # once per program, cached or not
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class _Tally:
    """Compilation since the first reading. JAX's event listeners are process-wide and cannot
    be removed, so one tally listens, from its first reading on, and a span is the difference
    of two readings."""

    def __init__(self) -> None:
        self.seconds, self.programs, self.from_cache = 0.0, 0, 0
        self._listening = False
        self._lock = threading.Lock()

    def reading(self) -> CompileCount:
        with self._lock:
            if not self._listening:
                jax.monitoring.register_event_duration_secs_listener(self._duration)
                jax.monitoring.register_event_listener(self._event)
                self._listening = True
        return CompileCount(self.seconds, self.programs, self.from_cache)

    def _duration(self, event: str, duration: float, **_: object) -> None:
        if event in _COMPILE_EVENTS:
            self.seconds += duration
        if event == _PROGRAM_EVENT:
            self.programs += 1

    def _event(self, event: str, **_: object) -> None:
        if event == _CACHE_HIT_EVENT:
            self.from_cache += 1


_TALLY = _Tally()


def compile_count() -> CompileCount:
    """A reading of this process's compilation; subtract an earlier reading for a span."""
    return _TALLY.reading()


@contextlib.contextmanager
def counting_compiles() -> Iterator[Callable[[], CompileCount]]:
    """Count a block's compilation: the function it yields gives the count so far, and after
    the block the block's whole.

    >>> with counting_compiles() as compiled:
    ...     _ = jax.jit(lambda x: x * 3).lower(1.0).compile()
    >>> compiled().programs, compiled().programs
    (1, 1)
    """
    before = compile_count()
    after: list[CompileCount] = []

    def count() -> CompileCount:
        return (after[0] if after else compile_count()) - before

    try:
        yield count
    finally:
        after.append(compile_count())
