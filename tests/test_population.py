"""Invariants 1 to 5 (docs/architecture.md) on small populations."""

from __future__ import annotations

import inspect
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_same, count_compiles
from flax import nnx

import sweepjax
from sweepjax.engine.data import batch_indices
from sweepjax.engine.evaluation import make_evaluate
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams


def _start(config, data, hparams=None):
    """`(program, hparams, train, population)`: a fresh population and what its chunks take."""
    program = program_of(config)
    hparams = hparams or sample_hparams(config)
    train = jax.device_put(data.train)
    inputs = train["inputs"][: config.batch_size]
    return program, hparams, train, init_population(program, hparams, inputs)


def _member_state(pop, member: int) -> list[np.ndarray]:
    """A member's parameters, optimizer state and model state, leaf by leaf."""
    state = (pop.params, pop.opt_state, pop.model_state)
    return [np.asarray(leaf[member]) for leaf in jax.tree.leaves(state)]


def _train(config, data, hparams=None, steps=None):
    """Train a population directly; return the final population and per-step losses."""
    program, hparams, train, pop = _start(config, data, hparams)
    pop, losses = make_train_chunk(program, steps or config.steps)(
        pop, hparams, train, jax.random.key(config.seed)
    )
    return pop, np.asarray(losses), hparams


def test_changing_hyperparameter_values_never_recompiles(tiny_config, tiny_data):
    sweepjax.run(tiny_config, quiet=True, dataset=tiny_data)
    other = tiny_config.replace(
        space={"learning_rate": sweepjax.Choice([0.3, 0.01]), "momentum": 0.5},
        searcher="random",
        seed=5,
    )
    with count_compiles() as compiles:
        result = sweepjax.run(other, quiet=True, dataset=tiny_data)
    assert compiles[0] == 0
    assert {round(r["learning_rate"], 6) for r in result.rows} <= {0.3, 0.01}


def test_structure_change_does_recompile(tiny_config, tiny_data):
    """The counter can fail: a new hidden width is a new program."""
    sweepjax.run(tiny_config, quiet=True, dataset=tiny_data)
    wider = tiny_config.replace(model={**tiny_config.model, "hidden": [17]})
    with count_compiles() as compiles:
        sweepjax.run(wider, quiet=True, dataset=tiny_data)
    assert compiles[0] > 0


def test_member_trains_the_same_alone_as_in_a_population(tiny_config, tiny_data):
    pop, losses, hparams = _train(tiny_config, tiny_data)
    for member in (0, 5):
        alone, alone_losses, _ = _train(tiny_config, tiny_data, hparams.select([member]))
        np.testing.assert_allclose(alone_losses[:, 0], losses[:, member], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(pop.params), strict=True):
            np.testing.assert_allclose(a[0], b[member], rtol=1e-5, atol=1e-6)


class _Linen(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.tanh(nn.Dense(8)(x)))


def _float_defaults(optimizer) -> dict[str, float]:
    """An Optax optimizer's float arguments and their defaults (Optax's, not the engine's)."""
    parameters = inspect.signature(optimizer).parameters.items()
    return {name: p.default for name, p in parameters if type(p.default) is float}


