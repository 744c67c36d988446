"""Where and how wide the population runs: devices, vectorization width, memory planning.

A population of P members runs on D devices (the population axis split across a one-axis mesh,
each device training P / D members with no cross-device traffic inside a chunk), and on each
device as groups of W members: `vmap` inside a group, `lax.map` over the groups
(`population.train_members`). On the CPU a member's numbers are bitwise the same for every W and
P, and for every D >= 2 (one device and several agree to float32 rounding; `sweepjax.engine.layout`).

`width_search` picks W:
  * memory first: the largest W whose compiled step fits the device with headroom
    (`plan_memory`, from XLA's `memory_analysis` of small compiled chunks);
  * then speed, on the CPU, where every width gives the same numbers: with
    `population_width="auto"`, the sweep's first chunks try the candidate widths (P, P/4,
    P/16, ..., 2 per device) on the actual model, each timed, and the fastest trains the rest
    (`WidthSearch`). Trying a width costs its compilation and what its chunk loses if it is
    slower, so the search goes on only while the remaining sweep pays for it. Choices are
    cached per program, population and device in the process. On a GPU or TPU, whose kernels
    may round differently at another width, `"auto"` is the widest width that fits, so the
    same command gives the same numbers whatever the machine's load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P  # noqa: N817
from tqdm.auto import tqdm

from sweepjax.engine import distributed
from sweepjax.engine.layout import MIN_WIDTH, cap_cpu_isa
from sweepjax.engine.population import Population, Program, init_population, make_train_chunk
from sweepjax.search.space import HParams

AXIS = "population"
HEADROOM = 0.75  # plan to use at most this fraction of a device's memory
TRY_BUDGET = 0.2  # try another width only if its trial costs at most this of the remaining time
TRIAL_COMPILE_SECONDS = 1.0  # a trial's least compilation (the last may have been compiled before)
PLAN_MIN_MEMBER_STEPS = 200_000  # shorter sweeps plan memory only when their state is large
_widths: dict[tuple, int] = {}


class DoesNotFit(ValueError):
    """Even one member's training step does not fit the device's memory."""


def cpu_cores() -> int:
    """The CPU cores this process may run on.

    >>> cpu_cores() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def use_cpu_cores(count: int | None = None) -> None:
    """Make JAX's CPU platform one device per core, so a population trains on every core.

    XLA runs a population's small matrix products on one thread, so on one CPU device a sweep
    uses one core however many there are; with one device per core the population is split
    across them (`population_mesh`) and the devices run at once (measured: 1.6x to 1.9x on two
    cores, `docs/performance.md`). It also caps XLA's CPU code at AVX2 on x86-64, which keeps
    a member's numbers the same at every width (`sweepjax.engine.layout.cap_cpu_isa`). Call it before
    the first JAX computation (the `sweepjax` command does, after `jax.distributed.initialize`
    where that is used); later it changes nothing. A user's own `XLA_FLAGS` with
    `--xla_force_host_platform_device_count=N` or `--xla_cpu_max_isa` win. Only the CPU
    platform is affected: a GPU stays one device per GPU.

    Args:
      count: devices to make; None: the cores this process may run on.

    >>> use_cpu_cores()  # at the top of a script, before JAX computes anything
    """
    if count is None:
        count = cpu_cores()
    if count < 1:
        raise ValueError(f"use_cpu_cores: count={count!r}; allowed: a positive integer or None")
    cap_cpu_isa()
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    with contextlib.suppress(RuntimeError):  # JAX has started: its devices are fixed
        jax.config.update("jax_num_cpu_devices", count)


def population_mesh(size: int, devices: list[jax.Device] | None = None) -> Mesh | None:
    """A one-axis mesh over the most devices (of `devices`, default all) that divide `size`.

    Returns None when that is one device (the program then runs unsharded).

    >>> population_mesh(8, jax.devices()[:1]) is None
    True
    """
    devices = list(jax.devices() if devices is None else devices)
    count = max(d for d in range(1, len(devices) + 1) if size % d == 0)
    if count == 1:
        return None
    return Mesh(np.array(devices[:count]), (AXIS,))


def sharding(leaf: Any, mesh: Mesh | None) -> jax.sharding.Sharding:
    """Where a population leaf lives: split on the mesh (scalars replicated), or the first
    device of this process without a mesh."""
    if mesh is None:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return NamedSharding(mesh, P(AXIS) if np.ndim(leaf) >= 1 else P())


