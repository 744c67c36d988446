"""The schedule benchmark: every schedule family x 6 peak learning rates x 3 seeds, one program.

MNIST-1D, the 1-D CNN, SGD with momentum 0.9, a fixed budget of steps. Each family keeps its
default shape parameters relative to the budget (see `sweepjax.engine.schedules`); the leaderboard gives
each family's best peak learning rate, the mean and spread of its final validation accuracy over
seeds, and the steps its seeds took to reach the target accuracy.

Run:
    sweepjax bench-schedules                         # this file, results in runs/schedules/
    sweepjax bench-schedules --set steps=3000 --target 0.8
    python experiments/schedules.py                  # the same
"""

from sweepjax import Choice, Config, LogUniform
from sweepjax.engine.schedules import BUILTIN_SCHEDULES

LEARNING_RATES = 6
SEEDS = (0, 1, 2)


def get_config() -> Config:
    families = list(BUILTIN_SCHEDULES)
    return Config(
        dataset="mnist1d",
        model={"name": "cnn1d"},
        optimizer="sgd",
        space={
            "schedule": Choice(families),
            "learning_rate": LogUniform(3e-3, 1.0, num=LEARNING_RATES),
            "momentum": 0.9,
            "seed": Choice(list(SEEDS)),
        },
        searcher="grid",
        population=len(families) * LEARNING_RATES * len(SEEDS),
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/schedules",
    )


if __name__ == "__main__":
    import sys

    from sweepjax.cli import main

    sys.exit(main(["bench-schedules", __file__, *sys.argv[1:]]))
