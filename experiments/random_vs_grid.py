"""Random search against grid search at the same budget (Bergstra & Bengio 2012, seed 000).

Two dimensions, of which only one matters: the learning rate (seed 000's first tier) and a
weight decay so small (1e-6 to 1e-4) that it changes nothing. A 4 x 4 grid spends its 16 members
on only 4 distinct learning rates; random and quasi-random search spend them on 16. The summary
counts the distinct learning rates each method tried and the best accuracy each found.

Run the same experiment three times, one per search method, then compare:
    sweepjax run random_vs_grid --out runs/rvg/grid
    sweepjax run random_vs_grid --set searcher=random --out runs/rvg/random
    sweepjax run random_vs_grid --set searcher=quasi_random --out runs/rvg/quasi_random
    sweepjax summarize random_vs_grid runs/rvg/grid runs/rvg/random runs/rvg/quasi_random
"""

from sweepjax import Config, LogUniform
from sweepjax.report import read_summary
from sweepjax.rules import rows_of

IMPORTANT, UNIMPORTANT = "learning_rate", "weight_decay"


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            IMPORTANT: LogUniform(1e-3, 1.0, num=4),
            UNIMPORTANT: LogUniform(1e-6, 1e-4, num=4),
            "momentum": 0.9,
        },
        searcher="grid",  # --set searcher=random / quasi_random for the other two sweeps
        population=16,
        steps=1000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/rvg/grid",
    )


def compare(out_dirs) -> list[dict]:
    """Per sweep: its search method, members, distinct values of each dimension, best accuracies."""
    out = []
    for out_dir in out_dirs:
        rows = rows_of(out_dir)
        method = read_summary(out_dir).get("config", {}).get("searcher", str(out_dir))
        ok = sorted(
            (r for r in rows if r["status"] == "ok"), key=lambda r: -r["final_val_accuracy"]
        )
        out.append(
            {
                "search": method,
                "members": len(rows),
                "distinct_important": len({r[IMPORTANT] for r in rows}),
                "distinct_unimportant": len({r[UNIMPORTANT] for r in rows}),
                "best_val_accuracy": ok[0]["final_val_accuracy"] if ok else float("nan"),
                "test_accuracy": ok[0]["test_accuracy"] if ok else float("nan"),
            }
        )
    return out


def summarize(*out_dirs) -> str:
    """A table of the sweeps in `out_dirs` (e.g. the grid, random and quasi-random ones)."""
    lines = [
        f"search | members | distinct {IMPORTANT} | distinct {UNIMPORTANT} | "
        "best val acc | its test acc",
        "--- | --- | --- | --- | --- | ---",
    ]
    for c in compare(out_dirs):
        lines.append(
            f"{c['search']} | {c['members']} | {c['distinct_important']} | "
            f"{c['distinct_unimportant']} | {c['best_val_accuracy']:.1%} | {c['test_accuracy']:.1%}"
        )
    return "\n".join(lines)
