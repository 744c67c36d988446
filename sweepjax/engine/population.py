"""The population: its state, the vmapped train step, the chunked scan and quarantine.

All members share one program. A `Program` holds the static structure (model, optimizer
structure, schedule family, batch size); it keys the compiled functions, which are cached, so a
second sweep of the same structure compiles nothing. Every number that differs between members
rides in `HParams` and in the optimizer state.

A chunk is `jit(scan(K x vmap(member_step)))` with the population state donated: one device call
trains every member for K steps on one shared minibatch stream, and the host sees nothing until
it returns (invariant 5). A member's arithmetic does not depend on the layout
(`sweepjax.engine.layout`). `sweepjax.engine.evaluation` evaluates the members on a split.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sweepjax.engine.adapters import Model
from sweepjax.engine.data import Augment, augment_batch, augment_key, chunk_indices
from sweepjax.engine.layout import group_layout, jit, map_groups, on_mesh, per_member
from sweepjax.engine.optim import Optimizer
from sweepjax.engine.schedules import hyperparameters_at, learning_rate_at
from sweepjax.engine.tasks import TASKS, Task, check_task
from sweepjax.search.space import HParams


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


class Members(NamedTuple):
    """The members' part of a `Population` (all of it but the shared `step`), as the compiled
    chunk carries it: every leaf has the population axis, so it splits across devices."""

    params: Any
    model_state: Any
    opt_state: Any
    alive: jax.Array
    diverged_at: jax.Array


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
    compute_dtype: str = "float32"  # the forward/backward dtype; parameters stay float32
    task: Task = TASKS["classification"]  # the loss and the metrics


def _cast_floats(tree: Any, dtype: Any) -> Any:
    def cast(leaf):
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


def forward(program: Program, params, model_state, x, train: bool, rng, dropout_rate=None):
    """One member's `(logits, updated model state)` in the program's compute dtype.

    With `compute_dtype="bfloat16"` (mixed precision) the parameters and inputs are cast down
    for the model, and the logits and the updated model state (batch statistics, say; none in
    eval) come back in float32, as `init_population` made the state, so the loss, the gradients
    reaching the float32 parameters and the optimizer stay in float32.
    """
    if program.compute_dtype != "float32":
        params, x = _cast_floats((params, x), program.compute_dtype)
    logits, new_state = program.model.apply(
        {"params": params, **model_state}, x, train=train, rng=rng, dropout_rate=dropout_rate
    )
    if program.compute_dtype != "float32":
        logits, new_state = _cast_floats((logits, new_state), jnp.float32)
    return logits, new_state


def program_metrics(program: Program, batch: Any) -> tuple[str, ...]:
    """The task's reported metric names on the program's model, from one `batch` (shapes only).

    Raises:
      ValueError: the task does not fit the model's outputs and the batch (`tasks.check_task`).
    """
    outputs = jax.eval_shape(lambda b: program.model.apply_fresh(program.task.inputs(b))[0], batch)
    return check_task(program.task, outputs, batch)


def _member_key(seed: jax.Array) -> jax.Array:
    return jax.random.key(seed.astype(jnp.uint32))


def init_population(program: Program, hparams: HParams, example_inputs: Any) -> Population:
    """Initialise every member from its own `seed`, its optimizer state from its hyperparameters.

    Args:
      program: the sweep's static structure.
      hparams: per-member hyperparameters (leading axis P), with a `seed` column.
      example_inputs: one batch of model inputs, a pytree (its values are not used; its
        shapes are).

    Returns:
      The `Population` at step 0, all members alive.
    """
    return _init_population(program, hparams, *_input_shapes(example_inputs))


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _init_population(
    program: Program, hparams: HParams, treedef: Any, shapes: tuple[jax.ShapeDtypeStruct, ...]
) -> Population:
    params, model_state, opt_state = _init_members(program, hparams.values, treedef, shapes)
    size = hparams.size
    return Population(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=opt_state,
        alive=jnp.ones((size,), bool),
        diverged_at=jnp.full((size,), -1, jnp.int32),
    )


def _init_members(
    program: Program, hparams: Mapping[str, jax.Array], treedef: Any, shapes: tuple
) -> tuple[Any, Any, Any]:
    """`(params, model_state, opt_state)` of every member, each from its own `seed` (traced).

    Members are initialised one after another (`lax.map`): the same values as `vmap` (the
    initializers' random bits and transforms are elementwise), and on a CPU about half its
    compilation, which the initializers' random number generation dominates.
    """
    x = jax.tree.unflatten(treedef, [jnp.zeros(s.shape, s.dtype) for s in shapes])

    def init_member(hp: Mapping[str, jax.Array]):
        variables = program.model.init(_member_key(hp["seed"]), x)
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return params, model_state, program.optimizer.init(params, hp)

    return jax.lax.map(init_member, dict(hparams))


def _input_shapes(example_inputs: Any) -> tuple[Any, tuple[jax.ShapeDtypeStruct, ...]]:
    """The static `(treedef, shapes)` of a batch of model inputs, for `_init_members`."""
    leaves, treedef = jax.tree.flatten(example_inputs)
    return treedef, tuple(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


START = "start_step"  # the hyperparameter column of the global step each slot's trial began at


def trial_step(step: jax.Array, hp: Mapping[str, jax.Array]) -> jax.Array:
    """A member's own step: the sweep's step less the step its trial entered the slot."""
    return step - hp[START] if START in hp else step


def _member_step(program: Program, state: Members, hp: Mapping[str, jax.Array], batch, step):
    """One member's step; a member that is or turns non-finite keeps its last finite state."""
    params, model_state, opt_state, alive, diverged_at = state
    own_step = trial_step(step, hp)
    learning_rate = learning_rate_at(program.schedule, own_step, hp)
    scheduled = hyperparameters_at(program.optimizer.schedules, own_step, hp)
    opt_state = program.optimizer.set_hyperparameters(opt_state, {**hp, **scheduled}, learning_rate)
    rng = jax.random.fold_in(_member_key(hp["seed"]), own_step)

    x = program.task.inputs(batch)

    def loss_fn(p):
        outputs, new_model_state = forward(
            program, p, model_state, x, True, rng, hp["dropout"] if program.dropout else None
        )
        losses = program.task.loss(outputs, batch)
        if not program.member_batch:
            return losses.mean(), new_model_state
        weights = (jnp.arange(losses.shape[0]) < hp["batch_size"]).astype(losses.dtype)
        return jnp.sum(losses * weights) / jnp.sum(weights), new_model_state

    (loss, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, new_opt_state = program.optimizer.update(grads, opt_state, params)
    candidate = optax.apply_updates(params, updates)
    # Checking the candidate parameters (not only the updates) also catches a finite update that
    # overflows a parameter, so a frozen member always holds its last finite state.
    ok = alive & jnp.isfinite(loss) & _all_finite(candidate)

    def keep(new, old):
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

    new_state = Members(
        params=keep(candidate, params),
        model_state=keep({**model_state, **new_model_state}, model_state),
        opt_state=keep(new_opt_state, opt_state),
        alive=ok,
        diverged_at=jnp.where(alive & ~ok, step, diverged_at),
    )
    return new_state, jnp.where(alive, loss, jnp.nan)


def _device_batch(data: Any, idx: jax.Array) -> Any:
    """The device path: `data` is the whole training set, `idx` one step's indices."""
    return jax.tree.map(lambda leaf: leaf[idx], data)


def _streamed_batch(data: Any, item: Any) -> Any:
    """The streaming path: the step's batch arrives whole in the block; `data` is empty."""
    return item


def _augmented(program: Program, batch: Any, data_key: jax.Array, step: jax.Array) -> Any:
    """The batch with its `inputs` augmented (once per step, shared by every member)."""
    if program.augment is None:
        return batch
    inputs = augment_batch(program.augment, batch["inputs"], augment_key(data_key, step))
    return {**batch, "inputs": inputs}


def _train_steps(program: Program, state: Members, hp, data_key, data, xs, batch_of, step):
    """`len(xs)` steps of a vmapped group of members: `(state, step) -> (state, losses)`.

    `batch_of(data, x)` gives each step's shared batch (a pytree) from the scanned item `x`.
    """
    vmapped = jax.vmap(functools.partial(_member_step, program), in_axes=(0, 0, 0, None))
    width = state.alive.shape[0]

    def one_step(carry, item):
        state, step = carry
        batch = _augmented(program, batch_of(data, item), data_key, step)
        state, loss = vmapped(state, hp, per_member(batch, width), step)
        return (state, step + 1), loss

    (state, step), losses = jax.lax.scan(one_step, (state, step), xs)
    return state, step, losses


def train_members(
    program: Program,
    width: int | None,
    batch_of: Any,
    state: Members,
    hp: Mapping[str, jax.Array],
    data_key: jax.Array,
    data: tuple,
    xs: Any,
    step: jax.Array,
) -> tuple[Members, jax.Array, jax.Array]:
    """Train the members in `state` (leading axis P) for `len(xs)` steps, `width` at a time.

    With `width` None or >= P every member is in one `vmap`. Otherwise the population runs as
    `G = ceil(P / width)` groups of `width` members, `vmap` inside a group and `lax.map` over the
    groups, each group taking all the chunk's steps before the next starts (its state stays in
    cache), a group with no member alive skipped. Members are independent, so the result does
    not depend on `width`.

    Returns:
      `(state, step, losses)`, `losses` of shape `[len(xs), P]`.
    """
    steps = jax.tree.leaves(xs)[0].shape[0]
    groups, _ = group_layout(state.alive.shape[0], width)

    def one_group(group):
        group_state, group_hp = group
        new_state, _, losses = _train_steps(
            program, group_state, group_hp, data_key, data, xs, batch_of, step
        )
        return new_state, losses.T

    def one_group_unless_frozen(group):
        # A group with no member alive (slots an adaptive sweep left idle) keeps its state
        # and costs nothing; the others train exactly as without the test.
        alive = group[0].alive
        frozen = group[0], jnp.full((alive.shape[0], steps), jnp.nan, jnp.float32)
        return jax.lax.cond(alive.any(), one_group, lambda _: frozen, group)

    train = one_group if groups == 1 else one_group_unless_frozen
    state, losses = map_groups(train, (state, dict(hp)), width)
    return state, step + steps, losses.T


def _run_chunk(
    program, width, mesh, batch_of, pop: Population, hparams: HParams, data_key, data, xs
):
    """One chunk of every member, on one device or split across `mesh` (`shard_map`)."""
    run = on_mesh(
        functools.partial(train_members, program, width, batch_of),
        mesh,
        in_specs=("split", "split", "shared", "shared", "shared", "shared"),
        out_specs=("split", "shared", "split_1"),
    )
    members = Members(pop.params, pop.model_state, pop.opt_state, pop.alive, pop.diverged_at)
    members, step, losses = run(members, dict(hparams.values), data_key, data, xs, pop.step)
    return Population(step=step, **members._asdict()), losses


@functools.lru_cache(maxsize=64)
def make_train_chunk(program: Program, num_steps: int, width: int | None = None, mesh=None):
    """The compiled chunk `(population, hparams, train, data_key) -> (population, losses)`.

    The training set `train` (a pytree of arrays) lives on the device; each step gathers its
    minibatch inside the chunk.
    `losses` is `[num_steps, P]` train loss, NaN for members not alive at that step. The
    population argument is donated. Cached: the same program and length give the same function.

    Args:
      program: the sweep's static structure.
      num_steps: the chunk's length.
      width: members vectorized together (`vmap`) on one device; None: all of them. See
        `train_members`.
      mesh: a `jax.sharding.Mesh` with one axis, `"population"`: the population axis is split
        across its devices (`shard_map`), each training its share with no cross-device traffic.
        None: the default device. The population size must be a multiple of the mesh size.
    """

    def train_chunk(pop: Population, hparams: HParams, train, data_key):
        # The chunk's minibatch indices up front: one permutation per epoch, not per step.
        count = jax.tree.leaves(train)[0].shape[0]
        indices = chunk_indices(data_key, pop.step, num_steps, count, program.batch_size)
        return _run_chunk(
            program, width, mesh, _device_batch, pop, hparams, data_key, train, indices
        )

    return jit(train_chunk, mesh, donate_argnums=0)


@functools.lru_cache(maxsize=64)
def make_stream_chunk(program: Program, num_steps: int, width: int | None = None, mesh=None):
    """The compiled chunk `(population, hparams, block, data_key) -> (population, losses)`.

    The streaming variant of `make_train_chunk`: the chunk's minibatches arrive as one block,
    a pytree whose leaves are `[num_steps, batch, ...]`, gathered on the host
    (`sweepjax.engine.stream`) with the same indices the device path computes, so both paths train
    on identical batches. The population argument is donated; cached like `make_train_chunk`,
    and `width` and `mesh` mean what they mean there.
    """

    def stream_chunk(pop: Population, hparams: HParams, block, data_key):
        return _run_chunk(program, width, mesh, _streamed_batch, pop, hparams, data_key, (), block)

    return jit(stream_chunk, mesh, donate_argnums=0)
