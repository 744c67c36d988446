"""The user's code a sweep ran, recorded in its saved config and imported back by a new process.

`Config.to_json` adds, when the sweep runs any code of the user's, a `"code"` entry (so
`sweep.json`, every checkpoint and a bucket plan carry it): for each schedule family
`register_schedule` added, its function, its defaults and the module (or file) whose top level
registered it; for a `Task` object and a Flax model, where they are found (records of
`sweepjax.engine.code_refs`):

    "code": {"schedules": {"halving": {"fn": {"ref": "my_code:halving"},
                                       "defaults": {"literal": "{'half_life': 100.0}"},
                                       "registered_in": "my_code"}},
             "task": {"ref": "my_code:smooth_task"},
             "model": {"call": "my_code:Net", "kwargs": {"hidden": {"literal": "(16,)"}}}}

`restore` imports it all back for `resume` (raising one error that names every missing
`module:name`); `schedule_problems` brings back the schedules for the report and says which it
cannot. Code that cannot be recorded (a lambda, a function in an interactive session) is
recorded as `{"missing": why}`, and `warn_unrecorded` warns of it (`UserCodeWarning`) when the
sweep starts.
A folder written before this record behaves as before: nothing is imported.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweepjax.engine.code_refs import (
    CodeMissing,
    NotImportable,
    decode,
    encode,
    import_module,
    module_place,
)
from sweepjax.engine.schedules import BUILTIN_SCHEDULES, SCHEDULES, register_schedule
from sweepjax.engine.user_code import name_of

CODE_KEY = "code"  # the saved config's entry; never compared between a sweep and its resume
PIECES = ("schedules", "task", "model")


class UserCodeWarning(UserWarning):
    """A piece of the user's code that a sweep folder cannot record for `resume` and `report`."""


def schedule_names(config_json: Mapping[str, Any]) -> tuple[str, ...]:
    """The schedule families a saved config names: `schedule`, `space.schedule`, `schedules`.

    >>> schedule_names({"schedule": "cosine", "schedules": {"momentum": "halving"},
    ...                 "space": {"schedule": {"distribution": "Choice", "values": ["sgdr"]}}})
    ('cosine', 'sgdr', 'halving')
    """
    space = config_json.get("space")
    chosen = space.get("schedule") if isinstance(space, Mapping) else None
    if isinstance(chosen, Mapping):
        chosen = chosen.get("values")
    schedules = config_json.get("schedules")
    names: list[Any] = []
    for value in (config_json.get("schedule"), chosen):
        names += [value] if isinstance(value, str) else list(value or ())
    names += list(schedules.values()) if isinstance(schedules, Mapping) else []
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str)))


def record(config_json: Mapping[str, Any], model: Any, task: Any) -> dict[str, Any]:
    """The `"code"` entry of a config's JSON (empty when it runs no code of the user's).

    >>> record({"schedule": "cosine"}, {"name": "mlp"}, "classification")
    {}
    """
    code: dict[str, Any] = {}
    schedules = {
        name: _schedule_record(name)
        for name in schedule_names(config_json)
        if name in SCHEDULES and name not in BUILTIN_SCHEDULES
    }
    if schedules:
        code["schedules"] = schedules
    if not isinstance(task, str):
        code["task"] = _encoded(task)
    if not isinstance(model, Mapping | str):
        code["model"] = _encoded(model)
    return code


def warn_unrecorded(config_json: Mapping[str, Any]) -> list[str]:
    """Warn (`UserCodeWarning`) of each piece of a config's code that no new process can import
    again, when its sweep starts; returns the warnings' texts.

    >>> warn_unrecorded({"code": {"task": {"ref": "my_code:task"}}})
    []
    """
    texts = []
    for piece, why in _unrecorded(config_json.get(CODE_KEY) or {}):
        schedule = piece.startswith("schedule")  # the report draws it; a model it never needs
        by = "`sweepjax resume` and `sweepjax report`" if schedule else "`sweepjax resume`"
        texts.append(
            f"{piece} cannot be imported again by {by}: {why}. Until then, resume the sweep "
            "in a Python process that has it: sweepjax.resume(out_dir, config=...)"
        )
    for text in texts:  # shown at the user's own call (`sweepjax.run`), not inside sweepjax
        warnings.warn(text, UserCodeWarning, stacklevel=_user_level())
    return texts


