"""The sweep configuration: one frozen dataclass and overrides by dotted keys.

`sweepjax.sweep.validation.validate` checks a config at the edge, before anything compiles.

>>> cfg = apply_overrides(Config(), ["model.hidden=[32, 32]", "space.momentum=0.9", "steps=50"])
>>> cfg.model["hidden"], cfg.space["momentum"], cfg.steps
([32, 32], 0.9, 50)
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.engine.models import model_of
from sweepjax.engine.optim import FAMILIES, hyperparameter_names
from sweepjax.engine.schedules import SCHEDULES, schedule_parameters
from sweepjax.search import distributions
from sweepjax.search import space as space_lib
from sweepjax.search.space import HParams
from sweepjax.sweep import code_record
from sweepjax.sweep.keys import KEYS

# Space entries that pick a family per member; on the device they are int32 indices.
FAMILY_KEYS = ("schedule", "optimizer")
RENAMED_KEYS = {"search": "searcher"}  # old name -> new name, for configs saved before
# The keys an override sets whole: all but the space, set entry by entry (`space.<name>`).
SETTABLE_KEYS = tuple(name for name in KEYS if name != "space")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a sweep. Replace fields with `dataclasses.replace` or overrides.

    `model` is a built-in model spec `{"name": "mlp", **options}` or any Flax module (a
    `flax.linen.Module` instance, or a `flax.nnx.Module` class / constructor taking `rngs=`).
    `space` maps hyperparameter names to distributions or fixed values; names the optimizer or
    schedule do not name in `space` keep their defaults. `task` is what members minimize and
    how they are measured and ranked: a built-in name (`classification`, `regression`,
    `multilabel`, `next_token`) or a `sweepjax.Task`.

    `schedule` is the learning rate's schedule family; `schedules` maps any other optimizer
    hyperparameter to a family of its own, its value then the family's peak (or initial) value
    and the family's parameters per-member hyperparameters `<name>.<parameter>`:

    >>> config = Config(optimizer="sgd", schedules={"momentum": "cosine"},
    ...                 space={"momentum": 0.95, "momentum.decay_steps": 500})
    >>> sorted(k for k in allowed_hyperparameters(config) if k.startswith("momentum."))
    ['momentum.alpha', 'momentum.decay_steps', 'momentum.warmup_steps']
    """

    dataset: str = "mnist1d"
    task: Any = "classification"
    val_size: int = 500
    normalize: str = "standard"
    model: Any = dataclasses.field(default_factory=lambda: {"name": "mlp"})
    optimizer: str | tuple[str, ...] = "sgd"
    nesterov: bool = False
    schedule: str | tuple[str, ...] = "constant"
    # Optimizer hyperparameter -> schedule family, e.g. {"momentum": "cosine"} (not the
    # learning rate: `schedule` is its family). Which name follows which family is structure.
    schedules: Mapping[str, str] = dataclasses.field(default_factory=dict)
    space: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"learning_rate": space_lib.LogUniform(1e-3, 1.0)}
    )
    # Who proposes the configurations: "quasi_random" (scrambled Halton), "random", "grid",
    # "coarse_to_fine", or an Optuna sampler ("tpe", "gp", "cmaes", "nsga2"); a name, or a dict
    # {"name": ..., **options} (`--set searcher.<option>=...`). See sweepjax.search.
    searcher: Any = "quasi_random"
    # Who stops, promotes or copies trials between chunks: "none" (every trial trains `steps`),
    # "asha", "hyperband", "successive_halving", "median", "patience" or "pbt"; a name or a dict
    # {"name": ..., **options} (`--set scheduler.<option>=...`).
    scheduler: Any = "none"
    # How many configurations the sweep may try (None: `population`); may exceed the
    # population, whose slots then take new trials as earlier ones stop or finish.
    trials: int | None = None
    population: int = 16
    steps: int = 1000
    batch_size: int = 100
    eval_every: int = 100
    eval_batch: int = 1000
    seed: int = 0
    out_dir: str | None = "runs/default"  # None: write nothing
    tensorboard: bool = False  # TensorBoard logs in out_dir/tensorboard (needs tensorboardX)
    # Experiment trackers, one run per trial (docs/integrations.md); False: off. `mlflow`: True
    # logs to $MLFLOW_TRACKING_URI, else to the SQLite store out_dir/mlflow/mlflow.db; a str is
    # the tracking URI. `wandb`: True logs to project $WANDB_PROJECT (else "sweepjax"), a str
    # names the project; offline into out_dir/wandb unless $WANDB_MODE says otherwise.
    mlflow: bool | str = False
    wandb: bool | str = False
    checkpoint_every: int | None = None  # steps between checkpoints; None: every eval_every
    keep_checkpoints: int = 3  # the newest checkpoints kept in out_dir/checkpoints
    # Where the training set lives: "device" (gathered inside the compiled chunk), "stream"
    # (host-side blocks, prefetched), or "auto" (stream when it would not fit; sweepjax.engine.stream).
    data_placement: str = "auto"
    # On-device image augmentation of the shared batch: None, True (crop with padding 4 and
    # horizontal flip) or {"crop_padding": int, "flip": bool}; see sweepjax.engine.data.Augment.
    augment: Any = None
    # Members vectorized together on one device: "auto" (memory-planned; on a CPU, where every
    # width gives the same numbers, timed on the first chunks) or an int (1 runs as 2, the
    # narrowest group).
    population_width: int | str = "auto"
    # The dtype of the forward and backward pass: "float32", or "bfloat16" (mixed precision for
    # GPUs: parameters, optimizer state and the loss stay float32).
    precision: str = "float32"
    # Where compiled programs are kept between runs: "auto" ($SWEEPJAX_COMPILE_CACHE, else
    # ~/.cache/sweepjax/xla), a folder, or "off" (see sweepjax.engine.compiling).
    compile_cache: str | None = "auto"

    def __post_init__(self):
        for name in FAMILY_KEYS:
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (a user module is recorded by its repr); the user's code it
        runs (schedules, a `Task`, a model) adds where to import it from, `code_record.CODE_KEY`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = dict(self.model) if isinstance(self.model, Mapping) else repr(self.model)
        out["task"] = self.task if isinstance(self.task, str) else f"Task({self.task.name!r})"
        out["space"] = {k: space_lib.to_json(v) for k, v in self.space.items()}
        out["schedules"] = dict(self.schedules)
        for name in FAMILY_KEYS:
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        code = code_record.record(out, self.model, self.task)
        if code:
            out[code_record.CODE_KEY] = code
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Config:
        """Inverse of `to_json`; an unknown key or distribution is a `ValueError` naming it.

        A config saved before tasks existed is a classification sweep (the default); one
        saved before `searcher` had its name gives its `search` (`RENAMED_KEYS`). The record of
        the user's code is left out: `code_record.restore` imports it.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        data = {RENAMED_KEYS.get(k, k): v for k, v in data.items() if k != code_record.CODE_KEY}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}; allowed: {names}.")
        data = dict(data)
        if isinstance(data.get("space"), Mapping):
            data["space"] = {
                k: space_lib.from_json(v, f"space.{k}") for k, v in data["space"].items()
            }
        return cls(**data)


def parse_value(text: str, key: str = "--set") -> Any:
    """Parse an override value: JSON, a Python literal, a distribution call, or a bare string.

    `key` names the override in an error message.

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
        return _distribution(node, key)
    return text


