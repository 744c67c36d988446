"""The weight initialiser, he against lecun against xavier, on a deep MLP (seed 003, seed 000).

Seed 003: a network whose weights are initialised badly does not train; he, lecun and xavier
all work well in practice, so pick the one that suits the task. Seed 000: the deeper the network,
the more the initialisation matters (Glorot's xavier, He's he). A structural hyperparameter:
one compiled program per `model.initializer`, crossed with six learning rates on an 8-layer
ReLU MLP, every trial from the same seed. ASHA runs the 18 trials through 6 slots, one
population per initialiser in play, and stops the slow starters at 200, 600 and 1800 steps:
the initialiser that starts fastest keeps the most trials. The summary names per initialiser
its best trial, how many ASHA kept to the full budget, the learning rates that learned (by a
trial's last step) and the smallest that diverged, and how far each got at the smallest
learning rate.

Run (about 2 minutes on a 2-core CPU):
    sweepjax run initializer --out runs/initializer
    sweepjax summarize initializer runs/initializer
    sweepjax report runs/initializer
"""

from sweepjax import Choice, Config, LogUniform
from sweepjax.rules import best_line, by_value, fmt, learned_by_last_step, rows_of


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100] * 8},
        optimizer="sgd",
        space={
            "model.initializer": Choice(["he", "lecun", "xavier"]),
            "learning_rate": LogUniform(1e-3, 0.3, num=6),
            "seed": 0,  # one seed: the same initial draw and batches for every member
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        trials=18,
        population=6,
        scheduler={"name": "asha", "min_steps": 200},
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/initializer",
    )


def summarize(out_dir) -> str:
    rows = rows_of(out_dir)
    lines = [
        by_value(rows, "model.initializer", "learning_rate"),
        best_line(rows, ["model.initializer", "learning_rate"]),
    ]
    smallest = min(r["learning_rate"] for r in rows)
    start = {}
    for name in sorted({r["model.initializer"] for r in rows}):
        group = [r for r in rows if r["model.initializer"] == name]
        good = [r["learning_rate"] for r in group if learned_by_last_step(r)]
        bad = [r["learning_rate"] for r in group if r["status"] == "diverged"]
        kept = sorted(
            (r for r in group if r["status"] == "ok"), key=lambda r: -r["final_val_accuracy"]
        )
        first = [r for r in group if r["learning_rate"] == smallest and r["status"] != "diverged"]
        if first:
            start[name] = first[0]
        best = (
            f"best val {kept[0]['final_val_accuracy']:.1%} (test {kept[0]['test_accuracy']:.1%}) "
            f"at learning rate {fmt(kept[0]['learning_rate'])}"
            if kept
            else "no trial trained the full budget"
        )
        lines.append(
            f"{name}: {best}; ASHA kept {len(kept)} of {len(group)} to the full budget; learned at "
            f"{len(good)} of {len(group)} learning rates"
            f"{f' ({fmt(min(good))} to {fmt(max(good))})' if good else ''}; smallest diverged "
            f"{fmt(min(bad)) if bad else 'none'}"
        )
    if start:
        order = sorted(start, key=lambda n: start[n]["final_train_loss"])
        losses = ", ".join(
            f"{n} {fmt(start[n]['final_train_loss'])} after {start[n]['steps_trained']} steps"
            for n in order
        )
        lines.append(f"final train loss at the smallest learning rate {fmt(smallest)}: {losses}")
    return "\n".join(lines)
