"""Sweeps as code: find an experiment file and call its `get_config()`.

An experiment is a Python file whose `get_config()` returns a `Config` and whose docstring gives
its run command; it may also define `summarize(out_dir, ...)`, the text that shows what its
finished sweep(s) found (`sweepjax summarize`). `load_experiment("default")` looks for
`experiments/default.py` under the current directory, then among the built-in experiments
installed with the package (`sweepjax.experiments`, the repository's `experiments/`).
"""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from sweepjax.engine.code_refs import load_file
from sweepjax.sweep.config import Config


def experiment_dirs() -> list[Path]:
    """Folders searched for experiments by name, in order: the user's, then the built-in ones.

    >>> experiment_dirs()[0] == Path.cwd() / "experiments"
    True
    """
    import sweepjax.experiments as builtin

    return [Path.cwd() / "experiments", Path(builtin.__file__).resolve().parent]


def available_experiments() -> list[str]:
    """Names of the experiments found in `experiment_dirs()`."""
    names = {p.stem for d in experiment_dirs() if d.is_dir() for p in d.glob("*.py")}
    return sorted(n for n in names if not n.startswith("_"))


def find_experiment(name: str) -> Path:
    """The file of experiment `name` (a path to a `.py` file, or a name in `experiments/`)."""
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    for folder in experiment_dirs():
        candidate = folder / f"{name}.py"
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"experiment: {name!r} not found; allowed: a path to a .py file or one of "
        f"{available_experiments()} (searched {[str(d) for d in experiment_dirs()]})."
    )


def load_module(name: str) -> ModuleType:
    """The module of experiment `name` (a path to a `.py` file, or a name in `experiments/`),
    run afresh as `sweepjax_experiment_<stem>`: the code it defines is recorded with a sweep
    as this file's, which `resume` and `report` run again (`sweepjax.engine.code_refs`)."""
    path = find_experiment(name)
    try:
        return load_file(path)
    except Exception as err:  # the file's own code failed: a syntax error, an import, a bug
        raise _load_error(path, err) from err


def _load_error(path: Path, err: Exception) -> ValueError:
    """One line for an exception raised by experiment file `path`: its type, message and the
    line of the file where it was raised (the deepest frame in the file, or a syntax error's).

    >>> _load_error(Path("exp.py"), SyntaxError("invalid syntax", ("exp.py", 3, 1, "x = (")))
    ValueError('experiment: exp.py failed to load: SyntaxError: invalid syntax (line 3)')
    """
    file = os.path.realpath(path)
    if isinstance(err, SyntaxError) and os.path.realpath(err.filename or "") == file:
        message, line = err.msg, err.lineno
    else:  # raised while running the file, maybe deeper, in what it calls or imports
        message = str(err)
        frames = traceback.extract_tb(err.__traceback__)
        line = next(
            (f.lineno for f in reversed(frames) if os.path.realpath(f.filename) == file), None
        )
    message = " ".join(message.split())  # on one line
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    where = f" (line {line})" if line is not None else ""
    return ValueError(f"experiment: {path} failed to load: {text}{where}")


def summarize(name: str, out_dirs: Sequence[str]) -> str:
    """The text of experiment `name`'s `summarize(*out_dirs)`: the rule its finished sweeps show.

    Raises:
      ValueError: if the experiment defines no `summarize`, or it takes other directories.
    """
    module = load_module(name)
    if not hasattr(module, "summarize"):
        raise ValueError(f"experiment: {name!r} has no summarize() function.")
    try:
        inspect.signature(module.summarize).bind(*out_dirs)
    except TypeError as err:
        raise ValueError(
            f"experiment: {name!r}'s summarize{inspect.signature(module.summarize)} does not take "
            f"{len(out_dirs)} sweep directories ({err})."
        ) from err
    return module.summarize(*out_dirs)


def load_experiment(name: str = "default") -> Config:
    """The `Config` returned by the experiment's `get_config()`.

    >>> load_experiment("default").population
    64
    """
    path = find_experiment(name)
    module = load_module(name)
    if not hasattr(module, "get_config"):
        raise ValueError(f"experiment: {path} has no get_config() function.")
    try:
        config = module.get_config()
    except Exception as err:
        raise _load_error(path, err) from err
    if not isinstance(config, Config):
        raise ValueError(
            f"experiment: {path}'s get_config() returned {type(config).__name__}, not Config."
        )
    return config
