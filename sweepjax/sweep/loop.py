"""The loop over chunks: advance the population, then let the policies and callbacks act.

`run_chunks` is the sweep: while a trial runs, it trains one chunk (`advance`: the only
compiled step), evaluates, hands the chunk to the `SweepState` (which records it and asks the
scheduler and the searcher), applies their decisions on the device (`sweepjax.engine.reassign`), and
then calls every callback: the checkpointer, the progress bar, the TensorBoard log and the
folder lock. Adding a callback is a new object with `after_chunk`, not an edit of the loop.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from sweepjax.engine import distributed, placement, stream, widths
from sweepjax.engine.compiling import compile_count
from sweepjax.engine.evaluation import make_evaluate
from sweepjax.engine.population import Population, make_stream_chunk, make_train_chunk
from sweepjax.engine.reassign import reassign
from sweepjax.sweep.sweep_state import Chunk, SweepState


class Callback(Protocol):
    """Acts after each chunk, once the sweep state has taken its decisions."""

    def after_chunk(self, state: SweepState, pop: Population, chunk: Chunk, final: bool) -> None:
        """`final`: the sweep ends (or stops on a signal) after this chunk."""


@dataclasses.dataclass
class Spent:
    """What this run of the loop spent: steps trained by running trials, and the wall seconds
    since it began at each chunk's end."""

    member_steps: int = 0
    seconds: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Pace:
    """What the loop measured of its chunks: the seconds a slot-step takes, and what
    compiling a population size's programs costs (a first guess until one is measured)."""

    slot_step_seconds: float = 0.0
    compile_seconds: float = 2.0
    sizes: set[int] = dataclasses.field(default_factory=set)  # population sizes seen

    def record(self, seconds: float, compiling: float, slot_steps: int, size: int) -> None:
        """A chunk of `slot_steps` took `seconds` and `compiling` seconds of compilation."""
        if compiling > 0 and size not in self.sizes:
            self.compile_seconds = compiling
        elif compiling == 0:
            self.slot_step_seconds = seconds / max(slot_steps, 1)
        self.sizes.add(size)

    def narrow_pays(self, size: int, narrower: int, steps_left: int) -> bool:
        """Whether running `narrower` slots for `steps_left` steps saves more than compiling
        its programs costs (nothing, where that size ran before: its programs are cached)."""
        saved = (size - narrower) * steps_left * self.slot_step_seconds
        return saved > (0.0 if narrower in self.sizes else self.compile_seconds)