def place(tree: Any, mesh: Mesh | None) -> Any:
    """Put `tree` on the mesh: leaves with a leading population axis split, scalars replicated.

    The leaves are host arrays, or arrays already on the mesh; with several processes, each
    holds the same host values and keeps its own members' share.
    """
    if mesh is None:
        return jax.device_put(tree)
    return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding(leaf, mesh)), tree)


def abstract(tree: Any, mesh: Mesh | None) -> Any:
    """Abstract arrays (`jax.ShapeDtypeStruct`) of `tree` placed as `place` would place them.

    A restore target: a checkpoint lands where this run trains, whatever wrote it.

    >>> abstract({"w": np.zeros((2, 3), np.float32)}, None)["w"].sharding.device_set == {
    ...     jax.local_devices()[0]}
    True
    """
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding(a, mesh)), tree
    )


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Put every leaf of `tree` whole on each device of the mesh (the training data)."""
    if mesh is None:
        return jax.device_put(tree)
    return jax.device_put(tree, NamedSharding(mesh, P()))


def device_memory(device: jax.Device | None = None) -> int:
    """Bytes the device can hold: its allocator's limit, else the host's physical memory."""
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # backends without allocator statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes of one device's share: `fixed + members * per_member` at width `width`.

    `state_per_member` is resident for every member (parameters, optimizer state); the
    working memory of a step (`temp_*`) grows with the width W only.
    """

    limit: int
    fixed: int  # data and the width-independent working memory
    state_per_member: int
    temp_per_member: int

    def bytes_at(self, members: int, width: int) -> int:
        return self.fixed + members * self.state_per_member + width * self.temp_per_member

    def max_population(self, width: int, devices: int = 1, shared: bool = False) -> int:
        """The most members `devices` devices hold at groups of `width`: the memory ceiling.

        `shared`: the devices share one memory of `limit` bytes (CPU devices, the host's).

        >>> plan = MemoryPlan(limit=1000, fixed=100, state_per_member=10, temp_per_member=5)
        >>> plan.max_population(width=2), plan.max_population(2, devices=2, shared=True)
        (64, 53)
        """
        pools = 1 if shared else devices
        room = HEADROOM * self.limit * pools - devices * (self.fixed + width * self.temp_per_member)
        return max(int(room // max(self.state_per_member, 1)), 0)

    def max_width(self, members: int) -> int:
        """The widest group that fits with headroom (0: not even the narrowest group fits)."""
        room = HEADROOM * self.limit - self.fixed - members * self.state_per_member
        if room < MIN_WIDTH * self.temp_per_member:
            return 0
        return int(min(members, room // max(self.temp_per_member, 1)))


def lower_one_step(
    program: Program, hparams: HParams, train: Any, members: int
) -> jax.stages.Lowered:
    """A one-step chunk of `members` members, lowered from shapes alone (no device work)."""

    def shape(a, rows=None):
        return jax.ShapeDtypeStruct(a.shape if rows is None else (rows, *a.shape[1:]), a.dtype)

    small = HParams({k: shape(v, members) for k, v in hparams.values.items()})
    data = jax.tree.map(shape, train)
    example = program.task.inputs(jax.tree.map(lambda a: shape(a, program.batch_size), train))
    pop = jax.eval_shape(lambda h: init_population(program, h, example), small)
    return make_train_chunk(program, 1).lower(pop, small, data, jax.random.key(0))


def _temp_bytes(program: Program, hparams: HParams, train: Any, members: int) -> int:
    analysis = lower_one_step(program, hparams, train, members).compile().memory_analysis()
    if analysis is None:
        return 0
    return int(getattr(analysis, "temp_size_in_bytes", 0))


def plan_memory(
    program: Program, pop: Population, hparams: HParams, train: Any, *, devices: int = 1
) -> MemoryPlan:
    """Estimate one device's memory for its `P / devices` members from small compiled steps.

    The working memory per member comes from the difference of XLA's `temp_size_in_bytes`
    between one-step chunks of `2 * MIN_WIDTH` members and of `MIN_WIDTH` (the narrowest
    group); the state per member is measured from `pop`.
    """
    size = pop.size
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(pop) if np.ndim(x) >= 1)
    small = _temp_bytes(program, hparams, train, MIN_WIDTH)
    large = _temp_bytes(program, hparams, train, 2 * MIN_WIDTH)
    per_member = max(large - small, 0) // MIN_WIDTH
    data = sum(leaf.nbytes for leaf in jax.tree.leaves(train))
    return MemoryPlan(
        limit=device_memory(),
        fixed=data + max(small - MIN_WIDTH * per_member, 0),
        state_per_member=-(-state_bytes // size),
        temp_per_member=max(per_member, 1),
    )


def check_fits(program: Program, hparams: HParams, example_inputs: Any, population: int) -> None:
    """Refuse a population whose state alone overflows its devices, before any array is made.

    A member's state (parameters, optimizer and model state, hyperparameters) is measured from
    shapes (`jax.eval_shape`: nothing compiles or is allocated) on the few members of `hparams`;
    a step's working memory comes on top, planned by `width_search`. A model that cannot take
    `example_inputs` (a pytree) is left to the sweep's data check.

    Raises:
      DoesNotFit: the state needs over `HEADROOM` of a device's memory (the host's, for CPU
        devices, which share it); the message gives the estimate and the population that fits.

    >>> from sweepjax.sweep.config import Config
    >>> from sweepjax.runner.run import program_of, sample_hparams
    >>> config = Config(population=4, steps=10, batch_size=8)
    >>> check_fits(program_of(config), sample_hparams(config), np.zeros((8, 40), np.float32), 4)
    """
    mesh = population_mesh(population)
    devices = 1 if mesh is None else mesh.size
    try:
        state = jax.eval_shape(lambda hp: init_population(program, hp, example_inputs), hparams)
    except Exception:  # a model that cannot take the data: the sweep's data check names it
        return
    per_member = -(-(_nbytes(state) + _nbytes(hparams)) // hparams.size)
    limit = device_memory()
    room = HEADROOM * limit
    if jax.devices()[0].platform == "cpu":
        members, most = population, int(room // per_member)
        where = f"in the host's memory (its {devices} CPU device(s) share it)"
    else:
        members, most = -(-population // devices), int(room // per_member) * devices
        where = f"on each of {devices} {jax.devices()[0].device_kind} device(s)"
    if members * per_member <= room:
        return
    raise DoesNotFit(
        f"population: {population} members need about {_mib(members * per_member)} {where} "
        f"for their state alone ({per_member:,} bytes a member: parameters, optimizer and "
        f"model state, hyperparameters), over {HEADROOM:.0%} of its {_mib(limit)}; allowed: "
        f"about {most:,} members here. Use fewer members, a smaller model, or more devices."
    )


def _nbytes(tree: Any) -> int:
    """Bytes of the leaves of `tree` with a population axis (arrays or their shapes)."""
    leaves = [x for x in jax.tree.leaves(tree) if np.ndim(x) >= 1]
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in leaves)


def _candidates(share: int, fits: int) -> list[int]:
    """Widths to try, widest first: the widest that fits, then a quarter each time, then the
    narrowest group (`MIN_WIDTH`).

    >>> _candidates(64, 64), _candidates(64, 20), _candidates(2, 2)
    ([64, 16, 4, 2], [20, 5, 2], [2])
    """
    widths = [max(min(share, fits), MIN_WIDTH)]
    while widths[-1] > MIN_WIDTH:
        widths.append(max(-(-widths[-1] // 4), MIN_WIDTH))
    return widths


class WidthSearch:
    """The vectorization width of a sweep, chosen while it trains.

    The sweep's first chunks run at the candidate widths, widest first, each timed (compilation
    excluded); the fastest is kept for the rest of the sweep. Members do not depend on the
    width, so no step is wasted: trying a width costs its compilation and the time the chunk
    loses if that width is slower. The search stops at a width twice as slow as the best (the
    narrower ones only got slower in every measurement), and does not try another width unless
    the sweep's remaining time at the best rate is at least `1 / TRY_BUDGET` times the last
    trial (its chunk, and its compilation or `TRIAL_COMPILE_SECONDS` if more). With several
    processes, process 0's timings decide.

    Args:
      widths: the candidates, widest first (None: every member at once, not searched).
      member_steps: the member-steps the sweep still has to train.
      key: where `_widths` remembers the choice for later sweeps of the same program.

    >>> search = WidthSearch([32, 8], member_steps=10**6)
    >>> search.width, search.searching
    (32, True)
    >>> search.record(seconds=1.0, compile_seconds=1.0, member_steps=10_000)
    >>> search.width  # the remaining 990,000 member-steps pay for trying 8
    8
    >>> search.record(seconds=0.5, compile_seconds=1.0, member_steps=10_000)
    >>> search.width, search.searching, search.rates
    (8, False, {32: 10000.0, 8: 20000.0})
    """

    def __init__(
        self, widths: list[int | None], member_steps: int, key: tuple | None = None
    ) -> None:
        self.width = widths[0]
        self.searching = len(widths) > 1
        self._untried = list(widths[1:])
        self._seconds: dict[int, float] = {}  # per member-step
        self._left = member_steps
        self._key = key

    @property
    def rates(self) -> dict[int, float]:
        """Member-steps per second of each width tried."""
        return {w: round(1 / s, 1) for w, s in self._seconds.items()}

    def record(self, seconds: float, compile_seconds: float, member_steps: int) -> None:
        """A chunk of `member_steps` at `self.width` trained in `seconds`, after compiling in
        `compile_seconds` (0 when it was compiled before)."""
        self._left -= member_steps
        if not self.searching:
            return
        self._seconds[self.width] = distributed.from_primary(seconds / member_steps)
        best = min(self._seconds, key=self._seconds.get)
        go_on = (
            bool(self._untried)
            and self._seconds[self.width] <= 2 * self._seconds[best]
            and TRY_BUDGET * self._left * self._seconds[best]
            >= max(compile_seconds, TRIAL_COMPILE_SECONDS) + seconds
        )
        if distributed.from_primary(go_on):
            self.width = self._untried.pop(0)
            return
        self.width, self.searching = best, False
        if self._key is not None:
            _widths[self._key] = best


def width_search(
    setting: int | str,
    program: Program,
    pop: Population,
    hparams: HParams,
    train: Any,
    *,
    mesh: Mesh | None = None,
    member_steps: int = 0,
    chosen: int | None = None,
    quiet: bool = True,
) -> WidthSearch:
    """The vectorization width W for each device: `setting` if an int, else searched (module).

    Args:
      setting: `config.population_width`: a positive int (members per group, capped at each
        device's share) or `"auto"`.
      program, pop, hparams, train: the sweep's, placed as it trains.
      mesh: the population mesh, or None for one device.
      member_steps: the member-steps still to train (whether trying widths and planning memory
        pay).
      chosen: the width an `"auto"` search chose earlier in this sweep (a resumed sweep keeps
        it, so it trains as it would have without the stop).
      quiet: no note on stderr about the memory.

    Returns:
      A `WidthSearch`: train each chunk at its `width` and `record` the chunk's time.

    Raises:
      DoesNotFit: not even the narrowest group fits the device, with the estimate.

    >>> import sweepjax
    >>> from sweepjax.runner.run import program_of, sample_hparams
    >>> config = sweepjax.Config(population=4, steps=10, batch_size=8)
    >>> program, hp = program_of(config), sample_hparams(config)
    >>> train = {"inputs": np.zeros((8, 40), np.float32), "targets": np.zeros(8, np.int32)}
    >>> pop = init_population(program, hp, train["inputs"])
    >>> width_search(2, program, pop, hp, train).width
    2
    """
    devices = 1 if mesh is None else mesh.size
    share = pop.size // devices
    # Hosts may differ in memory and timing; every process takes process 0's choices, so all
    # of them compile and run the same programs.
    plan = None
    if distributed.from_primary(member_steps >= PLAN_MIN_MEMBER_STEPS or _may_not_fit(pop, share)):
        plan = plan_memory(program, pop, hparams, train, devices=devices)
    fits = distributed.from_primary(share if plan is None else plan.max_width(share))
    if fits == 0:
        raise DoesNotFit(
            f"population: a group of {MIN_WIDTH} members needs about "
            f"{_mib(plan.bytes_at(share, MIN_WIDTH))} on "
            f"{jax.devices()[0].device_kind} with {share} members' state resident "
            f"({_mib(plan.state_per_member)} each), over {HEADROOM:.0%} of its "
            f"{_mib(plan.limit)}; use a smaller model or batch, fewer members per device, "
            "or more devices."
        )
    if setting != "auto":
        width = min(int(setting), share)
        if width > fits:
            _note(quiet, f"population_width={width} does not fit; using {fits}")
            width = fits
        return WidthSearch([width], member_steps)
    if chosen is not None:
        return WidthSearch([min(chosen, fits)], member_steps)
    if jax.devices()[0].platform != "cpu":  # kernels follow the width: the widest, every time
        return WidthSearch([fits], member_steps)
    key = (program, pop.size, devices, jax.devices()[0].device_kind, fits)
    if key in _widths:
        return WidthSearch([_widths[key]], member_steps)
    return WidthSearch(_candidates(share, fits), member_steps, key)


def _may_not_fit(pop: Population, share: int) -> bool:
    """A free first check: the resident state alone takes over a tenth of the device."""
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(pop) if np.ndim(x) >= 1)
    return state_bytes * share / max(pop.size, 1) > 0.1 * device_memory()


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _note(quiet: bool, message: str) -> None:
    if not quiet:  # through tqdm, so a progress bar on the same terminal is redrawn below it
        tqdm.write(f"sweepjax: {message}", file=sys.stderr)
