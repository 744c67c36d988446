"""Built-in models and the Flax adapter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweepjax.engine.models import CNN1D, PatchConv, as_model, build_model


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
