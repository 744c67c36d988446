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
from sweepjax.data import augmentation_of
from sweepjax.models import MODELS, build_model, model_of, model_options
from sweepjax.optim import FAMILIES, hyperparameter_names
from sweepjax.schedules import PIECES, SCHEDULES, schedule_parameters

PLACEMENTS = ("auto", "device", "stream")  # values of `data_placement` (see sweepjax.stream)
PRECISIONS = ("float32", "bfloat16")  # values of `precision`

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
# Space entries that pick a family per member; on the device they are int32 indices.
FAMILY_KEYS = ("schedule", "optimizer")


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
    optimizer: str | tuple[str, ...] = "sgd"
    nesterov: bool = False
    schedule: str | tuple[str, ...] = "constant"
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
    # Where the training set lives: "device" (gathered inside the compiled chunk), "stream"
    # (host-side blocks, prefetched), or "auto" (stream when it would not fit; sweepjax.stream).
    data_placement: str = "auto"
    # On-device image augmentation of the shared batch: None, True (crop with padding 4 and
    # horizontal flip) or {"crop_padding": int, "flip": bool}; see sweepjax.data.Augment.
    augment: Any = None
    # Members vectorized together on one device: "auto" (memory-planned; on a CPU, where every
    # width gives the same numbers, timed on the first chunks) or an int (1 runs as 2, the
    # narrowest group).
    population_width: int | str = "auto"
    # The dtype of the forward and backward pass: "float32", or "bfloat16" (mixed precision for
    # GPUs: parameters, optimizer state and the loss stay float32).
    precision: str = "float32"

    def __post_init__(self):
        for name in FAMILY_KEYS:
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (a user module is recorded by its repr)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = dict(self.model) if isinstance(self.model, Mapping) else repr(self.model)
        out["space"] = {k: space_lib.to_json(v) for k, v in self.space.items()}
        for name in FAMILY_KEYS:
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
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
    "optimizer": (str, tuple),
    "nesterov": bool,
    "schedule": (str, tuple),
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
    "data_placement": str,
    "population_width": (int, str),
    "precision": str,
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
    valid = sorted([*_FIELD_TYPES, "augment", "model", "model.<option>", "space.<name>"])
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
        elif key in _FIELD_TYPES or key == "augment":
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


_REGISTRIES = {"schedule": SCHEDULES, "optimizer": FAMILIES}


def families(config: Config, kind: str) -> tuple[str, ...]:
    """The `kind` ("schedule" or "optimizer") families of a sweep, in the registry's order.

    `space[kind]` (a name or a `Choice` of names) takes precedence over `config.<kind>`. The
    order is canonical, so the same set of families always gives the same program.

    >>> families(Config(space={"schedule": space_lib.Choice(["sgdr", "cosine"])}), "schedule")
    ('cosine', 'sgdr')
    """
    value = config.space.get(kind, getattr(config, kind))
    if isinstance(value, space_lib.Choice):
        value = value.values
    names = (value,) if isinstance(value, str) else tuple(value)
    registry = _REGISTRIES[kind]
    for name in names:
        if not isinstance(name, str) or name not in registry:
            where = f"space.{kind}" if kind in config.space else kind
            raise ValueError(f"{where}: unknown family {name!r}; allowed: {sorted(registry)}.")
    if not names:
        raise ValueError(f"{kind}: no family given; allowed: {sorted(registry)}.")
    return tuple(name for name in registry if name in names)


def effective_space(config: Config) -> dict[str, Any]:
    """The space a sweep samples, and whose grid `validate` counts: its one definition.

    A tuple of families, `Config(schedule=(...))` or `Config(optimizer=(...))`, is the same as
    `space={"schedule": Choice([...]), "optimizer": Choice([...]), **space}`: a `Choice` over
    those families in the order given, at the head of the space. `space[kind]` takes precedence.

    >>> list(effective_space(Config(schedule=("sgdr", "cosine"), space={"seed": 0})).items())
    [('schedule', Choice(values=('sgdr', 'cosine'))), ('seed', 0)]
    """
    implied = {}
    for kind in FAMILY_KEYS:
        value = getattr(config, kind)
        if kind not in config.space and not isinstance(value, str):
            families(config, kind)  # raises on an unknown or missing family
            implied[kind] = space_lib.Choice(value)
    return {**implied, **config.space}


