"""One population from its first (or restored) step to `config.steps`: chunks, eval, saves.

`train_population` is the loop over chunks that `sweepjax.run` and `sweepjax.resume` call once
per population (once per bucket in a structural sweep). Between chunks it evaluates, saves a
checkpoint, updates the progress bar, the folder lock and the loggers, and stops when a
signal asked it to: with a checkpoint and partial results, as `Interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import sys
import time
from typing import Any

import jax
import numpy as np

from sweepjax import checkpoint, distributed, placement, stream
from sweepjax.config import FAMILY_KEYS, Config, families
from sweepjax.data import Dataset, first
from sweepjax.errors import Interrupted
from sweepjax.lock import FolderLock
from sweepjax.out_dir import check_contents, check_room
from sweepjax.population import (
    Population,
    Program,
    init_population,
    make_evaluate,
    make_stream_chunk,
    make_train_chunk,
    program_metrics,
)
from sweepjax.progress import Progress
from sweepjax.results import Result, curve_names, member_rows, summarize, write_result
from sweepjax.signals import StopOnSignal
from sweepjax.space import HParams

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


def family_names(config: Config, hparams: HParams, kind: str) -> np.ndarray:
    """The readable `kind` family of every member (from its index column, or the only one)."""
    names = families(config, kind)
    if kind in hparams:
        return np.asarray(names)[np.asarray(hparams[kind])]
    return np.full(hparams.size, names[0])


@dataclasses.dataclass
class Curves:
    """Per-chunk curves: `steps [C]`, and `[C, P]` arrays `train_loss` and `val_<metric>`."""

    steps: list[int]
    values: dict[str, list[np.ndarray]]

    @classmethod
    def empty(cls, metrics: tuple[str, ...]) -> Curves:
        return cls([], {name: [] for name in curve_names(metrics)})

    def append(self, step: int, losses: np.ndarray, val: dict[str, np.ndarray]) -> None:
        """Add one chunk: its end step, its `[length, P]` train losses and its evaluation."""
        self.steps.append(step)
        self.values["train_loss"].append(_chunk_mean(losses))
        for name, value in val.items():
            self.values[f"val_{name}"].append(value)

    def latest(self) -> dict[str, np.ndarray]:
        return {name: values[-1] for name, values in self.values.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "steps": np.asarray(self.steps, np.int64),
            **{k: np.asarray(v, np.float32) for k, v in self.values.items()},
        }


def _chunk_mean(losses: np.ndarray) -> np.ndarray:
    """Mean train loss of each member over a chunk's steps it was alive for (NaN if none)."""
    alive_steps = np.isfinite(losses).sum(0)
    total = np.where(np.isfinite(losses), losses, 0.0).sum(0)
    return np.where(alive_steps > 0, total / np.maximum(alive_steps, 1), np.nan)


def restore_target(config: Config, program: Program, example_x: Any, metrics, mesh):
    """Builds the abstract restore target from a checkpoint's metadata, placed as it trains."""

    def target(meta: dict[str, Any]) -> dict[str, Any]:
        size, points = config.population, meta["curve_points"]
        hparams = {k: np.zeros(size, np.dtype(d)) for k, d in meta["hparams"].items()}
        abstract = HParams({k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in hparams.items()})
        population = jax.eval_shape(lambda hp: init_population(program, hp, example_x), abstract)
        curves = {"steps": np.zeros(points, np.int64)}
        curves.update({k: np.zeros((points, size), np.float32) for k in curve_names(metrics)})
        return {
            "population": placement.abstract(population, mesh),
            "hparams": hparams,
            "curves": curves,
        }

    return target


@dataclasses.dataclass
class _Context:
    """What stays fixed while one population trains."""

    config: Config
    program: Program
    mesh: Any
    manager: Any  # an Orbax CheckpointManager, or None without an out_dir
    data: dict[str, str]  # the data set's identity, recorded in checkpoints
    metrics: tuple[str, ...]  # the task's reported metrics, in display order
    stop: StopOnSignal
    lock: FolderLock | None
    quiet: bool


@dataclasses.dataclass
class _Start:
    """Where training begins: a restored checkpoint or a fresh population."""

    pop: Population
    hparams: HParams
    curves: Curves
    width: int | None  # the width a checkpoint chose; None: choose it


