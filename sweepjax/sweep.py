"""Orchestration of one sweep: validate, sample, compile once, train in chunks, evaluate, write.

>>> from sweepjax.config import Config
>>> result = run(Config(population=4, steps=20, eval_every=10, out_dir=None), quiet=True)
>>> len(result.rows)
4
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sweepjax import checkpoint, distributed, placement, stream
from sweepjax.buckets import (
    PLAN_FILE,
    Bucket,
    complete_hparams,
    merge_results,
    plan_buckets,
    structural_keys,
)
from sweepjax.config import (
    FAMILY_KEYS,
    Config,
    apply_overrides,
    effective_space,
    families,
    validate,
)
from sweepjax.data import Dataset, augmentation_of, check_augmentation, load_dataset
from sweepjax.models import Model, model_of
from sweepjax.optim import Optimizer
from sweepjax.population import (
    Population,
    Program,
    init_population,
    make_evaluate,
    make_stream_chunk,
    make_train_chunk,
)
from sweepjax.results import Result, atomic_write, member_rows, summarize, write_result
from sweepjax.space import HParams, SearchSpace
from sweepjax.tensorboard_log import TensorBoardLog

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


def sample_hparams(config: Config) -> HParams:
    """Sample the space; hyperparameters the space leaves out get their defaults as columns.

    See `sweepjax.buckets.complete_hparams` for family choices and per-family defaults.
    """
    space = effective_space(config)
    hparams = SearchSpace(space).sample(config.population, config.search, config.seed)
    return complete_hparams(config, hparams.values)


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
        model=model_of(config.model),
        optimizer=Optimizer(
            optimizers[0] if len(optimizers) == 1 else optimizers, names, config.nesterov
        ),
        schedule=families(config, "schedule"),
        batch_size=config.batch_size,
        dropout="dropout" in names,
        member_batch="batch_size" in names,
        augment=augmentation_of(config.augment),
        compute_dtype=config.precision,
    )


def _check_data(config: Config, dataset: Dataset, model: Model) -> None:
    for split in ("train", "val", "test"):
        labels = np.asarray(getattr(dataset, f"{split}_y"))
        if labels.size and (labels.min() < 0 or labels.max() >= dataset.num_classes):
            raise ValueError(
                f"dataset: {dataset.name!r} {split} labels span [{labels.min()}, {labels.max()}]; "
                f"allowed: 0 to {dataset.num_classes - 1} ({dataset.num_classes} classes)."
            )
    check_augmentation(augmentation_of(config.augment), dataset.train_x.shape[1:], dataset.name)
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
        "process_count": jax.process_count(),
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


EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: interrupted by a signal after saving; resumable
RESULT_FILES = ("results.csv", "curves.npz", "sweep.json")


class Interrupted(Exception):
    """SIGTERM or SIGINT stopped a sweep between chunks; a checkpoint and partial results exist.

    Attributes:
      step: the step the checkpoint holds.
      out_dir: the sweep's output directory (`resume(out_dir)` continues it).
      result: the partial `Result` written there.
    """

    def __init__(self, message: str, *, step: int, out_dir: str, result: Result):
        super().__init__(message)
        self.step, self.out_dir, self.result = step, out_dir, result


class _StopOnSignal:
    """While active, the first SIGTERM or SIGINT is recorded instead of stopping the process.

    The training loop polls `received` between chunks. A second signal restores the previous
    handlers and re-raises, so a user can still stop at once. Handlers are installed only in the
    main thread and only when `enabled`; the previous ones are restored on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        if self.enabled:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            self._restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name
        print(
            f"\nsweepjax: {self.received} received; finishing the current chunk and saving a "
            "checkpoint (send it again to stop at once).",
            file=sys.stderr,
        )

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        self._restore()


def _check_out_dir(
    config: Config, data: dict[str, str], *, overwrite: bool, must_resume: bool
) -> None:
    """Refuse a checkpoint of another sweep in `config.out_dir`; reads only, touches nothing."""
    meta = None if overwrite else checkpoint.read_meta(config.out_dir)
    if meta is None:
        if must_resume:
            raise ValueError(f"resume: {config.out_dir} holds no readable checkpoint.")
        return
    diffs = checkpoint.differences(meta, config.to_json(), data)
    if diffs:
        raise checkpoint.CheckpointMismatch(
            f"{config.out_dir} holds a checkpoint (step {meta['step']}) of a different sweep: "
            + "; ".join(diffs)
            + ". Nothing was changed; pass --overwrite (overwrite=True) to discard it, or "
            "choose another out_dir."
        )
    if meta["step"] > config.steps:
        raise ValueError(
            f"steps: {config.steps} is below the checkpoint's step {meta['step']} in "
            f"{config.out_dir}; a sweep resumes forward only (set steps >= {meta['step']})."
        )