def family_parameters(config: Config, kind: str, family: str) -> dict[str, float]:
    """The per-member parameters (with defaults) of one schedule or optimizer family."""
    if kind == "schedule":
        return schedule_parameters(family, config.steps)
    return hyperparameter_names(family)


def allowed_hyperparameters(config: Config) -> dict[str, float]:
    """Every per-member hyperparameter this config's optimizers, schedules and model take.

    With several families, the union of their parameters (the first family's default wins).
    Besides those: `seed`, `batch_size` (per member, at most the config's `batch_size`) and
    `dropout` where the model takes a dropout rate.
    """
    out: dict[str, float] = {}
    for kind in ("optimizer", "schedule"):
        for family in reversed(families(config, kind)):
            out.update(family_parameters(config, kind, family))
    model = {"dropout": 0.0} if model_of(config.model).takes_dropout else {}
    return {**out, **model, "seed": 0, "batch_size": config.batch_size}


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
    if config.data_placement not in PLACEMENTS:
        raise ValueError(
            f"data_placement: unknown {config.data_placement!r}; allowed: {list(PLACEMENTS)}."
        )
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision: unknown {config.precision!r}; allowed: {list(PRECISIONS)}.")
    augmentation_of(config.augment)  # raises on a bad value
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
    every = config.checkpoint_every
    if every is not None and (every < 1 or every % config.eval_every):
        raise ValueError(
            f"checkpoint_every: {every} must be a positive multiple of eval_every "
            f"({config.eval_every}), since checkpoints are taken between chunks; allowed: "
            f"{config.eval_every}, {2 * config.eval_every}, ... or None (every eval_every steps)."
        )
    if config.tensorboard:
        if config.out_dir is None:
            raise ValueError("tensorboard: True needs an out_dir to write the logs into.")
        if importlib.util.find_spec("tensorboardX") is None:
            raise ValueError(
                "tensorboard: True needs the tensorboardX package; install it with "
                "`pip install tensorboardX` (or sweepjax[tensorboard]), or set tensorboard=False."
            )
    space = space_lib.SearchSpace(effective_space(config))  # validates every distribution
    if config.search == "grid":
        space.check_grid(config.population)  # the grid `sample_hparams` draws
    optimizers, schedules = families(config, "optimizer"), families(config, "schedule")
    allowed = {**allowed_hyperparameters(config), **dict.fromkeys(FAMILY_KEYS)}
    for name, value in config.space.items():
        if name.startswith("model."):
            _check_structural(config, name, value)
            continue
        if name not in allowed:
            raise ValueError(
                f"space.{name}: {value!r} is not a hyperparameter of optimizer "
                f"{_names(optimizers)} with schedule {_names(schedules)}; "
                f"allowed: {sorted(allowed)}."
            )
        _check_range(name, value)
    _check_warmup(config)
    _check_member_batch_sizes(config)
    return config


def _names(names: tuple[str, ...]) -> str:
    return repr(names[0]) if len(names) == 1 else repr(list(names))


def _check_warmup(config: Config) -> None:
    value = config.space.get("warmup_steps")
    if isinstance(value, space_lib.Choice):
        values = list(value.values)
    elif isinstance(value, space_lib.LogUniform | space_lib.Uniform | space_lib.IntUniform):
        values = [value.high]
    else:
        values = [] if value is None else [value]
    for v in values:
        if v > config.steps:
            raise ValueError(
                f"space.warmup_steps: {v!r} is longer than the run (steps={config.steps}); "
                f"allowed: 0 <= warmup_steps <= steps."
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
        candidates = list(range(value.low, value.high + 1))
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
