"""Where the population runs: devices, meshes, memory planning.

A population of P members runs on D devices (the population axis split across a one-axis mesh,
each device training P / D members with no cross-device traffic inside a chunk), and on each
device as groups of W members (`sweepjax.engine.widths`): `vmap` inside a group, `lax.map` over
the groups (`population.train_members`). On the CPU a member's numbers are bitwise the same for
every W and P, and for every D >= 2 (one device and several agree to float32 rounding;
`sweepjax.engine.layout`).

Memory is planned before W is chosen: `check_fits` refuses a population whose state alone does
not fit, from shapes, and `widest_fitting` gives the largest W whose compiled step fits the
device with headroom (`plan_memory`, from XLA's `memory_analysis` of small compiled chunks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P  # noqa: N817

from sweepjax.engine import distributed
from sweepjax.engine.layout import MIN_WIDTH, cap_cpu_isa
from sweepjax.engine.population import Population, Program, init_population, make_train_chunk
from sweepjax.search.space import HParams

AXIS = "population"
HEADROOM = 0.75  # plan to use at most this fraction of a device's memory
PLAN_MIN_MEMBER_STEPS = 200_000  # shorter sweeps plan memory only when their state is large


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


def widest_fitting(
    program: Program,
    pop: Population,
    hparams: HParams,
    train: Any,
    *,
    devices: int,
    member_steps: int,
) -> int:
    """The widest group of each device's `P / devices` members that fits with headroom.

    Memory is planned (`plan_memory`) when the sweep is long (`PLAN_MIN_MEMBER_STEPS`) or its
    state large; otherwise every member of the share fits at once. Hosts may differ in memory;
    every process takes process 0's answer, so all of them compile the same programs.

    Raises:
      DoesNotFit: not even the narrowest group fits the device, with the estimate.

    >>> from sweepjax.runner.run import program_of, sample_hparams
    >>> from sweepjax.sweep.config import Config
    >>> config = Config(population=4, steps=10, batch_size=8)
    >>> program, hp = program_of(config), sample_hparams(config)
    >>> pop = init_population(program, hp, np.zeros((8, 40), np.float32))
    >>> widest_fitting(program, pop, hp, {}, devices=1, member_steps=40)
    4
    """
    share = pop.size // devices
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
    return fits


def _may_not_fit(pop: Population, share: int) -> bool:
    """A free first check: the resident state alone takes over a tenth of the device."""
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(pop) if np.ndim(x) >= 1)
    return state_bytes * share / max(pop.size, 1) > 0.1 * device_memory()


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"
