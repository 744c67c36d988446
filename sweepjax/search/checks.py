"""The checks every policy makes of its own options, needing nothing above the search layer:
each refusal a `ValueError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sweepjax.search.distributions import is_number
from sweepjax.search.protocol import DIRECTIONS


def check(key: str, value: Any, ok: bool, why: str, allowed: str) -> None:
    """A `ValueError` naming `scheduler.<key>`, the value, why and what is allowed, unless `ok`.

    >>> check("eta", 1, False, "must be > 1", "a number above 1")
    Traceback (most recent call last):
    ...
    ValueError: scheduler.eta: 1 must be > 1; allowed: a number above 1.
    """
    if not ok:
        raise ValueError(f"scheduler.{key}: {value!r} {why}; allowed: {allowed}.")


def is_int(value: Any) -> bool:
    """An integer, Python's or NumPy's, not a boolean.

    >>> is_int(3), is_int(3.0), is_int(True)
    (True, False, False)
    """
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_int(key: str, value: Any, low: int) -> None:
    """`check_count` of the scheduler's option `key`.

    >>> check_int("ready", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: scheduler.ready: 0 is not an integer >= 1; allowed: an integer >= 1.
    """
    check_count(f"scheduler.{key}", value, low)


def check_count(key: str, value: Any, least: int = 1) -> int:
    """`value` as an int if it is an integer >= `least`, else a `ValueError` naming `key`.

    >>> check_count("trials", 8), check_count("seed", 0, 0)
    (8, 0)
    """
    if not is_int(value) or value < least:
        raise ValueError(
            f"{key}: {value!r} is not an integer >= {least}; allowed: an integer >= {least}."
        )
    return int(value)


def check_direction(direction: Any, key: str = "direction") -> None:
    """Refuse a direction other than `max` or `min`.

    >>> check_direction("up", "scheduler.direction")
    Traceback (most recent call last):
    ...
    ValueError: scheduler.direction: 'up' is not a direction; allowed: 'max' or 'min'.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"{key}: {direction!r} is not a direction; allowed: 'max' or 'min'.")


def finite(value: Any) -> bool:
    """Whether a metric value counts (NaN and infinities are a diverged trial's).

    >>> finite(0.5), finite(float("nan")), finite(float("inf")), finite(None)
    (True, False, False, False)
    """
    return is_number(value) and math.isfinite(value)
