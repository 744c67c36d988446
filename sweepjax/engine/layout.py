"""How a population's members are laid out in one program: groups, devices, compiler options.

A member's arithmetic does not depend on the layout (invariant 2), so a sweep reruns bitwise on
any width and device count, and a member trained alone reproduces its row:

  * every group of members `vmap`s over its own copy of the shared batch (`per_member`), so
    each member's products are the batched products of its own shapes, never one wider
    product shared with its neighbours, whose blocking would follow the population's size;
  * a group has at least `MIN_WIDTH` members: XLA compiles a group of one (its unit axis
    dropped) to another program, with its products in another order;
  * on the CPU the programs are compiled without XLA's library fusions (`compiler_options`),
    which move an operation into a library kernel, or not, by the size of the whole operation;
  * on x86-64 CPUs XLA's generated code is capped at AVX2 (`cap_cpu_isa`): with AVX-512 it
    handles a group narrower than a vector register with masked instructions that sum in
    another order (measured on an AMD Zen 5: 1 ulp in some members at widths 2 and 3 against
    4 and 8), at no measured cost in speed (`docs/performance.md`).

On a GPU the kernels chosen for a batched product may follow the batch size, so there members
agree to float32 rounding, not bitwise.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

import jax
import jax.numpy as jnp

try:
    from jax import shard_map
except ImportError:  # older jax
    from jax.experimental.shard_map import shard_map

MIN_WIDTH = 2  # the narrowest group: one member alone compiles to a different program
# XLA:CPU options that keep each member's arithmetic the same whatever the population's size:
# no YNNPACK / XNNPACK fusions, which move ops into library kernels by the operation's size.
_CPU_LAYOUT_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_experimental_xnn_fusion_type": "",
}

CPU_ISA_FLAG = "--xla_cpu_max_isa=AVX2"  # see the module docstring


def cap_cpu_isa() -> None:
    """Cap XLA's CPU code at AVX2 on x86-64 (`CPU_ISA_FLAG`), for JAX's CPU backend to come.

    The one environment variable sweepjax sets, on purpose for the whole process: XLA reads
    `XLA_FLAGS` once, when JAX starts its backend, so the flag is added in this process before
    JAX's first computation (`sweepjax.engine.placement.use_cpu_cores` calls it); later it
    changes nothing XLA does. Calling it again leaves the flags as they are, and a user's own
    `--xla_cpu_max_isa` wins. Other machines' CPUs are left alone.

    >>> cap_cpu_isa()  # at the top of a script, before JAX computes anything
    >>> flags = os.environ.get("XLA_FLAGS")
    >>> cap_cpu_isa()
    >>> os.environ.get("XLA_FLAGS") == flags
    True
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_max_isa" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_ISA_FLAG}".strip()


def per_member(tree: Any, width: int) -> Any:
    """Each of `width` members its own copy of the shared `tree` (see the module docstring).

    >>> per_member(jnp.zeros((3, 5)), 4).shape
    (4, 3, 5)
    """
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (width, *leaf.shape)), tree)


def group_layout(size: int, width: int | None) -> tuple[int, int]:
    """`(groups, width)` of `size` members run `width` at a time (None: all at once).

    The width is at least `MIN_WIDTH`: a population of one runs beside a copy of itself.

    >>> group_layout(8, None), group_layout(8, 3), group_layout(8, 1), group_layout(1, None)
    ((1, 8), (3, 3), (4, 2), (1, 2))
    """
    width = size if width is None else min(width, size)
    width = max(width, MIN_WIDTH)
    return -(-size // width), width


def _grouped(tree: Any, groups: int, width: int) -> Any:
    """`[P, ...]` leaves to `[groups, width, ...]`, padding with copies of member 0."""

    def split(leaf):
        pad = groups * width - leaf.shape[0]
        if pad:
            leaf = jnp.concatenate([leaf, jnp.repeat(leaf[:1], pad, axis=0)])
        return leaf.reshape(groups, width, *leaf.shape[1:])

    return jax.tree.map(split, tree)


def map_groups(fn: Any, tree: Any, width: int | None) -> Any:
    """`fn` over the members of `tree` (leading axis P), `width` at a time (`group_layout`).

    `fn` takes and returns pytrees whose leaves lead with the group's member axis. One group is
    one call; several run one after another (`lax.map`), each keeping its state in cache.
    """
    size = jax.tree.leaves(tree)[0].shape[0]
    groups, width = group_layout(size, width)
    grouped = _grouped(tree, groups, width)
    if groups == 1:
        out = fn(jax.tree.map(lambda leaf: leaf[0], grouped))
    else:
        out = jax.tree.map(lambda leaf: leaf.reshape(-1, *leaf.shape[2:]), jax.lax.map(fn, grouped))
    return jax.tree.map(lambda leaf: leaf[:size], out)


def on_mesh(fn: Any, mesh, in_specs: tuple, out_specs: Any) -> Any:
    """`fn` split across `mesh` by `shard_map` (specs: "split" or "shared"), or `fn` itself."""
    if mesh is None:
        return fn
    from jax.sharding import PartitionSpec as P  # noqa: N817

    spec = {"shared": P(), "split": P("population"), "split_1": P(None, "population")}
    return shard_map(
        fn,
        mesh=mesh,
        in_specs=tuple(spec[s] for s in in_specs),
        out_specs=jax.tree.map(spec.get, out_specs),
        check_vma=False,  # members never communicate; the check trips on `lax.switch` in vmap
    )


@functools.lru_cache(maxsize=8)
def compiler_options(platform: str) -> dict[str, Any]:
    """XLA options for the population's programs on `platform` (see the module docstring).

    Those this XLA does not know are left out.

    >>> compiler_options("gpu")
    {}
    """
    if platform != "cpu":
        return {}
    options = {}
    for name, value in _CPU_LAYOUT_OPTIONS.items():
        try:
            jax.jit(lambda a: a + 1, compiler_options={name: value}).lower(1.0).compile()
            options[name] = value
        except Exception:  # an older XLA without this option
            continue
    return options


def jit(fn: Any, mesh, **kwargs) -> Any:
    devices = jax.devices() if mesh is None else mesh.devices.flat
    return jax.jit(fn, compiler_options=compiler_options(devices[0].platform), **kwargs)
