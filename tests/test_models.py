"""Built-in models and the Flax adapter."""

import gc

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweepjax.engine import adapters
from sweepjax.engine.models import CNN1D, MLP, PatchConv, as_model, build_model


@pytest.mark.parametrize(
    ("shape", "window", "strides", "padding"),
    [
        ((2, 40, 3), (5,), (2,), 1),
        ((2, 9, 9, 2), (3, 3), (1, 1), "SAME"),
        ((2, 8, 7, 2), (3, 2), (2, 1), "VALID"),
    ],
)
def test_patch_conv_equals_flax_conv(shape, window, strides, padding):
    x = jax.random.normal(jax.random.key(0), shape)
    reference = nn.Conv(4, window, strides=strides, padding=padding)
    variables = reference.init(jax.random.key(1), x)
    ours = PatchConv(4, window, strides=strides, padding=padding)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, variables
    )
    np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), atol=1e-5)


def test_cnn1d_has_the_paper_shape():
    variables = jax.eval_shape(as_model(CNN1D()).init, jax.random.key(0), jnp.zeros((1, 40)))
    assert sum(leaf.size for leaf in jax.tree.leaves(variables)) == 7460
    assert sorted(variables["params"]) == ["Conv_0", "Conv_1", "Conv_2", "Dense_0"]


def test_build_model_rejects_unknown_options():
    with pytest.raises(ValueError, match=r"model.activation: unknown 'swishy'; allowed: \["):
        build_model({"name": "mlp", "activation": "swishy"})


def test_a_new_module_never_gets_the_adapter_of_a_dead_one():
    """Unhashable modules are adapted by identity; an id freed by the collector and given to a
    new module must not find the old module's adapter."""
    for _ in range(2 * adapters.CACHED_ADAPTERS):
        module = MLP(hidden=[8])  # a list: unhashable
        model = as_model(module)
        assert model.module is module and as_model(module) is model
        del module, model
        gc.collect()
    assert adapters._cached.cache_info().currsize <= adapters.CACHED_ADAPTERS


def test_equal_modules_share_one_adapter():
    assert as_model(MLP(hidden=(8,))) is as_model(MLP(hidden=(8,)))
    assert as_model(MLP(hidden=(8,))) is not as_model(MLP(hidden=(9,)))
