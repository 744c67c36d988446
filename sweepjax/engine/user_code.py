"""The user's code failing, told as the user's error: what raised, and where in their code.

A model (or any function) the user hands to sweepjax runs inside JAX, Flax and sweepjax frames;
the line that matters to the user is the innermost frame of their own code. A frame is the
user's when its file is outside sweepjax, the libraries it runs user code through, and Python's
standard library.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sysconfig
import traceback
from pathlib import Path

# The packages whose frames sit between sweepjax and the user's code.
LIBRARIES = ("sweepjax", "jax", "jaxlib", "flax", "optax", "numpy", "treescope")


@functools.cache
def _library_folders() -> tuple[Path, ...]:
    folders = {Path(sysconfig.get_paths()["stdlib"]).resolve()}
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        for location in (spec and spec.submodule_search_locations) or ():
            folders.add(Path(location).resolve())
    return tuple(folders)


def _is_users(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen ...>, <string>: no file the user can open
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(folder) for folder in _library_folders())


def user_frame(err: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of `err`'s traceback in the user's code; None when there is none.

    >>> try:
    ...     int("x")
    ... except ValueError as err:
    ...     user_frame(err) is None  # a doctest's file is "<doctest ...>"
    True
    """
    frames = traceback.extract_tb(err.__traceback__)
    return next((f for f in reversed(frames) if _is_users(f.filename)), None)


def name_of(code: object) -> str:
    """What the user calls `code`: a class's or function's name, else its type's (an instance's
    attributes are not read: a Flax module's may run its user code).

    >>> name_of(int), name_of(len), name_of(3)
    ('int', 'len', 'int')
    """
    if isinstance(code, type) or inspect.isroutine(code):
        return code.__qualname__
    return type(code).__qualname__


def describe_failure(code: object, err: BaseException) -> str:
    """One line: `code` raised `err` (its first line), at the user's frame when there is one.

    >>> describe_failure(len, KeyError("inputs"))
    "len raised KeyError: 'inputs'"
    """
    lines = str(err).strip().splitlines()
    text = f"{name_of(code)} raised {type(err).__name__}" + (f": {lines[0]}" if lines else "")
    frame = user_frame(err)
    if frame is None:
        return text
    return f"{text} (at {frame.filename}:{frame.lineno}, in {frame.name})"
