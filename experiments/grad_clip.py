"""Gradient clipping near the divergence boundary of the learning rate (seed 003).

Seed 003: gradient clipping handles exploding gradients and many frameworks turn it on by
default, but then the best learning rate is hard to find; with clean data and a right learning
rate it is not needed, and it is only a temporary fix. Learning rates from 0.01 to 100 (across
the boundary `lr_boundary` finds) crossed with `clip_norm` (clipping by global norm) from 0.01
to 100, one decade apart, every member from the same seed (same initial weights, same batches).
A threshold no gradient reaches changes nothing: the summary checks which of the loosest
thresholds give the same results, i.e. no clipping, and names per threshold the learning rates
that learned. Clipping moves the boundary up, and the best learning rate with it.

Run (about a minute on a 2-core CPU):
    sweepjax run grad_clip --out runs/grad_clip
    sweepjax summarize grad_clip runs/grad_clip
    sweepjax report runs/grad_clip                   # heat map of clip_norm and learning rate
"""

import math

from sweepjax import Config, LogUniform
from sweepjax.rules import by_value, fmt, healthy, learned, rows_of


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "clip_norm": LogUniform(0.01, 100.0, num=5),
            "learning_rate": LogUniform(0.01, 100.0, num=5),
            "seed": 0,  # one seed: members differ only by their two hyperparameters
            "momentum": 0.9,
            "weight_decay": 0.0,
        },
        searcher="grid",
        population=25,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/grad_clip",
    )


def _same(a, b) -> bool:
    return math.isclose(a["final_train_loss"], b["final_train_loss"], rel_tol=1e-3) and (
        abs(a["final_val_accuracy"] - b["final_val_accuracy"]) < 0.005
    )


def unreached(rows) -> list[float]:
    """The thresholds that give the loosest one's results wherever it learned (no clipping)."""
    values = sorted({r["clip_norm"] for r in rows}, reverse=True)
    at = {(r["clip_norm"], r["learning_rate"]): r for r in rows}
    loosest = [r for r in rows if r["clip_norm"] == values[0] and learned(r)]
    same = [values[0]]
    for value in values[1:]:
        pairs = [(r, at.get((value, r["learning_rate"]))) for r in loosest]
        if not pairs or not all(o is not None and _same(r, o) for r, o in pairs):
            break
        same.append(value)
    return same


def summarize(out_dir) -> str:
    rows = rows_of(out_dir)
    lines = [by_value(rows, "clip_norm", "learning_rate")]
    off = unreached(rows)
    names = {v: f"clip_norm {fmt(v)}" for v in {r["clip_norm"] for r in rows}}
    if len(off) > 1:
        names.update({v: f"clip_norm {fmt(v)} (no clipping)" for v in off})
        lines.append(
            f"clip_norm {' and '.join(fmt(v) for v in sorted(off))}: the same results wherever "
            "a member learned; no gradient reached them, so they are no clipping"
        )
    largest = {}
    for value in sorted(names, reverse=True):
        group = [r for r in rows if r["clip_norm"] == value]
        good = [r["learning_rate"] for r in group if learned(r)]
        failed = [r["learning_rate"] for r in group if not learned(r)]
        failed = [v for v in failed if v > max(good, default=0.0)]
        ok = [r for r in group if healthy(r)]
        largest[value] = max(good) if good else None
        text = f"{names[value]}: learned at " + (
            f"{fmt(min(good))} to {fmt(max(good))}" if good else "no learning rate"
        )
        if failed:
            text += f", not from {fmt(min(failed))} up"
        if any(not healthy(r) for r in group):
            text += f" ({sum(not healthy(r) for r in group)} diverged to NaN)"
        if ok:
            top = max(ok, key=lambda r: r["final_val_accuracy"])
            text += (
                f"; best val {top['final_val_accuracy']:.1%} (test {top['test_accuracy']:.1%}) "
                f"at learning rate {fmt(top['learning_rate'])}"
            )
        lines.append(text)
    if len(off) > 1 and largest[off[0]] is not None:
        base = largest[off[0]]
        moved = [
            f"{names[v]}: {fmt(largest[v])} (x{largest[v] / base:.3g})"
            for v in sorted(largest, reverse=True)
            if v not in off and largest[v] is not None
        ]
        lines.append(
            f"largest learning rate that learned: without clipping {fmt(base)}; " + "; ".join(moved)
        )
    return "\n".join(lines)
