"""The schedule benchmark: every schedule family x a learning-rate sweep x seeds, one population.

`bench_schedules(config)` trains the whole population as one compiled program (the schedule
family is a per-member choice) and writes, besides the usual sweep files, into `out_dir`:
  * `leaderboard.txt` / `leaderboard.csv`: per family, its best peak learning rate (by mean final
    validation accuracy over seeds), that mean and its spread (std) over seeds, and the mean
    number of steps its seeds took to reach `target` validation accuracy;
  * `lr_curves.png`: every family's learning-rate curve at its best peak learning rate;
  * `val_curves.png`: the validation accuracy curves of each family's best member;
  * `accuracy_vs_lr.png`: final validation accuracy (mean over seeds) against peak learning
    rate, one line per family, log x axis.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweepjax.config import Config, families
from sweepjax.data import Dataset
from sweepjax.results import Result, atomic_write
from sweepjax.schedules import learning_rate_at
from sweepjax.sweep import run, sample_hparams
from sweepjax.trial_results import family_names


@dataclasses.dataclass
class FamilyScore:
    """One row of the schedule leaderboard."""

    family: str
    best_learning_rate: float
    mean_val_accuracy: float
    std_val_accuracy: float
    seeds: int  # healthy seeds at that learning rate
    steps_to_target: float  # mean over the seeds that reached it; nan if none did
    reached_target: int  # how many seeds reached it
    diverged: int  # members of the family (any learning rate) that diverged


def _steps_to(curve: np.ndarray, steps: np.ndarray, target: float) -> float:
    hit = np.nonzero(np.nan_to_num(curve, nan=-1.0) >= target)[0]
    return float(steps[hit[0]]) if hit.size else float("nan")


def score_families(config: Config, result: Result, target: float) -> list[FamilyScore]:
    """Per family: the best peak learning rate and its mean, spread and speed over seeds."""
    rows = result.rows
    steps = result.curves["steps"]
    val = result.curves["val_accuracy"]
    scores = []
    for family in families(config, "schedule"):
        members = [r for r in rows if r.get("schedule", family) == family]
        by_lr: dict[float, list[dict[str, Any]]] = {}
        for r in members:
            by_lr.setdefault(round(float(r["learning_rate"]), 8), []).append(r)

        def rank(item):
            lr, group = item
            ok = [r for r in group if r["status"] == "ok"]
            full = len(ok) == len(group)  # a learning rate that diverges a seed ranks lower
            mean = np.mean([r["final_val_accuracy"] for r in ok]) if ok else -1.0
            return (full, mean)

        lr, group = max(by_lr.items(), key=rank)
        ok = [r for r in group if r["status"] == "ok"]
        accs = np.array([r["final_val_accuracy"] for r in ok], float)
        reach = [_steps_to(val[:, r["member"]], steps, target) for r in ok]
        reached = [s for s in reach if np.isfinite(s)]
        scores.append(
            FamilyScore(
                family=family,
                best_learning_rate=lr,
                mean_val_accuracy=float(accs.mean()) if ok else float("nan"),
                std_val_accuracy=float(accs.std()) if ok else float("nan"),
                seeds=len(ok),
                steps_to_target=float(np.mean(reached)) if reached else float("nan"),
                reached_target=len(reached),
                diverged=sum(r["status"] != "ok" for r in members),
            )
        )
    return sorted(scores, key=lambda s: -np.nan_to_num(s.mean_val_accuracy, nan=-1.0))


def leaderboard_text(scores: list[FamilyScore], target: float) -> str:
    """The leaderboard as a fixed-width table."""
    header = ["family", "best_lr", "val_acc_mean", "val_acc_std", "seeds", f"steps_to_{target:g}"]
    cells = []
    for s in scores:
        reach = (
            "never"
            if not s.reached_target
            else f"{s.steps_to_target:.0f} ({s.reached_target}/{s.seeds})"
        )
        cells.append(
            [
                s.family,
                f"{s.best_learning_rate:.3g}",
                f"{s.mean_val_accuracy:.4f}",
                f"{s.std_val_accuracy:.4f}",
                str(s.seeds),
                reach,
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    lines = [
        "  ".join(
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *cells]
    ]
    return "\n".join(lines)


def _best_member(result: Result, score: FamilyScore) -> dict[str, Any] | None:
    rows = [
        r
        for r in result.rows
        if r.get("schedule", score.family) == score.family
        and round(float(r["learning_rate"]), 8) == score.best_learning_rate
        and r["status"] == "ok"
    ]
    return max(rows, key=lambda r: r["final_val_accuracy"]) if rows else None


def _save(fig, ax, path: Path) -> None:
    """Legend, layout, write and close: the end of every figure here."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plots(config: Config, result: Result, scores: list[FamilyScore], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hparams = sample_hparams(config)
    names = family_names(config, hparams, "schedule")
    schedule_families = families(config, "schedule")
    steps = np.arange(config.steps, dtype=np.float32)
    curve = jax.jit(
        jax.vmap(lambda s, hp: learning_rate_at(schedule_families, s, hp), in_axes=(0, None))
    )

    fig, ax = plt.subplots(figsize=(9, 5))
    for s in scores:
        best = _best_member(result, s)
        if best is None:
            continue
        hp = {k: jnp.asarray(v[best["member"]]) for k, v in hparams.values.items()}
        ax.plot(steps, np.asarray(curve(jnp.asarray(steps), hp)), label=s.family)
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate at each family's best peak")
    _save(fig, ax, out / "lr_curves.png")

    fig, ax = plt.subplots(figsize=(9, 5))
    for s in scores:
        best = _best_member(result, s)
        if best is not None:
            ax.plot(
                result.curves["steps"],
                result.curves["val_accuracy"][:, best["member"]],
                marker=".",
                label=f"{s.family} (lr {s.best_learning_rate:.3g})",
            )
    ax.set(xlabel="step", ylabel="validation accuracy", title="best member of each family")
    _save(fig, ax, out / "val_curves.png")

    fig, ax = plt.subplots(figsize=(9, 5))
    for family in schedule_families:
        rows = [r for r in result.rows if str(names[r["member"]]) == family]
        lrs = sorted({round(float(r["learning_rate"]), 8) for r in rows})
        means, stds = [], []
        for lr in lrs:
            accs = [
                r["final_val_accuracy"]
                for r in rows
                if round(float(r["learning_rate"]), 8) == lr and r["status"] == "ok"
            ]
            means.append(np.mean(accs) if accs else np.nan)
            stds.append(np.std(accs) if accs else np.nan)
        ax.errorbar(lrs, means, yerr=stds, marker="o", capsize=2, label=family)
    ax.set_xscale("log")
    ax.set(
        xlabel="peak learning rate",
        ylabel="final validation accuracy (mean over seeds)",
        title="accuracy against peak learning rate",
    )
    _save(fig, ax, out / "accuracy_vs_lr.png")


