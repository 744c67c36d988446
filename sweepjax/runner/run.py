"""A sweep from start to finish: validate, take the folder, sample, train, write the results.

`run` and `resume` are the entry points. Each holds the output folder's lock and listens for
SIGINT and SIGTERM for the whole sweep, checks its data and structure before anything
compiles, then trains one population (`sweepjax.runner.training`), or one per structure (buckets).

>>> from sweepjax.sweep.config import Config
>>> result = run(Config(population=4, steps=20, eval_every=10, out_dir=None), quiet=True)
>>> len(result.rows)
4
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sweepjax.engine import distributed
from sweepjax.engine.compiling import use_compile_cache
from sweepjax.engine.data import Dataset, augmentation_of, first
from sweepjax.engine.models import model_of
from sweepjax.engine.optim import Optimizer
from sweepjax.engine.placement import check_fits
from sweepjax.engine.population import Program
from sweepjax.engine.tasks import task_of
from sweepjax.runner.blocks import train_blocks
from sweepjax.runner.buckets import train_buckets
from sweepjax.runner.training import stopped_before_training, train_population
from sweepjax.search.space import HParams, SearchSpace
from sweepjax.sweep import checkpoint, keys
from sweepjax.sweep.buckets import PLAN_FILE, plan_buckets
from sweepjax.sweep.config import (
    Config,
    apply_overrides,
    complete_hparams,
    effective_space,
    families,
)
from sweepjax.sweep.data_checks import check_model_and_task, check_splits, dataset_of
from sweepjax.sweep.lock import FolderLock
from sweepjax.sweep.out_dir import discard, hold
from sweepjax.sweep.results import Result
from sweepjax.sweep.signals import StopOnSignal
from sweepjax.sweep.structures import (
    candidate_structures,
    structural_keys,
    structure_config,
    structure_label,
    trains_in_blocks,
)
from sweepjax.sweep.validation import validate


def sample_hparams(config: Config) -> HParams:
    """Sample the space; hyperparameters the space leaves out get their defaults as columns.

    See `sweepjax.sweep.config.complete_hparams` for family choices and per-family defaults.
    """
    space = effective_space(config)
    hparams = SearchSpace(space).sample(config.population, config.searcher, config.seed)
    return complete_hparams(config, hparams.values)


def program_of(config: Config) -> Program:
    """The static structure of a config's sweep: it keys the compiled programs.

    Family sets, the set of swept names and which hyperparameter follows which schedule family
    enter it; no hyperparameter value does.
    """
    names = frozenset(config.space)
    optimizers = families(config, "optimizer")
    family = optimizers[0] if len(optimizers) == 1 else optimizers
    schedules = tuple(sorted(config.schedules.items()))
    return Program(
        model=model_of(config.model),
        optimizer=Optimizer(family, names, config.nesterov, schedules),
        schedule=families(config, "schedule"),
        batch_size=config.batch_size,
        dropout="dropout" in names,
        member_batch="batch_size" in names,
        augment=augmentation_of(config.augment),
        compute_dtype=config.precision,
        task=task_of(config.task),
    )


def run(
    config: Config,
    *,
    quiet: bool = False,
    dataset: Dataset | None = None,
    overwrite: bool = False,
) -> Result:
    """Train every member of `config`'s sweep as one compiled program and return the `Result`.

    When `config.out_dir` already holds a checkpoint of the same sweep, the run resumes from it
    (and says so); a checkpoint or result files of a different sweep are refused with a
    `CheckpointMismatch` naming the differing keys, before any file is touched, unless
    `overwrite`. The folder is locked for the whole run: a second process gets `FolderBusy`.

    Args:
      config: the sweep. Validated before anything compiles.
      quiet: no progress bar and no leaderboard on the terminal.
      dataset: arrays to train on instead of `config.dataset` (see `sweepjax.engine.data.from_arrays`).
      overwrite: discard the checkpoints, results and report already in `config.out_dir`.

    Returns:
      The `Result`; its files are in `config.out_dir` unless that is None.

    Raises:
      Interrupted: SIGTERM or SIGINT stopped the sweep: before training (nothing written), or
        after a checkpoint and partial results were written (resumable).
      FolderBusy: another process holds `config.out_dir`.
      CheckpointError: a checkpoint could not be saved (the previous one stays usable).
    """
    validate(config)
    with StopOnSignal(enabled=config.out_dir is not None) as stop, hold(config.out_dir) as lock:
        result = _run(config, dataset, stop=stop, lock=lock, quiet=quiet, overwrite=overwrite)
        stop.finish()  # the results are written: a signal from now on stops nothing
        return result


def _run(
    config: Config,
    dataset: Dataset | None,
    *,
    stop: StopOnSignal,
    lock: FolderLock | None,
    quiet: bool,
    overwrite: bool = False,
    resuming: bool = False,
) -> Result:
    """`run` once the folder is held: check the data and structure, then train."""
    use_compile_cache(config.compile_cache)
    if distributed.any_process(stop.received is not None):
        raise stopped_before_training(stop, config.out_dir)
    dataset = dataset_of(dataset, config)
    check_splits(dataset, config.batch_size)
    columns = complete_hparams(config, {"seed": np.zeros(2, np.int32)})
    program = program_of(config)
    example_inputs = program.task.inputs(first(dataset.train, config.batch_size))
    check_fits(program, columns, example_inputs, config.population)
    in_blocks = trains_in_blocks(config)
    buckets = plan_buckets(config) if structural_keys(config) and not in_blocks else []
    structures = _structure_configs(config) if in_blocks else [b.config for b in buckets]
    programs = [program_of(sub) for sub in structures] or [program]
    for sub, program in zip(structures or [config], programs, strict=True):
        check_model_and_task(sub, dataset, program)
        if in_blocks:  # every structure may take every slot
            check_fits(program, columns, example_inputs, config.population)
    if overwrite and config.out_dir is not None:  # only now: bad input loses nothing
        if distributed.is_primary():
            discard(config.out_dir)
        distributed.barrier("sweepjax-out-dir")
    if not buckets:  # one population, or one per structure; trials from the config's searcher
        return train_population(
            config,
            dataset,
            programs[0],
            stop=stop,
            lock=lock,
            quiet=quiet,
            resuming=resuming,
            trainer=functools.partial(train_blocks, program_for=_programs(config))
            if in_blocks
            else None,
        )
    return train_buckets(
        config, dataset, buckets, programs, stop=stop, lock=lock, quiet=quiet, resuming=resuming
    )


def _structure_configs(config: Config) -> list[Config]:
    """The configs of the structures a sweep in blocks may train (the first 64)."""
    return [structure_config(config, options) for options in candidate_structures(config)]


def _programs(config: Config) -> Callable[[Mapping[str, Any]], Program]:
    """A structure's program from its model options, made once per structure."""
    made: dict[str, Program] = {}

    def program_for(options: Mapping[str, Any]) -> Program:
        label = structure_label(options)
        if label not in made:
            made[label] = program_of(structure_config(config, options))
        return made[label]

    return program_for


