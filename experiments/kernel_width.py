"""Convolution kernel width, 3 to 9, on the MNIST-1D CNN (seed 002).

A structural hyperparameter: the sweep groups members by `model.kernel`, compiles one program per
width and merges the buckets into one results table. Seed 002: a wider kernel sees more context
per layer (more parameters, slower), and past a point it stops paying.

Run (about 5 minutes on a 2-core CPU):
    sweepjax run kernel_width --out runs/kernel_width
    sweepjax summarize kernel_width runs/kernel_width
    sweepjax report runs/kernel_width
On an image set (where tensorflow-datasets has it):
    sweepjax run kernel_width --set dataset=tfds:cifar10 --set 'model={"name": "cnn2d"}'
"""

from sweepjax import Choice, Config
from sweepjax.rules import compare


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        # Two stride-2 layers: three would shrink a length-40 signal to nothing at kernel 7 and 9.
        model={"name": "cnn1d", "channels": [25, 25], "kernel": 5},
        optimizer="sgd",
        space={
            "model.kernel": Choice([3, 5, 7, 9]),
            "learning_rate": Choice([0.01, 0.1]),
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=8,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/kernel_width",
    )


def summarize(out_dir) -> str:
    return compare(out_dir, "model.kernel", "learning_rate")
