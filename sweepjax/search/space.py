"""Search spaces: distributions over hyperparameters and the samplers that draw populations.

A `SearchSpace` maps hyperparameter names to distributions (`LogUniform`, `Uniform`,
`IntUniform`, `Choice`, from `sweepjax.search.distributions`) or fixed values.
`SearchSpace.sample(n, method, seed)` returns an `HParams`: one array per name with a leading
population axis of length n, plus an integer `seed` column from which each member derives its
own initialisation key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import numpy as np
from scipy.stats import qmc

# The distributions, re-exported: `sweepjax.search.space.Choice` and the rest stay where they were.
from sweepjax.search.distributions import DISTRIBUTIONS as DISTRIBUTIONS
from sweepjax.search.distributions import Choice as Choice
from sweepjax.search.distributions import Distribution as Distribution
from sweepjax.search.distributions import IntUniform as IntUniform
from sweepjax.search.distributions import LogUniform as LogUniform
from sweepjax.search.distributions import Uniform as Uniform
from sweepjax.search.distributions import check_dimension, is_distribution
from sweepjax.search.distributions import from_json as from_json
from sweepjax.search.distributions import to_json as to_json

METHODS = ("grid", "random", "quasi_random")


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
            check_dimension(name, value)

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
        names = [k for k, v in dims.items() if is_distribution(v)]
        if not names:
            return {}
        if method == "random":
            unit = np.random.default_rng(seed).random((n, len(names)))
        else:
            unit = qmc.Halton(d=len(names), scramble=True, seed=seed).random(n)
        return {name: dims[name].ppf(unit[:, j]) for j, name in enumerate(names)}

    def _grid_points(self, n: int | None) -> tuple[list[str], list[np.ndarray]]:
        """The grid's columns. Continuous dimensions without `num` share out the population."""
        names = [k for k, v in self.dimensions.items() if is_distribution(v)]
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
        columns = [_column([p[j] for p in points]) for j in range(len(names))]
        return names, columns


def _column(values: list[Any]) -> np.ndarray:
    """A grid column: lists (layer widths of any depth) as objects, in one dimension."""
    if not any(isinstance(v, list | tuple | np.ndarray) for v in values):
        return np.asarray(values)
    column = np.empty(len(values), object)
    column[:] = [list(v) for v in values]
    return column


def _dtype_of(value: Any):
    if is_distribution(value):
        return value.dtype
    if isinstance(value, str):
        return np.asarray(value).dtype
    if isinstance(value, bool | np.bool_):
        return np.int32
    return np.int32 if isinstance(value, int | np.integer) else np.float32
