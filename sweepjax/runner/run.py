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

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sweepjax.engine import distributed
from sweepjax.engine.compiling import use_compile_cache
from sweepjax.engine.data import Dataset, augmentation_of, first
from sweepjax.engine.models import model_of
from sweepjax.engine.optim import Optimizer
from sweepjax.engine.placement import check_fits
from sweepjax.engine.population import Program
from sweepjax.engine.tasks import task_of
from sweepjax.errors import Interrupted
from sweepjax.files import atomic_write
from sweepjax.runner.training import stopped_before_training, train_population
from sweepjax.search.space import HParams, SearchSpace
from sweepjax.sweep import checkpoint, keys, same_sweep
from sweepjax.sweep.buckets import PLAN_FILE, Bucket, merge_results, plan_buckets, structural_keys
from sweepjax.sweep.config import (
    Config,
    apply_overrides,
    complete_hparams,
    effective_space,
    families,
)
from sweepjax.sweep.data_checks import check_model_and_task, check_splits, dataset_of
from sweepjax.sweep.lock import FolderLock
from sweepjax.sweep.out_dir import check_results, discard, hold, keep_advice
from sweepjax.sweep.results import Result, write_result
from sweepjax.sweep.signals import StopOnSignal
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
    buckets = plan_buckets(config) if structural_keys(config) else []
    programs = [program_of(bucket.config) for bucket in buckets] or [program]
    for sub, program in zip([b.config for b in buckets] or [config], programs, strict=True):
        check_model_and_task(sub, dataset, program)
    if overwrite and config.out_dir is not None:  # only now: bad input loses nothing
        if distributed.is_primary():
            discard(config.out_dir)
        distributed.barrier("sweepjax-out-dir")
    if not buckets:  # one population; its trials come from the config's searcher
        return train_population(
            config,
            dataset,
            program,
            stop=stop,
            lock=lock,
            quiet=quiet,
            resuming=resuming,
        )
    return _train_buckets(
        config, dataset, buckets, programs, stop=stop, lock=lock, quiet=quiet, resuming=resuming
    )


def _check_bucket_plan(
    config: Config, dataset: Dataset, buckets: list[Bucket], *, resuming: bool
) -> None:
    """Refuse another sweep's plan or results in `out_dir`; then write this sweep's plan."""
    out_dir = config.out_dir
    plan = {
        "config": config.to_json(),
        "data": checkpoint.data_identity(dataset),
        "buckets": [{"label": b.label, "members": b.members.tolist()} for b in buckets],
    }
    plan_path = Path(out_dir, PLAN_FILE)
    if plan_path.exists():
        diffs = same_sweep.differences(
            json.loads(plan_path.read_text()), plan["config"], plan["data"]
        )
        if diffs:
            raise checkpoint.CheckpointMismatch(
                f"{out_dir} holds a different bucketed sweep: "
                + "; ".join(diffs)
                + ". "
                + keep_advice(out_dir, resuming=resuming)
            )
    else:
        check_results(config, plan["data"], resuming=resuming)
    if distributed.is_primary():
        atomic_write(plan_path, lambda f: json.dump(plan, f, indent=2))
    distributed.barrier("sweepjax-bucket-plan")


def _train_buckets(
    config: Config,
    dataset: Dataset,
    buckets: list[Bucket],
    programs: list[Program],
    *,
    stop: StopOnSignal,
    lock: FolderLock | None,
    quiet: bool,
    resuming: bool,
) -> Result:
    """Train the buckets one after another (each resumes on its own) and merge their results."""
    out_dir = config.out_dir
    primary = distributed.is_primary()
    quiet = quiet or not primary
    if out_dir is not None:
        _check_bucket_plan(config, dataset, buckets, resuming=resuming)
    results: list[Result] = []
    for index, (bucket, program) in enumerate(zip(buckets, programs, strict=True)):
        if not quiet:
            print(
                f"sweepjax: bucket {index + 1}/{len(buckets)}: {bucket.label} "
                f"({len(bucket.members)} members)",
                file=sys.stderr,
            )
        try:
            results.append(
                train_population(
                    bucket.config,
                    dataset,
                    program,
                    rows=bucket.rows,
                    stop=stop,
                    lock=lock,
                    quiet=quiet,
                    # a bucket not yet started when the sweep stopped starts afresh
                    resuming=resuming and bool(checkpoint.saved_steps(bucket.config.out_dir)),
                    leaderboard=False,
                )
            )
        except Interrupted as interrupted:
            if interrupted.result is not None:
                results.append(interrupted.result)
            if not results:
                raise
            raise _stopped_in_bucket(config, buckets, results, index, interrupted) from None
    merged = merge_results(config, buckets, results)
    if out_dir is not None and primary:
        write_result(merged, out_dir)
    if not quiet:
        print(merged.leaderboard(), file=sys.stderr)
        if out_dir is not None:
            print(f"results in {out_dir}/", file=sys.stderr)
    return merged


def _stopped_in_bucket(
    config: Config,
    buckets: list[Bucket],
    results: list[Result],
    index: int,
    interrupted: Interrupted,
) -> Interrupted:
    """The sweep stopped in bucket `index`: the buckets' results so far, merged and written."""
    out_dir = config.out_dir
    merged = merge_results(config, buckets, results)
    merged.summary["interrupted"] = True
    if out_dir is not None and distributed.is_primary():
        write_result(merged, out_dir)
    return Interrupted(
        f"interrupted in bucket {index + 1}/{len(buckets)} at step {interrupted.step}; "
        f"the checkpoints and partial results are in {out_dir}. Resume with: "
        f"sweepjax resume {out_dir}",
        step=interrupted.step,
        out_dir=out_dir,
        result=merged,
    )


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

    Args:
      out_dir: the sweep's output directory.
      overrides: `key=value` changes to the saved config; only keys that leave the sweep the
        same may change: those marked resumable in `sweepjax.sweep.keys`, but `out_dir`
        (`sweepjax.sweep.keys.RESUME_OVERRIDES`).
      config: the config to continue with instead of the saved one (needed when the model is
        a user module, which a checkpoint records only by its repr).
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
    """The config a sweep folder was run with: its bucket plan's, or its checkpoint's."""
    if config is not None:
        return config
    plan_path = Path(out_dir, PLAN_FILE)
    if plan_path.exists():
        return Config.from_json(json.loads(plan_path.read_text())["config"])
    meta = checkpoint.read_meta(out_dir)
    if meta is None:
        raise ValueError(
            f"resume: {out_dir} holds no checkpoint to resume; start the sweep with `sweepjax run`."
        )
    if not isinstance(meta.config["model"], Mapping):
        raise ValueError(
            f"resume: the checkpoint's model is a user module ({meta.config['model']}); "
            "pass its config: sweepjax.resume(out_dir, config=...)."
        )
    return Config.from_json(meta.config)