def bench_schedules(
    config: Config, *, target: float = 0.5, quiet: bool = False, dataset: Dataset | None = None
) -> tuple[Result, list[FamilyScore]]:
    """Run the schedule benchmark `config` (a sweep over schedule families) and score it.

    Args:
      config: a sweep whose space holds `schedule` (a `Choice` of families), `learning_rate`
        and usually `seed`; see `experiments/schedules.py`.
      target: the validation accuracy for the steps-to-target column.
      quiet: print nothing.
      dataset: arrays to train on instead of `config.dataset`.

    Returns:
      The sweep's `Result` and the leaderboard, best family first. With `out_dir` set, the
      leaderboard and the plots are written there.

    >>> score = FamilyScore("cosine", 0.1, 0.71, 0.01, 3, 800.0, 3, 0)
    >>> print(leaderboard_text([score], target=0.6))
    family  best_lr  val_acc_mean  val_acc_std  seeds  steps_to_0.6
    cosine      0.1        0.7100       0.0100      3     800 (3/3)
    """
    result = run(config, quiet=True, dataset=dataset)
    scores = score_families(config, result, target)
    text = leaderboard_text(scores, target)
    if config.out_dir is not None:
        out = Path(config.out_dir)
        atomic_write(out / "leaderboard.txt", lambda f: f.write(text + "\n"))

        def write_csv(f):
            writer = csv.DictWriter(f, fieldnames=[x.name for x in dataclasses.fields(FamilyScore)])
            writer.writeheader()
            writer.writerows(dataclasses.asdict(s) for s in scores)

        atomic_write(out / "leaderboard.csv", write_csv)
        _plots(config, result, scores, out)
    if not quiet:
        print(text)
        summary = result.summary
        print(
            f"{len(result.rows)} members, {summary['compile_seconds']:.1f} s compiling, "
            f"{summary['train_seconds']:.1f} s training"
            + (f"; files in {config.out_dir}/" if config.out_dir is not None else "")
        )
    return result, scores
