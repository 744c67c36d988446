"""Next-token prediction: a small Transformer reads the Python documentation byte by byte.

The corpus is the documentation's topics every Python ships (`pydoc_data`), so nothing is
downloaded; windows of 64 byte tokens, the last topics held out for validation and test (see
`sweepjax.engine.text`). The task is `next_token`: token cross-entropy, members ranked by the lowest
validation perplexity. Sweeps AdamW's peak learning rate, its warmup and weight decay under a
warmup-cosine schedule, for a 2-layer, 64-wide Transformer.

Run:
    sweepjax run next_token
    sweepjax run next_token --set population=4 --set steps=100 --set 'space.warmup_steps=IntUniform(5, 20)'

"""

from sweepjax import Config, IntUniform, LogUniform


def get_config() -> Config:
    return Config(
        dataset="text:pydoc:64",
        task="next_token",
        val_size=200,
        normalize="none",
        model={
            "name": "transformer",
            "vocab_size": 256,
            "max_len": 64,
            "width": 64,
            "heads": 4,
            "layers": 2,
        },
        optimizer="adamw",
        schedule="warmup_cosine",
        space={
            "learning_rate": LogUniform(1e-3, 3e-2),
            "warmup_steps": IntUniform(10, 100),
            "weight_decay": LogUniform(1e-4, 0.3),
        },
        searcher="quasi_random",
        population=8,
        steps=400,
        batch_size=32,
        eval_every=100,
        out_dir="runs/next_token",
    )
