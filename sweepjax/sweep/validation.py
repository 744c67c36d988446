"""Validation at the edge: every key of a `Config`, checked before anything compiles.

Each refusal is a `ValueError` naming the key, the value and what is allowed (invariant 7 of
`docs/architecture.md`). `validate` is the entry point (`sweepjax.validate`).

>>> validate(Config(seed=-1))
Traceback (most recent call last):
...
ValueError: seed: -1 is out of range; allowed: integers from 0 to 4294967295 (2**32 - 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweepjax.engine.data import augmentation_of
from sweepjax.engine.models import MODELS, build_model, model_of, model_options
from sweepjax.engine.optim import check_schedules
from sweepjax.engine.schedules import PIECES
from sweepjax.engine.tasks import task_of
from sweepjax.search import distributions
from sweepjax.search import space as space_lib
from sweepjax.sweep.config import (
    FAMILY_KEYS,
    Config,
    allowed_hyperparameters,
    effective_space,
    families,
    policy_of,
)
from sweepjax.sweep.keys import KEYS, MAX_MEMBERS
from sweepjax.sweep.policies import check_policies
from sweepjax.sweep.tracker_options import check_trackers

# Per-member hyperparameters with a bounded range: name -> (low, high, low_inclusive, high_inclusive).
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "learning_rate": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, True),
    "b1": (0.0, 1.0, True, False),
    "b2": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "l2": (0.0, math.inf, True, False),
    "weight_decay": (0.0, math.inf, True, False),
    "alpha": (0.0, 1.0, True, True),
    "decay_steps": (0.0, math.inf, False, False),
    "warmup_steps": (0.0, math.inf, True, False),
    # optimizers
    "decay": (0.0, 1.0, True, True),
    "rho": (0.0, 1.0, True, True),
    "initial_scale": (0.0, math.inf, True, False),
    "initial_accumulator_value": (0.0, math.inf, True, False),
    "clip_norm": (0.0, math.inf, False, False),
    "clip_value": (0.0, math.inf, False, False),
    # schedules
    "decay_rate": (0.0, math.inf, True, False),
    "staircase": (0.0, 1.0, True, True),
    "cycle": (0.0, 1.0, True, True),
    "end_learning_rate": (0.0, math.inf, True, False),
    "min_learning_rate": (0.0, math.inf, True, False),
    "power": (0.0, math.inf, False, False),
    "num_periods": (0.0, math.inf, True, False),
    "beta": (0.0, math.inf, True, False),
    "initial_variance": (0.0, math.inf, True, False),
    "variance_decay": (0.0, math.inf, True, False),
    "step_size": (0.0, math.inf, False, False),
    "cycle_decay": (0.0, math.inf, False, False),
    "gamma": (0.0, math.inf, False, False),
    "T_0": (0.0, math.inf, False, False),
    "T_mult": (1.0, math.inf, True, False),
    "restart_decay": (0.0, math.inf, True, False),
    "pct_start": (0.0, 1.0, True, True),
    "pct_final": (0.0, 1.0, True, True),
    "div_factor": (0.0, math.inf, False, False),
    "final_div_factor": (0.0, math.inf, False, False),
    **{f"boundary_{i}": (0.0, math.inf, True, False) for i in range(PIECES)},
    **{f"scale_{i}": (0.0, math.inf, True, False) for i in range(PIECES)},
    "dropout": (0.0, 1.0, True, False),
}
FLAGS = ("staircase", "cycle")  # on or off per member (0.0 or 1.0): a bool is a number there
MEMBER_SEEDS = (0, 2**31 - 1)  # a member's seed is its int32 `seed` column
SPACE_ALLOWED = (
    "a mapping of hyperparameter name to a distribution (Choice, IntUniform, LogUniform, "
    "Uniform) or a fixed number or string, e.g. {'learning_rate': LogUniform(1e-3, 1.0)}"
)


def validate(config: Config) -> Config:
    """Check every key of `config`; raise `ValueError` naming the key, value and what is allowed.

    Runs before anything compiles or allocates. Returns the config unchanged.
    """
    for spec in KEYS.values():  # each key alone: its types, range and choices
        spec.check(getattr(config, spec.name))
    _check_numbers(config)
    _check_options(config)
    _check_model(config)
    _check_space(config)
    _check_policies(config)
    return config


def _check_numbers(config: Config) -> None:
    """The integer keys whose allowed values depend on another key or mix types."""
    width = config.population_width
    if (isinstance(width, str) and width != "auto") or (isinstance(width, int) and width < 1):
        raise ValueError(
            f"population_width: {width!r} must be 'auto' or a positive integer (members "
            "vectorized together on one device)."
        )
    every = config.checkpoint_every
    if every is not None and (every < 1 or every % config.eval_every):
        raise ValueError(
            f"checkpoint_every: {every} must be a positive multiple of eval_every "
            f"({config.eval_every}), since checkpoints are taken between chunks; allowed: "
            f"{config.eval_every}, {2 * config.eval_every}, ... or None (every eval_every steps)."
        )


def _check_options(config: Config) -> None:
    """Where the sweep writes and caches, its augmentation, task and trackers."""
    cache = config.compile_cache  # a str or None: its type was checked first
    if cache is not None and not cache.strip():
        raise ValueError(
            f"compile_cache: {cache!r} names no folder; allowed: 'auto' ($SWEEPJAX_COMPILE_CACHE, "
            "else ~/.cache/sweepjax/xla), a folder path, or 'off'."
        )
    augmentation_of(config.augment)  # raises on a bad value
    task_of(config.task)  # raises on an unknown task
    if config.out_dir is not None and not config.out_dir.strip():
        raise ValueError(
            f"out_dir: {config.out_dir!r} names no folder; allowed: a folder path, or None to "
            "write nothing."
        )
    check_trackers(config)


def _check_policies(config: Config) -> None:
    """`trials`, `scheduler` and `searcher` (see `sweepjax.search`)."""
    trials = config.trials
    if trials is not None and not config.population <= trials <= MAX_MEMBERS:
        what = (
            "is too large" if trials > MAX_MEMBERS else f"is below population {config.population}"
        )
        raise ValueError(
            f"trials: {trials} {what}; allowed: None (as many as the population), or "
            f"{config.population} to {MAX_MEMBERS} (2**24); for fewer slots, set population."
        )
    check_policies(config)


def _check_model(config: Config) -> None:
    if not isinstance(config.model, Mapping):
        model_of(config.model)  # a user module: built now (shapes only), traced on the data later
        return
    name = config.model.get("name", "mlp")
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; allowed: {sorted(MODELS)}.")
    allowed = model_options(name)
    for key, value in config.model.items():
        if key != "name" and key not in allowed:
            raise ValueError(
                f"model.{key}: {value!r} is not an option of {name!r}; allowed: {sorted(allowed)}."
            )


def _check_space(config: Config) -> None:
    """Every space entry: a valid distribution or value of a hyperparameter this sweep takes."""
    if not isinstance(config.space, Mapping):
        raise ValueError(f"space: {config.space!r} is not a mapping; allowed: {SPACE_ALLOWED}.")
    for name in config.space:
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"space: {name!r} is not a hyperparameter name; allowed: {SPACE_ALLOWED}."
            )
    # Keys named as in the config, so every message of the space's own checks names its key.
    space = space_lib.SearchSpace({f"space.{k}": v for k, v in effective_space(config).items()})
    if policy_of(config.searcher, "searcher")[0] == "grid":
        space.check_grid(config.trials or config.population)  # the grid the searcher draws
    optimizers, schedules = families(config, "optimizer"), families(config, "schedule")
    check_schedules(config.schedules, optimizers)  # before its parameters are looked up
    allowed = {**allowed_hyperparameters(config), **dict.fromkeys(FAMILY_KEYS)}
    for name, value in config.space.items():
        if name.startswith("model."):
            _check_structural(config, name, value)
        elif name not in allowed:
            others = f" and schedules {dict(config.schedules)}" if config.schedules else ""
            raise ValueError(
                f"space.{name}: {value!r} is not a hyperparameter of optimizer "
                f"{_names(optimizers)} with schedule {_names(schedules)}{others}; "
                f"allowed: {sorted(allowed)}."
            )
        elif name == "seed":
            _check_member_seeds(value)
        elif name not in (*FAMILY_KEYS, "batch_size"):
            _check_range(name, value)
    _check_warmup(config)
    _check_member_batch_sizes(config)


def _names(names: tuple[str, ...]) -> str:
    return repr(names[0]) if len(names) == 1 else repr(list(names))


def _values(value: Any) -> list[Any]:
    """The values a space entry can take, as far as a range check needs: a Choice's values, a
    continuous distribution's bounds, or the fixed value."""
    if isinstance(value, space_lib.Choice):
        return list(value.values)
    if isinstance(value, space_lib.LogUniform | space_lib.Uniform | space_lib.IntUniform):
        return [value.low, value.high]
    return [value]