def _user_level() -> int:
    """The `stacklevel` of the first caller outside the sweepjax package, for a warning issued
    by the function that calls this one."""
    package = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(2), 2
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def restore(
    config_json: Mapping[str, Any], where: str, pieces: tuple[str, ...] = PIECES
) -> dict[str, Any]:
    """Import the code a saved config records: register its schedule families that this process
    lacks, and return its `task` and `model` objects (those it records, among `pieces`).

    Raises:
      ValueError: naming every `module:name` (or file) that cannot be imported, and why.

    >>> restore({"schedule": "cosine"}, "resume runs/x")
    {}
    """
    code = config_json.get(CODE_KEY) or {}
    problems = []
    if "schedules" in pieces:
        for name, entry in (code.get("schedules") or {}).items():
            problems.append(_bring_back(name, entry))
    out = {}
    for key in ("task", "model"):
        if key in pieces and key in code:
            try:
                out[key] = decode(code[key])
            except CodeMissing as err:
                problems.append(f"the {key}: {err}")
    problems = [p for p in problems if p]
    if problems:
        raise ValueError(
            f"{where}: cannot import the code the sweep ran: {'; '.join(problems)}. Put the "
            "folder holding each module on PYTHONPATH (a file: put it back at its path), or "
            "resume in Python with the code at hand: sweepjax.resume(out_dir, config=...)."
        )
    return out


def schedule_problems(config_json: Mapping[str, Any]) -> list[str]:
    """Register the schedule families a saved config names that this process lacks, from its
    record; one line for each that stays unknown (the report then leaves out its figure).

    >>> schedule_problems({"schedule": "no_such_family"})  # doctest: +ELLIPSIS
    ["schedule 'no_such_family' is not registered in this process and the sweep records ..."]
    """
    recorded = (config_json.get(CODE_KEY) or {}).get("schedules") or {}
    problems = []
    for name in schedule_names(config_json):
        if name in SCHEDULES:
            continue
        if name in recorded:
            problems.append(_bring_back(name, recorded[name]))
        else:
            problems.append(
                f"schedule {name!r} is not registered in this process and the sweep records no "
                "code for it (it ran before sweepjax recorded user code): register it "
                "(sweepjax.register_schedule) before writing the report"
            )
    return [p for p in problems if p]


def _encoded(obj: Any) -> dict[str, Any]:
    try:
        return encode(obj)
    except NotImportable as err:
        return {"missing": f"{name_of(obj)}: {err}"}


def _schedule_record(name: str) -> dict[str, Any]:
    schedule = SCHEDULES[name]
    out = {"fn": _encoded(schedule.fn)}
    if schedule.given_defaults is not None:
        out["defaults"] = _encoded(schedule.given_defaults)
    if schedule.registered_in is not None:
        with contextlib.suppress(NotImportable):  # then fn and defaults bring it back
            out["registered_in"] = module_place(schedule.registered_in)
    return out


def _unrecorded(code: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each piece of a `"code"` entry that no process can bring back, and why."""
    out = []
    for name, entry in (code.get("schedules") or {}).items():
        missing = [entry[k]["missing"] for k in ("fn", "defaults") if "missing" in entry.get(k, {})]
        if missing and "registered_in" not in entry:
            out.append((f"schedule {name!r}", missing[0]))
    for key in ("task", "model"):
        if "missing" in code.get(key, {}):
            out.append((f"the {key}", code[key]["missing"]))
    return out


def _bring_back(name: str, entry: Mapping[str, Any]) -> str | None:
    """Register schedule `name` from its record (importing the module that registered it,
    else registering its recorded function); None when done, else why not."""
    if name in SCHEDULES:
        return None
    tried = []
    place = entry.get("registered_in")
    fn_place = str(entry.get("fn", {}).get("ref", "")).rpartition(":")[0]
    if place is not None and place != fn_place:  # else importing the function imports it
        try:
            import_module(place)
        except CodeMissing as err:
            tried.append(str(err))
        if name in SCHEDULES:
            return None
    try:
        fn = decode(entry.get("fn", {"missing": "no function recorded"}))
        if name in SCHEDULES:  # importing its function's module registered it
            return None
        defaults = decode(entry["defaults"]) if "defaults" in entry else None
    except CodeMissing as err:
        tried.append(str(err))
        return f"schedule {name!r}: {'; '.join(tried)}"
    register_schedule(name, fn, defaults)
    return None
