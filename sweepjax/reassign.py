"""Actions on the population between chunks, applied as one jitted gather on the device.

A `sweep_state.Reassignment` says, for each slot of the next population, which slot of the
current one it takes its parameters, optimizer and model state from (`source`: itself to keep,
another slot to copy as PBT's exploit does, fewer or more slots to narrow or widen the
population), whether it starts a fresh trial (initialised from its own `seed` and
hyperparameters) and whether it runs. Hyperparameters are data, so nothing recompiles for new
values; one program is compiled per pair of population sizes, and no parameter visits the host.

>>> import numpy as np, jax
>>> from sweepjax.population import Program, init_population
>>> from sweepjax.models import model_of
>>> from sweepjax.optim import Optimizer
>>> from sweepjax.space import HParams
>>> program = Program(model_of({"name": "mlp", "hidden": [4]}), Optimizer("sgd", frozenset()),
...                   "constant", 2)
>>> hp = HParams({"learning_rate": np.full(2, 0.1, np.float32), "momentum": np.zeros(2, np.float32),
...               "seed": np.arange(2, dtype=np.int32), "start_step": np.zeros(2, np.int32)})
>>> x = np.zeros((2, 40), np.float32)
>>> pop = init_population(program, hp, x)
>>> copied = reassign(program, pop, hp, np.array([1, 1]), np.zeros(2, bool), np.ones(2, bool), x)
>>> bool((copied.params["Dense_0"]["kernel"][0] == copied.params["Dense_0"]["kernel"][1]).all())
True
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweepjax.layout import jit
from sweepjax.population import Population, Program, init_members, input_shapes
from sweepjax.space import HParams


def reassign(
    program: Program,
    pop: Population,
    hparams: HParams,
    source: np.ndarray,
    fresh: np.ndarray,
    running: np.ndarray,
    example_inputs: Any,
    mesh=None,
) -> Population:
    """The next population (see the module docstring).

    Args:
      program: the sweep's static structure.
      pop: the current population (`S` slots).
      hparams: the next population's hyperparameters (`S'` rows, on the device or the host).
      source: `[S']` int, the current slot each next slot copies.
      fresh: `[S']` bool, next slots initialised anew from `hparams` instead.
      running: `[S']` bool, next slots that train (the others stay frozen: `alive` False).
      example_inputs: one batch of model inputs (shapes only).
      mesh: the next population's mesh, or None.
    """
    treedef, shapes = input_shapes(example_inputs)
    apply = _compiled(program, treedef, shapes, mesh)
    arrays = jax.device_put((np.asarray(source, np.int32), np.asarray(fresh), np.asarray(running)))
    return apply(pop, hparams.values, *arrays)


@functools.lru_cache(maxsize=64)
def _compiled(program: Program, treedef: Any, shapes: tuple, mesh):
    def apply(pop: Population, hparams, source, fresh, running) -> Population:
        def take(leaf):
            return leaf[source]

        def pick(new, old):
            mask = fresh.reshape(fresh.shape + (1,) * (old.ndim - 1))
            return jnp.where(mask, new, old)

        kept = jax.tree.map(take, (pop.params, pop.model_state, pop.opt_state))
        born = init_members(program, hparams, treedef, shapes)
        params, model_state, opt_state = jax.tree.map(pick, born, kept)
        alive = jnp.where(fresh, True, take(pop.alive)) & running
        diverged_at = jnp.where(fresh, -1, take(pop.diverged_at))
        return Population(pop.step, params, model_state, opt_state, alive, diverged_at)

    return jit(apply, mesh)