def train_population(
    config: Config,
    dataset: Dataset,
    program: Program,
    hparams: HParams,
    *,
    stop: StopOnSignal,
    lock: FolderLock | None = None,
    quiet: bool = False,
    resuming: bool = False,
    leaderboard: bool = True,
) -> Result:
    """Start or resume `config`'s sweep in its out_dir, train to `config.steps`, write results.

    A fresh start trains `hparams`; a resumed one the hyperparameters its checkpoint holds.
    With several processes (`sweepjax.distributed`) every process calls it alike; process 0
    alone writes the result files and the terminal output, and every process returns the
    whole `Result`. Raises `Interrupted` when `stop` received a signal (before training:
    nothing written; later: after saving a checkpoint and partial results).
    """
    out_dir = config.out_dir
    quiet = quiet or not distributed.is_primary()
    data = checkpoint.data_identity(dataset) if out_dir is not None else {}
    if out_dir is not None:
        check_contents(config, data, resuming=resuming)
    compile_before, started = _compile_seconds[0], time.perf_counter()
    data_placement = stream.choose_placement(config.data_placement, _train_bytes(dataset))
    mesh = placement.population_mesh(config.population)  # the population axis over devices
    example = first(dataset.train, config.batch_size)
    example_x = jax.device_put(program.task.inputs(example))
    manager = None if out_dir is None else checkpoint.open_manager(out_dir, config.keep_checkpoints)
    metrics = program_metrics(program, example)
    ctx = _Context(config, program, mesh, manager, data, metrics, stop, lock, quiet)
    try:
        start = _begin(ctx, hparams, example_x)
        first_step = int(start.pop.step)
        if out_dir is not None and distributed.is_primary():
            check_room(out_dir, _nbytes(start.pop), config.keep_checkpoints)
        _stop_if_asked(ctx, start)
        pop, search = _train_chunks(ctx, dataset, start, data_placement)
        test = placement.replicate(dataset.test, mesh)
        test = make_evaluate(program, config.eval_batch, search.width, mesh)(pop, test)
        alive, diverged_at, test = distributed.to_host((pop.alive, pop.diverged_at, test))
        if manager is not None:
            checkpoint.wait(manager)
    finally:
        if manager is not None:
            with contextlib.suppress(Exception):  # a failed save was already reported
                manager.close()
    step = int(pop.step)
    result = _result(ctx, start.hparams, start.curves, step, (alive, diverged_at), test)
    result.summary.update(
        interrupted=step < config.steps,
        **_timings(config.population * (step - first_step), compile_before, started),
        population_width=search.width,
        population_width_rates=search.rates,
        population_devices=1 if mesh is None else mesh.size,
        dataset=dataset.describe(),
        data_placement=data_placement,
        **_environment(),
    )
    return _finish(ctx, result, step, leaderboard)


def _stop_if_asked(ctx: _Context, start: _Start) -> None:
    """Raise `Interrupted` when a signal came before training, removing an empty checkpoint
    folder this run created."""
    if not distributed.any_process(ctx.stop.received is not None):
        return
    if not start.curves.steps and ctx.manager is not None:
        ctx.manager.close()
        checkpoint.remove_checkpoints(ctx.config.out_dir)  # created empty just now
    raise stopped_before_training(ctx.stop, ctx.config.out_dir)


