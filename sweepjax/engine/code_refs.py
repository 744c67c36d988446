"""Where a user's code can be imported from again, in a fresh process, and importing it.

A sweep folder records each piece of user code it ran (a schedule's function, a `Task`, a Flax
model) as JSON, one of:

  * `{"ref": "module:name"}`: an attribute at the top level of an importable module (a function,
    a class, or an object such as `my_task = Task(...)`); `{"ref": "/path/to/file.py:name"}`
    the same in an experiment file, or in the script `python script.py` ran;
  * `{"call": "module:Class", "kwargs": {...}}`: a dataclass instance (a `flax.linen` module,
    a `Task`) rebuilt from its fields, each one encoded the same way;
  * `{"literal": "(16, 16)"}`: a Python literal;
  * `{"missing": "why"}`: what cannot be imported again: a lambda, a function defined inside
    another, code typed into an interactive session, or a script without an
    `if __name__ == "__main__":` guard (importing it again would run its sweep again).

>>> import sweepjax.engine.schedules as schedules
>>> encode(schedules.sgdr_cycle), encode((16, 16))
({'ref': 'sweepjax.engine.schedules:sgdr_cycle'}, {'literal': '(16, 16)'})
>>> decode(encode(schedules.sgdr_cycle)) is schedules.sgdr_cycle
True
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import flax.linen as nn

# Files are loaded as modules of this name plus the file's stem (as experiments always were).
FILE_PREFIX = "sweepjax_experiment_"
_LITERALS = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict)


class NotImportable(ValueError):
    """A piece of user code that a fresh process could not import again; the message says why."""


class CodeMissing(ValueError):
    """A recorded reference that cannot be imported now; the message names it and the cause."""


def load_file(path: str | Path) -> ModuleType:
    """Run the Python file `path` as a new module `sweepjax_experiment_<stem>`, kept in
    `sys.modules` so that the code it defines can be found again. Errors propagate."""
    path = Path(path).resolve()
    name = FILE_PREFIX + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if before is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = before
        raise
    return module


def encode(obj: Any) -> dict[str, Any]:
    """The JSON record of `obj` (see the module's docstring); `NotImportable` says why not.

    >>> encode(lambda step, hp: 0.0)
    Traceback (most recent call last):
    ...
    sweepjax.engine.code_refs.NotImportable: a lambda; define it with `def` at the top level of a module
    """
    if _is_literal(obj):
        return {"literal": repr(obj)}
    found = _find(obj)
    if found is not None:
        return {"ref": found}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encode_call(obj)
    raise NotImportable(_why(obj))


def decode(record: Mapping[str, Any]) -> Any:
    """The object a record of `encode` describes, imported; `CodeMissing` names what is not there.

    >>> decode({"call": "sweepjax.engine.code_refs:CodeMissing", "kwargs": {}})
    CodeMissing()
    """
    if "literal" in record:
        return ast.literal_eval(record["literal"])
    if "ref" in record:
        return resolve(record["ref"])
    if "call" in record:
        kwargs = {k: decode(v) for k, v in record.get("kwargs", {}).items()}
        make = resolve(record["call"])
        try:
            return make(**kwargs)
        except Exception as err:  # the class changed since the sweep ran
            raise CodeMissing(
                f"{record['call']}(**{sorted(kwargs)}) failed: {_one_line(err)}"
            ) from err
    if "missing" in record:
        raise CodeMissing(f"not recorded when the sweep ran: {record['missing']}")
    raise CodeMissing(f"{dict(record)!r} is not a record of code; allowed: ref, call, literal.")


def resolve(ref: str) -> Any:
    """The object `module:name` (or `/path/file.py:name`) names, its module imported.

    >>> resolve("sweepjax.engine.code_refs:resolve") is resolve
    True
    >>> resolve("no_such_module_xyz:f")
    Traceback (most recent call last):
    ...
    sweepjax.engine.code_refs.CodeMissing: no_such_module_xyz:f: No module named 'no_such_module_xyz'
    """
    place, _, name = ref.rpartition(":")
    if not place or not name:
        raise CodeMissing(f"{ref!r} is not a reference; allowed: module:name or file.py:name.")
    module = import_module(place, ref)
    value: Any = module
    for part in name.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CodeMissing(f"{ref}: {place} has no {name!r}") from None
    return value


def module_place(name: str) -> str:
    """Where module `name` is imported from in a fresh process: its name, or its file's path
    (an experiment file, or the script of `__main__`); `NotImportable` says why nowhere."""
    module = sys.modules.get(name)
    if module is None:
        raise NotImportable(f"its module {name} is no longer loaded")
    if name == "__main__":
        return _main_place(module)
    if name.startswith(FILE_PREFIX) and getattr(module, "__file__", None):
        return str(Path(module.__file__).resolve())
    return name


def import_module(place: str, ref: str | None = None) -> ModuleType:
    """Module `place` (a name, or a file's path) imported; `CodeMissing` names `ref` and why not."""
    ref = ref or place
    if place.endswith(".py"):
        loaded = _loaded_file(place)
        if loaded is not None:
            return loaded
        if not Path(place).is_file():
            raise CodeMissing(f"{ref}: the file {place} is not there (moved or deleted?)")
        try:
            return load_file(place)
        except Exception as err:
            raise CodeMissing(f"{ref}: running {place} failed: {_one_line(err)}") from err
    try:
        return importlib.import_module(place)
    except ModuleNotFoundError as err:
        if err.name is not None and f"{place}.".startswith(
            f"{err.name}."
        ):  # itself, not a dependency
            raise CodeMissing(f"{ref}: {err}") from None
        raise CodeMissing(f"{ref}: importing {place} failed: {_one_line(err)}") from err
    except Exception as err:
        raise CodeMissing(f"{ref}: importing {place} failed: {_one_line(err)}") from err


def _loaded_file(place: str) -> ModuleType | None:
    """The module already loaded from file `place`, if any (a file is run once per process)."""
    module = sys.modules.get(FILE_PREFIX + Path(place).stem)
    file = getattr(module, "__file__", None)
    if file is not None and Path(file).resolve() == Path(place).resolve():
        return module
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _is_literal(obj: Any) -> bool:
    if type(obj) not in _LITERALS:
        return False
    try:
        return ast.literal_eval(repr(obj)) == obj
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _home_modules(obj: Any) -> list[str]:
    """The modules that may hold `obj` at their top level: its own (its class's), and those
    of the functions among a dataclass's fields (a `Task`'s loss)."""
    names = [getattr(obj, "__module__", None), type(obj).__module__]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
        names += [getattr(v, "__module__", None) for v in fields if callable(v)]
    return list(dict.fromkeys(n for n in names if isinstance(n, str)))


def _find(obj: Any) -> str | None:
    """`place:name` of a module attribute that is `obj`, or None when no module holds it."""
    for module_name in _home_modules(obj):
        module = sys.modules.get(module_name)
        name = None if module is None else _name_in(module, obj)
        if name is not None:
            return f"{module_place(module_name)}:{name}"
    return None


def _name_in(module: ModuleType, obj: Any) -> str | None:
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(qualname, str) and "<" not in qualname:
        value: Any = module
        for part in qualname.split("."):
            value = getattr(value, part, None)
        if value is obj:
            return qualname
    for name, value in list(vars(module).items()):
        if value is obj and not name.startswith("__"):
            return name
    return None


def _encode_call(obj: Any) -> dict[str, Any]:
    """A dataclass instance as its class and the fields that differ from their defaults."""
    kwargs = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name, dataclasses.MISSING)
        if not field.init or value is dataclasses.MISSING or _is_default(field, value):
            continue
        if field.name == "parent" and value is None and isinstance(obj, nn.Module):
            continue  # a linen module of its own, no submodule
        try:
            kwargs[field.name] = encode(value)
        except NotImportable as err:
            raise NotImportable(f"its {field.name}: {err}") from None
    cls = type(obj)
    found = _find(cls)
    if found is None:
        raise NotImportable(f"its class: {_why(cls)}")
    return {"call": found, "kwargs": kwargs}


def _is_default(field: dataclasses.Field, value: Any) -> bool:
    if field.default is dataclasses.MISSING:
        return False
    try:
        return value is field.default or bool(value == field.default)
    except Exception:  # an array's comparison, say
        return False


def _why(obj: Any) -> str:
    """Why `obj` cannot be found again, and what to do instead."""
    qualname = getattr(obj, "__qualname__", None)
    top = "at the top level of a module"
    if getattr(obj, "__name__", None) == "<lambda>":
        return f"a lambda; define it with `def` {top}"
    if isinstance(qualname, str) and "<locals>" in qualname:
        return f"{qualname} is defined inside a function; define it {top}"
    if isinstance(obj, type) or callable(obj) and isinstance(qualname, str):
        module = getattr(obj, "__module__", "?")
        return f"{qualname} is not found in its module {module}; define it {top}"
    return f"a {type(obj).__qualname__} object that no module holds; define it {top}"


def _main_place(module: ModuleType) -> str:
    """Where the code of `__main__` is found again: the module `python -m` ran, or the script's
    path, when the script guards what it runs with `if __name__ == "__main__":`."""
    file = getattr(module, "__file__", None)
    if not file:
        raise NotImportable(
            "it is defined in an interactive session (__main__ has no file); define it in a "
            "module or an experiment file"
        )
    path = Path(file).resolve()
    if not _guarded(str(path)):
        raise NotImportable(
            f'it is defined in the script {path}, which has no `if __name__ == "__main__":` '
            "guard, so importing it again would run it again; put what the script runs under "
            "that guard, or define the code in a module"
        )
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return spec.name  # python -m package.module
    return str(path)


@functools.cache
def _guarded(path: str) -> bool:
    """Whether the script at `path` has a top-level `if __name__ == "__main__":`."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    constants = [s.value for s in sides if isinstance(s, ast.Constant)]
    return isinstance(test.ops[0], ast.Eq) and names == ["__name__"] and constants == ["__main__"]
