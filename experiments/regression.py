"""Regression: the diabetes data set (442 patients, 10 measurements, a disease-progression
score a year later; Efron et al. 2004), shipped with scikit-learn, so no download.

The task is `regression`: mean squared error on the standardised score, members ranked by the
lowest validation MSE; R^2 and MAE are reported beside it. Sweeps Adam's learning rate and
decoupled weight decay for a small MLP with a cosine decay. Needs `pip install
'sweepjax[datasets]'` (scikit-learn).

Run:
    sweepjax run regression
    sweepjax run regression --set population=8 --set steps=300
"""

from sweepjax import Config, LogUniform


def get_config() -> Config:
    return Config(
        dataset="sklearn:diabetes",
        task="regression",
        val_size=60,
        model={"name": "mlp", "hidden": [32, 32], "num_classes": 1},
        optimizer="adamw",
        schedule="cosine",
        space={
            "learning_rate": LogUniform(1e-4, 3e-2),
            "weight_decay": LogUniform(1e-5, 1.0),
        },
        searcher="quasi_random",
        population=32,
        steps=1000,
        batch_size=32,
        eval_every=100,
        out_dir="runs/regression",
    )