def _timings(member_steps: int, compile_before: float, started: float) -> dict[str, float]:
    """Compile and train seconds since `started`, and the training speed."""
    compile_seconds = _compile_seconds[0] - compile_before
    train_seconds = max(time.perf_counter() - started - compile_seconds, 1e-9)
    return {
        "compile_seconds": round(compile_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "member_steps_per_second": round(member_steps / train_seconds, 1),
    }


def stopped_before_training(stop: StopOnSignal, out_dir: str | None) -> Interrupted:
    """The `Interrupted` of a sweep that a signal stopped before its first chunk."""
    return Interrupted(
        f"stopped by {stop.received or 'a signal to another process'} before training; nothing "
        "was trained or written. Run the same command again to start (or continue) the sweep.",
        out_dir=out_dir,
    )


def _begin(ctx: _Context, hparams: HParams, example_x: jax.Array) -> _Start:
    """The latest good checkpoint of `ctx.manager`, or a fresh population of `hparams`."""
    config, manager = ctx.config, ctx.manager
    if manager is None or not manager.all_steps():
        pop = init_population(ctx.program, placement.place(hparams, ctx.mesh), example_x)
        return _Start(pop, hparams, Curves.empty(ctx.metrics), None)
    target = restore_target(config, ctx.program, example_x, ctx.metrics, ctx.mesh)
    snapshot, bad = checkpoint.restore_latest(manager, target)
    for step in bad:
        manager.delete(step)
    saved = snapshot.state["hparams"]  # Orbax returns dicts key-sorted
    arrays = snapshot.state["curves"]
    curves = Curves(
        steps=[int(s) for s in arrays["steps"]],
        values={k: list(arrays[k]) for k in curve_names(ctx.metrics)},
    )
    if snapshot.step < config.steps:
        note = f"resuming {config.out_dir} from the checkpoint at step {snapshot.step} of {config.steps}"
    else:
        note = (
            f"{config.out_dir} holds this sweep finished at step {snapshot.step}; rewriting its "
            f"results (to extend it: sweepjax resume {config.out_dir} --set steps=N)"
        )
    if distributed.is_primary():
        print(f"sweepjax: {note}", file=sys.stderr)
    hparams = HParams({k: saved[k] for k in snapshot.meta["hparams"]})
    return _Start(
        snapshot.state["population"], hparams, curves, snapshot.meta.get("population_width")
    )


def _train_chunks(
    ctx: _Context, dataset: Dataset, start: _Start, data_placement: str
) -> tuple[Population, placement.WidthSearch]:
    """Train chunk by chunk to `steps`, or until a signal; evaluate, save and show each chunk."""
    config, program, mesh = ctx.config, ctx.program, ctx.mesh
    pop, device_hparams = placement.place((start.pop, start.hparams), mesh)
    step = int(pop.step)
    val = placement.replicate(dataset.val, mesh)
    data_key = jax.random.key(config.seed)
    plan = stream.chunk_plan(step, config.steps, config.eval_every)
    with (
        Progress(config, program.task, ctx.metrics, start.hparams, step, ctx.quiet) as display,
        stream.train_data(data_placement, dataset, program, data_key, plan, mesh) as train_data,
    ):
        search = _width_search(ctx, data_placement, pop, device_hparams, train_data, start.width)
        make_chunk = make_train_chunk if data_placement == "device" else make_stream_chunk
        while step < config.steps:
            length = min(config.eval_every - step % config.eval_every, config.steps - step)
            train = train_data.arrays(step, length)
            compiled_before, began = _compile_seconds[0], time.perf_counter()
            pop, losses = make_chunk(program, length, search.width, mesh)(
                pop, device_hparams, train, data_key
            )
            if search.searching:  # time this width's chunk, its compilation apart
                _time_width(ctx, search, losses, began, compiled_before, length)
            val_metrics = make_evaluate(program, config.eval_batch, search.width, mesh)(pop, val)
            losses, val_metrics, alive = distributed.to_host((losses, val_metrics, pop.alive))
            step = int(pop.step)
            start.curves.append(step, losses, val_metrics)
            stopping = distributed.any_process(ctx.stop.received is not None)
            _save(ctx, step, pop, start, None if search.searching else search.width, stopping)
            display.chunk(step, length, start.curves.latest(), alive)
            if ctx.lock is not None:
                ctx.lock.update(step=step, steps=config.steps)
            if stopping:
                break
    return pop, search


def _width_search(
    ctx: _Context, data_placement: str, pop, device_hparams, train_data, chosen: int | None
) -> placement.WidthSearch:
    """How the population is grouped: searched on the first chunks, or fixed."""
    config = ctx.config
    if data_placement != "device":  # streamed blocks: a fixed width, or every member at once
        width = config.population_width
        return placement.WidthSearch([width if isinstance(width, int) else None], 0)
    step = int(pop.step)
    return placement.width_search(
        config.population_width,
        ctx.program,
        pop,
        device_hparams,
        train_data.arrays(step, 0),
        mesh=ctx.mesh,
        member_steps=config.population * (config.steps - step),
        chosen=chosen,
        quiet=ctx.quiet,
    )


def _time_width(ctx: _Context, search, losses, began: float, compiled_before: float, length: int):
    """Record the speed of the width just tried; say which won once the search ends."""
    jax.block_until_ready(losses)
    compiling = _compile_seconds[0] - compiled_before
    seconds = time.perf_counter() - began - compiling
    search.record(seconds, compiling, ctx.config.population * length)
    if not search.searching and not ctx.quiet:
        tried = ", ".join(f"{w}: {r:,.0f}" for w, r in search.rates.items())
        print(
            f"sweepjax: population width {search.width} (member-steps/s by width: {tried})",
            file=sys.stderr,
        )


def _save(ctx: _Context, step: int, pop, start: _Start, width: int | None, force: bool) -> None:
    """Save a checkpoint every `checkpoint_every` steps, at the end, and when stopping."""
    config = ctx.config
    every = config.checkpoint_every or config.eval_every
    if ctx.manager is None or not (step % every == 0 or step == config.steps or force):
        return
    hparams, curves = start.hparams, start.curves
    meta = {
        "config": config.to_json(),
        "data": ctx.data,
        "data_stream": {"seed": config.seed, "step": step},
        "hparams": {k: str(np.asarray(v).dtype) for k, v in hparams.values.items()},
        "curve_points": len(curves.steps),
        "population_width": width,  # the width chosen; a resumed sweep keeps it
    }
    state = {"population": pop, "hparams": dict(hparams.values), "curves": curves.arrays()}
    checkpoint.save(ctx.manager, step, state, meta)


def _finish(ctx: _Context, result: Result, step: int, leaderboard: bool) -> Result:
    """Write the result files; raise `Interrupted` if a signal stopped training early."""
    config, out_dir = ctx.config, ctx.config.out_dir
    if out_dir is not None and distributed.is_primary():
        write_result(result, out_dir)
    if step < config.steps:
        raise Interrupted(
            f"interrupted by {ctx.stop.received or 'a signal to another process'} at step {step} "
            f"of {config.steps}; the checkpoint and partial results are in {out_dir}. Resume "
            f"with: sweepjax resume {out_dir}",
            step=step,
            out_dir=out_dir,
            result=result,
        )
    if ctx.stop.received is not None and distributed.is_primary():
        print(
            f"sweepjax: {ctx.stop.received} arrived during the last chunk; the sweep finished "
            "anyway.",
            file=sys.stderr,
        )
    if not ctx.quiet and leaderboard:
        print(result.leaderboard(), file=sys.stderr)
        if out_dir is not None:
            print(f"results in {out_dir}/", file=sys.stderr)
    return result


def _nbytes(tree: Any) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _train_bytes(dataset: Dataset) -> int:
    return sum(int(np.asarray(leaf).nbytes) for leaf in jax.tree.leaves(dataset.train))


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


def _result(
    ctx: _Context,
    hparams: HParams,
    curves: Curves,
    step: int,
    status: tuple[np.ndarray, np.ndarray],
    test: dict[str, np.ndarray],
) -> Result:
    """The results table: hyperparameters, status, then the task's final, best and test metrics."""
    config, task = ctx.config, ctx.program.task
    alive, diverged_at = status
    arrays = curves.arrays()
    best = np.nanmax if task.direction == "max" else np.nanmin
    last_train = [_last_finite(arrays["train_loss"][:, i]) for i in range(alive.size)]
    metrics = {
        "status": np.where(alive, "ok", "diverged"),
        "diverged_at_step": diverged_at,
        "final_train_loss": np.asarray(last_train, np.float32),
        **{f"final_val_{m}": arrays[f"val_{m}"][-1] for m in ctx.metrics},
        f"best_val_{task.rank_by}": best(arrays[f"val_{task.rank_by}"], axis=0),
        **{f"test_{m}": test[m] for m in ctx.metrics},
    }
    shown = {k: v for k, v in hparams.values.items() if k in config.space or k == "seed"}
    for kind in FAMILY_KEYS:
        if kind in hparams:
            shown[kind] = family_names(config, hparams, kind)
    rows = member_rows(shown, metrics)
    ranking = summarize(rows, f"final_val_{task.rank_by}", task.direction)
    summary = {"config": config.to_json(), "steps_done": step, "task": task.name, **ranking}
    return Result(rows, arrays, summary)


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else float("nan")
