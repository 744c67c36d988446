"""Search spaces: distributions over hyperparameters and the samplers that draw populations.

A `SearchSpace` maps hyperparameter names to distributions (`LogUniform`, `Uniform`,
`IntUniform`, `Choice`) or fixed values. `SearchSpace.sample(n, method, seed)` returns an
`HParams`: one array per name with a leading population axis of length n, plus an integer
`seed` column from which each member derives its own initialisation key.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import numpy as np
from scipy.stats import qmc

METHODS = ("grid", "random", "quasi_random")


def _check_range(name: str, low: float, high: float, kind: str) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name}: {kind}({low}, {high}) needs finite bounds.")
    if low >= high:
        raise ValueError(f"{name}: {kind}({low}, {high}) needs low < high; got low={low}.")


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
        if not self.low > 0:
            raise ValueError(
                f"{name}: LogUniform({self.low}, {self.high}) needs low > 0; allowed: 0 < low < high."
            )
        _check_range(name, self.low, self.high, "LogUniform")

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
        _check_range(name, self.low, self.high, "Uniform")

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
        if int(self.low) != self.low or int(self.high) != self.high:
            raise ValueError(f"{name}: IntUniform({self.low}, {self.high}) needs integer bounds.")
        _check_range(name, self.low, self.high, "IntUniform")

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
        object.__setattr__(self, "values", tuple(values))

    def validate(self, name: str) -> None:
        if not self.values:
            raise ValueError(f"{name}: Choice([]) is empty; give at least one value.")
        kinds = {isinstance(v, str) for v in self.values}
        if len(kinds) > 1:
            raise ValueError(f"{name}: Choice{list(self.values)} mixes strings and numbers.")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        index = np.minimum(np.floor(u * len(self.values)).astype(np.int64), len(self.values) - 1)
        return np.asarray(self.values)[index]

    def grid(self, num: int | None) -> np.ndarray:
        return np.asarray(self.values)

    @property
    def dtype(self):
        values = np.asarray(self.values)
        if values.dtype.kind in "iub":
            return np.int32
        return np.float32 if values.dtype.kind == "f" else values.dtype

    log_scale = False


Distribution = LogUniform | Uniform | IntUniform | Choice
DISTRIBUTIONS = {cls.__name__: cls for cls in (LogUniform, Uniform, IntUniform, Choice)}


def _is_distribution(value: Any) -> bool:
    return isinstance(value, LogUniform | Uniform | IntUniform | Choice)


@flax.struct.dataclass
class HParams:
    """Per-member hyperparameters: name -> array with a leading population axis.

    A pytree, so it passes through `jax.jit` and `jax.vmap` like any other state.

    >>> hp = SearchSpace(learning_rate=LogUniform(1e-3, 1e-1)).sample(4, "random", seed=0)
    >>> hp.size, sorted(hp.values)
    (4, ['learning_rate', 'seed'])
    """

    values: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values

    @property
    def names(self) -> list[str]:
        return list(self.values)

    @property
    def size(self) -> int:
        return len(next(iter(self.values.values())))

    def member(self, i: int) -> dict[str, Any]:
        """The hyperparameters of member i as Python scalars."""
        return {k: np.asarray(v)[i].item() for k, v in self.values.items()}

    def select(self, members: Sequence[int] | np.ndarray) -> HParams:
        """The sub-population `members`, in that order."""
        index = np.asarray(members)
        return HParams({k: np.asarray(v)[index] for k, v in self.values.items()})

    def table(self) -> str:
        """A readable fixed-width table, one row per member."""
        header = ["member", *self.values]
        rows = [[str(i)] + [_format(v) for v in self.member(i).values()] for i in range(self.size)]
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
        lines = [
            "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
        ]
        return "\n".join(lines)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class SearchSpace:
    """A mapping from hyperparameter names to distributions or fixed values.

    >>> space = SearchSpace(learning_rate=LogUniform(1e-4, 1e-1), momentum=Choice([0.0, 0.9]))
    >>> hp = space.sample(8, method="quasi_random", seed=0)
    >>> hp["learning_rate"].shape, hp["seed"].dtype
    ((8,), dtype('int32'))
    """

    def __init__(self, dimensions: Mapping[str, Any] | None = None, /, **kwargs: Any):
        self.dimensions: dict[str, Any] = {**(dimensions or {}), **kwargs}
        for name, value in self.dimensions.items():
            if _is_distribution(value):
                value.validate(name)
            elif not isinstance(value, int | float | str | bool | np.number):
                raise ValueError(
                    f"{name}: {value!r} is neither a number, a string nor a distribution; "
                    f"allowed: a fixed value or one of {sorted(DISTRIBUTIONS)}."
                )

    def __repr__(self) -> str:
        return f"SearchSpace({self.dimensions!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.dimensions == other.dimensions

    def is_log_scale(self, name: str) -> bool:
        return getattr(self.dimensions.get(name), "log_scale", False)

    def grid_size(self, n: int | None = None) -> int:
        """Points of the grid `sample(n, "grid")` would draw."""
        _, columns = self._grid_points(n)
        return len(columns[0]) if columns else 1

    def check_grid(self, n: int) -> None:
        """Raise a `ValueError` naming `population` unless the grid has exactly n points.

        >>> SearchSpace(a=Choice([1, 2]), b=Choice([3, 4])).check_grid(3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: population: 3 does not match the grid's 4 points; allowed: population=4, ...
        """
        size = self.grid_size(n)
        if size != n:
            raise ValueError(
                f"population: {n} does not match the grid's {size} points; "
                f"allowed: population={size}, or set `num` on the continuous dimensions."
            )

    def sample(self, n: int, method: str = "quasi_random", seed: int = 0) -> HParams:
        """Draw a population of n members.

        Args:
          n: population size. For `grid`, the grid must have exactly n points.
          method: `grid`, `random` or `quasi_random` (scrambled Halton).
          seed: seed of the sampler. Members get `seed` column 0..n-1 unless the space sets it.

        Returns:
          The `HParams` of the population.
        """
        if method not in METHODS:
            raise ValueError(f"search: unknown method {method!r}; allowed: {list(METHODS)}.")
        if int(n) != n or n < 1:
            raise ValueError(f"population: {n!r} must be a positive integer.")
        dims = dict(self.dimensions)
        if method == "grid":
            self.check_grid(n)
            raw = dict(zip(*self._grid_points(n), strict=True))
        else:
            raw = self._draw(dims, n, method, seed)
        values = {}
        for name, value in dims.items():
            dtype = _dtype_of(value)
            column = raw[name] if name in raw else np.full(n, value)
            values[name] = np.asarray(column).astype(dtype)
        if "seed" not in values:
            values["seed"] = np.arange(n, dtype=np.int32)
        values["seed"] = values["seed"].astype(np.int32)
        return HParams(values)

    def _draw(self, dims: dict[str, Any], n: int, method: str, seed: int) -> dict[str, np.ndarray]:
        names = [k for k, v in dims.items() if _is_distribution(v)]
        if not names:
            return {}
        if method == "random":
            unit = np.random.default_rng(seed).random((n, len(names)))
        else:
            unit = qmc.Halton(d=len(names), scramble=True, seed=seed).random(n)
        return {name: dims[name].ppf(unit[:, j]) for j, name in enumerate(names)}

    def _grid_points(self, n: int | None) -> tuple[list[str], list[np.ndarray]]:
        """The grid's columns. Continuous dimensions without `num` share out the population."""
        names = [k for k, v in self.dimensions.items() if _is_distribution(v)]
        dims = [self.dimensions[k] for k in names]
        free = [isinstance(d, LogUniform | Uniform) and d.num is None for d in dims]
        fixed_size = math.prod(
            len(d.grid(getattr(d, "num", None))) for d, f in zip(dims, free, strict=True) if not f
        )
        per_free = 1
        if any(free):
            per_free = max(round(max((n or 1) / fixed_size, 1) ** (1 / sum(free))), 1)
        axes = [
            d.grid(per_free if f else getattr(d, "num", None))
            for d, f in zip(dims, free, strict=True)
        ]
        points = list(itertools.product(*axes))
        columns = [np.asarray([p[j] for p in points]) for j in range(len(names))]
        return names, columns


def _dtype_of(value: Any):
    if _is_distribution(value):
        return value.dtype
    if isinstance(value, str):
        return np.asarray(value).dtype
    if isinstance(value, bool | np.bool_):
        return np.int32
    return np.int32 if isinstance(value, int | np.integer) else np.float32


def to_json(value: Any) -> Any:
    """A JSON-able description of a fixed value or a distribution."""
    if _is_distribution(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        fields = {
            k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if v is not None
        }
        return {"distribution": type(value).__name__, **fields}
    return value.item() if isinstance(value, np.generic) else value


def from_json(value: Any) -> Any:
    """Inverse of `to_json`."""
    if isinstance(value, dict) and "distribution" in value:
        fields = dict(value)
        kind = fields.pop("distribution")
        if kind not in DISTRIBUTIONS:
            raise ValueError(
                f"space: unknown distribution {kind!r}; allowed: {sorted(DISTRIBUTIONS)}."
            )
        return DISTRIBUTIONS[kind](**fields)
    return value
