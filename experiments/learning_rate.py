"""The learning rate, from 1e-5 to 1, on the MNIST-1D CNN (seed 002, seed 003).

Six decades of SGD-with-momentum learning rates as one grid: too low a rate under-fits (the
train loss barely moves in the budget), too high a rate oscillates or diverges (NaN: the member
is quarantined and marked diverged), and the best lies between.

Run (about 4 minutes on a 2-core CPU):
    sweepjax run learning_rate --out runs/learning_rate
    sweepjax report runs/learning_rate                    # curves coloured by learning rate
    sweepjax summarize learning_rate runs/learning_rate   # the rule, in a table
On an image set (where tensorflow-datasets has it):
    sweepjax run learning_rate --set dataset=tfds:cifar10 --set 'model={"name": "cnn2d"}'
"""

from sweepjax import Config, LogUniform
from sweepjax.rules import compare


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "cnn1d", "channels": [25, 25, 25], "kernel": 5},
        optimizer="sgd",
        space={
            "learning_rate": LogUniform(1e-5, 1.0, num=6),
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=6,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/learning_rate",
    )


def summarize(out_dir) -> str:
    return "\n".join(
        [
            "Too low a learning rate under-fits; too high oscillates or diverges.",
            compare(out_dir, "learning_rate"),
        ]
    )
