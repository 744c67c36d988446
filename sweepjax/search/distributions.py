"""Distributions over one hyperparameter, their checks, and their forms outside Python.

`LogUniform`, `Uniform`, `IntUniform` and `Choice` are frozen dataclasses; `validate(name)`
refuses bad values with a `ValueError` naming the dimension, the value and what is allowed.
`make` builds one from a command line's or a file's arguments (a bad call is a `ValueError`
too), and `to_json` / `from_json` write and read them. `sweepjax.search.space` samples them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

INT32 = (int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max))
FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_number(value: Any) -> bool:
    """A real number, Python's or NumPy's; not a boolean (in Python, `True` is the int 1).

    >>> is_number(0.1), is_number(np.int64(3)), is_number(True), is_number("1")
    (True, True, False, False)
    """
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _fits(value: Any, dtype: type) -> bool:
    """Whether a number keeps its value in the column `dtype` it is sampled into."""
    if dtype is np.int32:
        return INT32[0] <= value <= INT32[1]
    return not math.isfinite(value) or abs(value) <= FLOAT32_MAX


def _fit_rule(dtype: type) -> str:
    if dtype is np.int32:
        return f"integers from {INT32[0]} to {INT32[1]} (int32)"
    return f"numbers of magnitude at most {FLOAT32_MAX:.4g} (float32)"


def _call(dist: Any) -> str:
    """The distribution as its call: `LogUniform(0.001, 1.0, num=4)`."""
    if isinstance(dist, Choice):
        return f"Choice({list(dist.values) if isinstance(dist.values, tuple) else dist.values!r})"
    num = "" if dist.num is None else f", num={dist.num!r}"
    return f"{type(dist).__name__}({dist.low!r}, {dist.high!r}{num})"


def _check_bounds(name: str, dist: Any, rule: str, dtype: type) -> None:
    """Numeric, finite, representable bounds with low < high, and `num` None or >= 1."""
    call = _call(dist)
    for arg in ("low", "high"):
        value = getattr(dist, arg)
        if not is_number(value):
            raise ValueError(f"{name}: {call}: {arg}={value!r} is not a number; allowed: {rule}.")
    low, high = dist.low, dist.high
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name}: {call} needs finite bounds; allowed: {rule}.")
    if dtype is np.int32 and (int(low) != low or int(high) != high):
        raise ValueError(f"{name}: {call} needs integer bounds; allowed: {rule}.")
    for arg in ("low", "high"):
        if not _fits(getattr(dist, arg), dtype):
            raise ValueError(f"{name}: {call}: {arg} is out of range; allowed: {_fit_rule(dtype)}.")
    if low >= high:
        raise ValueError(f"{name}: {call} needs low < high; got low={low}; allowed: {rule}.")
    num = dist.num
    if num is not None and not (
        isinstance(num, int | np.integer) and not isinstance(num, bool) and num >= 1
    ):
        raise ValueError(
            f"{name}: {call}: num={num!r} is not allowed; allowed: None or a positive integer "
            "(the number of grid points)."
        )


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """Uniform on the log scale between `low` and `high` (both > 0).

    `num` is the number of grid points (geometrically spaced) when the search is a grid.

    >>> LogUniform(1e-4, 1e-1).ppf(np.array([0.0, 1.0]))
    array([0.0001, 0.1   ])
    """

    low: float
    high: float
    num: int | None = None

    def validate(self, name: str) -> None:
        rule = "numbers with 0 < low < high"
        _check_bounds(name, self, rule, np.float32)
        if not self.low > 0:
            raise ValueError(f"{name}: {_call(self)} needs low > 0; allowed: {rule}.")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        lo, hi = math.log(self.low), math.log(self.high)
        return np.exp(lo + u * (hi - lo))

    def grid(self, num: int) -> np.ndarray:
        return np.geomspace(self.low, self.high, num)

    dtype = np.float32
    log_scale = True


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Uniform on the linear scale between `low` and `high`.

    >>> Uniform(0.0, 1.0).grid(3)
    array([0. , 0.5, 1. ])
    """

    low: float
    high: float
    num: int | None = None

    def validate(self, name: str) -> None:
        _check_bounds(name, self, "finite numbers with low < high", np.float32)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.low + u * (self.high - self.low)

    def grid(self, num: int) -> np.ndarray:
        return np.linspace(self.low, self.high, num)

    dtype = np.float32
    log_scale = False