def _check_range(name: str, value: Any) -> None:
    """A numeric hyperparameter: every value it takes is a number (not a bool) in its range.

    A scheduled hyperparameter's schedule parameter `<name>.<parameter>` has the parameter's.
    """
    base = name.rpartition(".")[2]
    low, high, low_in, high_in = RANGES.get(base, (-math.inf, math.inf, False, False))
    allowed = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
    for v in _values(value):
        if base in FLAGS and isinstance(v, bool | np.bool_):
            continue
        if not distributions.is_number(v):
            what = "a boolean, not a number" if isinstance(v, bool | np.bool_) else "not a number"
            flag = " or a bool" if base in FLAGS else ""
            raise ValueError(f"space.{name}: {v!r} is {what}; allowed: numbers in {allowed}{flag}.")
        if not ((low <= v if low_in else low < v) and (v <= high if high_in else v < high)):
            raise ValueError(f"space.{name}: {v!r} is out of range; allowed: {allowed}.")


def _check_member_seeds(value: Any) -> None:
    low, high = MEMBER_SEEDS
    for v in _values(value):
        if not (distributions.is_number(v) and low <= v <= high and int(v) == v):
            raise ValueError(
                f"space.seed: {v!r} is not a member's seed; allowed: integers from {low} to "
                f"{high} (2**31 - 1)."
            )


