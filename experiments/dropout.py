"""Dropout keep rates 0.75, 0.9 and 0.99 against none, on an MLP that over-fits (seed 003, seed 000).

Seed 003: start dropout at a keep probability of 0.75 or 0.9 and adjust it by how likely the
network is to over-fit; 0.99 when it surely will not. Seed 000: drop more in large layers, and
use no dropout unless the model over-fits. The `dropout` hyperparameter is the drop rate (1 -
keep), per-member data in one compiled program: 0, 0.01, 0.1 and 0.25 on a 256-wide MLP trained
for 50 epochs of MNIST-1D (without dropout its train loss falls to about 1e-3: it over-fits), at
four learning rates, every member from the same seed. The summary compares the best validation
and test accuracy per keep rate.

Run (about 2 minutes on a 2-core CPU):
    sweepjax run dropout --out runs/dropout
    sweepjax summarize dropout runs/dropout
    sweepjax report runs/dropout
"""

from sweepjax import Choice, Config, LogUniform
from sweepjax.rules import by_value, fmt, healthy, rows_of


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [256, 256]},
        optimizer="sgd",
        space={
            "dropout": Choice([0.0, 0.01, 0.1, 0.25]),  # keep rates 1, 0.99, 0.9, 0.75
            "learning_rate": LogUniform(0.01, 0.1, num=4),
            "seed": 0,  # one seed: the same initial draw and batches for every member
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=16,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/dropout",
    )


def keep(rate: float) -> str:
    return "none" if rate == 0 else f"keep {1 - rate:.3g}"


def summarize(out_dir) -> str:
    rows = rows_of(out_dir)
    lines = [by_value(rows, "dropout", "learning_rate")]
    best = {}
    for rate in sorted({r["dropout"] for r in rows}):
        ok = [r for r in rows if r["dropout"] == rate and healthy(r)]
        if not ok:
            lines.append(f"{keep(rate)}: every member diverged")
            continue
        top = best[rate] = max(ok, key=lambda r: r["final_val_accuracy"])
        lines.append(
            f"{keep(rate)} (dropout {fmt(rate)}): best val {top['final_val_accuracy']:.1%}, "
            f"test {top['test_accuracy']:.1%} at learning rate {fmt(top['learning_rate'])} "
            f"(train loss {fmt(top['final_train_loss'])}, val loss {fmt(top['final_val_loss'])})"
        )
    if 0.0 in best and len(best) > 1:
        base = best[0.0]
        winner = max((r for r in best if r), key=lambda r: best[r]["final_val_accuracy"])
        top = best[winner]
        lines.append(
            f"best with dropout ({keep(winner)}) against none: validation accuracy "
            f"{100 * (top['final_val_accuracy'] - base['final_val_accuracy']):+.1f} points, test "
            f"{100 * (top['test_accuracy'] - base['test_accuracy']):+.1f} points"
        )
    return "\n".join(lines)
