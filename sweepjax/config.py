"""The sweep configuration: one frozen dataclass, overrides by dotted keys, validation at the edge.

>>> cfg = apply_overrides(Config(), ["model.hidden=[32, 32]", "space.momentum=0.9", "steps=50"])
>>> cfg.model["hidden"], cfg.space["momentum"], cfg.steps
([32, 32], 0.9, 50)
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sweepjax import space as space_lib
from sweepjax.models import MODELS, model_of, model_options
from sweepjax.optim import hyperparameter_names
from sweepjax.schedules import schedule_parameters

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
    "dropout": (0.0, 1.0, True, False),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a sweep. Replace fields with `dataclasses.replace` or overrides.

    `model` is a built-in model spec `{"name": "mlp", **options}` or any Flax module (a
    `flax.linen.Module` instance, or a `flax.nnx.Module` class / constructor taking `rngs=`).
    `space` maps hyperparameter names to distributions or fixed values; names the optimizer or
    schedule do not name in `space` keep their defaults.
    """

    dataset: str = "mnist1d"
    val_size: int = 500
    normalize: str = "standard"
    model: Any = dataclasses.field(default_factory=lambda: {"name": "mlp"})
    optimizer: str = "sgd"
    nesterov: bool = False
    schedule: str = "constant"
    space: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"learning_rate": space_lib.LogUniform(1e-3, 1.0)}
    )
    search: str = "quasi_random"
    population: int = 16
    steps: int = 1000
    batch_size: int = 100
    eval_every: int = 100
    eval_batch: int = 1000
    seed: int = 0
    out_dir: str | None = "runs/default"  # None: write nothing
    tensorboard: bool = False  # TensorBoard logs in out_dir/tensorboard (needs tensorboardX)
    checkpoint_every: int | None = None  # steps between checkpoints; None: every eval_every
    keep_checkpoints: int = 3  # the newest checkpoints kept in out_dir/checkpoints
    # Members vectorized together on one device: "auto" (probed and memory-planned) or an int.
    population_width: int | str = "auto"

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (a user module is recorded by its repr)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = dict(self.model) if isinstance(self.model, Mapping) else repr(self.model)
        out["space"] = {k: space_lib.to_json(v) for k, v in self.space.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Config:
        data = dict(data)
        data["space"] = {k: space_lib.from_json(v) for k, v in data["space"].items()}
        return cls(**data)


_FIELD_TYPES = {
    "dataset": str,
    "val_size": int,
    "normalize": str,
    "optimizer": str,
    "nesterov": bool,
    "schedule": str,
    "search": str,
    "population": int,
    "steps": int,
    "batch_size": int,
    "eval_every": int,
    "eval_batch": int,
    "seed": int,
    "out_dir": (str, type(None)),
    "tensorboard": bool,
    "checkpoint_every": (int, type(None)),
    "keep_checkpoints": int,
    "population_width": (int, str),
}


def parse_value(text: str) -> Any:
    """Parse an override value: JSON, a Python literal, a distribution call, or a bare string.

    >>> parse_value("[100, 100]"), parse_value("1e-3"), parse_value("adam")
    ([100, 100], 0.001, 'adam')
    >>> parse_value("LogUniform(1e-4, 1)")
    LogUniform(low=0.0001, high=1, num=None)
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return text
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id not in space_lib.DISTRIBUTIONS:
            raise ValueError(
                f"{text!r}: unknown distribution {node.func.id!r}; "
                f"allowed: {sorted(space_lib.DISTRIBUTIONS)}."
            )
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        return space_lib.DISTRIBUTIONS[node.func.id](*args, **kwargs)
    return text


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply `key=value` overrides; `model.<option>` and `space.<name>` reach nested entries."""
    changes: dict[str, Any] = {}
    model = dict(config.model) if isinstance(config.model, Mapping) else config.model
    space = dict(config.space)
    valid = sorted([*_FIELD_TYPES, "model", "model.<option>", "space.<name>"])
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value; valid keys: {valid}.")
        value = parse_value(text.strip())
        head, _, rest = key.partition(".")
        if head == "model" and rest:
            if not isinstance(model, dict):
                raise ValueError(
                    f"{key}: the model is a user module; its options are not settable."
                )
            model[rest] = value
        elif head == "space" and rest:
            space[rest] = value
        elif key == "model":
            model = value if isinstance(value, Mapping) else {"name": value}
        elif key in _FIELD_TYPES:
            changes[key] = value
        else:
            raise ValueError(f"{key}: unknown key; valid keys: {valid}.")
    return config.replace(model=model, space=space, **changes)


def _check_range(name: str, value: Any) -> None:
    if name not in RANGES:
        return
    low, high, low_in, high_in = RANGES[name]
    if isinstance(value, space_lib.Choice):
        values = list(value.values)
    elif isinstance(value, space_lib.LogUniform | space_lib.Uniform | space_lib.IntUniform):
        values = [value.low, value.high]
    else:
        values = [value]
    for v in values:
        if isinstance(v, str) or not (
            (low <= v if low_in else low < v) and (v <= high if high_in else v < high)
        ):
            allowed = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise ValueError(f"space.{name}: {v!r} is out of range; allowed: {allowed}.")


def allowed_hyperparameters(config: Config) -> dict[str, float]:
    """Every per-member hyperparameter this config's optimizer, schedule and model take.

    Besides the optimizer's and the schedule's: `seed`, `batch_size` (per member, at most the
    config's `batch_size`) and `dropout` where the model takes a dropout rate.
    """
    model = {"dropout": 0.0} if model_of(config.model).takes_dropout else {}
    return {
        **hyperparameter_names(config.optimizer),
        **schedule_parameters(config.schedule, config.steps),
        **model,
        "seed": 0,
        "batch_size": config.batch_size,
    }


def validate(config: Config) -> Config:
    """Check every key of `config`; raise `ValueError` naming the key, value and what is allowed.

    Runs before anything compiles. Returns the config unchanged.
    """
    for name, kind in _FIELD_TYPES.items():
        value = getattr(config, name)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            allowed = " or ".join(
                k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,))
            )
            raise ValueError(f"{name}: {value!r} must be of type {allowed}.")
    for name in (
        "population",
        "steps",
        "batch_size",
        "eval_every",
        "eval_batch",
        "keep_checkpoints",
    ):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: {getattr(config, name)} must be a positive integer.")
    every = config.checkpoint_every
    if every is not None and (every < 1 or every % config.eval_every):
        raise ValueError(
            f"checkpoint_every: {every} must be a positive multiple of eval_every "
            f"({config.eval_every}), since checkpoints are taken between chunks; allowed: "
            f"{config.eval_every}, {2 * config.eval_every}, ... or None (every eval_every steps)."
        )
    width = config.population_width
    if (isinstance(width, str) and width != "auto") or (isinstance(width, int) and width < 1):
        raise ValueError(
            f"population_width: {width!r} must be 'auto' or a positive integer (members "
            "vectorized together on one device)."
        )
    if config.val_size < 1:
        raise ValueError(f"val_size: {config.val_size} must be a positive integer.")
    if config.search not in space_lib.METHODS:
        raise ValueError(
            f"search: unknown method {config.search!r}; allowed: {list(space_lib.METHODS)}."
        )
    if isinstance(config.model, Mapping):
        name = config.model.get("name", "mlp")
        if name not in MODELS:
            raise ValueError(f"model.name: unknown model {name!r}; allowed: {sorted(MODELS)}.")
        allowed = model_options(name)
        for key, value in config.model.items():
            if key != "name" and key not in allowed:
                raise ValueError(
                    f"model.{key}: {value!r} is not an option of {name!r}; allowed: {sorted(allowed)}."
                )
    if config.tensorboard:
        if config.out_dir is None:
            raise ValueError("tensorboard: True needs an out_dir to write the logs into.")
        if importlib.util.find_spec("tensorboardX") is None:
            raise ValueError(
                "tensorboard: True needs the tensorboardX package; install it with "
                "`pip install tensorboardX` (or sweepjax[tensorboard]), or set tensorboard=False."
            )
    space = space_lib.SearchSpace(config.space)  # validates every distribution
    if config.search == "grid" and space.grid_size(config.population) != config.population:
        size = space.grid_size(config.population)
        raise ValueError(
            f"population: {config.population} does not match the grid's {size} points; "
            f"allowed: population={size}, or set `num` on the continuous dimensions."
        )
    allowed = allowed_hyperparameters(config)
    for name, value in config.space.items():
        if name not in allowed:
            raise ValueError(
                f"space.{name}: {value!r} is not a hyperparameter of optimizer {config.optimizer!r} "
                f"with schedule {config.schedule!r}; allowed: {sorted(allowed)}."
            )
        _check_range(name, value)
    _check_member_batch_sizes(config)
    return config


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
