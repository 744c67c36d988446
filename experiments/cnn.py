"""MNIST-1D with the paper's 1-D CNN: Adam over learning rate and decoupled weight decay.

The MNIST-1D paper reports 94% test accuracy for this CNN; this sweep's best member (ranked by
validation accuracy) reached 95.2% test accuracy after 64 s of training on a 2-core CPU, where
the width search trains one member at a time per core (other widths and devices round
differently and lead to other best members: 94.4% at full width, 95.9% on one CPU device).

Run:
    sweepjax run cnn
    sweepjax run cnn --set population=4 --set steps=500
"""

from sweepjax import Config, LogUniform


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "cnn1d", "channels": [25, 25, 25], "kernel": 5},
        optimizer="adamw",
        space={
            "learning_rate": LogUniform(1e-3, 3e-2),
            "weight_decay": LogUniform(1e-5, 1e-1),
        },
        searcher="quasi_random",
        population=16,
        steps=6000,
        batch_size=100,
        eval_every=500,
        out_dir="runs/cnn",
    )
