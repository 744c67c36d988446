"""Whether a folder's sweep is this sweep: the config keys a resume may change, and the
differences a checkpoint's (or `sweep.json`'s) config has with the config now (where the
user's code is imported from, `code_record.CODE_KEY`, is no difference).

A resumed sweep must be the sweep its checkpoint holds: the same structure, space, data and
policies. Only keys that change where or how often things are written or evaluated may differ
(`RESUMABLE_KEYS`: those `sweepjax.sweep.keys` marks resumable), and `steps`, a trial's
budget, is compared with the checkpoint's budget (`CheckpointMeta.budget_steps`), never with
its global step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sweepjax.sweep.code_record import CODE_KEY
from sweepjax.sweep.config import RENAMED_KEYS
from sweepjax.sweep.keys import KEYS, RESUMABLE_KEYS


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out if out else {prefix: value}
    return {prefix: value}


# Config keys added since checkpoints were first written, with the value an older checkpoint
# (which does not record them) meant.
ADDED_KEYS = {
    name: spec.value_before_added
    for name, spec in KEYS.items()
    if spec.value_before_added is not None
}


def differences(
    saved: Mapping[str, Any], config_json: Mapping[str, Any], data: Mapping[str, str]
) -> list[str]:
    """What makes a checkpoint's sweep differ from this one, one `key: saved != now` each.

    Keys in `RESUMABLE_KEYS` may differ. Distributions in `space` are compared whole.

    >>> differences({"config": {"model": {"hidden": [100]}, "steps": 5}, "data": {}},
    ...             {"model": {"hidden": [64]}, "steps": 9}, {})
    ['model.hidden: [100] (checkpoint) != [64] (now)']
    """
    renamed = {RENAMED_KEYS.get(k, k): v for k, v in saved["config"].items()}
    skip = {"space", CODE_KEY, *_same_code(renamed, config_json)}
    old = _flatten("", {k: v for k, v in renamed.items() if k not in skip})
    new = _flatten("", {k: v for k, v in config_json.items() if k not in skip})
    old.update({f"space.{k}": v for k, v in saved["config"].get("space", {}).items()})
    new.update({f"space.{k}": v for k, v in config_json.get("space", {}).items()})
    out = []
    for key in sorted(set(old) | set(new)):
        if key.split(".")[0] in RESUMABLE_KEYS:
            continue
        a, b = old.get(key, ADDED_KEYS.get(key, "<absent>")), new.get(key, "<absent>")
        if {_canonical(a), _canonical(b)} <= {'"<absent>"', "null", "{}"}:
            continue  # a key added since the checkpoint, at its empty default (`augment`: None)
        if _canonical(a) != _canonical(b):
            out.append(f"{key}: {_show(a)} (checkpoint) != {_show(b)} (now)")
    saved_data = saved.get("data", {})
    for key in ("describe", "fingerprint"):
        if key in saved_data and key in data and saved_data[key] != data[key]:
            out.append(f"data.{key}: {saved_data[key]} (checkpoint) != {data[key]} (now)")
            break
    return out


def _same_code(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The keys (`task`, `model`) whose user code both configs import from the same place: the
    same code, whatever its repr (a class of `python script.py` is `__main__.Net` there, and
    `sweepjax_experiment_script.Net` once `resume` imports the script again).

    >>> code = {"model": {"ref": "my_code:Net"}}
    >>> _same_code({"code": code}, {"code": code}), _same_code({}, {"code": code})
    (['model'], [])
    """
    old, new = saved.get(CODE_KEY) or {}, now.get(CODE_KEY) or {}
    return [
        key
        for key in ("task", "model")
        if key in old and "missing" not in old[key] and old[key] == new.get(key)
    ]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
