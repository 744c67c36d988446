"""Searchers: where a sweep's trials come from (the `Searcher` protocol of `protocol.py`).

* `Sampled` (`grid`, `random`, `quasi_random`) draws the whole population at once with
  `SearchSpace.sample` and hands it out in order: trial i is member i, as in a fixed sweep.
* `CoarseToFine` samples rounds of scrambled Halton points, each round inside a box shrunk
  around the best trials told so far.
* `OptunaSearcher` (`tpe`, `gp`, `cmaes`, `nsga2`, in `optuna_search.py`) asks Optuna's samplers.

`factory.make_searcher` builds one by name and checks its options before any training;
An earlier sweep's results reach a searcher as rows (`sweepjax.sweep.warm_start`).
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import qmc

from sweepjax.search.checks import check_count, check_direction, finite
from sweepjax.search.distributions import Choice, IntUniform, is_distribution, is_number
from sweepjax.search.space import METHODS, SearchSpace

OPTUNA_SEARCHERS = ("tpe", "gp", "cmaes", "nsga2")
SEARCHERS = (*METHODS, "coarse_to_fine", *OPTUNA_SEARCHERS)
STATUSES = ("finished", "stopped", "diverged")
COARSE_TO_FINE_DEFAULTS = {"keep": 0.25, "margin": 0.1}  # and round_size: the population


def space_dimensions(space: SearchSpace | Mapping[str, Any]) -> dict[str, Any]:
    """The checked dimensions of `space`, a `SearchSpace` or a mapping name -> dimension.

    >>> from sweepjax.search.distributions import Uniform
    >>> space_dimensions({"dropout": Uniform(0.0, 0.5), "batch_size": 32})
    {'dropout': Uniform(low=0.0, high=0.5, num=None), 'batch_size': 32}
    """
    dims = space.dimensions if isinstance(space, SearchSpace) else space
    return dict(SearchSpace(dict(dims)).dimensions)


def check_scalar_choices(dims: Mapping[str, Any], searcher: str) -> None:
    """Refuse a `Choice` whose values are not numbers, strings or booleans (lists, dicts)."""
    for name, dim in dims.items():
        if isinstance(dim, Choice) and not all(
            isinstance(v, str | bool | int | float | np.generic) for v in dim.values
        ):
            raise ValueError(
                f"{name}: {dim!r} holds values that are not numbers or strings; allowed with "
                f"searcher {searcher!r}: a Choice of numbers or strings (name a structure, "
                "e.g. a model family, by a string)."
            )


def check_tell(trial: Any, status: Any, asked: int, told: Container[int] = ()) -> None:
    """Refuse a `tell` of a trial never asked or told already, or with an unknown status."""
    if status not in STATUSES:
        raise ValueError(f"status: unknown status {status!r}; allowed: {list(STATUSES)}.")
    if isinstance(trial, bool) or not isinstance(trial, int | np.integer) or not 0 <= trial < asked:
        raise ValueError(f"trial: {trial!r} was never asked; allowed: 0 to {asked - 1}.")
    if trial in told:
        raise ValueError(f"trial: {trial} was told already; allowed: one tell per trial.")


def check_state(name: str, state: Mapping[str, Any]) -> None:
    if state.get("name") != name:
        raise ValueError(
            f"searcher: the saved state is of searcher {state.get('name')!r}, not {name!r}; "
            "allowed: resume with the searcher the sweep started with."
        )


def _same(a: Any, b: Any) -> bool:
    """Equal, numbers up to float32 rounding (values come back from float32 columns)."""
    if is_number(a) and is_number(b):
        return bool(np.float32(a) == np.float32(b))
    return type(a) is type(b) and a == b


def usable_warm_rows(
    dims: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """The warm rows a searcher over `dims` can tell: each with a finite `value` and a value in
    the space for every distribution of `dims` (others are left out); `params` keeps only those.

    >>> from sweepjax.search.distributions import LogUniform
    >>> usable_warm_rows({"lr": LogUniform(1e-3, 1.0), "depth": 2},
    ...                  [{"params": {"lr": 0.1, "depth": 4, "wd": 0.0}, "value": 0.8, "steps": 9},
    ...                   {"params": {"lr": 5.0}, "value": 0.9}, {"params": {"lr": 0.1}}])
    [{'params': {'lr': 0.1}, 'value': 0.8, 'steps': 9}]
    """
    usable = []
    for row in rows or ():
        if not isinstance(row, Mapping) or not isinstance(row.get("params", {}), Mapping):
            raise ValueError(
                f"warm_start: {row!r} is not a row; allowed: rows of warm_start_rows(out_dir)."
            )
        params = row.get("params", {})
        kept = {k: _in_space(v, params.get(k)) for k, v in dims.items() if is_distribution(v)}
        if None not in kept.values() and finite(row.get("value")):
            steps = int(row.get("steps", 0) or 0)
            usable.append({"params": kept, "value": float(row["value"]), "steps": steps})
    return usable


def _in_space(dim: Any, value: Any) -> Any:
    """`value` as a point of distribution `dim` (float32 rounding forgiven), or None."""
    if isinstance(dim, Choice):
        return next(
            (c.item() if isinstance(c, np.generic) else c for c in dim.values if _same(c, value)),
            None,
        )
    if not finite(value):
        return None
    if isinstance(dim, IntUniform):
        return int(value) if value == int(value) and dim.low <= value <= dim.high else None
    tol = 1e-6 * max(abs(dim.low), abs(dim.high), dim.high - dim.low)
    inside = dim.low - tol <= value <= dim.high + tol
    return float(min(max(value, dim.low), dim.high)) if inside else None


class Sampled:
    """The population `SearchSpace(space).sample(trials, method, seed)`, handed out in order.

    >>> from sweepjax.search.distributions import LogUniform
    >>> searcher = Sampled({"lr": LogUniform(1e-3, 1e-1), "opt": "adam"}, "random", 3, seed=0)
    >>> [(row["opt"], row["seed"]) for row in searcher.ask(2)]
    [('adam', 0), ('adam', 1)]
    >>> len(searcher.ask(5)), searcher.ask(1), searcher.state_dict()
    (1, [], {'name': 'random', 'handed': 3})
    """

    def __init__(
        self, space: SearchSpace | Mapping[str, Any], method: str, trials: int, seed: int = 0
    ):
        if method not in METHODS:
            raise ValueError(f"searcher: unknown method {method!r}; allowed: {list(METHODS)}.")
        self.name = method
        self.trials = check_count("trials", trials)
        self.hparams = SearchSpace(space_dimensions(space)).sample(self.trials, method, seed)
        self.handed = 0

    def ask(self, n: int) -> list[dict[str, Any]]:
        stop = min(self.handed + check_count("n", n, 0), self.trials)
        rows = [self.hparams.member(i) for i in range(self.handed, stop)]
        self.handed = stop
        return rows

    def tell(self, trial: int, value: float, steps: int, status: str) -> None:
        check_tell(trial, status, self.handed)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "handed": self.handed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self.name, state)
        self.handed = int(state["handed"])


class CoarseToFine:
    """Rounds of scrambled Halton points, each in a box around the best trials told so far.

    Round 0 covers the whole space. Each later round starts once every trial of the previous
    one is told (`ask` returns [] until then) and samples `box()`: for each `LogUniform`,
    `Uniform` and `IntUniform` dimension, [min, max] of the best `keep` fraction (at least 2)
    of the trials told so far (warm rows included, diverged ones not; log scale for log
    dimensions), widened by `margin` of its width on each side and clipped to the bounds; a
    `Choice` keeps the values seen among them. With fewer than 2 finite trials a round covers
    the whole space. Round r draws from a Halton sequence seeded by (seed, r); each row's
    `seed` is its trial number unless the space fixes it.

    >>> from sweepjax.search.distributions import LogUniform
    >>> searcher = CoarseToFine({"lr": LogUniform(1e-4, 1.0)}, "max", round_size=4, trials=8,
    ...                         seed=0)
    >>> rows = searcher.ask(8)
    >>> len(rows), searcher.ask(1)
    (4, [])
    >>> for trial, row in enumerate(rows):
    ...     searcher.tell(trial, -abs(math.log10(row["lr"]) + 2), 100, "finished")
    >>> box = searcher.box()["lr"]
    >>> bool(box.low >= 1e-4 and box.high <= 1.0), [r["seed"] for r in searcher.ask(8)]
    (True, [4, 5, 6, 7])
    """

    name = "coarse_to_fine"

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any],
        direction: str,
        round_size: int,
        trials: int,
        seed: int,
        keep: float = COARSE_TO_FINE_DEFAULTS["keep"],
        margin: float = COARSE_TO_FINE_DEFAULTS["margin"],
        warm_start: Sequence[Mapping[str, Any]] | None = None,
    ):
        self.dims = space_dimensions(space)
        check_scalar_choices(self.dims, self.name)
        check_direction(direction)
        if not (finite(keep) and 0 < keep <= 1):
            raise ValueError(f"searcher.keep: {keep!r} is not allowed; allowed: 0 < keep <= 1.")
        if not (finite(margin) and margin >= 0):
            raise ValueError(f"searcher.margin: {margin!r} is not allowed; allowed: a number >= 0.")
        self.direction, self.keep, self.margin = direction, float(keep), float(margin)
        self.round_size = check_count("searcher.round_size", round_size)
        self.trials = check_count("trials", trials)
        self.seed = check_count("seed", seed, 0)
        self.warm = usable_warm_rows(self.dims, warm_start)
        self.rows: list[dict[str, Any]] = []  # every trial's row, handed out or not yet
        self.handed = 0
        self.rounds = 0
        self.told: dict[int, tuple[float, int, str]] = {}

    def ask(self, n: int) -> list[dict[str, Any]]:
        n = check_count("n", n, 0)
        done = self.handed == len(self.rows) < self.trials
        if done and all(t in self.told for t in range(len(self.rows))):
            self.rows += self._next_round()
        stop = min(self.handed + n, len(self.rows))
        rows = [dict(row) for row in self.rows[self.handed : stop]]
        self.handed = stop
        return rows

    def tell(self, trial: int, value: float, steps: int, status: str) -> None:
        check_tell(trial, status, self.handed, self.told)
        self.told[int(trial)] = (float(value), int(steps), status)

    def box(self) -> dict[str, Any]:
        """The distributions the next round samples, by dimension (fixed values left out)."""
        dists = {k: v for k, v in self.dims.items() if is_distribution(v)}
        best = self._best()
        if not best:
            return dists
        return {k: _shrink(v, [p[k] for p in best], self.margin) for k, v in dists.items()}

    def _best(self) -> list[dict[str, Any]]:
        """The params of the best `keep` fraction (at least 2) of the finite told trials."""
        told = [(r["params"], r["value"]) for r in self.warm]
        for trial, (value, _, status) in sorted(self.told.items()):
            if status != "diverged" and math.isfinite(value):
                told.append((self.rows[trial], value))
        if len(told) < 2:
            return []
        sign = -1.0 if self.direction == "max" else 1.0
        ranked = sorted(told, key=lambda pair: sign * pair[1])
        return [p for p, _ in ranked[: max(2, math.ceil(self.keep * len(told)))]]

    def _next_round(self) -> list[dict[str, Any]]:
        size = min(self.round_size, self.trials - len(self.rows))
        box = self.box()
        rng = np.random.default_rng([self.seed, self.rounds])
        unit = qmc.Halton(d=max(len(box), 1), scramble=True, seed=rng).random(size)
        columns = {
            name: np.asarray(dist.ppf(unit[:, j])).astype(self.dims[name].dtype).tolist()
            for j, (name, dist) in enumerate(box.items())
        }
        rows = []
        for i in range(size):
            row = {k: columns[k][i] if k in columns else v for k, v in self.dims.items()}
            if "seed" not in row:
                row["seed"] = len(self.rows) + i
            rows.append(row)
        self.rounds += 1
        return rows

    def state_dict(self) -> dict[str, Any]:
        told = [[t, v if math.isfinite(v) else None, s, st] for t, (v, s, st) in self.told.items()]
        return {
            "name": self.name,
            "rows": self.rows,
            "handed": self.handed,
            "rounds": self.rounds,
            "told": told,
            "warm_start": self.warm,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self.name, state)
        self.rows = [dict(row) for row in state["rows"]]
        self.handed, self.rounds = int(state["handed"]), int(state["rounds"])
        self.told = {
            int(t): (math.nan if v is None else float(v), int(s), st)
            for t, v, s, st in state["told"]
        }
        self.warm = usable_warm_rows(self.dims, state["warm_start"])


def _shrink(dist: Any, values: list[Any], margin: float) -> Any:
    """`dist` restricted to the box around `values` (see `CoarseToFine`)."""
    if isinstance(dist, Choice):
        return Choice([c for c in dist.values if any(_same(c, v) for v in values)])
    scale, unscale = (math.log, math.exp) if dist.log_scale else (float, float)
    low, high = min(scale(v) for v in values), max(scale(v) for v in values)
    low, high = low - margin * (high - low), high + margin * (high - low)
    low = dist.low if low <= scale(dist.low) else max(unscale(low), dist.low)
    high = dist.high if high >= scale(dist.high) else min(unscale(high), dist.high)
    if isinstance(dist, IntUniform):
        return IntUniform(math.ceil(low - 1e-9), math.floor(high + 1e-9))
    return type(dist)(low, high)