def _distribution(node: ast.Call, key: str) -> space_lib.Distribution:
    """The distribution a call like `LogUniform(1e-4, 1, num=4)` describes; literals only."""
    kind = node.func.id
    distributions.check_kind(kind, key)
    try:
        if any(k.arg is None for k in node.keywords):  # **kwargs
            raise ValueError
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise ValueError(
            f"{key}: {ast.unparse(node)}: arguments must be literal numbers, strings or lists; "
            f"allowed: {distributions.usage(kind)}."
        ) from None
    return distributions.make(kind, args, kwargs, key)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply `key=value` overrides; `model.<option>`, `space.<name>` and `schedules.<name>` reach
    nested entries.

    >>> apply_overrides(Config(), ["schedules.momentum=cosine"]).schedules
    {'momentum': 'cosine'}
    """
    changes: dict[str, Any] = {}
    model = dict(config.model) if isinstance(config.model, Mapping) else config.model
    nested = {
        name: dict(value) if isinstance(value, Mapping) else value
        for name, value in (("space", config.space), ("schedules", config.schedules))
    }
    valid = sorted(
        [
            *SETTABLE_KEYS,
            "model.<option>",
            "space.<name>",
            "schedules.<name>",
            *(f"{key}.<option>" for key in POLICY_KEYS),
        ]
    )
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value; valid keys: {valid}.")
        value = parse_value(text.strip(), key)
        head, _, rest = key.partition(".")
        if head == "model" and rest:
            if not isinstance(model, dict):
                raise ValueError(
                    f"{key}: the model is a user module; its options are not settable."
                )
            model[rest] = value
        elif head in POLICY_KEYS and rest:
            name, options = policy_of(changes.get(head, getattr(config, head)), head)
            changes[head] = {"name": name, **options, rest: value}
        elif head in nested and rest:
            if not isinstance(nested[head], dict):
                raise ValueError(
                    f"{key}: {head} is {nested[head]!r}, not a mapping; allowed: a mapping of "
                    "hyperparameter name to a "
                    + ("distribution or a fixed value." if head == "space" else "schedule family.")
                )
            nested[head][rest] = value
        elif key == "model":
            model = value if isinstance(value, Mapping) else {"name": value}
        elif key == "schedules":  # the whole mapping
            nested[key] = dict(value) if isinstance(value, Mapping) else value
        elif key in SETTABLE_KEYS:
            changes[key] = value
        else:
            raise ValueError(f"{key}: unknown key; valid keys: {valid}.")
    return config.replace(model=model, **nested, **changes)


_REGISTRIES = {"schedule": SCHEDULES, "optimizer": FAMILIES}
POLICY_KEYS = ("searcher", "scheduler")  # a name, or {"name": ..., **options}


def policy_of(value: Any, key: str) -> tuple[str, dict[str, Any]]:
    """The name and options of a `searcher` or `scheduler` setting.

    >>> policy_of({"name": "asha", "eta": 2}, "scheduler"), policy_of("tpe", "searcher")
    (('asha', {'eta': 2}), ('tpe', {}))
    """
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        options = {k: v for k, v in value.items() if k != "name"}
        return value["name"], options
    raise ValueError(
        f"{key}: {value!r} is not a {key}; allowed: a name, or a dict with a 'name' and its "
        "options."
    )


def families(config: Config, kind: str) -> tuple[str, ...]:
    """The `kind` ("schedule" or "optimizer") families of a sweep, in the registry's order.

    `space[kind]` (a name or a `Choice` of names) takes precedence over `config.<kind>`. The
    order is canonical, so the same set of families always gives the same program.

    >>> families(Config(space={"schedule": space_lib.Choice(["sgdr", "cosine"])}), "schedule")
    ('cosine', 'sgdr')
    """
    value = config.space.get(kind, getattr(config, kind))
    registry = _REGISTRIES[kind]
    where = f"space.{kind}" if kind in config.space else kind
    names = value.values if isinstance(value, space_lib.Choice) else value
    names = (names,) if isinstance(names, str) else names
    if not isinstance(names, tuple | list):
        raise ValueError(
            f"{where}: {value!r} is not a family; allowed: a name from {sorted(registry)}, or "
            f"several as {'a tuple' if where == kind else 'a Choice'} of names."
        )
    for name in names:
        if not isinstance(name, str) or name not in registry:
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
    Besides those: `seed`, `batch_size` (per member, at most the config's `batch_size`),
    `dropout` where the model takes a dropout rate, and `<name>.<parameter>` for each parameter
    of the family `config.schedules[name]` follows.
    """
    out: dict[str, float] = {}
    for kind in ("optimizer", "schedule"):
        for family in reversed(families(config, kind)):
            out.update(family_parameters(config, kind, family))
    for name, family in config.schedules.items():
        defaults = schedule_parameters(family, config.steps)
        out.update({f"{name}.{parameter}": v for parameter, v in defaults.items()})
    model = {"dropout": 0.0} if model_of(config.model).takes_dropout else {}
    return {**out, **model, "seed": 0, "batch_size": config.batch_size}


