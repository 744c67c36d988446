"""Several hosts: one sweep over JAX's multi-controller runtime (`jax.distributed`).

Every process runs the same program on the same config and data. The population mesh spans
the devices of all processes (`placement.population_mesh` over `jax.devices()`), so each
process trains the members on its own devices, with no traffic between processes inside a
chunk. Between chunks the processes exchange only small host values: the per-member losses
and metrics (`to_host`), whether any of them was asked to stop (`any_process`), and choices
that must agree (`from_primary`). Checkpoints go to one Orbax directory that every process
reaches (a shared file system); each process writes its members' shards. Result files are
written by process 0 (`is_primary`).

With one process every function here is a cheap identity, so a single-host sweep is unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

FLAGS = ("--coordinator", "--num-processes", "--process-id")


def check_arguments(
    coordinator: str | None, num_processes: int | None, process_id: int | None, detect: bool
) -> bool:
    """Validate the launch flags; True when they ask for several processes.

    >>> check_arguments(None, None, None, detect=False)
    False
    >>> check_arguments("node0:1234", 2, 1, detect=False)
    True
    """
    values = dict(zip(FLAGS, (coordinator, num_processes, process_id), strict=True))
    given = [flag for flag, value in values.items() if value is not None]
    if detect and given:
        raise ValueError(
            f"{given[0]}: --distributed takes every setting from the cluster; give it alone, "
            f"or {', '.join(FLAGS)} without it."
        )
    if detect:
        return True
    if not given:
        return False
    if len(given) < len(FLAGS):
        missing = next(flag for flag in FLAGS if flag not in given)
        raise ValueError(
            f"{missing}: missing; {', '.join(FLAGS)} go together (or --distributed alone on a "
            "cluster JAX detects, such as SLURM)."
        )
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"--coordinator: {coordinator!r} is not HOST:PORT; allowed: the address of process "
            "0 and a free port (1 to 65535) that every process reaches, e.g. node0:1234."
        )
    if num_processes < 1:
        raise ValueError(f"--num-processes: {num_processes}; allowed: a positive integer.")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process-id: {process_id}; allowed: 0 to {num_processes - 1} "
            f"(--num-processes {num_processes})."
        )
    return True


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    detect: bool = False,
) -> bool:
    """Join the sweep's processes, before any other use of JAX; without arguments, do nothing.

    Args:
      coordinator: `HOST:PORT` of process 0, which every process reaches.
      num_processes: how many processes run the sweep.
      process_id: this process's index, 0 to `num_processes - 1`.
      detect: take all three from the cluster's environment instead (SLURM, Open MPI, ...; what
        `jax.distributed.initialize()` detects).

    Returns:
      True when this process joined a multi-process runtime.

    >>> initialize()  # one process: nothing to join
    False
    """
    if not check_arguments(coordinator, num_processes, process_id, detect):
        return False
    # Cross-process collectives on CPUs (the host reads between chunks) need an implementation.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def is_primary() -> bool:
    """Whether this process writes the result files (process 0).

    >>> is_primary()
    True
    """
    return jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """`tree` as numpy arrays; arrays spread over several processes are gathered whole.

    Every process must call it with the same tree (a collective when there are several).

    >>> to_host({"a": jax.numpy.arange(3)})["a"]
    array([0, 1, 2], dtype=int32)
    """
    leaves, treedef = jax.tree.flatten(tree)
    spread = [
        i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and not x.is_fully_addressable
    ]
    if spread:
        gathered = multihost_utils.process_allgather([leaves[i] for i in spread], tiled=True)
        for i, array in zip(spread, gathered, strict=True):
            leaves[i] = array
    return jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves])


def process_sum(tree: Any) -> Any:
    """The elementwise sum over processes of each process's numpy `tree` (a collective).

    >>> process_sum({"a": np.ones(2)})["a"]
    array([1., 1.])
    """
    if jax.process_count() == 1:
        return tree
    stacked = multihost_utils.process_allgather(tree)
    return jax.tree.map(lambda x: np.asarray(x).sum(0, dtype=x.dtype), stacked)


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process (e.g. a signal one of them received).

    >>> any_process(False)
    False
    """
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def from_primary(value: bool | int | float) -> Any:
    """Process 0's `value` on every process: choices that must agree (a width, a placement).

    >>> from_primary(3)
    3
    """
    if jax.process_count() == 1:
        return value
    return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value))).item()


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (after process 0 changed files)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
