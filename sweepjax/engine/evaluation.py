"""Evaluation: every member's task metrics over a whole split, in padded batches, grouped and
placed as the members train (`sweepjax.engine.population.make_train_chunk`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from sweepjax.engine.layout import jit, map_groups, on_mesh, per_member
from sweepjax.engine.population import Population, Program, forward
from sweepjax.engine.tasks import reported, split_sums


def _eval_batches(split: Any, eval_batch: int) -> tuple:
    """A split as `[num_batches, eval_batch, ...]` batches, and the mask of the padding."""
    n = jax.tree.leaves(split)[0].shape[0]
    num_batches = -(-n // eval_batch)
    pad = num_batches * eval_batch - n

    def batched(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(num_batches, eval_batch, *a.shape[1:])

    return jax.tree.map(batched, split), batched(jnp.ones(n, bool))


def _evaluate_members(program: Program, eval_batch: int, width, params, model_state, split):
    """The task's reported metrics `{name: [P]}` of the members in `params` over `split`."""
    task = program.task

    def member_sums(params, model_state, batch, mask):
        outputs, _ = forward(
            program, params, model_state, task.inputs(batch), False, jax.random.key(0)
        )
        return split_sums(task, outputs, batch, mask)

    def group_sums(group):
        group_params, group_state = group
        size = jax.tree.leaves(group_params)[0].shape[0]
        vmapped = jax.vmap(member_sums)
        batches, masks = _eval_batches(split, eval_batch)

        def sums_of(item):
            return vmapped(group_params, group_state, *per_member(item, size))

        def one_batch(totals, item):
            return jax.tree.map(jnp.add, totals, sums_of(item)), None

        first = jax.tree.map(lambda a: a[0], (batches, masks))
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(sums_of, first))
        return jax.lax.scan(one_batch, zeros, (batches, masks))[0]

    sums = map_groups(group_sums, (params, model_state), width)
    count = jax.tree.leaves(split)[0].shape[0]
    means = jax.tree.map(lambda total: total / count, sums)
    return jax.vmap(functools.partial(reported, task))(means)


@functools.lru_cache(maxsize=64)
def make_evaluate(program: Program, eval_batch: int, width: int | None = None, mesh=None):
    """The compiled eval `(population, split) -> {metric: [P]}` over a whole split.

    The metrics are the task's reported ones (`sweepjax.engine.tasks.reported`). The split is
    processed in batches of `eval_batch` examples (the last one masked), so memory stays
    bounded for large splits; `width` and `mesh` mean what they mean in `make_train_chunk`
    (the members are grouped and placed as they train).
    """

    def evaluate(pop: Population, split: Any):
        run = on_mesh(
            functools.partial(_evaluate_members, program, eval_batch, width),
            mesh,
            in_specs=("split", "split", "shared"),
            out_specs="split",
        )
        return run(pop.params, pop.model_state, split)

    return jit(evaluate, mesh)