def is_adaptive(config: Config) -> bool:
    """Whether trials may stop early or outnumber the slots (the bar then counts trials)."""
    scheduler = policy_of(config.scheduler, "scheduler")[0]
    return scheduler != "none" or (config.trials or config.population) != config.population


def complete_hparams(config: Config, values: Mapping[str, np.ndarray]) -> HParams:
    """Sampled columns made ready for the device.

    A per-member family choice (`schedule`, `optimizer`) becomes an int32 index column into
    `families(config, kind)`; a parameter the space leaves out gets, member by member, the
    default of that member's own family. Every other column is float32 (`seed` stays int32), so
    the dtypes, and thus the compiled program, do not depend on how a value was given.
    """
    values = dict(values)
    size = len(next(iter(values.values())))
    member_families = {}
    for kind in FAMILY_KEYS:
        names = families(config, kind)
        chosen = values.pop(kind, None)
        if chosen is None:
            index = np.zeros(size, np.int32)
        else:
            index = np.asarray([names.index(str(v)) for v in chosen], np.int32)
        if len(names) > 1:
            values[kind] = index
        member_families[kind] = [names[i] for i in index]
    for name, default in allowed_hyperparameters(config).items():
        if name in values:
            continue
        column = np.full(size, default, np.float64)
        for kind, chosen in member_families.items():
            tables = {f: family_parameters(config, kind, f) for f in set(chosen)}
            for i, family in enumerate(chosen):
                if name in tables[family]:
                    column[i] = tables[family][name]
        values[name] = column
    for name, column in values.items():
        if name not in (*FAMILY_KEYS, "seed"):
            values[name] = np.asarray(column, np.float32)
    return HParams(values)
