"""Per-member batch size, dropout rate and batch-norm statistics as population data."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from conftest import assert_same, count_compiles

import sweepjax
from sweepjax.engine.data import batch_indices
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams


def _train(config, data):
    program = program_of(config)
    hparams = sample_hparams(config)
    train = jax.device_put(data.train)
    x = train["inputs"]
    pop = init_population(program, hparams, x[: config.batch_size])
    pop, losses = make_train_chunk(program, config.steps)(
        pop, hparams, train, jax.random.key(config.seed)
    )
    return pop, np.asarray(losses), hparams


def test_member_batch_size_matches_a_plain_run_on_the_first_examples(tiny_config, tiny_data):
    config = tiny_config.replace(
        model={"name": "mlp", "hidden": [8], "num_classes": 3},
        space={"learning_rate": 0.1, "momentum": 0.9, "batch_size": sweepjax.Choice([4, 9, 16])},
        searcher="grid",
        population=3,
        steps=12,
    )
    pop, losses, hparams = _train(config, tiny_data)
    module = sweepjax.build_model(config.model)
    tx = optax.sgd(0.1, momentum=0.9)
    train = jax.device_put(tiny_data.train)
    x, y = train["inputs"], train["targets"]

    @jax.jit  # one reference step per batch size, compiled once (eager steps take minutes)
    def step(params, state, idx):
        def loss_fn(p):
            logits = module.apply({"params": p}, x[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    for member, size in enumerate([4, 9, 16]):
        params = module.init(jax.random.split(jax.random.key(member))[0], x[:1])["params"]
        state = tx.init(params)
        for t in range(config.steps):
            idx = batch_indices(jax.random.key(config.seed), t, len(x), 16)[:size]
            params, state, loss = step(params, state, idx)
            np.testing.assert_allclose(losses[t, member], loss, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(pop.params), strict=True):
            np.testing.assert_allclose(b[member], a, rtol=1e-5, atol=1e-6)


def test_dropout_rate_is_data(tiny_config, tiny_data):
    config = tiny_config.replace(
        space={"learning_rate": 0.1, "dropout": sweepjax.Uniform(0.0, 0.5)}
    )
    _, first, _ = _train(config, tiny_data)
    with count_compiles() as compiles:
        _, second, _ = _train(
            config.replace(
                space={"learning_rate": 0.1, "dropout": sweepjax.Choice([0.0, 0.9])},
                searcher="random",
            ),
            tiny_data,
        )
    assert compiles[0] == 0
    assert not np.allclose(first, second)


def test_each_member_draws_its_own_dropout_masks(tiny_config, tiny_data):
    """Members 0 and 1 start from the same parameters and never move (a learning rate far
    below a float32 ulp of any weight), so
    their losses differ only by their dropout masks: those come from each member's own seed,
    and a member's masks do not change when it trains among more members."""
    config = tiny_config.replace(
        space={"learning_rate": 1e-30, "dropout": 0.5}, population=4, steps=6
    )
    program, hparams = program_of(config), sample_hparams(config)
    train = jax.device_put(tiny_data.train)
    x = train["inputs"]
    key = jax.random.key(config.seed)

    def losses_of(hparams):
        pop = init_population(program, hparams, x[: config.batch_size])
        same_start = jax.tree.map(lambda p: p.at[:].set(p[0]), pop.params)
        pop = pop.replace(params=same_start)
        return np.asarray(make_train_chunk(program, config.steps)(pop, hparams, train, key)[1])

    no_dropout = losses_of(sample_hparams(config.replace(space={**config.space, "dropout": 0.0})))
    assert_same(no_dropout[:, 0], no_dropout[:, 1])  # without masks the two are one
    losses = losses_of(hparams)
    assert not np.array_equal(losses[:, 0], losses[:, 1])  # two seeds, two sets of masks
    assert_same(losses_of(hparams.select([0, 1])), losses[:, :2])


def test_member_batch_and_dropout_are_validated(tiny_config, tiny_data):
    with pytest.raises(
        ValueError,
        match=r"space.batch_size: 32 is not allowed; allowed: integers from 1 to the config's batch_size \(16\)",
    ):
        sweepjax.run(
            tiny_config.replace(space={"batch_size": sweepjax.Choice([8, 32])}),
            quiet=True,
            dataset=tiny_data,
        )
    with pytest.raises(
        ValueError, match=r"space.dropout: 1.0 is out of range; allowed: \[0.0, 1.0\)"
    ):
        sweepjax.run(tiny_config.replace(space={"dropout": 1.0}), quiet=True, dataset=tiny_data)


class _NormNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Dense(8)(x))
        return nn.Dense(3)(nn.relu(x))


def test_batch_norm_statistics_are_per_member(tiny_config, tiny_data):
    config = tiny_config.replace(
        model=_NormNet(),
        space={"learning_rate": sweepjax.Choice([0.01, 0.3])},
        searcher="grid",
        population=2,
        steps=10,
    )
    pop, _, hparams = _train(config, tiny_data)
    stats = pop.model_state["batch_stats"]
    means = jax.tree.leaves(stats)[0]
    assert not np.allclose(means[0], means[1])
    alone_config = config.replace(space={"learning_rate": 0.3}, population=1, searcher="random")
    alone_hp = sweepjax.HParams(
        {**sample_hparams(alone_config).values, "seed": np.array([1], np.int32)}
    )
    program = program_of(alone_config)
    train = jax.device_put(tiny_data.train)
    x = train["inputs"]
    alone = init_population(program, alone_hp, x[:16])
    alone, _ = make_train_chunk(program, 10)(alone, alone_hp, train, jax.random.key(0))
    for a, b in zip(
        jax.tree.leaves(alone.model_state), jax.tree.leaves(pop.model_state), strict=True
    ):
        np.testing.assert_allclose(a[0], b[1], rtol=1e-5, atol=1e-6)