@dataclasses.dataclass
class Devices:
    """Where the population trains and what it evaluates on, fixed for the whole sweep."""

    program: Any
    mesh: Any
    val: Any
    test: Any
    example_x: Any
    eval_batch: int

    @property
    def count(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def metrics(self, pop: Population, split: Any, width: int | None) -> dict[str, jax.Array]:
        """The task's metrics of every slot over `split`, on the device."""
        return make_evaluate(self.program, self.eval_batch, width, self.mesh)(pop, split)

    def evaluate(self, pop: Population, split: Any, width: int | None) -> dict[str, np.ndarray]:
        """`metrics`, on the host."""
        return distributed.to_host(self.metrics(pop, split, width))


def run_chunks(
    state: SweepState,
    pop: Population,
    devices: Devices,
    train_data: stream.TrainData,
    search: widths.WidthSearch,
    callbacks: list[Callback],
    stopping: Any,
    quiet: bool,
) -> tuple[Population, Spent]:
    """Train until no trial runs, or until `stopping()` says a signal came.

    Returns the population after the last chunk and the compute spent.
    """
    device_hparams = placement.place(state.hparams, devices.mesh)
    pop = placement.place(pop, devices.mesh)
    feed = (train_data, search, jax.random.key(state.config.seed))
    pace = Pace()

    def one_chunk(step: int, length: int) -> tuple[Population, Chunk]:
        nonlocal pop, device_hparams
        pop, chunk = _advance(devices, pop, device_hparams, feed, length, (pace, quiet))
        pop, device_hparams = _decide(state, pop, device_hparams, chunk, devices, pace)
        return pop, chunk

    spent = drive(state, int(pop.step), one_chunk, callbacks, stopping)
    return pop, spent


def drive(
    state: SweepState,
    step: int,
    one_chunk: Callable[[int, int], tuple[Any, Chunk]],
    callbacks: list[Callback],
    stopping: Callable[[], bool],
) -> Spent:
    """The loop over chunks from global `step`: while a trial runs, `one_chunk(step, length)`
    trains the next chunk and applies the decisions after it (returning the population, for
    the callbacks, and the chunk); then every callback acts. Stops after the chunk in which
    `stopping()` said a signal came (to any process). Returns the compute spent."""
    spent, began = Spent(), time.perf_counter()
    while not state.done:
        length = state.next_length(step)
        spent.member_steps += int(state.running_slots().sum()) * length
        state.count_slot_steps(length)
        pop, chunk = one_chunk(step, length)
        step = chunk.step
        stop = distributed.any_process(stopping())
        spent.seconds.append(round(time.perf_counter() - began, 3))
        for callback in callbacks:
            callback.after_chunk(state, pop, chunk, final=stop or state.done)
        if stop:
            break
    return spent


def _decide(state: SweepState, pop: Population, device_hparams, chunk: Chunk, devices, pace):
    """Between two chunks: the state records the chunk and decides (scheduler, searcher,
    size); the trials that ended are measured on the test split first; the decisions are
    applied on the device. Returns the population and its hyperparameters, on the device."""
    exploits = state.apply_decisions(state.observe(chunk), chunk.step)
    leaving = state.leaving()
    test = devices.evaluate(pop, devices.test, chunk.width) if leaving.any() else None
    state.end_trials(chunk, test)
    _keep_best(state, pop, leaving)
    change = state.plan(chunk.step, exploits, devices.count, pace.narrow_pays)
    check_agreement(state, chunk.step)
    if change is None or not change.changes:
        return pop, device_hparams
    pop = reassign(
        devices.program,
        pop,
        change.hparams,
        change.source,
        change.fresh,
        change.running,
        devices.example_x,
        devices.mesh,
    )
    return placement.place((pop, change.hparams), devices.mesh)


def check_agreement(state: SweepState, step: int) -> None:
    """Every process decided from the same gathered metrics and seeds; refuse to go on if one
    holds other trials than process 0 (whose decisions the checkpoint records)."""
    held = np.asarray([*state.slot_trials, len(state.table)], np.int64).tobytes()
    mine = zlib.crc32(held) % (2**31 - 1)  # an int32: JAX's broadcast keeps 32 bits
    if distributed.from_primary(mine) != mine:
        raise RuntimeError(
            f"step {step}: this process's scheduler and searcher decided otherwise than process "
            "0's; their state must not depend on the process (a searcher seeded by the clock?)."
        )


def _keep_best(state: SweepState, pop: Population, leaving: np.ndarray) -> None:
    """Copy the variables of a new best finished trial to the host before its slot is reused."""
    slot = state.to_keep(leaving)
    if slot is None:
        return
    variables = {"params": pop.params, **pop.model_state}
    state.keep(slot, distributed.to_host(jax.tree.map(lambda leaf: leaf[slot], variables)))


def _advance(devices: Devices, pop, device_hparams, feed, length: int, watch) -> tuple:
    """One chunk of `length` steps and the validation metrics after it, on the host; its
    speed goes to the `Pace` (and to the width search while it searches)."""
    (train_data, search, data_key), (pace, quiet) = feed, watch
    step = int(pop.step)
    make_chunk = make_train_chunk if train_data.placement == "device" else make_stream_chunk
    train = train_data.arrays(step, length)
    compiled_before, began = compile_count().seconds, time.perf_counter()
    pop, losses = make_chunk(devices.program, length, search.width, devices.mesh)(
        pop, device_hparams, train, data_key
    )
    if search.searching:  # time this width's chunk, its compilation apart
        _time_width(search, losses, began, compiled_before, pop.size * length, quiet)
    val = devices.metrics(pop, devices.val, search.width)
    losses, val, alive, diverged_at = distributed.to_host((losses, val, pop.alive, pop.diverged_at))
    compiling = compile_count().seconds - compiled_before
    pace.record(time.perf_counter() - began - compiling, compiling, pop.size * length, pop.size)
    return pop, Chunk(int(pop.step), losses, val, alive, diverged_at, search.width)


def _time_width(
    search, losses, began: float, compiled_before: float, member_steps: int, quiet: bool
) -> None:
    """Record the speed of the width just tried; say which won once the search ends."""
    jax.block_until_ready(losses)
    compiling = compile_count().seconds - compiled_before
    seconds = time.perf_counter() - began - compiling
    search.record(seconds, compiling, member_steps)
    if not search.searching and not quiet:
        tried = ", ".join(f"{w}: {r:,.0f}" for w, r in search.rates.items())
        # through tqdm, so a progress bar on the same terminal is redrawn below the line
        tqdm.write(
            f"sweepjax: population width {search.width} (member-steps/s by width: {tried})",
            file=sys.stderr,
        )