@pytest.mark.parametrize(
    ("family", "space", "reference", "precision"),
    [
        ("sgd", {"learning_rate": 0.05, "momentum": 0.9}, optax.sgd, "float32"),
        (
            "adam",
            {"learning_rate": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-6},
            optax.adam,
            "float32",
        ),
        ("adamw", {"learning_rate": 3e-3, "weight_decay": 0.1}, optax.adamw, "float32"),
        # mixed precision: bfloat16 model, float32 parameters, loss and optimizer
        ("adamw", {"learning_rate": 3e-3, "weight_decay": 0.1}, optax.adamw, "bfloat16"),
    ],
    ids=["sgd", "adam", "adamw", "adamw-bfloat16"],
)
def test_parity_with_a_plain_flax_optax_loop(
    tiny_config, tiny_data, family, space, reference, precision
):
    config = tiny_config.replace(
        model=_Linen(), optimizer=family, space=space, population=2, steps=25, precision=precision
    )
    pop, losses, hparams = _train(config, tiny_data)

    # The plain loop: member 1 has seed 1; its params key is the first half of key(1). Its
    # hyperparameters (Optax's defaults where the space has none) are float32 arrays passed to
    # the step, as the engine holds them: Python's 1 - 0.999 rounds to 0.001, float32's is
    # 0.000999987, another computation (Adam's second moment 1.3e-5 apart), not a rounding.
    hp = {k: jnp.float32(v) for k, v in {**_float_defaults(reference), **space}.items()}
    module = _Linen()
    train = jax.device_put(tiny_data.train)
    x, y = train["inputs"], train["targets"]
    params = module.init(jax.random.split(jax.random.key(1))[0], x[:16])["params"]
    opt_state = reference(**hp).init(params)
    dtype = jnp.dtype(precision)

    @jax.jit
    def step(params, opt_state, hp, xb, yb):
        def loss_fn(p):
            low = jax.tree.map(lambda a: a.astype(dtype), p)
            logits = module.apply({"params": low}, xb.astype(dtype)).astype(jnp.float32)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = reference(**hp).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # The engine (a vmapped scan) and this loop are different programs: XLA may sum a product's
    # terms in another order, and so may another CPU's vector width. Tolerances follow from that.
    if precision == "float32":
        # A sum of n <= 16 terms in another order differs by up to ~n ulps (2**-24) of its
        # terms, ~1e-6 relative, a step; the weights move by lr-sized steps, so they stay a few
        # ulps apart and the 25 losses agree to a few such errors: 1e-5 (1e-6 for weights ~0).
        loss_tol, weight_tol = {"rtol": 1e-5}, {"rtol": 1e-5, "atol": 1e-6}
    else:
        # bfloat16 has unit roundoff u = 2**-8, and there the order decides roundings: a product
        # summed in another order (natively on a CPU with AVX-512 BF16, via float32 on another,
        # or kept in float32 by XLA) may round to the other neighbour, a weight an ulp apart
        # may take the other bfloat16 copy, and within a few steps the runs round independently,
        # each within bfloat16 error of exact arithmetic, so within twice that of each other.
        # * Weights, T = 25 steps: Adam moves a weight by at most ~lr a step (m / sqrt(v) is
        #   scale-free); its gradient passes ~4 roundings (weight, activation, cotangent,
        #   product), so a step is exact to 4u * lr, and two runs agree to 8u * lr * T = 2.3e-3.
        #   Dropping the decay moves the largest weights (~0.7) by lr * 0.1 * 0.7 * T = 5e-3.
        # * Loss, each step: a mean over 16 examples of cross-entropies of bfloat16 logits
        #   (|z| <~ 2 here). CE moves by (p - onehot) . dz with |p - onehot|_1 <= 2 CE, so by at
        #   most 2 max|dz| relative: 8u for one rounding (2u |z|) of each logit the other way,
        #   independent over the 16 examples, ~8u / sqrt(16) = 2u for their mean.
        u = 2.0**-8
        loss_tol = {"rtol": 2 * u}
        weight_tol = {"rtol": 0.0, "atol": 8 * u * space["learning_rate"] * config.steps}
    for t in range(config.steps):
        idx = batch_indices(jax.random.key(config.seed), t, len(x), 16)
        params, opt_state, loss = step(params, opt_state, hp, x[idx], y[idx])
        np.testing.assert_allclose(losses[t, 1], loss, **loss_tol)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(pop.params), strict=True):
        assert b.dtype == jnp.float32  # master weights stay float32 under mixed precision
        np.testing.assert_allclose(b[1], a, **weight_tol)
    floats = [a for a in jax.tree.leaves(pop.opt_state) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert all(leaf.dtype == jnp.float32 for leaf in floats)
    if precision == "bfloat16":
        # Within these bounds float32 products pass for bfloat16 ones; the program tells them
        # apart: every product of the chunk, forward and backward, is in bfloat16.
        chunk = make_train_chunk(program_of(config), config.steps)
        text = chunk.lower(pop, hparams, train, jax.random.key(config.seed)).as_text()
        dots = [line for line in text.splitlines() if "dot_general" in line]
        assert dots and all("f32" not in line for line in dots), dots


def test_mixed_precision_with_batch_norm_trains_and_evaluates(tiny_config, tiny_data):
    """Batch statistics stay float32 in training, and eval (which updates none) runs."""
    config = tiny_config.replace(
        model={**tiny_config.model, "norm": "batch"}, precision="bfloat16", population=2, steps=8
    )
    pop, losses, _ = _train(config, tiny_data)
    assert np.isfinite(losses).all()
    stats = jax.tree.leaves(pop.model_state)
    assert stats and all(leaf.dtype == jnp.float32 for leaf in stats)
    metrics = make_evaluate(program_of(config), 16)(pop, jax.device_put(tiny_data.val))
    assert np.isfinite(metrics["loss"]).all() and (np.asarray(metrics["accuracy"]) > 0).all()


def test_mixed_precision_computes_in_bfloat16(tiny_config, tiny_data):
    """The bfloat16 program's products are bfloat16, and it trains like the float32 one."""
    hlo = {}
    for precision in ("float32", "bfloat16"):
        config = tiny_config.replace(precision=precision)
        program = program_of(config)
        train = jax.device_put(tiny_data.train)
        x = train["inputs"]
        pop = init_population(program, sample_hparams(config), x[:16])
        lowered = make_train_chunk(program, 5).lower(
            pop, sample_hparams(config), train, jax.random.key(0)
        )
        hlo[precision] = lowered.as_text()
    assert "bf16" not in hlo["float32"]
    assert re.search(r"dot_general.*bf16", hlo["bfloat16"])
    _, losses32, _ = _train(tiny_config, tiny_data)
    _, losses16, _ = _train(tiny_config.replace(precision="bfloat16"), tiny_data)
    # Not parity (the parity test is) but bfloat16 against float32: every rounding, u = 2**-8,
    # is in one run only. CE moves by at most 2 max|dz| relative (|p - onehot|_1 <= 2 CE); while
    # the loss is O(1) the logits are small, and one |z| <= 2 through ~4 roundings moves by up to
    # ~4u|z|: the loss by up to ~16u when they line up, 0.05 (13u). Near a loss of 0 the logits
    # grow, but CE ~ exp(z_other - z_y) is small: 0.01 absolute.
    np.testing.assert_allclose(losses16, losses32, rtol=0.05, atol=0.01)


def test_a_diverged_member_is_quarantined(tiny_config, tiny_data):
    lrs = [0.01, 0.1, 1e3, 0.05]
    base = tiny_config.replace(
        searcher="grid", population=4, space={"learning_rate": sweepjax.Choice(lrs)}
    )
    healthy = tiny_config.replace(
        searcher="grid", population=3, space={"learning_rate": sweepjax.Choice([0.01, 0.1, 0.05])}
    )
    hp = sample_hparams(base)
    hp = sweepjax.HParams({**hp.values, "seed": np.array([0, 1, 3, 2], np.int32)})
    pop, losses, _ = _train(base, tiny_data, hp)
    alive = np.asarray(pop.alive)
    assert alive.tolist() == [True, True, False, True]
    step = int(pop.diverged_at[2])
    assert 0 < step < base.steps
    assert np.isfinite(losses[:step, 2]).all() and not np.isfinite(losses[step:, 2]).any()
    for leaf in jax.tree.leaves(pop.params):
        assert np.isfinite(leaf[2]).all()  # frozen at its last finite state

    healthy_pop, healthy_losses, _ = _train(healthy, tiny_data)
    assert_same(healthy_losses, losses[:, [0, 1, 3]])
    for a, b in zip(jax.tree.leaves(healthy_pop.params), jax.tree.leaves(pop.params), strict=True):
        assert_same(a, b[np.array([0, 1, 3])])

    result = sweepjax.run(
        base.replace(space={"learning_rate": sweepjax.Choice(lrs)}), quiet=True, dataset=tiny_data
    )
    row = result.rows[2]
    assert row["status"] == "diverged" and row["diverged_at_step"] > 0
    assert result.summary["diverged"] == 1 and result.summary["best_member"] != 2
    ok_acc = [r["final_val_accuracy"] for r in result.rows if r["status"] == "ok"]
    assert result.summary["mean_val_accuracy"] == pytest.approx(np.mean(ok_acc))


def test_a_diverged_members_whole_state_stays_frozen(tiny_config, tiny_data):
    """Step by step: from the step a member diverges, its parameters, optimizer state and
    batch-norm statistics never change again, and it never comes back to life."""
    config = tiny_config.replace(
        model={"name": "mlp", "hidden": [16], "num_classes": 3, "norm": True},
        searcher="grid",
        population=2,
        steps=1,
        space={"learning_rate": sweepjax.Choice([0.01, 1e6]), "momentum": 0.9},
    )
    program, hparams, train, pop = _start(config, tiny_data)
    step = make_train_chunk(program, 1)
    states, alive = [], []
    for _ in range(30):
        pop, _ = step(pop, hparams, train, jax.random.key(config.seed))
        states.append(_member_state(pop, 1))
        alive.append(bool(pop.alive[1]))
    diverged = alive.index(False)
    assert diverged > 0 and not any(alive[diverged:]) and all(np.asarray(pop.alive)[:1])
    assert int(pop.diverged_at[1]) == diverged  # the step (from 0) whose update failed
    for later in states[diverged:]:  # the failed step applied nothing, nor did any after it
        for a, b in zip(states[diverged - 1], later, strict=True):
            assert_same(a, b)
    assert all(np.isfinite(leaf).all() for leaf in states[-1])


def test_a_diverged_member_never_trains_again_even_when_its_loss_would_be_finite(
    tiny_config, tiny_data
):
    """Member 1 is marked diverged with healthy parameters and rate: every later step would
    give it a finite loss and update, and none may apply."""
    config = tiny_config.replace(population=2, steps=5)
    program, hparams, train, pop = _start(config, tiny_data)
    pop = pop.replace(alive=jnp.array([True, False]), diverged_at=jnp.array([-1, 0], jnp.int32))
    before = _member_state(pop, 1)
    pop, losses = make_train_chunk(program, 5)(pop, hparams, train, jax.random.key(config.seed))
    losses = np.asarray(losses)
    assert np.isfinite(losses[:, 0]).all() and np.isnan(losses[:, 1]).all()
    assert np.asarray(pop.alive).tolist() == [True, False]
    assert np.asarray(pop.diverged_at).tolist() == [-1, 0]
    for old, new in zip(before, _member_state(pop, 1), strict=True):
        np.testing.assert_array_equal(new, old)


def test_an_update_that_overflows_a_parameter_with_a_finite_loss_is_divergence(
    tiny_config, tiny_data
):
    """Member 1's output biases sit at float32's largest value, all equal, so its logits are
    equal and its loss and gradient (softmax 1/3 minus the labels) are finite; a step of rate
    1e36 pushes a bias past the largest value (any increase above half an ulp, 1e31, is inf)."""
    config = tiny_config.replace(
        searcher="grid",
        population=2,
        steps=1,
        space={"learning_rate": sweepjax.Choice([0.01, 1e36])},
    )
    program, hparams, train, pop = _start(config, tiny_data)
    biggest = np.finfo(np.float32).max
    output_bias = pop.params["Dense_1"]["bias"]  # [P, classes]
    params = {
        **pop.params,
        "Dense_1": {**pop.params["Dense_1"], "bias": output_bias.at[1].set(biggest)},
    }
    pop = pop.replace(params=params)
    before = _member_state(pop, 1)
    pop, losses = make_train_chunk(program, 1)(pop, hparams, train, jax.random.key(config.seed))
    assert np.isfinite(np.asarray(losses)[0]).all()  # the loss before the failed update
    assert np.asarray(pop.alive).tolist() == [True, False]
    assert int(pop.diverged_at[1]) == 0
    for old, new in zip(before, _member_state(pop, 1), strict=True):
        np.testing.assert_array_equal(new, old)  # the overflowing step not applied


class _NNX(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(12, 8, rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


@pytest.mark.parametrize("model", [_Linen(), _NNX], ids=["linen", "nnx"])
def test_user_modules_train(tiny_config, tiny_data, model):
    config = tiny_config.replace(
        model=model, steps=60, space={"learning_rate": 0.1, "momentum": 0.9}
    )
    result = sweepjax.run(config.replace(population=2), quiet=True, dataset=tiny_data)
    assert all(r["status"] == "ok" for r in result.rows)
    assert result.best["final_val_accuracy"] > 0.8
    pop, _, _ = _train(config, tiny_data)
    first = jax.tree.leaves(pop.params)[0]
    assert not np.allclose(first[0], first[1])  # seeds give each member its own init


def test_a_chunk_is_one_device_program_with_no_host_round_trip(tiny_config, tiny_data):
    """Invariant 5: no host callback, infeed or outfeed inside a chunk, no implicit transfer."""
    program = program_of(tiny_config)
    hparams = jax.device_put(sample_hparams(tiny_config))
    train = jax.device_put(tiny_data.train)
    x = train["inputs"]
    pop = init_population(program, hparams, x[: tiny_config.batch_size])
    key = jax.device_put(jax.random.key(0))
    chunk = make_train_chunk(program, 5)
    text = chunk.lower(pop, hparams, train, key).as_text().lower()
    assert not any(word in text for word in ("callback", "infeed", "outfeed", "send", "recv"))
    with jax.transfer_guard("disallow"):
        pop, losses = chunk(pop, hparams, train, key)
    assert losses.shape == (5, tiny_config.population)


def test_the_schedule_drives_training_at_the_right_step(tiny_config, tiny_data):
    """A linear decay to zero over 10 steps: the rate applied at step t is the schedule's value
    at t (a plain Optax loop with `optax.linear_schedule` agrees), and after step 10 the
    member stops moving, while a constant-rate twin goes on."""
    config = tiny_config.replace(
        model=_Linen(),
        optimizer="sgd",
        schedule="linear",
        space={"learning_rate": 0.5, "decay_steps": 10, "momentum": 0.0},
        population=2,
        steps=20,
    )
    train = jax.device_put(tiny_data.train)
    x, y = train["inputs"], train["targets"]
    key = jax.random.key(config.seed)

    def params_at_10_and_20(config):
        """Two chunks of 10 steps (each donates its input): the params after each, and losses."""
        program, hparams = program_of(config), sample_hparams(config)
        pop = init_population(program, hparams, x[: config.batch_size])
        chunk = make_train_chunk(program, 10)
        pop, losses_a = chunk(pop, hparams, train, key)
        at_10 = jax.tree.map(np.asarray, pop.params)
        pop, losses_b = chunk(pop, hparams, train, key)
        at_20 = jax.tree.map(np.asarray, pop.params)
        return at_10, at_20, np.concatenate([np.asarray(losses_a), np.asarray(losses_b)])

    at_10, at_20, losses = params_at_10_and_20(config)
    for a, b in zip(jax.tree.leaves(at_10), jax.tree.leaves(at_20), strict=True):
        assert_same(a, b)  # zero rate from step 10: not one parameter moves
    constant = config.replace(schedule="constant", space={"learning_rate": 0.5, "momentum": 0.0})
    at_10, at_20, _ = params_at_10_and_20(constant)
    pairs = zip(jax.tree.leaves(at_10), jax.tree.leaves(at_20), strict=True)
    assert all(not np.array_equal(a, b) for a, b in pairs)  # the twin keeps moving

    module, schedule = _Linen(), optax.linear_schedule(0.5, 0.0, 10)
    params = module.init(jax.random.split(jax.random.key(1))[0], x[:16])["params"]
    optimizer = optax.sgd(schedule)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = module.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for t in range(config.steps):
        idx = batch_indices(key, t, len(x), 16)
        params, opt_state, loss = step(params, opt_state, x[idx], y[idx])
        # Tolerance as in test_parity_with_a_plain_flax_optax_loop (float32, another order).
        np.testing.assert_allclose(losses[t, 1], loss, rtol=1e-5)


def test_the_nesterov_key_reaches_the_optimizer(tiny_config, tiny_data):
    """`nesterov=True` on sgd trains as the `nesterov` family does, and unlike plain momentum."""
    space = {"learning_rate": 0.1, "momentum": 0.9}
    config = tiny_config.replace(model=_Linen(), space=space, population=2, steps=10)
    _, with_key, _ = _train(config.replace(optimizer="sgd", nesterov=True), tiny_data)
    _, family, _ = _train(config.replace(optimizer="nesterov"), tiny_data)
    _, plain, _ = _train(config.replace(optimizer="sgd", nesterov=False), tiny_data)
    assert_same(with_key, family)
    assert not np.array_equal(with_key[1:], plain[1:])  # step 0's loss precedes any update


def test_a_members_values_changed_between_chunks_take_effect(tiny_config, tiny_data):
    """Every hyperparameter is read from the member's values at each step, not from the copy
    the optimizer state took at init: momentum and weight decay changed after the first chunk
    change the second, as population-based training needs."""
    names = {"learning_rate": 0.05, "momentum": 0.0, "weight_decay": 0.0}
    config = tiny_config.replace(space=names, population=2, steps=5)
    program, first, train, pop = _start(config, tiny_data)
    chunk, key = make_train_chunk(program, 5), jax.random.key(config.seed)
    changed = sweepjax.HParams(
        {**first.values, "momentum": np.float32([0.0, 0.9]), "weight_decay": np.float32([0.0, 0.5])}
    )
    pop, _ = chunk(pop, first, train, key)
    kept, kept_losses = chunk(jax.tree.map(jnp.copy, pop), first, train, key)
    with count_compiles() as compiles:
        moved, moved_losses = chunk(pop, changed, train, key)
    assert compiles[0] == 0  # new values are data (invariant 1)
    kept_losses, moved_losses = np.asarray(kept_losses), np.asarray(moved_losses)
    assert_same(moved_losses[:, 0], kept_losses[:, 0])  # member 0's values did not change
    assert not np.array_equal(moved_losses[1:, 1], kept_losses[1:, 1])  # after its first update
    assert moved.opt_state.hyperparams["momentum"].tolist() == pytest.approx([0.0, 0.9])
    assert moved.opt_state.hyperparams["weight_decay"].tolist() == pytest.approx([0.0, 0.5])
