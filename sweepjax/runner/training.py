"""One population, from its first (or restored) step until no trial runs: set-up and results.

`train_population` is what `sweepjax.run` and `sweepjax.resume` call once per population (once
per bucket in a structural sweep). It checks the folder, starts the population from the
searcher's first trials or restores the latest checkpoint (`sweepjax.sweep.sweep_state` and the
trial table included), runs the chunk loop (`sweepjax.sweep.loop`) with its callbacks, and writes the
results, one row per trial. A signal stops it after a checkpoint, as `Interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from sweepjax.engine import distributed, placement, stream, widths
from sweepjax.engine.compiling import CompileCount, compile_count
from sweepjax.engine.data import Dataset, first
from sweepjax.engine.population import Population, Program, program_metrics
from sweepjax.errors import Interrupted
from sweepjax.integrations.mlflow_log import MlflowLog
from sweepjax.integrations.tensorboard_log import TensorBoardLog
from sweepjax.integrations.wandb_log import WandbLog
from sweepjax.sweep import checkpoint
from sweepjax.sweep.config import Config, is_adaptive
from sweepjax.sweep.lock import FolderLock
from sweepjax.sweep.loop import Devices, Spent, run_chunks
from sweepjax.sweep.out_dir import check_contents, check_room
from sweepjax.sweep.policies import make_policies
from sweepjax.sweep.progress import LockProgress, ProgressBar
from sweepjax.sweep.restore import begin, restore_target
from sweepjax.sweep.results import Result, write_result
from sweepjax.sweep.signals import StopOnSignal
from sweepjax.sweep.structures import block_key
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trial_results import trial_result

__all__ = ["restore_target", "stopped_before_training", "train_one", "train_population"]

# The experiment trackers' logs, by the config key that turns each on; process 0 alone logs.
TRACKERS = {"tensorboard": TensorBoardLog, "mlflow": MlflowLog, "wandb": WandbLog}
# What `sweep.json` records of how a run went rather than of what it trained: these differ
# between a sweep and its rerun or resume (which loads some programs from the compile cache).
MEASURED_KEYS = (
    "compile_seconds",
    "programs_compiled",
    "programs_from_cache",
    "train_seconds",
    "member_steps_per_second",
    "chunk_seconds",
    "population_width_rates",
)


# trainer(ctx, dataset, devices, data placement, (scheduler, searcher)): how the slots train
Trainer = Callable[..., tuple[SweepState, Spent, widths.WidthSearch, Any]]


@dataclasses.dataclass
class Context:
    """What stays fixed while one population trains."""

    config: Config
    program: Program
    manager: Any  # an Orbax CheckpointManager, or None without an out_dir
    data: dict[str, str]  # the data set's identity, recorded in checkpoints
    metrics: tuple[str, ...]  # the task's reported metrics, in display order
    stop: StopOnSignal
    lock: FolderLock | None
    quiet: bool


def train_population(
    config: Config,
    dataset: Dataset,
    program: Program,
    *,
    rows: list[dict[str, Any]] | None = None,
    stop: StopOnSignal,
    lock: FolderLock | None = None,
    quiet: bool = False,
    resuming: bool = False,
    leaderboard: bool = True,
    trainer: Trainer | None = None,
) -> Result:
    """Start or resume `config`'s sweep in its out_dir, train until no trial runs, write results.

    A fresh start takes its trials from `rows` (a bucket's members) or from the config's
    searcher; a resumed one continues the trials, scheduler and searcher its checkpoint holds.
    With several processes (`sweepjax.engine.distributed`) every process calls it alike and decides
    alike; process 0 alone writes the result files and the terminal output, and every process
    returns the whole `Result`. Raises `Interrupted` when `stop` received a signal (before
    training: nothing written; later: after saving a checkpoint and partial results).
    `trainer` trains the slots (default: one population, `train_one`; a sweep in blocks has
    its own, `sweepjax.runner.blocks.train_blocks`).
    """
    trainer = trainer or train_one
    out_dir = config.out_dir
    quiet = quiet or not distributed.is_primary()
    data = checkpoint.data_identity(dataset) if out_dir is not None else {}
    if out_dir is not None:
        check_contents(config, data, resuming=resuming)
    compile_before, started = compile_count(), time.perf_counter()
    data_placement = stream.choose_placement(config.data_placement, _train_bytes(dataset))
    example = first(dataset.train, config.batch_size)
    devices = _devices(config, program, dataset, example)
    new_folder = out_dir is not None and not checkpoint.checkpoint_dir(out_dir).exists()
    manager = None if out_dir is None else checkpoint.open_manager(out_dir, config.keep_checkpoints)
    metrics = program_metrics(program, example)
    ctx = Context(config, program, manager, data, metrics, stop, lock, quiet)
    try:
        policies = make_policies(config, program.task, rows)
        state, spent, search, test = trainer(ctx, dataset, devices, data_placement, policies)
        if manager is not None:
            checkpoint.wait(manager)
    finally:
        if manager is not None:
            checkpoint.close_manager(manager, remove_empty=new_folder)
    result = trial_result(state, metrics, test)
    result.summary.update(
        interrupted=not state.done,
        **_timings(spent, compile_before, started),
        population_width=search.width,
        population_width_rates=search.rates,
        population_devices=devices.count,
        dataset=dataset.describe(),
        data_placement=data_placement,
        **_environment(),
    )
    return _finish(ctx, result, state, leaderboard)


def _devices(config: Config, program: Program, dataset: Dataset, example: Any) -> Devices:
    """The population's mesh (its axis over the devices) and what it evaluates on there."""
    mesh = placement.population_mesh(config.population)
    return Devices(
        program,
        mesh,
        placement.replicate(dataset.val, mesh),
        placement.replicate(dataset.test, mesh),
        jax.device_put(program.task.inputs(example)),
        config.eval_batch,
    )


def train_one(ctx: Context, dataset: Dataset, devices: Devices, data_placement: str, policies):
    """Begin (afresh or from the latest checkpoint) and train one population until no trial
    runs: `(state, spent, width search, test metrics of the slots still running or None)`."""
    config, out_dir = ctx.config, ctx.config.out_dir
    state, pop, width = begin(config, ctx.program, ctx.manager, policies, devices, ctx.metrics)
    if out_dir is not None and distributed.is_primary():
        check_room(out_dir, nbytes(pop), config.keep_checkpoints)
    stop_if_asked(ctx)
    pop, spent, search = _train(ctx, dataset, state, pop, devices, data_placement, width)
    running = state.running_slots()
    test = devices.evaluate(pop, devices.test, search.width) if running.any() else None
    return state, spent, search, test


def _train(ctx: Context, dataset: Dataset, state: SweepState, pop, devices, data_placement, width):
    """Run the chunk loop with the width search and the callbacks; `(pop, spent, search)`."""
    step = int(pop.step)
    with contextlib.ExitStack() as stack:
        bar, train_data = open_loop(ctx, stack, (dataset, devices, data_placement), state, step)
        search = _width_search(ctx, data_placement, pop, state, devices, train_data, width)
        callbacks = [Checkpointer(ctx, search), bar, *trackers(ctx, state, stack)]
        pop, spent = run_chunks(
            state, pop, devices, train_data, search, callbacks, stopping(ctx), ctx.quiet
        )
    return pop, spent, search


def open_loop(ctx: Context, stack: contextlib.ExitStack, data: tuple, state: SweepState, step: int):
    """The progress bar and the training data `(dataset, devices, data placement)` of a chunk
    loop from `step`, entered on `stack`: chunks to each eval (an adaptive sweep's may end
    early, where a trial's budget does), or the fixed plan to `steps`."""
    (dataset, devices, data_placement), config = data, ctx.config
    adaptive = is_adaptive(config)
    plan = (
        stream.aligned_plan(step, config.eval_every)
        if adaptive
        else stream.chunk_plan(step, config.steps, config.eval_every)
    )
    bar = stack.enter_context(ProgressBar(state, step, ctx.quiet))
    train_data = stack.enter_context(
        stream.train_data(
            data_placement,
            dataset,
            ctx.program,
            jax.random.key(config.seed),
            plan,
            devices.mesh,
            config.eval_every if adaptive else None,
        )
    )
    return bar, train_data


def stopping(ctx: Context) -> Callable[[], bool]:
    """Whether a signal came (the loop stops after the chunk in progress)."""
    return lambda: ctx.stop.received is not None


def trackers(ctx: Context, state: SweepState, stack: contextlib.ExitStack) -> list[Any]:
    """The experiment trackers the config turns on (process 0 alone logs) and the folder
    lock's progress, entered on `stack`."""
    found: list[Any] = []
    for key, log in TRACKERS.items():
        if getattr(ctx.config, key) and distributed.is_primary():
            found.append(stack.enter_context(log(ctx.config, state)))
    if ctx.lock is not None:
        found.append(LockProgress(ctx.lock))
    return found


def _width_search(ctx: Context, data_placement: str, pop, state, devices, train_data, chosen):
    """How the population is grouped: searched on the first chunks, or fixed."""
    config = ctx.config
    if data_placement != "device":  # streamed blocks: a fixed width, or every member at once
        width = config.population_width
        return widths.WidthSearch([width if isinstance(width, int) else None], 0)
    step = int(pop.step)
    return widths.width_search(
        config.population_width,
        ctx.program,
        placement.place(pop, devices.mesh),
        placement.place(state.hparams, devices.mesh),
        train_data.arrays(step, 0),
        mesh=devices.mesh,
        member_steps=state.member_steps_left(step),
        chosen=chosen,
        quiet=ctx.quiet,
    )


class Checkpointer:
    """Saves the whole sweep state every `checkpoint_every` steps, at the end and when stopping
    (a `sweepjax.sweep.loop.Callback`)."""

    def __init__(self, ctx: Context, search: widths.WidthSearch):
        self.ctx, self.search = ctx, search

    def after_chunk(self, state: SweepState, pop: Population, chunk, final: bool) -> None:
        ctx, config = self.ctx, self.ctx.config
        every = config.checkpoint_every or config.eval_every
        if ctx.manager is None or not (chunk.step % every == 0 or final):
            return
        width = None if self.search.searching else self.search.width  # a resumed sweep keeps it
        meta = state.checkpoint_meta(chunk.step, ctx.data, width)
        curves = state.curves.arrays(len(state.table))
        saved = {"hparams": dict(state.hparams.values), "curves": curves}
        if isinstance(pop, list):  # a sweep in blocks: one population per structure
            saved["populations"] = {block_key(i): block for i, block in enumerate(pop)}
        else:
            saved["population"] = pop
        if state.kept_trial >= 0:
            saved["kept"] = state.kept
        checkpoint.save(ctx.manager, chunk.step, saved, meta)


def stop_if_asked(ctx: Context) -> None:
    """Raise `Interrupted` when a signal came before training (closing the manager removes
    the empty checkpoint folder this run created)."""
    if distributed.any_process(ctx.stop.received is not None):
        raise stopped_before_training(ctx.stop, ctx.config.out_dir)


def _timings(spent: Spent, compile_before: CompileCount, started: float) -> dict[str, Any]:
    """Compile and train seconds since `started`, the compute spent and the training speed."""
    compiling = compile_count() - compile_before
    train_seconds = max(time.perf_counter() - started - compiling.seconds, 1e-9)
    return {
        "compile_seconds": round(compiling.seconds, 3),
        "programs_compiled": compiling.programs - compiling.from_cache,
        "programs_from_cache": compiling.from_cache,
        "train_seconds": round(train_seconds, 3),
        "member_steps_per_second": round(spent.member_steps / train_seconds, 1),
        "chunk_seconds": spent.seconds,
    }


def stopped_before_training(stop: StopOnSignal, out_dir: str | None) -> Interrupted:
    """The `Interrupted` of a sweep that a signal stopped before its first chunk."""
    return Interrupted(
        f"stopped by {stop.received or 'a signal to another process'} before training; nothing "
        "was trained or written. Run the same command again to start (or continue) the sweep.",
        out_dir=out_dir,
    )


def _finish(ctx: Context, result: Result, state: SweepState, leaderboard: bool) -> Result:
    """Write the result files; raise `Interrupted` if a signal stopped training early."""
    out_dir = ctx.config.out_dir
    step = result.summary["steps_done"]
    if out_dir is not None and distributed.is_primary():
        write_result(result, out_dir)
    if not state.done:
        raise Interrupted(
            f"interrupted by {ctx.stop.received or 'a signal to another process'} at step {step}"
            f"{_of_steps(ctx.config)}; the checkpoint and partial results are in {out_dir}. "
            f"Resume with: sweepjax resume {out_dir}",
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


def _of_steps(config: Config) -> str:
    return "" if is_adaptive(config) else f" of {config.steps}"


def nbytes(tree: Any) -> int:
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
