"""Schedules of optimizer hyperparameters other than the learning rate (`Config.schedules`)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_same, count_compiles

import sweepjax
from sweepjax.engine.data import batch_indices
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams
from sweepjax.sweep.config import apply_overrides
from sweepjax.sweep.same_sweep import differences
from sweepjax.sweep.validation import validate

STEPS = 12
DECAY_STEPS = (5.0, 10.0)  # member 0's momentum reaches 0 at step 5, member 1's at step 10


class _Linen(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.tanh(nn.Dense(8)(x)))


def _cosine_momentum(t: int, peak: float, decay_steps: float) -> float:
    """The cosine family written out: peak * (1 + cos(pi * min(t, d) / d)) / 2."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(t, decay_steps) / decay_steps))


@pytest.fixture(scope="module")
def momentum_run(tiny_config, tiny_data):
    """Two members of sgd with a cosine momentum, differing only in `momentum.decay_steps`,
    trained one step per chunk: their initial parameters, the momentum written into the
    optimizer state at each step `[STEPS, 2]`, and the final parameters."""
    config = tiny_config.replace(
        model=_Linen(),
        optimizer="sgd",
        schedules={"momentum": "cosine"},
        space={
            "learning_rate": 0.1,
            "momentum": 0.9,
            "momentum.decay_steps": sweepjax.Choice(DECAY_STEPS),
            "seed": 0,
        },
        searcher="grid",
        population=2,
        steps=STEPS,
    )
    program, hparams = program_of(config), sample_hparams(config)
    assert hparams["momentum.decay_steps"].tolist() == list(DECAY_STEPS)
    train = jax.device_put(tiny_data.train)
    x = train["inputs"]
    pop = init_population(program, hparams, x[: config.batch_size])
    initial = jax.tree.map(np.array, pop.params)
    chunk, key = make_train_chunk(program, 1), jax.random.key(config.seed)
    momenta = []
    for _ in range(STEPS):
        pop, _ = chunk(pop, hparams, train, key)
        momenta.append(np.asarray(pop.opt_state.hyperparams["momentum"]))
    return config, initial, np.stack(momenta), jax.tree.map(np.asarray, pop.params)


def _plain_optax(config, data, initial, member: int):
    """Plain Optax sgd whose momentum the loop sets each step to `_cosine_momentum`."""
    train = jax.device_put(data.train)
    x, y = train["inputs"], train["targets"]
    params = jax.tree.map(lambda leaf: leaf[member], initial)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = _Linen().apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        updates, opt_state = optimizer.update(jax.grad(loss_fn)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    key = jax.random.key(config.seed)
    for t in range(STEPS):
        momentum = _cosine_momentum(t, 0.9, DECAY_STEPS[member])
        opt_state.hyperparams["momentum"] = jnp.float32(momentum)
        idx = batch_indices(key, t, len(x), config.batch_size)
        params, opt_state = step(params, opt_state, x[idx], y[idx])
    return params


def test_a_momentum_schedule_matches_the_formula_and_a_plain_optax_loop(momentum_run, tiny_data):
    """The momentum written at step t is the cosine of t, member by member; training with it
    matches Optax's sgd given that momentum each step."""
    config, initial, momenta, final = momentum_run
    expected = [[_cosine_momentum(t, 0.9, d) for d in DECAY_STEPS] for t in range(STEPS)]
    # float32 arithmetic (XLA's cosine among it) against float64: a few float32 roundings.
    np.testing.assert_allclose(momenta, expected, rtol=1e-6, atol=1e-7)
    assert momenta[5, 0] == 0.0 and momenta[0, 0] == np.float32(0.9)  # the ends are exact
    for member in range(2):
        reference = _plain_optax(config, tiny_data, initial, member)
        ours = jax.tree.map(lambda leaf, m=member: leaf[m], final)
        # The same sgd in float32 with momenta equal to a few roundings, the loss computed in
        # another order (as in test_population's plain-loop parity tests).
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_schedule_parameter_changes_training(momentum_run):
    """The two members differ only in `momentum.decay_steps` and train differently."""
    _, initial, _, final = momentum_run
    for start, leaf in zip(jax.tree.leaves(initial), jax.tree.leaves(final), strict=True):
        np.testing.assert_array_equal(start[0], start[1])  # the same seed: the same start
        assert not np.allclose(leaf[0], leaf[1])


def test_new_schedule_parameter_values_compile_nothing(tiny_config, tiny_data):
    space = {"learning_rate": 0.1, "momentum": 0.9, "momentum.decay_steps": 10.0}
    config = tiny_config.replace(space=space, schedules={"momentum": "cosine"}, steps=10)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    other = {**space, "momentum.decay_steps": sweepjax.Choice([3.0, 30.0]), "momentum": 0.5}
    with count_compiles() as compiles:
        result = sweepjax.run(config.replace(space=other), quiet=True, dataset=tiny_data)
    assert compiles[0] == 0  # schedule parameters are data, like every hyperparameter
    assert {r["momentum.decay_steps"] for r in result.rows} == {3.0, 30.0}  # swept: a column


def test_a_weight_decay_schedule_in_adamw_end_to_end(tiny_config, tiny_data):
    """`weight_decay.decay_steps` swept in adamw: a column of the results, and it matters."""
    config = sweepjax.Config(
        model=tiny_config.model,
        optimizer="adamw",
        schedules={"weight_decay": "linear"},
        space={
            "learning_rate": 0.03,
            "weight_decay": 0.5,
            "weight_decay.decay_steps": sweepjax.Choice([1.0, 20.0]),
            "seed": 0,
        },
        searcher="grid",
        population=2,
        steps=20,
        batch_size=16,
        eval_every=10,
        out_dir=None,
    )
    result = sweepjax.run(config, quiet=True, dataset=tiny_data)
    rows = sorted(result.rows, key=lambda r: r["weight_decay.decay_steps"])
    assert [r["weight_decay.decay_steps"] for r in rows] == [1.0, 20.0]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["final_train_loss"] != rows[1]["final_train_loss"]


def test_a_scheduled_hyperparameter_is_in_the_program_and_its_parameters_are_allowed():
    config = sweepjax.Config(optimizer="sgd", steps=400, schedules={"clip_norm": "cosine"})
    optimizer = program_of(config).optimizer
    assert optimizer.schedules == (("clip_norm", "cosine"),)
    assert "clip_norm" in optimizer.names  # clipping is in the program without a space entry
    allowed = sweepjax.sweep.config.allowed_hyperparameters(config)
    assert allowed["clip_norm.decay_steps"] == 400 and allowed["clip_norm.warmup_steps"] == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedules": {"b1": "cosine"}}, "schedules.b1: 'cosine' schedules a hyperparameter"),
        ({"schedules": {"seed": "cosine"}}, "schedules.seed: 'cosine' schedules a hyperparam"),
        ({"schedules": {"learning_rate": "cosine"}}, "config's `schedule` key"),
        ({"schedules": {"initial_scale": "cosine"}, "optimizer": "rmsprop"}, "allowed: ['clip"),
        ({"schedules": {"momentum": "cosinus"}}, "schedules.momentum: 'cosinus' is not a sched"),
        ({"schedules": {"momentum": 3}}, "schedules.momentum: 3 is not a schedule family"),
        ({"schedules": ["momentum"]}, "schedules: ['momentum'] has type list"),
        (
            {"schedules": {"momentum": "cosine"}, "space": {"momentum.bogus": 1.0}},
            "space.momentum.bogus: 1.0 is not a hyperparameter",
        ),
        (
            {"schedules": {"momentum": "cosine"}, "space": {"momentum.alpha": 2.0}},
            "space.momentum.alpha: 2.0 is out of range; allowed: [0.0, 1.0]",
        ),
        (
            {"schedules": {"momentum": "cosine"}, "space": {"momentum.warmup_steps": 99}},
            "space.momentum.warmup_steps: 99 is longer than the run",
        ),
        ({"space": {"momentum.decay_steps": 5.0}}, "space.momentum.decay_steps: 5.0 is not a"),
    ],
)
def test_validation_names_the_key_the_value_and_what_is_allowed(changes, message):
    config = sweepjax.Config(optimizer="sgd", steps=50, out_dir=None).replace(**changes)
    with pytest.raises(ValueError, match="allowed") as error:
        validate(config)
    assert message in str(error.value)