def resume(
    out_dir: str | os.PathLike,
    *,
    overrides: Sequence[str] = (),
    config: Config | None = None,
    quiet: bool = False,
    dataset: Dataset | None = None,
) -> Result:
    """Continue the sweep checkpointed in `out_dir` from its latest good checkpoint.

    The sweep continues exactly as if it had never stopped, to `steps` of its config; raise
    `steps` (an override `steps=N`) to extend a finished sweep. The folder is locked as by `run`.
    The user's code the sweep ran (registered schedules, a `Task`, a Flax model) is imported
    first from where the folder records it (docs/guide.md, "Your own code"); code that cannot
    be is a `ValueError` naming each missing `module:name` or file.

    Args:
      out_dir: the sweep's output directory.
      overrides: `key=value` changes to the saved config; only keys that leave the sweep the
        same may change: those marked resumable in `sweepjax.sweep.keys`, but `out_dir`
        (`sweepjax.sweep.keys.RESUME_OVERRIDES`).
      config: the config to continue with instead of the saved one (needed when the folder
        records no place to import the user's code from: a lambda, a sweep run before
        sweepjax recorded it); recorded schedules this process lacks are still imported.
      quiet: no progress bar and no leaderboard on the terminal.
      dataset: the arrays the sweep was trained on, if not `config.dataset`.

    Returns:
      The `Result` of the whole sweep.

    Example (the checkpoint of a finished 20-step sweep, extended to 30 steps):

    >>> import tempfile
    >>> from sweepjax.sweep.config import Config
    >>> out = tempfile.TemporaryDirectory()
    >>> _ = run(Config(population=4, steps=20, eval_every=10, out_dir=out.name), quiet=True)
    >>> resume(out.name, overrides=["steps=30"], quiet=True).summary["steps_done"]
    30
    >>> out.cleanup()
    """
    out_dir = os.fspath(out_dir)
    if not Path(out_dir).is_dir():
        raise ValueError(f"resume: {out_dir!r} is not a folder; give the out_dir of a sweep.")
    _check_resume_overrides(out_dir, overrides)
    with StopOnSignal() as stop, hold(out_dir) as lock:
        config = apply_overrides(_saved_config(out_dir, config), overrides)
        config = config.replace(out_dir=out_dir)
        validate(config)
        result = _run(config, dataset, stop=stop, lock=lock, quiet=quiet, resuming=True)
        stop.finish()
        return result


