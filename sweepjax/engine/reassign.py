"""Actions on the population between chunks, applied as one jitted gather on the device.

A `sweepjax.sweep.slot_changes.Reassignment` says, for each slot of the next population, which slot of the
current one it takes its parameters, optimizer and model state from (`source`: itself to keep,
another slot to copy as PBT's exploit does, fewer or more slots to narrow or widen the
population), whether it starts a fresh trial (initialised from its own `seed` and
hyperparameters) and whether it runs. Hyperparameters are data, so nothing recompiles for new
values; a few small programs are compiled per pair of population sizes, and no parameter
visits the host.

>>> import numpy as np, jax
>>> from sweepjax.engine.population import Program, init_population
>>> from sweepjax.engine.models import model_of
>>> from sweepjax.engine.optim import Optimizer
>>> from sweepjax.search.space import HParams
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

from sweepjax.engine import placement
from sweepjax.engine.layout import jit
from sweepjax.engine.population import Population, Program, init_population
from sweepjax.search.space import HParams


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

    Fresh slots are initialised by `init_population`'s own program (compiled once per size:
    the sweep's first population compiled it), then one small jitted gather and select makes
    the next population.

    Args:
      program: the sweep's static structure.
      pop: the current population (`S` slots).
      hparams: the next population's hyperparameters (`S'` rows, on the host).
      source: `[S']` int, the current slot each next slot copies.
      fresh: `[S']` bool, next slots initialised anew from `hparams` instead.
      running: `[S']` bool, next slots that train (the others stay frozen: `alive` False).
      example_inputs: one batch of model inputs (shapes only).
      mesh: the population's mesh, or None.
    """
    placed = placement.place(hparams, mesh)  # fresh slots initialised where they train
    born = init_population(program, placed, example_inputs) if np.any(fresh) else None
    masks = (np.asarray(source, np.int32), np.asarray(fresh, bool), np.asarray(running, bool))
    if born is None:
        return _keep_or_copy(mesh)(pop, *placement.replicate(masks, mesh))
    born = placement.place(born, mesh)
    return _select(mesh)(pop, born, *placement.replicate(masks, mesh))


def _gather(pop: Population, source) -> tuple:
    return jax.tree.map(lambda leaf: leaf[source], (pop.params, pop.model_state, pop.opt_state))


@functools.lru_cache(maxsize=8)
def _keep_or_copy(mesh):
    def apply(pop: Population, source, fresh, running) -> Population:
        params, model_state, opt_state = _gather(pop, source)
        alive = pop.alive[source] & running
        return Population(pop.step, params, model_state, opt_state, alive, pop.diverged_at[source])

    return jit(apply, mesh)


@functools.lru_cache(maxsize=8)
def _select(mesh):
    def apply(pop: Population, born: Population, source, fresh, running) -> Population:
        def pick(new, old):
            mask = fresh.reshape(fresh.shape + (1,) * (old.ndim - 1))
            return jnp.where(mask, new, old)

        kept = _gather(pop, source)
        params, model_state, opt_state = jax.tree.map(
            pick, (born.params, born.model_state, born.opt_state), kept
        )
        alive = jnp.where(fresh, True, pop.alive[source]) & running
        diverged_at = jnp.where(fresh, -1, pop.diverged_at[source])
        return Population(pop.step, params, model_state, opt_state, alive, diverged_at)

    return jit(apply, mesh)