def test_overrides_json_and_old_checkpoints():
    config = apply_overrides(sweepjax.Config(), ["schedules.momentum=cosine"])
    assert config.schedules == {"momentum": "cosine"}
    config = apply_overrides(
        config, ['schedules={"b2": "linear"}', "schedules.momentum=sgdr", "space.b2.power=2"]
    )
    assert config.schedules == {"b2": "linear", "momentum": "sgdr"}
    assert config.space["b2.power"] == 2
    assert sweepjax.Config.from_json(config.to_json()) == config
    # A config saved before `schedules` existed resumes as one without schedules.
    saved = sweepjax.Config().to_json()
    del saved["schedules"]
    assert sweepjax.Config.from_json(saved).schedules == {}
    assert differences({"config": saved}, sweepjax.Config().to_json(), {}) == []
    assert differences({"config": saved}, config.to_json(), {}) == [
        "schedules.b2: '<absent>' (checkpoint) != 'linear' (now)",
        "schedules.momentum: '<absent>' (checkpoint) != 'sgdr' (now)",
        "space.b2.power: '<absent>' (checkpoint) != 2 (now)",
    ]


def test_a_sweep_with_schedule_parameters_resumes_from_its_checkpoint(
    tiny_config, tiny_data, tmp_path
):
    """The `<name>.<parameter>` columns go through an Orbax checkpoint: stopped at step 10 and
    resumed, the sweep ends as one run straight through."""
    space = {
        "learning_rate": 0.1,
        "momentum": 0.9,
        "momentum.decay_steps": sweepjax.Choice([5, 15]),
    }
    config = tiny_config.replace(
        space=space, schedules={"momentum": "cosine"}, population=2, steps=20, searcher="grid"
    )
    straight = sweepjax.run(
        config.replace(out_dir=str(tmp_path / "a")), quiet=True, dataset=tiny_data
    )
    resumed = config.replace(out_dir=str(tmp_path / "b"))
    sweepjax.run(resumed.replace(steps=10), quiet=True, dataset=tiny_data)
    result = sweepjax.resume(
        resumed.out_dir, overrides=["steps=20"], config=resumed, quiet=True, dataset=tiny_data
    )
    assert [r["momentum.decay_steps"] for r in result.rows] == [5.0, 15.0]
    for name in ("train_loss", "val_loss"):
        assert_same(result.curves[name], straight.curves[name])
