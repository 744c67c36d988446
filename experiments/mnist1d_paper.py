"""The MNIST-1D paper's table, reproduced from two tuned sweeps: the MLP and the 1-D CNN.

Greydanus (2020), "Scaling down deep learning" (MNIST-1D), reports test accuracy 68% for an
MLP and 94% for a CNN. This experiment runs the MLP sweep (`experiments/default.py`: SGD with
momentum, 64 members) and the CNN sweep (`experiments/cnn.py`: AdamW, 16 members) one after
the other and prints the paper's figure beside ours: the test accuracy of the member that is
best by validation accuracy (test accuracy is never used to choose).

Run (both sweeps, then the table; about 10 minutes on a 2-core CPU):
    python experiments/mnist1d_paper.py --out runs/mnist1d_paper
    python experiments/mnist1d_paper.py --out runs/paper_small --set steps=500 --set population=8
One sweep alone, or the table of two finished sweep directories:
    sweepjax run mnist1d_paper                      # the MLP sweep (get_config)
    sweepjax summarize mnist1d_paper runs/mnist1d_paper/mlp runs/mnist1d_paper/cnn
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sweepjax import Config
from sweepjax.experiment import load_experiment

# Test accuracy in the MNIST-1D paper (Table 1 / the README of the mnist1d repository).
PAPER = {"mlp": 0.68, "cnn": 0.94}
_HERE = Path(__file__).resolve().parent


def _load(name: str) -> Config:
    return load_experiment(str(_HERE / f"{name}.py"))


def get_configs() -> dict[str, Config]:
    """The two tuned sweeps of the table, by model: `mlp` and `cnn`."""
    return {
        "mlp": _load("default").replace(out_dir="runs/mnist1d_paper/mlp"),
        "cnn": _load("cnn").replace(out_dir="runs/mnist1d_paper/cnn"),
    }


def get_config() -> Config:
    """The MLP sweep (`sweepjax run mnist1d_paper`); `get_configs()` gives both."""
    return get_configs()["mlp"]


def table(entries: dict[str, os.PathLike | str]) -> str:
    """The paper's test accuracy beside ours, one row per model, from finished sweep dirs.

    Args:
      entries: model (`mlp`, `cnn`) -> its sweep directory.

    Returns:
      A Markdown table: model | paper | ours | members | steps.
    """
    from sweepjax.report import read_sweep

    lines = [
        "| model | paper (test acc.) | ours (test acc., best member by val.) | members | steps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for model, out_dir in entries.items():
        result = read_sweep(out_dir)
        best = result.best
        steps = result.summary.get("steps_done", "?")
        ours = f"{best['test_accuracy']:.1%}" if best else "all diverged"
        paper = f"{PAPER[model]:.0%}" if model in PAPER else "-"
        lines.append(f"| {model} | {paper} | {ours} | {len(result.rows)} | {steps} |")
    return "\n".join(lines)


def summarize(mlp_dir: os.PathLike | str, cnn_dir: os.PathLike | str | None = None) -> str:
    """The table for a finished MLP sweep directory and, optionally, a CNN one."""
    entries = {"mlp": mlp_dir}
    if cnn_dir is not None:
        entries["cnn"] = cnn_dir
    return table(entries)


def main(argv: list[str] | None = None) -> int:
    import sweepjax

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/mnist1d_paper", help="parent of mlp/ and cnn/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated subset")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sweepjax.engine.placement.use_cpu_cores()  # as the sweepjax command does
    dirs = {}
    for model, config in get_configs().items():
        if model not in args.models.split(","):
            continue
        config = sweepjax.apply_overrides(config, args.overrides)
        config = config.replace(out_dir=str(Path(args.out) / model))
        sweepjax.run(config, quiet=args.quiet, overwrite=True)
        dirs[model] = config.out_dir
    print(table(dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
