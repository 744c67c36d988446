"""Where the training set lives: on the device, or streamed from the host one chunk at a time.

`device`: the whole training set is put on the device once and each chunk gathers its
minibatches inside the compiled program (`population.make_train_chunk`). `stream`: the set stays
in host memory; a background thread builds each chunk's `[K, batch, ...]` block with the same
indices the device path computes (`data.chunk_indices` of the data key and the chunk's first
step), puts it on the device while the current chunk trains, and the chunk takes the block
(`population.make_stream_chunk`). Both give identical batches for the same data seed, and the
stream is a pure function of the seed and the step, so a resumed sweep continues it exactly.

`auto` streams when the training arrays take more than half of the device's free memory: the
rest is left to the population state, the activations of every member, the evaluation splits
and the two blocks in flight. On a backend without memory statistics (the CPU) the device is
host memory, where the device path keeps a second copy of the training set next to the host's;
there `auto` streams when the set takes more than half of the host's available memory, or
`CPU_STREAM_BYTES` when that is unknown.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from sweepjax.engine import distributed
from sweepjax.engine.data import Dataset, chunk_indices, num_examples, take
from sweepjax.engine.placement import replicate
from sweepjax.engine.population import Program
from sweepjax.engine.settings import PLACEMENTS

FREE_FRACTION = 0.5  # `auto` streams a training set larger than this fraction of free memory
CPU_STREAM_BYTES = 4 << 30  # `auto`'s threshold where neither device nor host report free memory


def free_memory(device: Any) -> int | None:
    """Bytes free on `device` by its memory statistics (GPU, TPU); None where it reports none."""
    try:
        stats = device.memory_stats()
    except Exception:  # backends without statistics raise or return None
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _available_host_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def choose_placement(setting: str, train_bytes: int, device: Any | None = None) -> str:
    """`device` or `stream` for a training set of `train_bytes` under `data_placement=setting`.

    >>> choose_placement("stream", 10), choose_placement("auto", 10)
    ('stream', 'device')
    """
    if setting not in PLACEMENTS:
        raise ValueError(f"data_placement: unknown {setting!r}; allowed: {list(PLACEMENTS)}.")
    if setting != "auto":
        return setting
    device = device if device is not None else jax.devices()[0]
    free = free_memory(device)
    if free is None:
        host = _available_host_memory()
        limit = FREE_FRACTION * host if host else CPU_STREAM_BYTES
    else:
        limit = FREE_FRACTION * free
    # With several processes, process 0 decides: all of them must compile the same programs.
    return "stream" if distributed.from_primary(train_bytes > limit) else "device"


def chunk_plan(start: int, steps: int, eval_every: int, lazy: bool = False) -> Any:
    """The `(first step, length)` of every chunk from `start` to `steps`: chunks end on evals.

    A list, or with `lazy` an iterator.

    >>> chunk_plan(150, 400, 100)
    [(150, 50), (200, 100), (300, 100)]
    """

    def chunks():
        step = start
        while step < steps:
            length = min(eval_every - step % eval_every, steps - step)
            yield step, length
            step += length

    return chunks() if lazy else list(chunks())


@functools.lru_cache(maxsize=64)
def _indices_fn(num_steps: int, num_examples: int, batch_size: int):
    return jax.jit(
        lambda key, start: chunk_indices(key, start, num_steps, num_examples, batch_size)
    )


def host_block(train: Any, data_key: jax.Array, start: int, num_steps: int, batch_size: int) -> Any:
    """The minibatches of steps `start .. start + num_steps - 1`, gathered on the host.

    The indices are `data.chunk_indices`, as the device path computes them, so the block holds
    exactly the batches the device path would gather: every leaf of the `train` pytree as
    `[num_steps, batch, ...]` (a memory-mapped leaf is read only where the block needs it).
    """
    fn = _indices_fn(num_steps, num_examples(train), batch_size)
    return take(train, np.asarray(fn(data_key, np.int32(start))))


class _Failed(NamedTuple):
    error: BaseException


class PlanChanged(RuntimeError):
    """A chunk other than the plan's next was asked for."""


def aligned_plan(start: int, eval_every: int) -> Iterator[tuple[int, int]]:
    """Chunks from `start` that end on evals, without end: an adaptive sweep's likely plan.

    >>> import itertools
    >>> list(itertools.islice(aligned_plan(150, 100), 3))
    [(150, 50), (200, 100), (300, 100)]
    """
    return iter(chunk_plan(start, sys.maxsize, eval_every, lazy=True))


