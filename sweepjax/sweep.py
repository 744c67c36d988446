"""Orchestration of one sweep: validate, sample, compile once, train in chunks, evaluate, write.

>>> from sweepjax.config import Config
>>> result = run(Config(population=4, steps=20, eval_every=10, out_dir=None), quiet=True)
>>> len(result.rows)
4
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sweepjax.config import (
    FAMILY_KEYS,
    Config,
    allowed_hyperparameters,
    effective_space,
    families,
    family_parameters,
    validate,
)
from sweepjax.data import Dataset, load_dataset
from sweepjax.models import Model, as_model, build_model
from sweepjax.optim import Optimizer
from sweepjax.population import (
    Population,
    Program,
    init_population,
    make_evaluate,
    make_train_chunk,
)
from sweepjax.results import Result, member_rows, summarize, write_result
from sweepjax.space import HParams, SearchSpace

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]  # process-wide total, read before and after a sweep


def _count_compile_time(event: str, duration: float, **_: Any) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_count_compile_time)


def model_of(config: Config) -> Model:
    """The `Model` a config names (a built-in spec) or holds (a user Flax module)."""
    if isinstance(config.model, Mapping):
        return as_model(build_model(config.model))
    return as_model(config.model)


def sample_hparams(config: Config) -> HParams:
    """Sample the space; hyperparameters the space leaves out get their defaults as columns.

    A per-member family choice (`schedule`, `optimizer`) becomes an int32 index column into
    `families(config, kind)`; a parameter left out gets, member by member, the default of that
    member's own family. Every other column is float32, so the dtypes (and thus the compiled
    program) do not depend on how a value was given.
    """
    space = effective_space(config)
    hparams = SearchSpace(space).sample(config.population, config.search, config.seed)
    values = dict(hparams.values)
    member_families = {}
    for kind in FAMILY_KEYS:
        names = families(config, kind)
        chosen = values.pop(kind, None)
        if chosen is None:
            index = np.zeros(config.population, np.int32)
        else:
            index = np.asarray([names.index(str(v)) for v in chosen], np.int32)
        if len(names) > 1:
            values[kind] = index
        member_families[kind] = [names[i] for i in index]
    union = allowed_hyperparameters(config)
    for name, default in union.items():
        if name in values:
            continue
        column = np.full(config.population, default, np.float64)
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


def family_names(config: Config, hparams: HParams, kind: str) -> np.ndarray:
    """The readable `kind` family of every member (from its index column, or the only one)."""
    names = families(config, kind)
    if kind in hparams:
        return np.asarray(names)[np.asarray(hparams[kind])]
    return np.full(hparams.size, names[0])


def program_of(config: Config) -> Program:
    """The static structure of a config's sweep: it keys the compiled programs.

    Family sets and the set of swept names enter it; no hyperparameter value does.
    """
    names = frozenset(config.space)
    optimizers = families(config, "optimizer")
    return Program(
        model=model_of(config),
        optimizer=Optimizer(
            optimizers[0] if len(optimizers) == 1 else optimizers, names, config.nesterov
        ),
        schedule=families(config, "schedule"),
        batch_size=config.batch_size,
    )


def _check_data(config: Config, dataset: Dataset, model: Model) -> None:
    if config.batch_size > len(dataset.train_y):
        raise ValueError(
            f"batch_size: {config.batch_size} exceeds the {len(dataset.train_y)} training examples."
        )
    example = jax.ShapeDtypeStruct((config.batch_size, *dataset.train_x.shape[1:]), jnp.float32)
    try:
        logits, _ = jax.eval_shape(
            lambda x: model.apply(
                model.init(jax.random.key(0), x), x, train=False, rng=jax.random.key(0)
            ),
            example,
        )
    except Exception as err:  # any shape error raised by the user's module while tracing
        raise ValueError(
            f"model: cannot take features of shape {dataset.train_x.shape[1:]} from "
            f"{dataset.name!r}: {err}"
        ) from err
    if logits.shape[-1] != dataset.num_classes:
        raise ValueError(
            f"model: outputs {logits.shape[-1]} classes but {dataset.name!r} has "
            f"{dataset.num_classes}; set the model's num_classes."
        )


def _environment() -> dict[str, Any]:
    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "device": f"{device.platform}: {device.device_kind}",
        "device_count": jax.device_count(),
    }


@dataclasses.dataclass
class _Curves:
    steps: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[np.ndarray] = dataclasses.field(default_factory=list)
    val_loss: list[np.ndarray] = dataclasses.field(default_factory=list)
    val_accuracy: list[np.ndarray] = dataclasses.field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            k: np.asarray(v, np.float32 if k != "steps" else np.int64)
            for k, v in vars(self).items()
        }


def _chunk_mean(losses: np.ndarray) -> np.ndarray:
    """Mean train loss of each member over a chunk's steps it was alive for (NaN if none)."""
    alive_steps = np.isfinite(losses).sum(0)
    total = np.where(np.isfinite(losses), losses, 0.0).sum(0)
    return np.where(alive_steps > 0, total / np.maximum(alive_steps, 1), np.nan)