def _restore_target(config: Config, program: Program, example_x: jax.Array, mesh):
    """Builds the abstract restore target from a checkpoint's metadata, placed as it trains."""

    def target(meta: dict[str, Any]) -> dict[str, Any]:
        size, points = config.population, meta["curve_points"]
        hparams = {k: np.zeros(size, np.dtype(d)) for k, d in meta["hparams"].items()}
        abstract = HParams({k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in hparams.items()})
        population = jax.eval_shape(lambda hp: init_population(program, hp, example_x), abstract)
        curves = {
            k: np.zeros((points,) if k == "steps" else (points, size), v.dtype)
            for k, v in _Curves().arrays().items()
        }
        return {
            "population": placement.abstract(population, mesh),
            "hparams": hparams,
            "curves": curves,
        }

    return target


def _meta(
    config: Config,
    data: dict[str, str],
    hparams: HParams,
    curves: _Curves,
    step: int,
    width: int | None,
):
    return {
        "config": config.to_json(),
        "data": data,
        "data_stream": {"seed": config.seed, "step": step},
        "hparams": {k: str(np.asarray(v).dtype) for k, v in hparams.values.items()},
        "curve_points": len(curves.steps),
        "population_width": width,  # the width chosen; a resumed sweep keeps it
    }


def _train(
    config: Config,
    dataset: Dataset,
    program: Program,
    *,
    quiet: bool,
    overwrite: bool,
    must_resume: bool,
    hparams: HParams | None = None,
    leaderboard: bool = True,
) -> Result:
    """Start or resume `config`'s sweep in its out_dir, train to `config.steps`, write results.

    A fresh start trains `hparams` (sampled from the config when None); a resumed one the
    hyperparameters its checkpoint holds. With several processes (`sweepjax.distributed`)
    every process calls it alike; process 0 alone writes the result files and the terminal
    output, and every process returns the whole `Result`.
    """
    out_dir = config.out_dir
    primary = distributed.is_primary()
    quiet = quiet or not primary
    data = checkpoint.data_identity(dataset) if out_dir is not None else {}
    if out_dir is not None:
        _check_out_dir(config, data, overwrite=overwrite, must_resume=must_resume)
    compile_before = _compile_seconds[0]
    start = time.perf_counter()

    data_placement = stream.choose_placement(config.data_placement, _train_bytes(dataset))
    # Several devices, of one process or many: the population axis is split across them.
    mesh = placement.population_mesh(config.population)
    val_x, val_y = placement.replicate((dataset.val_x, dataset.val_y), mesh)
    data_key = jax.random.key(config.seed)
    example_x = jax.device_put(dataset.train_x[: config.batch_size])

    manager = None
    if out_dir is not None:
        if overwrite and primary and checkpoint.saved_steps(out_dir):
            print(f"sweepjax: overwriting the sweep in {out_dir}", file=sys.stderr)
        if overwrite and primary:
            checkpoint.remove_checkpoints(out_dir)
            for name in RESULT_FILES:
                Path(out_dir, name).unlink(missing_ok=True)
        distributed.barrier("sweepjax-out-dir")
        manager = checkpoint.open_manager(out_dir, config.keep_checkpoints)
    try:
        if manager is not None and manager.all_steps():
            snapshot, bad = checkpoint.restore_latest(
                manager, _restore_target(config, program, example_x, mesh)
            )
            for step in bad:
                manager.delete(step)
            saved_hparams = snapshot.state["hparams"]  # Orbax returns dicts key-sorted
            hparams = HParams({k: saved_hparams[k] for k in snapshot.meta["hparams"]})
            chosen_width = snapshot.meta.get("population_width")
            pop = snapshot.state["population"]
            arrays = snapshot.state["curves"]
            curves = _Curves(
                steps=[int(s) for s in arrays["steps"]],
                **{k: list(v) for k, v in arrays.items() if k != "steps"},
            )
            if snapshot.step < config.steps:
                note = f"resuming {out_dir} from the checkpoint at step {snapshot.step} of {config.steps}"
            else:
                note = (
                    f"{out_dir} holds this sweep finished at step {snapshot.step}; rewriting its "
                    "results (raise steps to extend it, or --overwrite to start again)"
                )
            if primary:
                print(f"sweepjax: {note}", file=sys.stderr)
        else:
            hparams = hparams if hparams is not None else sample_hparams(config)
            pop = init_population(program, placement.place(hparams, mesh), example_x)
            curves = _Curves()
            chosen_width = None
        first_step = step = int(pop.step)
        pop, device_hparams = placement.place((pop, hparams), mesh)
        every = config.checkpoint_every or config.eval_every

        show = not quiet and sys.stderr.isatty()
        bar = tqdm(
            total=config.steps,
            initial=step,
            disable=not show,
            unit="step",
            desc="sweep",
            leave=False,
        )
        logs = TensorBoardLog(config, hparams) if config.tensorboard and primary else None
        chunk_start, best = time.perf_counter(), -np.inf  # best: validation accuracy so far
        plan = stream.chunk_plan(step, config.steps, config.eval_every)
        with (
            bar,
            _StopOnSignal(enabled=manager is not None) as stop,
            stream.train_data(data_placement, dataset, program, data_key, plan, mesh) as train_data,
        ):
            if data_placement == "device":
                search = placement.width_search(
                    config.population_width,
                    program,
                    pop,
                    device_hparams,
                    *train_data.arrays(step, 0),
                    mesh=mesh,
                    member_steps=config.population * (config.steps - step),
                    chosen=chosen_width,
                    quiet=quiet,
                )
            else:  # streamed blocks: a fixed width, or every member at once
                width = config.population_width
                search = placement.WidthSearch([width if isinstance(width, int) else None], 0)
            make_chunk = make_train_chunk if data_placement == "device" else make_stream_chunk
            while step < config.steps:
                length = min(config.eval_every - step % config.eval_every, config.steps - step)
                train_x, train_y = train_data.arrays(step, length)
                compiled_before, started = _compile_seconds[0], time.perf_counter()
                pop, losses = make_chunk(program, length, search.width, mesh)(
                    pop, device_hparams, train_x, train_y, data_key
                )
                if search.searching:  # time this width's chunk, its compilation apart
                    jax.block_until_ready(losses)
                    compiling = _compile_seconds[0] - compiled_before
                    search.record(
                        time.perf_counter() - started - compiling,
                        compiling,
                        config.population * length,
                    )
                    if not search.searching and not quiet and primary:
                        tried = ", ".join(f"{w}: {r:,.0f}" for w, r in search.rates.items())
                        print(
                            f"sweepjax: population width {search.width} (member-steps/s by "
                            f"width: {tried})",
                            file=sys.stderr,
                        )
                evaluate = make_evaluate(program, config.eval_batch, search.width, mesh)
                val_loss, val_acc = evaluate(pop, val_x, val_y)
                losses, val_loss, val_acc, alive = distributed.to_host(
                    (losses, val_loss, val_acc, pop.alive)
                )
                step = int(pop.step)
                curves.steps.append(step)
                curves.train_loss.append(_chunk_mean(losses))
                curves.val_loss.append(val_loss)
                curves.val_accuracy.append(val_acc)
                stopping = distributed.any_process(stop.received is not None)
                if manager is not None and (step % every == 0 or step == config.steps or stopping):
                    width = None if search.searching else search.width
                    meta = _meta(config, data, hparams, curves, step, width)
                    checkpoint.save(manager, step, _state(pop, hparams, curves), meta)
                bar.update(length)
                best = np.max(np.where(alive, curves.val_accuracy[-1], -np.inf), initial=best)
                now = time.perf_counter()
                rate = config.population * length / max(now - chunk_start, 1e-9)  # last chunk
                chunk_start = now
                bar.set_postfix(
                    {
                        "alive": int(alive.sum()),
                        "diverged": int((~alive).sum()),
                        "best_val": f"{best:.3f}",
                        "member-steps/s": f"{rate:,.0f}",
                    }
                )
                if logs is not None:
                    logs.write(
                        step,
                        curves.train_loss[-1],
                        curves.val_loss[-1],
                        curves.val_accuracy[-1],
                        alive,
                    )
                if stopping:
                    break
        if logs is not None:
            logs.close()

        test_loss, test_acc = make_evaluate(program, config.eval_batch, search.width, mesh)(
            pop, *placement.replicate((dataset.test_x, dataset.test_y), mesh)
        )
        alive, diverged_at, test_acc = distributed.to_host((pop.alive, pop.diverged_at, test_acc))
        if manager is not None:
            checkpoint.wait(manager)
    finally:
        if manager is not None:
            with contextlib.suppress(Exception):  # a failed save was already reported
                manager.close()
    wall = time.perf_counter() - start
    compile_seconds = _compile_seconds[0] - compile_before
    result = _result(config, hparams, curves, step, alive, diverged_at, test_acc)
    train_seconds = max(wall - compile_seconds, 1e-9)
    interrupted = step < config.steps
    result.summary.update(
        interrupted=interrupted,
        compile_seconds=round(compile_seconds, 3),
        train_seconds=round(train_seconds, 3),
        member_steps_per_second=round(config.population * (step - first_step) / train_seconds, 1),
        population_width=search.width,
        population_width_rates=search.rates,
        population_devices=1 if mesh is None else mesh.size,
        dataset=dataset.describe(),
        data_placement=data_placement,
        **_environment(),
    )
    if out_dir is not None and primary:
        write_result(result, out_dir)
    if interrupted:
        raise Interrupted(
            f"interrupted by {stop.received or 'a signal to another process'} at step {step} of "
            f"{config.steps}; the checkpoint and partial results are in {out_dir}. Resume with: "
            f"sweepjax resume {out_dir}",
            step=step,
            out_dir=out_dir,
            result=result,
        )
    if not quiet and leaderboard:
        print(result.leaderboard(), file=sys.stderr)
        if out_dir is not None:
            print(f"results in {out_dir}/", file=sys.stderr)
    return result


