"""Dropout whose rate is a call argument, shared by the built-in models.

`nn.Dropout` takes its rate as a static attribute and branches on it in Python, so one compiled
program could not give each member its own rate. Here the rate may be a traced per-member value.

>>> layer = Dropout()
>>> x = jnp.ones((2, 4))
>>> (layer.apply({}, x, 0.5, train=False) == x).all()
Array(True, dtype=bool)
>>> y = layer.apply({}, x, 0.5, train=True, rngs={"dropout": jax.random.key(0)})
>>> sorted({float(v) for v in y.ravel()})
[0.0, 2.0]
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Dropout(nn.Module):
    """Inverted dropout at `rate` (None: none) in train mode; the identity otherwise."""

    @nn.compact
    def __call__(self, x: jax.Array, rate: jax.Array | float | None, train: bool) -> jax.Array:
        if rate is None or not train:
            return x
        keep = 1.0 - rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return jnp.where(mask, x / jnp.asarray(keep, x.dtype), 0.0).astype(x.dtype)
