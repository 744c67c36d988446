"""The built-in causal Transformer language model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sweepjax
from sweepjax.engine.models import build_model, model_of
from sweepjax.sweep.config import Config
from sweepjax.sweep.validation import validate

SPEC = {"name": "transformer", "vocab_size": 13, "max_len": 8, "width": 16, "heads": 2, "layers": 1}


def tokens(seed: int = 0, shape: tuple[int, int] = (3, 8)) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), shape, 0, SPEC["vocab_size"], jnp.int32)


class Jitted:
    """A model whose `apply` is compiled once per shape: eager Transformer calls take a minute."""

    def __init__(self, model):
        self.takes_dropout = model.takes_dropout
        self.apply = jax.jit(model.apply, static_argnames="train")


@pytest.fixture(scope="module")
def model_and_variables():
    model = model_of(SPEC)
    return Jitted(model), jax.jit(model.init)(jax.random.key(0), tokens())


def test_logits_at_every_position(model_and_variables):
    model, variables = model_and_variables
    logits, _ = model.apply(variables, tokens(1, (5, 6)), train=False, rng=jax.random.key(0))
    assert logits.shape == (5, 6, 13) and logits.dtype == jnp.float32


def test_position_t_sees_tokens_up_to_t_only(model_and_variables):
    model, variables = model_and_variables
    x = tokens()
    changed = x.at[:, 4].set((x[:, 4] + 1) % SPEC["vocab_size"])
    before, after = (
        model.apply(variables, v, train=False, rng=jax.random.key(0))[0] for v in (x, changed)
    )
    np.testing.assert_array_equal(before[:, :4], after[:, :4])
    assert (np.abs(before[:, 4:] - after[:, 4:]).max(axis=-1) > 1e-4).all()


def test_dropout_rate_reaches_the_model_in_train_mode_only(model_and_variables):
    model, variables = model_and_variables
    x = tokens()

    def logits(train: bool, rate, seed: int = 0):
        return model.apply(variables, x, train=train, rng=jax.random.key(seed), dropout_rate=rate)[
            0
        ]

    assert model.takes_dropout
    clean = logits(False, None)
    np.testing.assert_array_equal(logits(False, 0.5), clean)
    np.testing.assert_allclose(logits(True, 0.0), clean, atol=1e-6)
    traced = jax.jit(lambda rate: logits(True, rate))(0.5)  # a traced per-member rate
    assert np.abs(traced - clean).max() > 1e-3


def test_learns_a_predictable_sequence():
    """A repeating cycle: each next token is fixed by the current one, so the loss falls near 0."""
    model = model_of(SPEC)
    cycle = np.arange(9) % 7
    windows = jnp.asarray(np.stack([np.roll(cycle, -i) for i in range(7)]), jnp.int32)
    x, y = windows[:, :-1], windows[:, 1:]
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    optimizer = optax.adam(1e-2)

    @jax.jit
    def loss_fn(params):
        logits, _ = model.apply({"params": params}, x, train=True, rng=jax.random.key(0))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state, first = optimizer.init(params), loss_fn(params)
    for _ in range(60):
        params, state, loss = step(params, state)
    assert first > 2.0 and loss_fn(params) < 0.1


def test_vmapped_members_differ_by_seed():
    model = model_of(SPEC)
    x = tokens()
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    variables = jax.jit(jax.vmap(model.init, in_axes=(0, None)))(keys, x)
    embedding = variables["params"]["tokens"]["embedding"]
    assert embedding.shape == (2, 13, 16) and not np.allclose(embedding[0], embedding[1])
    apply = jax.jit(
        jax.vmap(lambda v, k: model.apply(v, x, train=True, rng=k, dropout_rate=0.1)[0])
    )
    assert apply(variables, keys).shape == (2, 3, 8, 13)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"heads": 3},
            r"model.heads: 3 does not divide width 16; allowed: a divisor of width \(1, 2, 4, 8, 16\)",
        ),
        ({"layers": -1}, r"model.layers: -1 is not allowed; allowed: integers >= 0"),
        ({"width": 2.5}, r"model.width: 2.5 is not allowed; allowed: integers >= 1"),
        ({"hidden": [8]}, r"model.hidden: \[8\] is not an option of 'transformer'; allowed: \["),
    ],
)
def test_bad_options_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        build_model({**SPEC, **change})
    with pytest.raises(ValueError, match=message):
        validate(Config(model={**SPEC, **change}, out_dir=None))


def test_a_transformer_config_validates_with_structural_dimensions():
    space = {"dropout": sweepjax.Uniform(0.0, 0.2), "model.layers": sweepjax.Choice([0, 1, 2])}
    validate(Config(model=SPEC, optimizer="adamw", space=space, out_dir=None))
    with pytest.raises(
        ValueError, match=r"space.model.heads: 3 does not build a model: model.heads"
    ):
        validate(Config(model=SPEC, space={"model.heads": sweepjax.Choice([2, 3])}, out_dir=None))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (jnp.zeros((2, 9), jnp.int32), r"a sequence of 9 tokens is longer than max_len 8"),
        (
            jnp.zeros((2, 8), jnp.float32),
            r"allowed: integer tokens of shape \[batch, sequence length\]",
        ),
        (jnp.zeros((2, 8, 1), jnp.int32), r"inputs of shape \(2, 8, 1\)"),
    ],
)
def test_bad_inputs_are_refused(model_and_variables, x, message):
    model, variables = model_and_variables
    with pytest.raises(ValueError, match=message):
        model.apply(variables, x, train=False, rng=jax.random.key(0))