def _train_bytes(dataset: Dataset) -> int:
    return int(np.asarray(dataset.train_x).nbytes + np.asarray(dataset.train_y).nbytes)


def _state(pop: Population, hparams: HParams, curves: _Curves) -> dict[str, Any]:
    return {"population": pop, "hparams": dict(hparams.values), "curves": curves.arrays()}


def run(
    config: Config,
    *,
    quiet: bool = False,
    dataset: Dataset | None = None,
    overwrite: bool = False,
) -> Result:
    """Train every member of `config`'s sweep as one compiled program and return the `Result`.

    When `config.out_dir` already holds a checkpoint of the same sweep, the run resumes from it
    (and says so); a checkpoint of a different sweep is refused with a `CheckpointMismatch`
    naming the differing keys, before any file is touched, unless `overwrite`.

    Args:
      config: the sweep. Validated before anything compiles.
      quiet: no progress bar and no leaderboard on the terminal.
      dataset: arrays to train on instead of `config.dataset` (see `sweepjax.data.from_arrays`).
      overwrite: discard the checkpoints and results already in `config.out_dir`.

    Returns:
      The `Result`; its files are in `config.out_dir` unless that is None.

    Raises:
      Interrupted: SIGTERM or SIGINT stopped training; a checkpoint and partial results were
        written and the sweep is resumable.
      CheckpointError: a checkpoint could not be saved (the previous one stays usable).
    """
    validate(config)
    dataset = dataset or load_dataset(config.dataset, config.val_size, config.normalize)
    buckets = plan_buckets(config)
    programs = [program_of(bucket.config) for bucket in buckets]
    for bucket, program in zip(buckets, programs, strict=True):
        _check_data(bucket.config, dataset, program.model)
    if not structural_keys(config):
        hparams = buckets[0].hparams
        return _train(
            config,
            dataset,
            programs[0],
            quiet=quiet,
            overwrite=overwrite,
            must_resume=False,
            hparams=hparams,
        )
    return _train_buckets(config, dataset, buckets, programs, quiet=quiet, overwrite=overwrite)