class Prefetcher:
    """Builds the blocks of `plan` in a background thread, at most `depth` ahead, on the device.

    `get(start, length)` returns the next block, which must be the plan's next chunk (else
    `PlanChanged`); an error in the thread is raised there. The plan may be endless. `close()` (or leaving the `with` block, also on an error or
    an interrupt) stops the thread and waits for it.
    """

    def __init__(
        self,
        make_block: Any,
        plan: Iterable[tuple[int, int]],
        depth: int = 1,
        device: Any | None = None,
    ):
        self._make_block, self._plan = make_block, iter(plan)
        self._device = device
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending: Any = None  # a block taken from the queue for a request off the plan
        self._thread = threading.Thread(target=self._work, name="sweepjax-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for start, length in self._plan:
                if self._stop.is_set():
                    return
                block = jax.device_put(self._make_block(start, length), self._device)
                if not self._put(((start, length), block)):
                    return
        except BaseException as err:  # handed to the consumer, raised in its thread
            self._put(_Failed(err))

    def get(self, start: int, length: int) -> Any:
        """The block of the chunk `(start, length)`, waiting for the thread if need be; a
        request off the plan (`PlanChanged`) leaves the plan's next block for the next call."""
        item = self._pending if self._pending is not None else self._take(start, length)
        self._pending = None
        if isinstance(item, _Failed):
            raise RuntimeError(
                f"prefetch: reading the chunk at step {start} failed"
            ) from item.error
        if item[0] != (start, length):
            self._pending = item
            raise PlanChanged(
                f"prefetch: chunk ({start}, {length}) requested, but the plan's next is {item[0]}."
            )
        return item[1]

    def _take(self, start: int, length: int) -> Any:
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise PlanChanged(
                        f"prefetch: chunk ({start}, {length}) is past the plan."
                    ) from None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread, drop the blocks it made, and wait for it to end."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TrainData:
    """The training arrays each chunk takes: the device-resident set, or the chunk's block.

    With placement `device`, `arrays` is the whole set for `population.make_train_chunk`; with
    `stream`, the chunk's prefetched `[K, batch, ...]` block for `population.make_stream_chunk`;
    either a pytree like the data set's examples.
    """

    def __init__(
        self,
        placement: str,
        dataset: Dataset,
        program: Program,
        data_key: jax.Array,
        plan,
        mesh: Mesh | None = None,
        eval_every: int | None = None,
    ):
        self.placement = placement
        self._mesh = mesh
        self._prefetcher: Prefetcher | None = None
        self._eval_every = eval_every
        if placement == "device":
            self._train = replicate(dataset.train, mesh)
        else:
            train, batch = dataset.train, program.batch_size
            self._make_block = lambda start, length: host_block(
                train, data_key, start, length, batch
            )
            self._prefetcher = Prefetcher(self._make_block, plan)

    def arrays(self, start: int, length: int) -> Any:
        """The examples the chunk of `length` steps from step `start` trains on.

        A chunk off the plan (an adaptive sweep's chunk cut short where a trial's budget ends)
        restarts the reader there, when the data reader was given `eval_every`.
        """
        if self._prefetcher is None:
            return self._train
        try:
            block = self._prefetcher.get(start, length)
        except PlanChanged:
            if self._eval_every is None:
                raise
            self._prefetcher.close()
            plan = itertools.chain(
                [(start, length)], aligned_plan(start + length, self._eval_every)
            )
            self._prefetcher = Prefetcher(self._make_block, plan)
            block = self._prefetcher.get(start, length)
        return replicate(block, self._mesh)

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()


@contextlib.contextmanager
def train_data(
    placement: str,
    dataset: Dataset,
    program: Program,
    data_key: jax.Array,
    plan: Iterable[tuple[int, int]],
    mesh: Mesh | None = None,
    eval_every: int | None = None,
) -> Iterator[TrainData]:
    """`TrainData` for `plan`'s chunks; a streaming reader is stopped on leaving, however left.

    With a `mesh`, every device of it gets the whole training set (or block). With
    `eval_every`, a chunk off the plan restarts the reader (`TrainData.arrays`).
    """
    data = TrainData(placement, dataset, program, data_key, plan, mesh, eval_every)
    try:
        yield data
    finally:
        data.close()
