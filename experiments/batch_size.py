"""Batch size, from 8 to 128, at two learning rates: one compiled program (seed 002, seed 000).

Each step draws one shared batch of 128 examples and member i averages its gradient over the
first b_i of them, so the batch size is per-member data like the learning rate. Seed 000: the
batch size needs no fine tuning, only a sensible power of two; seed 002: small batches are
noisy, and the best learning rate grows with the batch.

Run (about 2 minutes on a 2-core CPU):
    sweepjax run batch_size --out runs/batch_size
    sweepjax summarize batch_size runs/batch_size
    sweepjax report runs/batch_size
"""

from sweepjax import Choice, Config
from sweepjax.rules import compare


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "batch_size": Choice([8, 16, 32, 64, 128]),
            "learning_rate": Choice([0.01, 0.1]),
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=10,
        steps=2000,
        batch_size=128,
        eval_every=100,
        out_dir="runs/batch_size",
    )


def summarize(out_dir) -> str:
    return compare(out_dir, "batch_size", "learning_rate")