def _train_buckets(
    config: Config,
    dataset: Dataset,
    buckets: list[Bucket],
    programs: list[Program],
    *,
    quiet: bool,
    overwrite: bool,
) -> Result:
    """Train the buckets one after another (each resumes on its own) and merge their results."""
    out_dir = config.out_dir
    quiet = quiet or not distributed.is_primary()
    if out_dir is not None:
        plan = {
            "config": config.to_json(),
            "data": checkpoint.data_identity(dataset),
            "buckets": [{"label": b.label, "members": b.members.tolist()} for b in buckets],
        }
        plan_path = Path(out_dir, PLAN_FILE)
        if plan_path.exists() and not overwrite:
            diffs = checkpoint.differences(
                json.loads(plan_path.read_text()), plan["config"], plan["data"]
            )
            if diffs:
                raise checkpoint.CheckpointMismatch(
                    f"{out_dir} holds a different bucketed sweep: "
                    + "; ".join(diffs)
                    + ". Nothing was changed; pass --overwrite (overwrite=True) to discard it."
                )
        if distributed.is_primary():
            if overwrite and Path(out_dir, "buckets").exists():
                shutil.rmtree(Path(out_dir, "buckets"))
            atomic_write(plan_path, lambda f: json.dump(plan, f, indent=2))
        distributed.barrier("sweepjax-bucket-plan")
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
                _train(
                    bucket.config,
                    dataset,
                    program,
                    quiet=quiet,
                    overwrite=overwrite,
                    must_resume=False,
                    hparams=bucket.hparams,
                    leaderboard=False,
                )
            )
        except Interrupted as stop:
            results.append(stop.result)
            merged = merge_results(config, buckets, results)
            merged.summary["interrupted"] = True
            if out_dir is not None and distributed.is_primary():
                write_result(merged, out_dir)
            raise Interrupted(
                f"interrupted in bucket {index + 1}/{len(buckets)} at step {stop.step}; the "
                f"checkpoints and partial results are in {out_dir}. Resume with: "
                f"sweepjax resume {out_dir}",
                step=stop.step,
                out_dir=out_dir,
                result=merged,
            ) from None
    merged = merge_results(config, buckets, results)
    if out_dir is not None and distributed.is_primary():
        write_result(merged, out_dir)
    if not quiet:
        print(merged.leaderboard(), file=sys.stderr)
        if out_dir is not None:
            print(f"results in {out_dir}/", file=sys.stderr)
    return merged


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
    `steps` (an override `steps=N`) to extend a finished sweep.

    Args:
      out_dir: the sweep's output directory.
      overrides: `key=value` changes to the saved config; only keys that leave the sweep the
        same may change (`steps`, `eval_every`, `eval_batch`, `checkpoint_every`,
        `keep_checkpoints`, `data_placement`).
      config: the config to continue with instead of the saved one (needed when the model is
        a user module, which a checkpoint records only by its repr).
      quiet: no progress bar and no leaderboard on the terminal.
      dataset: the arrays the sweep was trained on, if not `config.dataset`.

    Returns:
      The `Result` of the whole sweep.

    Example (the checkpoint of a finished 20-step sweep, extended to 30 steps):

    >>> import tempfile
    >>> from sweepjax.config import Config
    >>> out = tempfile.TemporaryDirectory()
    >>> _ = run(Config(population=4, steps=20, eval_every=10, out_dir=out.name), quiet=True)
    >>> resume(out.name, overrides=["steps=30"], quiet=True).summary["steps_done"]
    30
    >>> out.cleanup()
    """
    out_dir = os.fspath(out_dir)
    plan_path = Path(out_dir, PLAN_FILE)
    if config is None and plan_path.exists():
        config = Config.from_json(json.loads(plan_path.read_text())["config"])
    if config is not None and structural_keys(config):
        config = apply_overrides(config, overrides).replace(out_dir=out_dir)
        return run(config, quiet=quiet, dataset=dataset)
    if config is None:
        meta = checkpoint.read_meta(out_dir)
        if meta is None:
            raise ValueError(f"resume: {out_dir} holds no checkpoint to resume.")
        if not isinstance(meta["config"]["model"], Mapping):
            raise ValueError(
                f"resume: the checkpoint's model is a user module ({meta['config']['model']}); "
                "pass its config: sweepjax.resume(out_dir, config=...)."
            )
        config = Config.from_json(meta["config"])
    config = apply_overrides(config, overrides).replace(out_dir=out_dir)
    validate(config)
    dataset = dataset or load_dataset(config.dataset, config.val_size, config.normalize)
    program = program_of(config)
    _check_data(config, dataset, program.model)
    return _train(config, dataset, program, quiet=quiet, overwrite=False, must_resume=True)


def _result(
    config: Config,
    hparams: HParams,
    curves: _Curves,
    step: int,
    alive: np.ndarray,
    diverged_at: np.ndarray,
    test_acc: np.ndarray,
) -> Result:
    arrays = curves.arrays()
    best_val = np.nanmax(arrays["val_accuracy"], axis=0)
    last_train = [_last_finite(arrays["train_loss"][:, i]) for i in range(alive.size)]
    metrics = {
        "status": np.where(alive, "ok", "diverged"),
        "diverged_at_step": diverged_at,
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
    summary = {"config": config.to_json(), "steps_done": step, **summarize(rows)}
    return Result(rows, arrays, summary)


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else float("nan")