@dataclasses.dataclass(frozen=True)
class IntUniform:
    """Uniform over the integers `low, low + 1, ..., high` (both ends included).

    >>> IntUniform(1, 3).grid(None)
    array([1, 2, 3])
    """

    low: int
    high: int
    num: int | None = None

    def validate(self, name: str) -> None:
        _check_bounds(name, self, "integers with low < high", np.int32)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        span = self.high - self.low + 1
        return np.minimum(self.low + np.floor(u * span), self.high).astype(np.int64)

    def grid(self, num: int | None) -> np.ndarray:
        values = np.arange(self.low, self.high + 1)
        if num is None or num >= len(values):
            return values
        return np.unique(np.round(np.linspace(self.low, self.high, num)).astype(np.int64))

    dtype = np.int32
    log_scale = False


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a list of values (numbers or strings), each equally likely.

    >>> Choice([0.9, 0.99]).grid(None)
    array([0.9 , 0.99])
    """

    values: tuple

    def __init__(self, values: Sequence[Any]):
        # A string or a non-iterable is kept as given, for `validate` to refuse by its name.
        if not isinstance(values, str | bytes | Mapping):
            with contextlib.suppress(TypeError):
                values = tuple(values)
        object.__setattr__(self, "values", values)

    def validate(self, name: str) -> None:
        allowed = "a non-empty list of numbers or strings, e.g. Choice([0.9, 0.99])"
        if not isinstance(self.values, tuple):
            raise ValueError(f"{name}: {_call(self)} needs a list of values; allowed: {allowed}.")
        if not self.values:
            raise ValueError(f"{name}: Choice([]) is empty; allowed: {allowed}.")
        kinds = {isinstance(v, str) for v in self.values}
        if len(kinds) > 1:
            raise ValueError(
                f"{name}: Choice{list(self.values)} mixes strings and numbers; allowed: {allowed}."
            )
        numbers = [v for v in self.values if is_number(v)]
        dtype = np.int32 if all(isinstance(v, int | np.integer) for v in numbers) else np.float32
        for value in numbers:
            if not _fits(value, dtype):
                raise ValueError(
                    f"{name}: {_call(self)}: {value!r} is out of range; allowed: {_fit_rule(dtype)}."
                )

    def ppf(self, u: np.ndarray) -> np.ndarray:
        index = np.minimum(np.floor(u * len(self.values)).astype(np.int64), len(self.values) - 1)
        return self.array()[index]

    def grid(self, num: int | None) -> np.ndarray:
        return self.array()

    def array(self) -> np.ndarray:
        """The values as a 1-D array: lists (layer widths of any depth) as objects.

        >>> Choice([[8], [8, 8]]).array().shape, Choice([1, 2]).array().dtype.kind
        ((2,), 'i')
        """
        if all(isinstance(v, str | bool | int | float | np.generic) for v in self.values):
            return np.asarray(self.values)
        values = np.empty(len(self.values), object)
        values[:] = list(self.values)
        return values

    @property
    def dtype(self):
        values = self.array()
        if values.dtype.kind in "iub":
            return np.int32
        return np.float32 if values.dtype.kind == "f" else values.dtype

    log_scale = False


Distribution = LogUniform | Uniform | IntUniform | Choice
DISTRIBUTIONS = {cls.__name__: cls for cls in (LogUniform, Uniform, IntUniform, Choice)}


def usage(kind: str) -> str:
    """How distribution `kind` is called.

    >>> usage("LogUniform")
    'LogUniform(low, high, num=None)'
    """
    params = inspect.signature(DISTRIBUTIONS[kind]).parameters.values()
    args = [p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params]
    return f"{kind}({', '.join(args)})"


def check_kind(kind: Any, where: str) -> None:
    """Refuse a name that is not a distribution's; `where` names the key in the message."""
    if not isinstance(kind, str) or kind not in DISTRIBUTIONS:
        raise ValueError(
            f"{where}: unknown distribution {kind!r}; allowed: {sorted(DISTRIBUTIONS)}."
        )


def make(kind: str, args: Sequence[Any], kwargs: Mapping[str, Any], where: str) -> Distribution:
    """Distribution `kind` called with `args` and `kwargs` from a command line or a file.

    A call that does not match the signature is a `ValueError` naming `where`, the call and
    what is allowed (not Python's `TypeError`); the values are checked by `validate`.

    >>> make("LogUniform", [1e-3, 1.0], {"foo": 2}, "space.lr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: space.lr: LogUniform(0.001, 1.0, foo=2): got an unexpected keyword argument ...
    """
    check_kind(kind, where)
    try:
        inspect.signature(DISTRIBUTIONS[kind]).bind(*args, **kwargs)
    except TypeError as err:
        shown = [*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]
        raise ValueError(
            f"{where}: {kind}({', '.join(shown)}): {err}; allowed: {usage(kind)}."
        ) from None
    return DISTRIBUTIONS[kind](*args, **kwargs)


def is_distribution(value: Any) -> bool:
    """Whether `value` is one of the `DISTRIBUTIONS` (not a fixed value)."""
    return isinstance(value, LogUniform | Uniform | IntUniform | Choice)


def check_dimension(name: str, value: Any) -> None:
    """A search-space entry: a valid distribution, or a fixed number, string or bool.

    >>> check_dimension("lr", [0.1, 0.2])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: lr: [0.1, 0.2] is neither ...; allowed: ... (a list of values is Choice([0.1, 0.2])).
    """
    if is_distribution(value):
        value.validate(name)
    elif not isinstance(value, int | float | str | bool | np.number):
        hint = f" (a list of values is Choice({value!r}))" if isinstance(value, list) else ""
        raise ValueError(
            f"{name}: {value!r} is neither a number, a string nor a distribution; "
            f"allowed: a fixed value or one of {sorted(DISTRIBUTIONS)}{hint}."
        )
    elif is_number(value):
        dtype = np.int32 if isinstance(value, int | np.integer) else np.float32
        if not _fits(value, dtype):
            raise ValueError(f"{name}: {value!r} is out of range; allowed: {_fit_rule(dtype)}.")


def to_json(value: Any) -> Any:
    """A JSON-able description of a fixed value or a distribution."""
    if is_distribution(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        fields = {
            k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if v is not None
        }
        return {"distribution": type(value).__name__, **fields}
    return value.item() if isinstance(value, np.generic) else value


def from_json(value: Any, where: str = "space") -> Any:
    """Inverse of `to_json`; `where` names the key in an error message."""
    if isinstance(value, dict) and "distribution" in value:
        fields = dict(value)
        kind = fields.pop("distribution")
        return make(kind, (), fields, where)
    return value
