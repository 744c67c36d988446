"""Optuna's samplers as searchers: `tpe`, `gp`, `cmaes` and `nsga2`.

`OptunaSearcher` keeps an in-memory Optuna study and uses Optuna's own ask-and-tell: each
`ask(n)` is n `study.ask` calls (a batch of the sweep's free slots), each `tell` one
`study.tell`. Its state is the log of those calls plus the warm-start rows: `load_state_dict`
replays them into a fresh study with the same seeded sampler, so a resumed sweep asks exactly
what the uninterrupted one would have asked. Optuna is imported only when a searcher is built.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.search.checks import check_count, check_direction
from sweepjax.search.distributions import Choice, IntUniform, is_distribution
from sweepjax.search.searchers import (
    OPTUNA_SEARCHERS,
    SEARCHERS,
    check_scalar_choices,
    check_state,
    check_tell,
    space_dimensions,
    usable_warm_rows,
)
from sweepjax.search.space import SearchSpace

SAMPLERS = {
    "tpe": "TPESampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler",
}
OPTUNA_DIRECTIONS = {"max": "maximize", "min": "minimize"}


def default_options(sampler_name: str, population: int, dims: Mapping[str, Any]) -> dict[str, Any]:
    """The options a sweep of `population` slots over `dims` gives sampler `sampler_name`.

    * tpe: `n_startup_trials=min(10, population)` (with few slots, and so few trials, Optuna's
      10 random start-up trials would be much of the budget) and `constant_liar=True` (a batch
      is asked before the trials running are told: the liar keeps it from piling up on one
      point; Optuna 5's default, experimental and off in Optuna 4);
    * gp: `n_startup_trials=min(10, population)`;
    * cmaes: `popsize` at least one batch of slots and at least CMA-ES's own 4 + 3 ln(d)
      (Optuna's CMA-ES learns from the first `popsize` finished trials of a generation and
      drops the others);
    * nsga2: `population_size=max(population, 2)` (one generation per batch of slots);
    * gp, cmaes: `warn_independent_sampling=False` (they sample a `Choice` with Optuna's
      RandomSampler, and would log a warning for every trial).

    >>> default_options("tpe", 4, {})
    {'n_startup_trials': 4, 'constant_liar': True}
    """
    startup = min(10, population)
    if sampler_name == "tpe":
        return {"n_startup_trials": startup, "constant_liar": True}
    if sampler_name == "gp":
        return {"n_startup_trials": startup, "warn_independent_sampling": False}
    if sampler_name == "cmaes":
        numeric = sum(is_distribution(d) and not isinstance(d, Choice) for d in dims.values())
        own = 4 + math.floor(3 * math.log(max(numeric, 1)))
        return {"popsize": max(population, own), "warn_independent_sampling": False}
    if sampler_name == "nsga2":
        return {"population_size": max(population, 2)}
    raise ValueError(f"searcher: unknown sampler {sampler_name!r}; allowed: {list(SAMPLERS)}.")


def check_installed(name: str) -> None:
    """Refuse an Optuna searcher whose packages are missing, naming how to install them."""
    others = [s for s in SEARCHERS if s not in OPTUNA_SEARCHERS]
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ValueError(
            f"searcher: {name!r} needs Optuna; allowed: install it with "
            f"pip install 'sweepjax[optuna]', or a searcher from {others}."
        ) from None
    if name == "gp" and not _importable("torch"):
        raise ValueError(
            "searcher: 'gp' needs PyTorch (Optuna's GPSampler fits its Gaussian process with "
            f"torch); allowed: install it with pip install torch, or a searcher from "
            f"{[s for s in SEARCHERS if s != 'gp']}."
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def sampler_options(sampler_name: str) -> list[str]:
    """The options Optuna's sampler `sampler_name` takes (but `seed`, the sweep's own)."""
    import optuna

    cls = getattr(optuna.samplers, SAMPLERS[sampler_name])
    return sorted(set(inspect.signature(cls).parameters) - {"seed"})


def optuna_distributions(dims: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's distribution of each distribution of `dims` (fixed values left out).

    >>> import pytest; _ = pytest.importorskip("optuna")
    >>> from sweepjax.search.distributions import LogUniform
    >>> optuna_distributions({"lr": LogUniform(1e-3, 1.0), "act": Choice(["relu", "gelu"]),
    ...                       "batch_size": 32})  # doctest: +NORMALIZE_WHITESPACE
    {'lr': FloatDistribution(high=1.0, log=True, low=0.001, step=None),
     'act': CategoricalDistribution(choices=('relu', 'gelu'))}
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for name, dim in dims.items():
        if isinstance(dim, Choice):
            out[name] = CategoricalDistribution([_plain(v) for v in dim.values])
        elif isinstance(dim, IntUniform):
            out[name] = IntDistribution(int(dim.low), int(dim.high))
        elif is_distribution(dim):
            out[name] = FloatDistribution(float(dim.low), float(dim.high), log=dim.log_scale)
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@contextlib.contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna's logger at WARNING at least while it works for us (its INFO line per trial and
    study is noise in a sweep's output); other loggers are not touched. Yields `optuna`."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(before)


class OptunaSearcher:
    """Trials from an Optuna sampler: `tpe` (TPESampler), `gp` (GPSampler, needs torch),
    `cmaes` (CmaEsSampler) or `nsga2` (NSGAIISampler), seeded by `seed`, with `options`.

    A finished trial is told COMPLETE with its value; a stopped one is reported at its steps
    and told PRUNED (TPE then ranks it as Optuna ranks pruned trials, CMA-ES and GP leave it
    out); a diverged one (or one without a finite value) FAIL. `nsga2` is multi-objective:
    the ranking metric in `direction` and the steps the trial trained, minimized, so it looks
    for the cheapest good trials; a stopped trial is a COMPLETE point (value, steps) there.
    `warm_start` rows (of `sweepjax.sweep.warm_start.warm_start_rows`) are added as COMPLETE trials first.
    Each row's `seed` is its trial number unless the space fixes it; after `trials` trials
    (None: no limit) `ask` returns [].

    >>> import pytest; _ = pytest.importorskip("optuna")
    >>> from sweepjax.search.distributions import LogUniform
    >>> searcher = OptunaSearcher({"lr": LogUniform(1e-4, 1e-1), "act": Choice(["relu", "gelu"])},
    ...                           "tpe", "max", seed=0)
    >>> rows = searcher.ask(2)
    >>> [sorted(row) for row in rows], [row["seed"] for row in rows]
    ([['act', 'lr', 'seed'], ['act', 'lr', 'seed']], [0, 1])
    >>> searcher.tell(0, 0.9, 100, "finished"); searcher.tell(1, 0.5, 50, "stopped")
    >>> [trial.state.name for trial in searcher.study.trials]
    ['COMPLETE', 'PRUNED']
    """

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any],
        sampler_name: str,
        direction: str,
        seed: int,
        options: Mapping[str, Any] | None = None,
        warm_start: Sequence[Mapping[str, Any]] | None = None,
        trials: int | None = None,
    ):
        if sampler_name not in SAMPLERS:
            raise ValueError(
                f"searcher: unknown sampler {sampler_name!r}; allowed: {list(SAMPLERS)}."
            )
        check_installed(sampler_name)
        check_direction(direction)
        self.name, self.direction = sampler_name, direction
        self.seed = check_count("seed", seed, 0)
        self.trials = None if trials is None else check_count("trials", trials)
        self.dims = space_dimensions(space)
        check_scalar_choices(self.dims, sampler_name)
        self.options = dict(options or {})
        self.distributions = optuna_distributions(self.dims)
        self.warm = usable_warm_rows(self.dims, warm_start)
        self.multi_objective = sampler_name == "nsga2"
        self._log: list[list[Any]] = []
        self._reset()

    @property
    def study(self) -> Any:
        """The Optuna study (in memory): warm-start trials first, then this searcher's."""
        return self._study

    def _sampler(self, optuna: Any) -> Any:
        cls = getattr(optuna.samplers, SAMPLERS[self.name])
        allowed = sampler_options(self.name)
        for key, value in self.options.items():
            if key not in allowed:
                raise ValueError(
                    f"searcher.{key}: unknown option (= {value!r}) of searcher {self.name!r} "
                    f"(Optuna's {cls.__name__}); allowed: {allowed}."
                )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return cls(seed=self.seed, **self.options)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"searcher: Optuna's {cls.__name__} refused the options {self.options}: "
                    f"{err}; allowed: see its documentation."
                ) from None

    def _reset(self) -> None:
        """A fresh study with a fresh seeded sampler, holding the warm-start trials."""
        with quiet_optuna() as optuna:
            directions = [OPTUNA_DIRECTIONS[self.direction]]
            if self.multi_objective:
                directions.append("minimize")
            self._study = optuna.create_study(directions=directions, sampler=self._sampler(optuna))
            for row in self.warm:
                values = [row["value"], row["steps"]] if self.multi_objective else [row["value"]]
                dists = {k: self.distributions[k] for k in row["params"]}
                trial = optuna.trial.create_trial(
                    params=row["params"], distributions=dists, values=values
                )
                self._study.add_trial(trial)
        self._trials: list[Any] = []
        self._told: set[int] = set()

    def ask(self, n: int) -> list[dict[str, Any]]:
        n = check_count("n", n, 0)
        if self.trials is not None:
            n = min(n, self.trials - len(self._trials))
        rows = self._ask(n)
        if rows:
            self._log.append(["ask", len(rows)])
        return rows

    def _ask(self, n: int) -> list[dict[str, Any]]:
        rows = []
        with quiet_optuna():
            for _ in range(n):
                trial = self._study.ask(self.distributions)
                row = {
                    k: _plain(trial.params[k] if k in self.distributions else v)
                    for k, v in self.dims.items()
                }
                if "seed" not in row:
                    row["seed"] = len(self._trials)
                self._trials.append(trial)
                rows.append(row)
        return rows

    def tell(self, trial: int, value: float, steps: int, status: str) -> None:
        check_tell(trial, status, len(self._trials), self._told)
        value = float(value)
        self._tell(int(trial), value, int(steps), status)
        self._log.append(
            ["tell", int(trial), value if math.isfinite(value) else None, int(steps), status]
        )

    def _tell(self, trial: int, value: float, steps: int, status: str) -> None:
        with quiet_optuna() as optuna:
            state = optuna.trial.TrialState
            handle = self._trials[trial]
            if status == "diverged" or not math.isfinite(value):
                self._study.tell(handle, state=state.FAIL)
            elif self.multi_objective:
                self._study.tell(handle, [value, steps])
            elif status == "stopped":
                handle.report(value, steps)
                self._study.tell(handle, state=state.PRUNED)
            else:
                self._study.tell(handle, value)
        self._told.add(trial)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "warm_start": self.warm, "log": [list(e) for e in self._log]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replay the saved calls into a fresh study: the next `ask` is the uninterrupted one's."""
        check_state(self.name, state)
        self.warm = usable_warm_rows(self.dims, state["warm_start"])
        self._reset()
        for entry in state["log"]:
            if entry[0] == "ask":
                self._ask(int(entry[1]))
            else:
                _, trial, value, steps, status = entry
                self._tell(int(trial), math.nan if value is None else float(value), steps, status)
        self._log = [list(e) for e in state["log"]]