def run(config: Config, *, quiet: bool = False, dataset: Dataset | None = None) -> Result:
    """Train every member of `config`'s sweep as one compiled program and return the `Result`.

    Args:
      config: the sweep. Validated before anything compiles.
      quiet: no progress bar and no leaderboard on the terminal.
      dataset: arrays to train on instead of `config.dataset` (see `sweepjax.data.from_arrays`).

    Returns:
      The `Result`; its files are in `config.out_dir` unless that is None.
    """
    validate(config)
    dataset = dataset or load_dataset(config.dataset, config.val_size)
    program = program_of(config)
    hparams = sample_hparams(config)
    _check_data(config, dataset, program.model)
    compile_before = _compile_seconds[0]
    start = time.perf_counter()

    train_x, train_y = jax.device_put(dataset.train_x), jax.device_put(dataset.train_y)
    val_x, val_y = jax.device_put(dataset.val_x), jax.device_put(dataset.val_y)
    device_hparams = jax.device_put(hparams)
    data_key = jax.random.key(config.seed)
    pop = init_population(program, device_hparams, train_x[: config.batch_size])
    evaluate = make_evaluate(program, config.eval_batch)
    curves = _Curves()

    show = not quiet and sys.stderr.isatty()
    bar = tqdm(total=config.steps, disable=not show, unit="step", desc="sweep", leave=False)
    while int(pop.step) < config.steps:
        length = min(config.eval_every, config.steps - int(pop.step))
        pop, losses = make_train_chunk(program, length)(
            pop, device_hparams, train_x, train_y, data_key
        )
        val_loss, val_acc = evaluate(pop, val_x, val_y)
        curves.steps.append(int(pop.step))
        curves.train_loss.append(_chunk_mean(np.asarray(losses)))
        curves.val_loss.append(np.asarray(val_loss))
        curves.val_accuracy.append(np.asarray(val_acc))
        alive = np.asarray(pop.alive)
        bar.update(length)
        best = np.max(np.where(alive, curves.val_accuracy[-1], -np.inf), initial=-np.inf)
        bar.set_postfix(
            alive=int(alive.sum()), diverged=int((~alive).sum()), best_val=f"{best:.3f}"
        )
    bar.close()

    test_loss, test_acc = evaluate(
        pop, jax.device_put(dataset.test_x), jax.device_put(dataset.test_y)
    )
    jax.block_until_ready(test_acc)
    wall = time.perf_counter() - start
    compile_seconds = _compile_seconds[0] - compile_before
    result = _result(config, hparams, pop, curves, np.asarray(test_acc))
    train_seconds = max(wall - compile_seconds, 1e-9)
    result.summary.update(
        compile_seconds=round(compile_seconds, 3),
        train_seconds=round(train_seconds, 3),
        member_steps_per_second=round(config.population * config.steps / train_seconds, 1),
        dataset=dataset.describe(),
        **_environment(),
    )
    if config.out_dir is not None:
        write_result(result, config.out_dir)
    if not quiet:
        print(result.leaderboard(), file=sys.stderr)
        if config.out_dir is not None:
            print(f"results in {config.out_dir}/", file=sys.stderr)
    return result


def _result(config: Config, hparams: HParams, pop: Population, curves: _Curves, test_acc) -> Result:
    arrays = curves.arrays()
    alive = np.asarray(pop.alive)
    best_val = np.nanmax(arrays["val_accuracy"], axis=0)
    last_train = [_last_finite(arrays["train_loss"][:, i]) for i in range(alive.size)]
    metrics = {
        "status": np.where(alive, "ok", "diverged"),
        "diverged_at_step": np.asarray(pop.diverged_at),
        "final_train_loss": np.asarray(last_train, np.float32),
        "final_val_loss": arrays["val_loss"][-1],
        "final_val_accuracy": arrays["val_accuracy"][-1],
        "best_val_accuracy": best_val,
        "test_accuracy": test_acc,
    }
    shown = {k: v for k, v in hparams.values.items() if k in config.space or k == "seed"}
    for kind in FAMILY_KEYS:
        if kind in hparams:
            shown[kind] = family_names(config, hparams, kind)
    rows = member_rows(shown, metrics)
    summary = {"config": config.to_json(), "steps_done": int(pop.step), **summarize(rows)}
    return Result(rows, arrays, summary)


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else float("nan")
