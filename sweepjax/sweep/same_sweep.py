"""Whether a folder's sweep is this sweep: the config keys a resume may change, and the
differences a checkpoint's (or `sweep.json`'s) config has with the config now.

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
    old = _flatten("", {k: v for k, v in renamed.items() if k != "space"})
    new = _flatten("", {k: v for k, v in config_json.items() if k != "space"})
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


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
