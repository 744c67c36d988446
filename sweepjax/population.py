"""The population: its state, the vmapped train step, the chunked scan, eval and quarantine.

All members share one program. A `Program` holds the static structure (model, optimizer
structure, schedule family, batch size); it keys the compiled functions, which are cached, so a
second sweep of the same structure compiles nothing. Every number that differs between members
rides in `HParams` and in the optimizer state.

A chunk is `jit(scan(K x vmap(member_step)))` with the population state donated: one device call
trains every member for K steps on one shared minibatch stream, and the host sees nothing until
it returns (invariant 5).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sweepjax.data import Augment, augment_batch, augment_key, chunk_indices
from sweepjax.models import Model
from sweepjax.optim import Optimizer
from sweepjax.schedules import learning_rate_at
from sweepjax.space import HParams


@flax.struct.dataclass
class Population:
    """State of every member, each leaf with a leading population axis (but `step`)."""

    step: jax.Array  # int32 scalar: steps taken, shared by all members
    params: Any
    model_state: Any  # non-parameter model collections (e.g. batch statistics), may be empty
    opt_state: Any  # optax state; injected hyperparameters included
    alive: jax.Array  # bool [P]: False once a member diverged
    diverged_at: jax.Array  # int32 [P]: the step of divergence, -1 while alive

    @property
    def size(self) -> int:
        return self.alive.shape[0]


@dataclasses.dataclass(frozen=True)
class Program:
    """The static structure of a sweep; equal programs share compiled functions."""

    model: Model
    optimizer: Optimizer
    schedule: str | tuple[str, ...]  # the family, or the families members choose from
    batch_size: int  # the shared batch; with `member_batch`, the largest member batch size
    dropout: bool = False  # the members' `dropout` hyperparameter reaches the model
    member_batch: bool = False  # member i averages its loss over the first `batch_size[i]` examples
    augment: Augment | None = None  # on-device augmentation of the shared batch, once per step


def _member_key(seed: jax.Array) -> jax.Array:
    return jax.random.key(seed.astype(jnp.uint32))


def init_population(program: Program, hparams: HParams, example_x: jax.Array) -> Population:
    """Initialise every member from its own `seed`, its optimizer state from its hyperparameters.

    Args:
      program: the sweep's static structure.
      hparams: per-member hyperparameters (leading axis P), with a `seed` column.
      example_x: one input batch (its values are not used; its shape is).

    Returns:
      The `Population` at step 0, all members alive.
    """
    return _init_population(
        program, hparams, jax.ShapeDtypeStruct(example_x.shape, example_x.dtype)
    )


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_population(
    program: Program, hparams: HParams, example: jax.ShapeDtypeStruct
) -> Population:
    x = jnp.zeros(example.shape, example.dtype)

    def init_member(hp: Mapping[str, jax.Array]):
        variables = program.model.init(_member_key(hp["seed"]), x)
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return params, model_state, program.optimizer.init(params, hp)

    params, model_state, opt_state = jax.vmap(init_member)(hparams.values)
    size = hparams.size
    return Population(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=opt_state,
        alive=jnp.ones((size,), bool),
        diverged_at=jnp.full((size,), -1, jnp.int32),
    )


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


def _member_step(program: Program, state: tuple, hp: Mapping[str, jax.Array], x, y, step):
    """One member's step; a member that is or turns non-finite keeps its last finite state."""
    params, model_state, opt_state, alive, diverged_at = state
    opt_state = Optimizer.set_learning_rate(opt_state, learning_rate_at(program.schedule, step, hp))
    rng = jax.random.fold_in(_member_key(hp["seed"]), step)

    def loss_fn(p):
        logits, new_model_state = program.model.apply(
            {"params": p, **model_state},
            x,
            train=True,
            rng=rng,
            dropout_rate=hp["dropout"] if program.dropout else None,
        )
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        if not program.member_batch:
            return losses.mean(), new_model_state
        weights = (jnp.arange(y.shape[0]) < hp["batch_size"]).astype(losses.dtype)
        return jnp.sum(losses * weights) / jnp.sum(weights), new_model_state

    (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, new_opt_state = program.optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = alive & jnp.isfinite(loss) & _all_finite(new_params)

    def keep(new, old):
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

    new_state = (
        keep(new_params, params),
        keep({**model_state, **new_model_state}, model_state),
        keep(new_opt_state, opt_state),
        ok,
        jnp.where(alive & ~ok, step, diverged_at),
    )
    return new_state, jnp.where(alive, loss, jnp.nan)


def _scan_chunk(program: Program, pop: Population, hparams: HParams, data_key, xs, batch_of):
    """Scan `vmap(member_step)` over `xs`; `batch_of(item)` gives the step's shared `(x, y)`."""
    vmapped = jax.vmap(functools.partial(_member_step, program), in_axes=(0, 0, None, None, None))

    def one_step(carry, item):
        state, step = carry
        x, y = batch_of(item)
        if program.augment is not None:  # once per step, before vmap: shared by every member
            x = augment_batch(program.augment, x, augment_key(data_key, step))
        state, loss = vmapped(state, hparams.values, x, y, step)
        return (state, step + 1), loss

    state = (pop.params, pop.model_state, pop.opt_state, pop.alive, pop.diverged_at)
    (state, step), losses = jax.lax.scan(one_step, (state, pop.step), xs)
    params, model_state, opt_state, alive, diverged_at = state
    return Population(step, params, model_state, opt_state, alive, diverged_at), losses


@functools.lru_cache(maxsize=64)
def make_train_chunk(program: Program, num_steps: int):
    """The compiled chunk `(population, hparams, train_x, train_y, data_key) -> (population, losses)`.

    The training set lives on the device; each step gathers its minibatch inside the chunk.
    `losses` is `[num_steps, P]` train loss, NaN for members not alive at that step. The
    population argument is donated. Cached: the same program and length give the same function.
    """

    def train_chunk(pop: Population, hparams: HParams, train_x, train_y, data_key):
        # The chunk's minibatch indices up front: one permutation per epoch, not per step.
        indices = chunk_indices(data_key, pop.step, num_steps, train_x.shape[0], program.batch_size)
        batch_of = lambda idx: (train_x[idx], train_y[idx])  # noqa: E731
        return _scan_chunk(program, pop, hparams, data_key, indices, batch_of)

    return jax.jit(train_chunk, donate_argnums=0)


@functools.lru_cache(maxsize=64)
def make_stream_chunk(program: Program, num_steps: int):
    """The compiled chunk `(population, hparams, block_x, block_y, data_key) -> (population, losses)`.

    The streaming variant of `make_train_chunk`: the chunk's minibatches arrive as one block,
    `block_x [num_steps, batch, ...]` and `block_y [num_steps, batch]`, gathered on the host
    (`sweepjax.stream`) with the same indices the device path computes, so both paths train
    on identical batches. The population argument is donated; cached like `make_train_chunk`.
    """

    def stream_chunk(pop: Population, hparams: HParams, block_x, block_y, data_key):
        batch_of = lambda item: item  # noqa: E731
        return _scan_chunk(program, pop, hparams, data_key, (block_x, block_y), batch_of)

    return jax.jit(stream_chunk, donate_argnums=0)


@functools.lru_cache(maxsize=64)
def make_evaluate(program: Program, eval_batch: int):
    """The compiled eval `(population, x, y) -> (loss [P], accuracy [P])` over a whole split.

    The split is processed in batches of `eval_batch` examples (the last one masked), so memory
    stays bounded for large splits.
    """

    def evaluate(pop: Population, x: jax.Array, y: jax.Array):
        n = x.shape[0]
        num_batches = -(-n // eval_batch)
        pad = num_batches * eval_batch - n
        xb = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(
            num_batches, eval_batch, *x.shape[1:]
        )
        yb = jnp.pad(y, (0, pad)).reshape(num_batches, eval_batch)
        mask = (jnp.arange(num_batches * eval_batch) < n).reshape(num_batches, eval_batch)

        def member_sums(params, model_state, xs, ys, ms):
            logits, _ = program.model.apply(
                {"params": params, **model_state}, xs, train=False, rng=jax.random.key(0)
            )
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, ys)
            correct = jnp.argmax(logits, -1) == ys
            return jnp.sum(losses * ms), jnp.sum(correct * ms)

        def one_batch(totals, batch):
            xs, ys, ms = batch
            sums = jax.vmap(member_sums, in_axes=(0, 0, None, None, None))(
                pop.params, pop.model_state, xs, ys, ms
            )
            return jax.tree.map(jnp.add, totals, sums), None

        zeros = (jnp.zeros(pop.size), jnp.zeros(pop.size))
        (loss_sum, correct_sum), _ = jax.lax.scan(one_batch, zeros, (xb, yb, mask))
        return loss_sum / n, correct_sum / n

    return jax.jit(evaluate)
