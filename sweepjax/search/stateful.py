"""The base of the schedulers: state held as JSON-native attributes, saved and restored whole."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def builtin(value: Any) -> Any:
    """A Python number, string or bool for a NumPy (or JAX) scalar; others unchanged.

    >>> import numpy as np
    >>> type(builtin(np.float32(0.5))), builtin("relu")
    (<class 'float'>, 'relu')
    """
    return value.item() if hasattr(value, "item") else value


class Stateful:
    """Holds a scheduler's state as JSON-native attributes (`_<key>` for each of `STATE`:
    str keys, lists, numbers), so `state_dict` and `load_state_dict` are copies; the state
    names the scheduler and its `CONFIG` attributes, and loading refuses another's.

    >>> class Counter(Stateful):
    ...     name, CONFIG, STATE = "counter", (), ("seen",)
    ...     _seen = 0
    >>> Counter().state_dict()
    {'name': 'counter', 'config': {}, 'seen': 0}
    """

    name: str
    CONFIG: tuple[str, ...] = ()
    STATE: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        return {k: builtin(getattr(self, k)) for k in self.CONFIG}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; a scheduler loading it decides exactly as this one."""
        state = {k: copy.deepcopy(getattr(self, f"_{k}")) for k in self.STATE}
        return {"name": self.name, "config": self.config(), **state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` (or its JSON round trip) of the same scheduler."""
        want = {"name": self.name, "config": self.config()}
        got = {"name": state.get("name"), "config": state.get("config")}
        if got != want:
            raise ValueError(f"scheduler state: saved by {got}; allowed: the state of {want}.")
        for key in self.STATE:
            setattr(self, f"_{key}", copy.deepcopy(state[key]))
