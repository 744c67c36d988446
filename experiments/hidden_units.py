"""Hidden units, from 8 to 512 per layer: too few cannot express the task (seed 000, seed 003).

A structural hyperparameter: the sweep groups members by `model.hidden`, compiles one program
per width and merges the buckets into one results table. Seed 003: too few neurons lack the
capacity for the task, too many train slowly and fit noise; seed 000 (Andrew Ng) puts hidden
units in the second tier, after the learning rate.

Run (about 3 minutes on a 2-core CPU):
    sweepjax run hidden_units --out runs/hidden_units
    sweepjax summarize hidden_units runs/hidden_units
    sweepjax report runs/hidden_units
"""

from sweepjax import Choice, Config
from sweepjax.rules import compare


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "model.hidden": Choice([[8, 8], [32, 32], [128, 128], [512, 512]]),
            "learning_rate": Choice([0.01, 0.1]),
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=8,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/hidden_units",
    )


def summarize(out_dir) -> str:
    return compare(out_dir, "model.hidden", "learning_rate")
