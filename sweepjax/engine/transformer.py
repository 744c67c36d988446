"""A small decoder-only Transformer language model (GPT-style, pre-LayerNorm).

Registered as the built-in model `{"name": "transformer", ...}`. It takes integer tokens
`[batch, T]` (T at most `max_len`) and returns logits `[batch, T, vocab_size]`, where position t
sees tokens 0..t only, so one forward pass scores every next-token prediction of a window.

>>> model = Transformer(vocab_size=11, max_len=8, width=16, heads=2, layers=1)
>>> tokens = jnp.zeros((3, 5), jnp.int32)
>>> model.apply(model.init(jax.random.key(0), tokens), tokens).shape
(3, 5, 11)
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sweepjax.engine.dropout import Dropout

EMBEDDING_INIT = nn.initializers.normal(stddev=0.02)


class DecoderBlock(nn.Module):
    """Causal self-attention then a GELU MLP, each on a LayerNorm-ed residual branch.

    Dropout at `dropout_rate` (a traced value, or None) on each branch before it is added back.
    """

    heads: int
    mlp_ratio: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, train: bool, dropout_rate=None) -> jax.Array:
        width = x.shape[-1]
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attention")(
            nn.LayerNorm(name="attention_norm")(x), mask=mask
        )
        x = x + Dropout()(y, dropout_rate, train)
        y = nn.Dense(self.mlp_ratio * width, name="mlp_in")(nn.LayerNorm(name="mlp_norm")(x))
        y = nn.Dense(width, name="mlp_out")(nn.gelu(y))
        return x + Dropout()(y, dropout_rate, train)


class Transformer(nn.Module):
    """Token and learned position embeddings, `layers` decoder blocks, LayerNorm, logits.

    Options: `vocab_size`, `max_len` (the longest sequence), `width` (the embedding size, a
    multiple of `heads`), `heads`, `layers` (0 gives a bigram model), `mlp_ratio` (the MLP's
    width over `width`). Invalid options raise `ValueError` when the module is built.

    >>> Transformer(width=30, heads=4)
    Traceback (most recent call last):
    ...
    ValueError: model.heads: 4 does not divide width 30; allowed: a divisor of width (1, 2, 3, 5, 6, 10, 15, 30).
    """

    vocab_size: int = 128
    max_len: int = 64
    width: int = 64
    heads: int = 4
    layers: int = 2
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        _check_options(self)
        super().__post_init__()

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False, dropout_rate=None) -> jax.Array:
        _check_tokens(tokens, self.max_len)
        embed = nn.Embed(self.vocab_size, self.width, embedding_init=EMBEDDING_INIT, name="tokens")
        positions = nn.Embed(
            self.max_len, self.width, embedding_init=EMBEDDING_INIT, name="positions"
        )
        x = embed(tokens) + positions(jnp.arange(tokens.shape[1]))
        mask = nn.make_causal_mask(tokens)
        for i in range(self.layers):
            block = DecoderBlock(self.heads, self.mlp_ratio, name=f"block_{i}")
            x = block(x, mask, train, dropout_rate)
        x = nn.LayerNorm(name="final_norm")(x)
        return nn.Dense(self.vocab_size, name="logits")(x)


def _check_options(model: Transformer) -> None:
    minimums = {"vocab_size": 1, "max_len": 1, "width": 1, "heads": 1, "layers": 0, "mlp_ratio": 1}
    for key, low in minimums.items():
        value = getattr(model, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"model.{key}: {value!r} is not allowed; allowed: integers >= {low}.")
    if model.width % model.heads:
        divisors = [d for d in range(1, model.width + 1) if model.width % d == 0]
        raise ValueError(
            f"model.heads: {model.heads} does not divide width {model.width}; "
            f"allowed: a divisor of width ({', '.join(map(str, divisors))})."
        )


def _check_tokens(tokens: jax.Array, max_len: int) -> None:
    """Shapes and dtypes are static, so these checks also hold under jit and vmap."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(
            f"model: the transformer got inputs of shape {tokens.shape} and dtype {tokens.dtype}; "
            "allowed: integer tokens of shape [batch, sequence length]."
        )
    if tokens.shape[1] > max_len:
        raise ValueError(
            f"model: a sequence of {tokens.shape[1]} tokens is longer than max_len {max_len}; "
            f"allowed: at most {max_len} tokens (or set the model's max_len)."
        )
