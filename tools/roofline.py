"""The roofline of a member-step: the device's measured limits against XLA's cost of a step.

A training step of a small model moves more bytes than it multiplies: the optimizer reads and
writes every parameter, gradient and moment each step. Its attainable rate is the lower of two
bounds: the matmul peak (FLOP/s), and the memory bandwidth times the step's arithmetic
intensity (FLOPs per byte accessed). Both limits are measured here, on every device at once:

* `matmul_peak`: the best rate of a large float32 product (2048 on a CPU, 8192 on a GPU);
* `copy_bandwidth(nbytes)`: the best rate of `x + 1` over an array of `nbytes` per device,
  repeated inside one program, counting one read and one write of every byte. At a size
  larger than the caches it is the memory's bandwidth; at a row's working-set size it is the
  bandwidth of the level of the memory hierarchy that holds that working set.

`group_step_cost` takes FLOPs and bytes accessed per member-step from XLA's cost analysis of
one step of one group of `width` members, the engine's own program (a one-step chunk with one
group: XLA counts a loop's body once, so longer chunks would give the same figure).

    PYTHONPATH=. python tools/roofline.py           # this machine's peak and bandwidths
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sweepjax.engine import placement

DRAM_BYTES = {"cpu": 256 * 2**20, "gpu": 2 * 2**30}  # per device: well past every cache
MIN_TRAFFIC = 2 * 2**30  # bytes a bandwidth measurement moves per repeat, at least


def _all_devices(shape: tuple[int, ...], key: int) -> jax.Array:
    """A `[devices, *shape]` float32 array, one slice on each device."""
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    sharding = NamedSharding(mesh, PartitionSpec("d"))
    make = jax.jit(
        lambda: jax.random.normal(jax.random.key(key), (len(devices), *shape), jnp.float32),
        out_shardings=sharding,
    )
    return make()


def _best_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up off the clock
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(size: int | None = None, repeats: int = 5) -> float:
    """The best float32 FLOP/s of `size x size` products, one on every device at once."""
    if size is None:
        size = 2048 if jax.default_backend() == "cpu" else 8192
    a, b = _all_devices((size, size), 0), _all_devices((size, size), 1)
    product = jax.jit(jnp.matmul)  # batched over the devices' axis: each multiplies its own
    seconds = _best_seconds(product, a, b, repeats=repeats)
    return 2.0 * size**3 * a.shape[0] / seconds


def copy_bandwidth(nbytes: int | None = None, repeats: int = 5) -> float:
    """The best bytes/s of `x + 1` over `nbytes` per device (default: past every cache), every
    device at once; each pass reads and writes every byte."""
    nbytes = nbytes or DRAM_BYTES.get(jax.default_backend(), DRAM_BYTES["gpu"])
    size = max(nbytes // 4, 1024)
    passes = max(1, MIN_TRAFFIC // (2 * 4 * size))
    x = _all_devices((size,), 2)

    @jax.jit
    def stream(x):
        return jax.lax.fori_loop(0, passes, lambda _, y: y + 1.0, x)

    seconds = _best_seconds(stream, x, repeats=repeats)
    return 2.0 * 4 * size * x.shape[0] * passes / seconds


@dataclasses.dataclass(frozen=True)
class StepCost:
    """XLA's count for one member-step: FLOPs, bytes accessed, and the group's working set."""

    flops: float
    bytes_accessed: float
    working_set: int  # bytes of one group's step (arguments, outputs, temporaries) per device

    @property
    def intensity(self) -> float:
        return self.flops / max(self.bytes_accessed, 1.0)


def xla_cost(compiled: Any) -> tuple[float, float]:
    """FLOPs and bytes accessed of a compiled program, from XLA's cost analysis."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax returns one dict per device
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def group_step_cost(program: Any, hparams: Any, train: Any, width: int) -> StepCost:
    """The cost of one member-step of the engine at `width` members per group."""
    width = max(width, placement.MIN_WIDTH)
    compiled = placement.lower_one_step(program, hparams, train, width).compile()
    flops, bytes_accessed = xla_cost(compiled)
    memory = compiled.memory_analysis()
    data = sum(leaf.nbytes for leaf in jax.tree.leaves(train))  # an argument, read a batch a step
    working = 0 if memory is None else int(
        memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    ) - data  # fmt: skip
    return StepCost(flops / width, bytes_accessed / width, working)


def roofline(flops_per_second: float, cost: StepCost, peak: float, bandwidth: float) -> dict:
    """Which bound holds for a step of `cost`, the attainable rate, and the share reached."""
    memory_bound = bandwidth * cost.intensity
    attainable = min(peak, memory_bound)
    return {
        "bound": "compute" if peak <= memory_bound else "memory",
        "attainable_flops": attainable,
        "percent_of_roofline": 100.0 * flops_per_second / attainable if attainable else None,
    }


@functools.cache
def bandwidth_at(nbytes: int) -> float:
    """`copy_bandwidth` at `nbytes` rounded up to a power of two, measured once per size; a
    working set past the caches gets the bandwidth past the caches (`DRAM_BYTES`)."""
    past_caches = DRAM_BYTES.get(jax.default_backend(), DRAM_BYTES["gpu"])
    return copy_bandwidth(min(1 << max(int(nbytes) - 1, 1).bit_length(), past_caches))


def main() -> None:
    placement.use_cpu_cores()
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
    print(f"matmul peak: {matmul_peak() / 1e9:,.1f} GFLOP/s")
    for nbytes in (2**20, 2**23, DRAM_BYTES.get(jax.default_backend(), DRAM_BYTES["gpu"])):
        print(f"copy bandwidth at {nbytes / 2**20:g} MiB per device: "
              f"{copy_bandwidth(nbytes) / 1e9:,.1f} GB/s")  # fmt: skip


if __name__ == "__main__":
    main()
