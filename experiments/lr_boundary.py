"""The divergence boundary of the learning rate, found in one pass (seed 003).

Seed 003 finds the largest usable learning rate by bisection: try 0.1, divide by ten while the
loss "runs away", then halve the interval. A population does the whole search at once: 16
log-spaced rates from 1e-4 to 10 train side by side, the ones that blow up are quarantined, and
the summary names the largest rate that stayed stable (healthy, and its train loss fell below
chance level) and the smallest that diverged.

Run (about a minute on a 2-core CPU):
    sweepjax run lr_boundary --out runs/lr_boundary
    sweepjax summarize lr_boundary runs/lr_boundary
    sweepjax report runs/lr_boundary                   # the divergence boundary table
"""

from sweepjax import Config, LogUniform
from sweepjax.rules import by_value, fmt, healthy, learned, rows_of


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "learning_rate": LogUniform(1e-4, 10.0, num=16),
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=16,
        steps=1000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/lr_boundary",
    )


def boundary(rows) -> dict:
    """The largest stable, largest healthy and smallest diverged learning rates (None: none)."""
    rates = lambda keep: [r["learning_rate"] for r in rows if keep(r)]  # noqa: E731
    stable = rates(learned)
    ok = rates(healthy)
    bad = rates(lambda r: not healthy(r))
    return {
        "largest_stable": max(stable) if stable else None,
        "largest_healthy": max(ok) if ok else None,
        "smallest_diverged": min(bad) if bad else None,
    }


def summarize(out_dir) -> str:
    rows = rows_of(out_dir)
    b = boundary(rows)
    return "\n".join(
        [
            by_value(rows, "learning_rate"),
            f"largest stable learning rate: {fmt(b['largest_stable'])} "
            "(healthy and its train loss fell below chance level)",
            f"largest rate that did not diverge: {fmt(b['largest_healthy'])}; "
            f"smallest that diverged: {fmt(b['smallest_diverged'])}",
        ]
    )
