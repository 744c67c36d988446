"""The schedule benchmark: every schedule family x a learning-rate sweep x seeds, one population.

`bench_schedules(config)` trains the whole population as one compiled program (the schedule
family is a per-member choice) and writes, besides the usual sweep files, into `out_dir`:
  * `leaderboard.txt` / `leaderboard.csv`: per family, its best peak learning rate (by mean final
    validation accuracy over seeds), that mean and its spread (std) over seeds, and the mean
    number of steps its seeds took to reach `target` validation accuracy;
  * `lr_curves.png`: every family's learning-rate curve at its best peak learning rate;
  * `val_curves.png`: the validation accuracy curves of each family's best member;
  * `accuracy_vs_lr.png`: final validation accuracy (mean and std over seeds) against peak
    learning rate, one line per family, log x axis.
The figures are the report's (`sweepjax.report`): its colour per family, its log axes, its
schedules computed as training computes them.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from sweepjax.engine.data import Dataset
from sweepjax.files import atomic_write
from sweepjax.runner.run import run
from sweepjax.sweep.config import Config, families
from sweepjax.sweep.results import Result


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


def _best_of_each_family(result: Result, scores: list[FamilyScore]) -> Result:
    """The sweep narrowed to each family's best member at its best peak learning rate."""
    best = [_best_member(result, s) for s in scores]
    members = [b["member"] for b in best if b is not None]
    where = [i for i, r in enumerate(result.rows) if r["member"] in members]
    curves = {k: v if k == "steps" else v[:, where] for k, v in result.curves.items()}
    return Result([result.rows[i] for i in where], curves, result.summary, result.out_dir)


def _plots(result: Result, scores: list[FamilyScore], out: Path) -> None:
    """The benchmark's figures, drawn by the report's figure code (its colours per family,
    log axes and schedules)."""
    from sweepjax.report.figure_axes import write_png
    from sweepjax.report.figure_curves import figure_curves, figure_schedules
    from sweepjax.report.figure_groups import figure_means

    best = _best_of_each_family(result, scores)
    by = "schedule" if result.rows and "schedule" in result.rows[0] else None
    figures = {
        "lr_curves.png": (figure_schedules(best), "learning rate at each family's best peak"),
        "val_curves.png": (
            figure_curves(best, ["val_accuracy"], prefer="schedule"),
            "validation accuracy of each family's best member",
        ),
        # ddof=0, as the leaderboard's spread over seeds
        "accuracy_vs_lr.png": (
            figure_means(result, "learning_rate", by, ddof=0),
            "final validation accuracy against peak learning rate",
        ),
    }
    for name, (fig, title) in figures.items():
        if fig is None:
            continue
        fig.suptitle(title)
        write_png(fig, out / name)


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
        _plots(result, scores, out)
    if not quiet:
        print(text)
        summary = result.summary
        print(
            f"{len(result.rows)} members, {summary['compile_seconds']:.1f} s compiling, "
            f"{summary['train_seconds']:.1f} s training"
            + (f"; files in {config.out_dir}/" if config.out_dir is not None else "")
        )
    return result, scores
