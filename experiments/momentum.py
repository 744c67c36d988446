"""Momentum against learning rate: the usable learning rate shrinks as momentum grows (seed 000).

Andrew Ng's second tier (seed 000) puts momentum beside the hidden units and the batch size;
seed 003 raises momentum when a small learning rate cannot get out of a valley. SGD's effective
step is about lr / (1 - momentum), so a 4 x 4 grid shows the best learning rate and the
divergence boundary moving down as momentum goes from 0 to 0.99.

Run (about 2 minutes on a 2-core CPU):
    sweepjax run momentum --out runs/momentum
    sweepjax summarize momentum runs/momentum
    sweepjax report runs/momentum                   # heat map and divergence boundary
"""

from sweepjax import Choice, Config, LogUniform
from sweepjax.rules import best_line, by_value, fmt, healthy, learned, rows_of


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "learning_rate": LogUniform(1e-3, 1.0, num=4),
            "momentum": Choice([0.0, 0.5, 0.9, 0.99]),
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=16,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/momentum",
    )


def summarize(out_dir) -> str:
    rows = rows_of(out_dir)
    lines = [
        by_value(rows, "momentum", "learning_rate"),
        best_line(rows, ["momentum", "learning_rate"]),
    ]
    for m in sorted({r["momentum"] for r in rows}):
        group = [r for r in rows if r["momentum"] == m]
        stable = [r["learning_rate"] for r in group if learned(r)]
        bad = [r["learning_rate"] for r in group if not healthy(r)]
        lines.append(
            f"momentum={fmt(m)}: largest learning rate that learned "
            f"{fmt(max(stable)) if stable else 'none'}, smallest diverged "
            f"{fmt(min(bad)) if bad else 'none'}"
        )
    return "\n".join(lines)
