"""Where and how wide the population runs: devices, vectorization width, memory planning.

A population of P members runs on D devices (the population axis split across a one-axis mesh,
each device training P / D members with no cross-device traffic inside a chunk), and on each
device as groups of W members: `vmap` inside a group, `lax.map` over the groups
(`population.train_members`). The result never depends on D or W (members are independent).

`choose_width` picks W:
  * memory first: the largest W whose compiled step fits the device with headroom
    (`plan_memory`, from XLA's `memory_analysis` of small compiled chunks);
  * then speed: with `population_width="auto"`, a short probe times a few steps of each
    candidate width (P, P/2, P/4, ... while it keeps getting faster) on the actual device and
    model, and keeps the fastest. A sweep too short to pay for the probe's compilations
    (fewer than `PROBE_MIN_MEMBER_STEPS` member-steps) runs fully vectorized, which measured
    fastest for the small models such short sweeps train. Choices are cached per program,
    population and device in the process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P  # noqa: N817

from sweepjax import distributed
from sweepjax.population import Population, Program, init_population, make_train_chunk
from sweepjax.space import HParams

AXIS = "population"
HEADROOM = 0.75  # plan to use at most this fraction of a device's memory
PROBE_MIN_MEMBER_STEPS = 200_000  # shorter sweeps skip the width probe
PROBE_STEPS = 20
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
    cores, `docs/performance.md`). Call it before the first JAX computation (the `sweepjax`
    command does, after `jax.distributed.initialize` where that is used); later it changes
    nothing. A user's `XLA_FLAGS=--xla_force_host_platform_device_count=N` wins. Only the CPU
    platform is affected: a GPU stays one device per GPU.

    Args:
      count: devices to make; None: the cores this process may run on.

    >>> use_cpu_cores()  # at the top of a script, before JAX computes anything
    """
    if count is None:
        count = cpu_cores()
    if count < 1:
        raise ValueError(f"use_cpu_cores: count={count!r}; allowed: a positive integer or None")
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

    def max_width(self, members: int) -> int:
        """The widest group that fits with headroom (0: not even one member fits)."""
        room = HEADROOM * self.limit - self.fixed - members * self.state_per_member
        if room < self.temp_per_member:
            return 0
        return int(min(members, room // max(self.temp_per_member, 1)))


def _temp_bytes(program: Program, hparams: HParams, train_x, train_y, members: int) -> int:
    small = HParams({k: v[:members] for k, v in hparams.values.items()})
    pop = jax.eval_shape(
        lambda h: init_population(program, h, train_x[: program.batch_size]), small
    )
    compiled = (
        make_train_chunk(program, 1)
        .lower(pop, small, train_x, train_y, jax.random.key(0))
        .compile()
    )
    analysis = compiled.memory_analysis()
    if analysis is None:
        return 0
    return int(getattr(analysis, "temp_size_in_bytes", 0))


def plan_memory(
    program: Program, pop: Population, hparams: HParams, train_x, train_y, *, devices: int = 1
) -> MemoryPlan:
    """Estimate one device's memory for its `P / devices` members from small compiled steps.

    The working memory per member is the difference of XLA's `temp_size_in_bytes` between
    one-step chunks of two members and of one; the state per member is measured from `pop`.
    """
    size = pop.size
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(pop) if np.ndim(x) >= 1)
    two = min(2, size)
    t1 = _temp_bytes(program, hparams, train_x, train_y, 1)
    t2 = _temp_bytes(program, hparams, train_x, train_y, two) if two == 2 else t1
    per_member = max(t2 - t1, 0) if two == 2 else t1
    data = train_x.nbytes + train_y.nbytes
    return MemoryPlan(
        limit=device_memory(),
        fixed=data + max(t1 - per_member, 0),
        state_per_member=-(-state_bytes // size),
        temp_per_member=max(per_member, 1),
    )


def _candidates(members: int, limit: int) -> list[int]:
    widths, w = [], members
    while w >= 1:
        if w <= limit:
            widths.append(w)
        if w == 1:
            break
        w = -(-w // 2)
    return widths


def _probe(program, width, mesh, pop, hparams, train_x, train_y, data_key) -> float:
    """Seconds per step of `width`, the best of three timed runs after a warm-up."""
    fn = make_train_chunk(program, PROBE_STEPS, width, mesh)
    best = math.inf
    for attempt in range(4):
        copy = jax.tree.map(jnp.copy, pop)  # the chunk donates its population
        start = time.perf_counter()
        jax.block_until_ready(fn(copy, hparams, train_x, train_y, data_key))
        if attempt:
            best = min(best, time.perf_counter() - start)
    return best / PROBE_STEPS


def choose_width(
    setting: int | str,
    program: Program,
    pop: Population,
    hparams: HParams,
    train_x: jax.Array,
    train_y: jax.Array,
    data_key: jax.Array,
    *,
    mesh: Mesh | None = None,
    member_steps: int = 0,
    quiet: bool = True,
) -> int:
    """The vectorization width W for each device: `setting` if an int, else probed (see module).

    Args:
      setting: `config.population_width`: a positive int (members per group, capped at each
        device's share) or `"auto"`.
      program, pop, hparams, train_x, train_y, data_key: the sweep's, placed as it trains.
      mesh: the population mesh, or None for one device.
      member_steps: the member-steps still to train (decides whether the probe pays).
      quiet: no note on stderr about the choice.

    Raises:
      DoesNotFit: not even one member fits the device, with the estimate.
    """
    devices = 1 if mesh is None else mesh.size
    share = pop.size // devices
    # Hosts may differ in memory and timing; every process takes process 0's choices, so all
    # of them compile and run the same programs.
    plan = None
    probe = setting == "auto" and member_steps >= PROBE_MIN_MEMBER_STEPS
    if distributed.from_primary(probe or _may_not_fit(pop, share)):
        plan = plan_memory(program, pop, hparams, train_x, train_y, devices=devices)
    fits = distributed.from_primary(share if plan is None else plan.max_width(share))
    if fits == 0:
        raise DoesNotFit(
            f"population: one member needs about {_mib(plan.bytes_at(share, 1))} on "
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
        return width
    if member_steps < PROBE_MIN_MEMBER_STEPS or share < 2:
        return fits
    key = (program, pop.size, devices, jax.devices()[0].device_kind, fits)
    if key not in _widths:
        rates = {}
        for width in _candidates(share, fits):
            rates[width] = distributed.from_primary(
                _probe(program, width, mesh, pop, hparams, train_x, train_y, data_key)
            )
            if rates[width] > min(rates.values()) / 0.5:
                break  # much slower than the best: narrower widths will not win
        _widths[key] = min(rates, key=rates.get)
        _note(
            quiet,
            "population width "
            + ", ".join(f"{w}: {share / s:,.0f} member-steps/s" for w, s in rates.items())
            + f"; chose {_widths[key]}",
        )
    return _widths[key]


def _may_not_fit(pop: Population, share: int) -> bool:
    """A free first check: the resident state alone takes over a tenth of the device."""
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(pop) if np.ndim(x) >= 1)
    return state_bytes * share / max(pop.size, 1) > 0.1 * device_memory()


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _note(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"sweepjax: {message}", file=sys.stderr)
