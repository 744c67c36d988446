"""A sweep's scheduler and searcher, built by name from its config with defaults fitted to the
sweep (and checked before anything compiles: `check_policies` runs in
`sweepjax.sweep.config.validate`); a bad name, option or value is a `ValueError` naming its key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sweepjax.engine.tasks import Task, task_of
from sweepjax.search.checks import check, check_count, check_direction, check_int
from sweepjax.search.distributions import is_number
from sweepjax.search.pbt import PBT
from sweepjax.search.protocol import Scheduler
from sweepjax.search.schedulers import (
    ASHA,
    FIFO,
    MedianStopping,
    Patience,
    SuccessiveHalving,
)
from sweepjax.search.searchers import (
    COARSE_TO_FINE_DEFAULTS,
    METHODS,
    OPTUNA_SEARCHERS,
    SEARCHERS,
    CoarseToFine,
    Sampled,
    SearchSpace,
    space_dimensions,
)
from sweepjax.sweep.config import Config, effective_space, policy_of
from sweepjax.sweep.structures import STRUCTURAL_PREFIX, searcher_space
from sweepjax.sweep.warm_start import warm_start_rows


class FixedRows:
    """A searcher that hands out given rows in order (a structural bucket's members).

    >>> searcher = FixedRows([{"learning_rate": 0.1, "seed": 0}])
    >>> searcher.ask(2), searcher.ask(1)
    ([{'learning_rate': 0.1, 'seed': 0}], [])
    """

    name = "fixed"

    def __init__(self, rows: Sequence[Mapping[str, Any]]):
        self.rows, self.count = [dict(r) for r in rows], 0

    def ask(self, n: int) -> list[dict[str, Any]]:
        out = self.rows[self.count : self.count + n]
        self.count += len(out)
        return out

    def tell(self, trial: int, value: float, steps: int, status: str) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])


def make_policies(
    config: Config, task: Task, rows: Sequence[Mapping[str, Any]] | None = None
) -> tuple[Any, Any]:
    """`(scheduler, searcher)` of `config`; with `rows`, a searcher handing out those rows.

    Raises:
      ValueError: a bad `scheduler`, `searcher` or option, naming the key and what is allowed.
    """
    name, options = policy_of(config.scheduler, "scheduler")
    scheduler = make_scheduler(
        name,
        options,
        direction=task.direction,
        max_steps=config.steps,
        eval_every=config.eval_every,
        population=config.population,
        space=effective_space(config),
        seed=config.seed,
    )
    if rows is not None:
        return scheduler, FixedRows(rows)
    name, options = policy_of(config.searcher, "searcher")
    warm = options.pop("warm_start", None)
    warm_rows = None
    if warm is not None:
        warm_rows = warm_start_rows(
            warm, rank_by=f"final_val_{task.rank_by}", direction=task.direction
        )
    searcher = make_searcher(
        name,
        options,
        space=searcher_space(config),  # structural lists by their labels
        trials=config.trials or config.population,
        population=config.population,
        direction=task.direction,
        seed=config.seed,
        warm_start=warm_rows,
    )
    return scheduler, searcher


def check_policies(config: Config) -> None:
    """Build the config's scheduler and searcher once, to refuse bad settings early."""
    make_policies(config, task_of(config.task))


SCHEDULERS: dict[str, type] = {
    "none": FIFO,
    "asha": ASHA,
    "hyperband": ASHA,
    "successive_halving": SuccessiveHalving,
    "median": MedianStopping,
    "patience": Patience,
    "pbt": PBT,
}
# The options each scheduler takes (`scheduler.<option>`); the constructors check their values.
OPTIONS: dict[str, tuple[str, ...]] = {
    "none": (),
    "asha": ("eta", "min_steps"),
    "hyperband": ("eta", "min_steps", "brackets"),
    "successive_halving": ("eta", "min_steps", "cohort_size"),
    "median": ("grace_steps", "min_trials"),
    "patience": ("patience", "min_delta"),
    "pbt": ("ready", "quantile", "resample_probability", "perturb"),
}

# Space names PBT leaves alone: the families, and the model's structure (`model.*`): a copied
# member's weights and optimizer state fit only its own.
PINNED = ("schedule", "optimizer")


def default_min_steps(max_steps: int, eval_every: int, eta: float = 3) -> int:
    """`max(eval_every, max_steps // eta**3)` rounded up to a multiple of `eval_every`: the
    first rung at an evaluation, about four rungs below `max_steps`.

    >>> default_min_steps(2700, 10), default_min_steps(100, 10), default_min_steps(2700, 40)
    (100, 10, 120)
    """
    return _every(max(eval_every, int(max_steps // eta**3)), eval_every)


def _check_options(name: Any, options: Any) -> dict[str, Any]:
    """Refuse an unknown scheduler or option (their values are the constructors' to check)."""
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise ValueError(f"scheduler: unknown scheduler {name!r}; allowed: {list(SCHEDULERS)}.")
    if not isinstance(options, Mapping):
        raise ValueError(f"scheduler: options {options!r} are not a mapping; allowed: a dict.")
    for key in options:
        if key not in OPTIONS[name]:
            allowed = list(OPTIONS[name]) or "no options"
            raise ValueError(f"scheduler.{key}: not an option of {name}; allowed: {allowed}.")
    return dict(options)


def _rung_defaults(name: str, opts: dict[str, Any], max_steps: int, eval_every: int) -> None:
    """Fill in `eta`, `min_steps` and (Hyperband) `brackets`."""
    eta = opts.setdefault("eta", 3)
    check("eta", eta, is_number(eta) and eta > 1, "must be > 1", "a number above 1")
    if "min_steps" not in opts:
        opts["min_steps"] = low = default_min_steps(max_steps, eval_every, eta)
        why = f"(the default: one eval interval) is not below max_steps {max_steps}"
        check("min_steps", low, low < max_steps, why, "a sweep with eval_every < steps")
    if name == "hyperband" and "brackets" not in opts and is_number(opts["min_steps"]):
        opts["brackets"] = sum(opts["min_steps"] * eta**b < max_steps for b in range(3))


def _every(steps: int, eval_every: int) -> int:
    """`steps` rounded up to a multiple of `eval_every`."""
    return -(-steps // eval_every) * eval_every


def make_scheduler(
    name: str,
    options: Mapping[str, Any],
    *,
    direction: str,
    max_steps: int,
    eval_every: int,
    population: int,
    space: Mapping[str, Any],
    seed: int,
) -> Scheduler:
    """The scheduler `name` with `options`, defaults fitted to a sweep of `max_steps` steps per
    trial evaluated every `eval_every` steps: `eta` 3 and `default_min_steps` (rung-based);
    Hyperband as many brackets as fit, up to 3; `cohort_size` the population; median
    `grace_steps` one eval interval; `patience` a fifth of `max_steps`; PBT `ready` a tenth
    (both at least one eval interval, rounded up to a multiple of it); PBT does not explore
    the `PINNED` names nor `model.*`, and exploits only within a structure (`group_by`).

    >>> make_scheduler("hyperband", {}, direction="max", max_steps=2700, eval_every=10,
    ...                population=8, space={}, seed=0).rungs(2)
    [900]
    >>> make_scheduler("asha", {"etta": 2}, direction="max", max_steps=2700, eval_every=10,
    ...                population=8, space={}, seed=0)
    Traceback (most recent call last):
    ...
    ValueError: scheduler.etta: not an option of asha; allowed: ['eta', 'min_steps'].
    """
    if name == "none" and not options:
        return FIFO()
    opts = _check_options(name, options)
    check_int("max_steps", max_steps, 1)
    check_int("eval_every", eval_every, 1)
    if "eta" in OPTIONS[name]:
        _rung_defaults(name, opts, max_steps, eval_every)
    defaults = {
        "successive_halving": {"cohort_size": population},
        "median": {"grace_steps": eval_every},
        "patience": {"patience": _every(max(eval_every, max_steps // 5), eval_every)},
        "pbt": {"ready": _every(max(eval_every, max_steps // 10), eval_every)},
    }
    opts = defaults.get(name, {}) | opts
    if name == "pbt":
        structure = [k for k in space if k.startswith(STRUCTURAL_PREFIX)]
        explored = {k: v for k, v in space.items() if k not in PINNED and k not in structure}
        return PBT(direction, explored, seed=seed, group_by=structure, **opts)
    if "eta" in OPTIONS[name]:
        return SCHEDULERS[name](direction, max_steps, **opts)
    return SCHEDULERS[name](direction, **opts)


def make_searcher(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    space: SearchSpace | Mapping[str, Any],
    trials: int,
    population: int,
    direction: str,
    seed: int,
    warm_start: Sequence[Mapping[str, Any]] | None = None,
) -> Any:
    """The searcher `name` with `options`, checked: a bad name, option or space is a
    `ValueError` naming its key (`searcher`, `searcher.<option>`) and what is allowed.

    Defaults: `coarse_to_fine` rounds of `population` trials (one batch of slots) keeping the
    best quarter with a margin of 0.1; Optuna's samplers as `optuna_search.default_options`.

    >>> from sweepjax.search.distributions import Uniform
    >>> make_searcher("coarse_to_fine", {}, space={"x": Uniform(0, 1)}, trials=16,
    ...               population=8, direction="min", seed=0).round_size
    8
    >>> make_searcher("hyperband", {}, space={}, trials=1, population=1, direction="max",
    ...               seed=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: searcher: unknown searcher 'hyperband'; allowed: ['grid', 'random', ...].
    """
    if name not in SEARCHERS:
        raise ValueError(f"searcher: unknown searcher {name!r}; allowed: {list(SEARCHERS)}.")
    if not isinstance(options or {}, Mapping):
        raise ValueError(f"searcher: options {options!r} are not a mapping; allowed: a mapping.")
    options = dict(options or {})
    check_direction(direction)
    trials, population = check_count("trials", trials), check_count("population", population)
    seed = check_count("seed", seed, 0)
    if name in METHODS:
        _check_known(name, options, {})
        if warm_start:
            raise ValueError(
                f"warm_start: searcher {name!r} samples a fixed population; allowed: "
                f"a searcher from {['coarse_to_fine', *OPTUNA_SEARCHERS]}."
            )
        return Sampled(space, name, trials, seed)
    if name == "coarse_to_fine":
        defaults = {"round_size": population, **COARSE_TO_FINE_DEFAULTS}
        _check_known(name, options, defaults)
        kwargs = {**defaults, **options}
        return CoarseToFine(
            space, direction, trials=trials, seed=seed, warm_start=warm_start, **kwargs
        )
    from sweepjax.search import optuna_search

    optuna_search.check_installed(name)  # first: a missing package is the first thing to fix
    dims = space_dimensions(space)
    known = optuna_search.sampler_options(name)  # Optuna 4 may lack a default's option
    defaults = optuna_search.default_options(name, population, dims)
    options = {**{k: v for k, v in defaults.items() if k in known}, **options}
    return optuna_search.OptunaSearcher(dims, name, direction, seed, options, warm_start, trials)


def _check_known(name: str, options: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(
                f"searcher.{key}: unknown option (= {value!r}) of searcher {name!r}; "
                f"allowed: {sorted(allowed) or 'no options'}."
            )