def _check_warmup(config: Config) -> None:
    """`warmup_steps`, and a scheduled hyperparameter's `<name>.warmup_steps`, fit the run."""
    for name, value in config.space.items():
        if name.rpartition(".")[2] != "warmup_steps":
            continue
        if isinstance(value, space_lib.Choice):
            values = list(value.values)
        elif isinstance(value, space_lib.LogUniform | space_lib.Uniform | space_lib.IntUniform):
            values = [value.high]
        else:
            values = [value]
        for v in values:
            if v > config.steps:
                raise ValueError(
                    f"space.{name}: {v!r} is longer than the run (steps={config.steps}); "
                    f"allowed: 0 <= {name} <= steps."
                )


def _check_structural(config: Config, name: str, value: Any) -> None:
    """A `model.<option>` dimension: every value it can take must build a valid model."""
    if not isinstance(config.model, Mapping):
        raise ValueError(
            f"space.{name}: the model is a user module; only built-in models (a spec dict) "
            "take structural dimensions."
        )
    if isinstance(value, space_lib.LogUniform | space_lib.Uniform):
        raise ValueError(
            f"space.{name}: {value!r} is continuous; allowed for structure: Choice, IntUniform "
            "or a fixed value."
        )
    if isinstance(value, space_lib.Choice):
        candidates = list(value.values)
    elif isinstance(value, space_lib.IntUniform):
        candidates = range(int(value.low), int(value.high) + 1)
    else:
        candidates = [value]
    option = name.removeprefix("model.")
    for candidate in candidates:
        try:
            build_model({**config.model, option: candidate})
        except (ValueError, TypeError) as err:
            raise ValueError(f"space.{name}: {candidate!r} does not build a model: {err}") from err


def _check_member_batch_sizes(config: Config) -> None:
    value = config.space.get("batch_size")
    if value is None:
        return
    if isinstance(value, space_lib.Choice):
        values = list(value.values)
    elif isinstance(value, space_lib.IntUniform):
        values = [value.low, value.high]
    else:
        values = [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= config.batch_size:
            raise ValueError(
                f"space.batch_size: {v!r} is not allowed; allowed: integers from 1 to the "
                f"config's batch_size ({config.batch_size}), the shared batch every member draws from."
            )