def _check_resume_overrides(out_dir: str, overrides: Sequence[str]) -> None:
    """Refuse an override that would make the resumed sweep another sweep."""
    allowed = keys.RESUME_OVERRIDES
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key not in allowed:
            raise ValueError(
                f"resume --set {item!r}: {key} cannot change when a sweep resumes; allowed: "
                f"{', '.join(allowed)}. To run the changed sweep in this folder instead: "
                f"sweepjax run EXPERIMENT --set {item} --out {out_dir} --overwrite."
            )


def _saved_config(out_dir: str, config: Config | None) -> Config:
    """The config a sweep folder was run with (its bucket plan's, or its checkpoint's), the
    user code it records imported first (`sweepjax.sweep.code_record`); with `config` given,
    only the schedule families this process lacks."""
    from sweepjax.engine.tasks import TASKS
    from sweepjax.sweep import code_record

    plan_path = Path(out_dir, PLAN_FILE)
    meta = None if plan_path.exists() else checkpoint.read_meta(out_dir)
    if meta is None and not plan_path.exists():
        if config is not None:
            return config  # the checks of the folder say what is wrong
        raise ValueError(
            f"resume: {out_dir} holds no checkpoint to resume; start the sweep with `sweepjax run`."
        )
    saved = meta.config if meta is not None else json.loads(plan_path.read_text())["config"]
    if config is not None:
        code_record.restore(saved, f"resume: {out_dir}", pieces=("schedules",))
        return config
    restored = code_record.restore(saved, f"resume: {out_dir}")
    users = {
        "model": not isinstance(saved.get("model"), Mapping),
        "task": saved.get("task", "classification") not in TASKS,
    }
    unrecorded = [key for key, own in users.items() if own and key not in restored]
    if unrecorded:  # a folder written before the code was recorded
        key, shown = unrecorded[0], " ".join(str(saved[unrecorded[0]]).split())
        raise ValueError(
            f"resume: the checkpoint's {key} is the user's ({shown}) and {out_dir} records "
            "no module to import it from (a sweep run before sweepjax recorded user code); "
            "pass its config: sweepjax.resume(out_dir, config=...)."
        )
    return Config.from_json({**saved, **restored})
