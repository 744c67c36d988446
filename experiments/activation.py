"""ReLU against leaky ReLU when training stalls: dead units (seed 003, seed 000).

Seed 003: if the error has not changed after several epochs, the network may be using ReLU,
whose gradient is 0 for negative inputs: units that only see negative inputs never update
again ("dead"), so try leaky ReLU. Seed 000: leaky ReLU keeps ReLU's strengths but is not always
better. A deep, narrow MLP (8 layers of 16 units) under SGD with momentum, two seeds per cell,
at learning rates up to where units die: a structural hyperparameter, one compiled program per
`model.activation`. The 24 trials run through 8 slots, one population per activation in play,
under the `patience` scheduler, which is the rule's own test: a trial whose validation accuracy
has not improved for 400 steps stops, and its slot takes the next trial. The summary counts per
activation the trials that learned, stalled (not diverged, train loss still at chance level by
its last step) and diverged.

Run (about a minute on a 2-core CPU):
    sweepjax run activation --out runs/activation
    sweepjax summarize activation runs/activation
    sweepjax report runs/activation
"""

from sweepjax import Choice, Config, LogUniform
from sweepjax.rules import best_line, by_value, fmt, learned_by_last_step, rows_of


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [16] * 8},
        optimizer="sgd",
        space={
            "model.activation": Choice(["relu", "leaky_relu"]),
            "learning_rate": LogUniform(0.01, 1.0, num=6),
            "seed": Choice([0, 1]),
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        trials=24,
        population=8,
        scheduler={"name": "patience", "patience": 400},
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/activation",
    )


def stalled(row) -> bool:
    """Not diverged, but its train loss is not below chance level by its last step."""
    return row["status"] != "diverged" and not learned_by_last_step(row)


def summarize(out_dir) -> str:
    rows = rows_of(out_dir)
    lines = [
        by_value(rows, "model.activation", "learning_rate"),
        best_line(rows, ["model.activation", "learning_rate", "seed"]),
    ]
    names = sorted({r["model.activation"] for r in rows})
    rates = sorted({r["learning_rate"] for r in rows})

    def count(name, rate, keep) -> int:
        return sum(
            keep(r) for r in rows if r["model.activation"] == name and r["learning_rate"] == rate
        )

    for name in names:
        group = [r for r in rows if r["model.activation"] == name]
        lines.append(
            f"{name}: {sum(map(learned_by_last_step, group))} of {len(group)} learned, "
            f"{sum(map(stalled, group))} stalled at chance level, "
            f"{sum(r['status'] == 'diverged' for r in group)} diverged"
        )
    for name in names:
        for other in names:
            rescued = [
                fmt(rate)
                for rate in rates
                if count(name, rate, stalled)
                and count(other, rate, learned_by_last_step)
                > count(name, rate, learned_by_last_step)
            ]
            if other != name and rescued:
                lines.append(
                    f"learning rates where {name} stalled and {other} learned more: "
                    f"{', '.join(rescued)}"
                )
    return "\n".join(lines)
