"""The README's gallery: run every rule experiment on a small budget and keep its key figures.

Each experiment in `GALLERY` is run in this one process (experiments of the same structure share
their compiled programs), on a small budget (`--steps`, populations as the experiments set them),
into `--runs/<name>`; its report figures are drawn again at a small size into
`docs/gallery/<name>_<figure>.png`, and what its `summarize()` prints goes into
`docs/gallery/summaries.md`. An experiment that fails (for example, one that needs a feature
this checkout lacks) is reported and skipped.

Run (a few minutes on a 2-core CPU):
    PYTHONPATH=. python tools/make_gallery.py
    PYTHONPATH=. python tools/make_gallery.py --steps 100 --only learning_rate momentum
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import sweepjax
from sweepjax.experiment import load_module
from sweepjax.report import read_sweep
from sweepjax.report.figures import FIGURES

# experiment -> the report figures it shows its rule with.
GALLERY = {
    "learning_rate": ["curves", "hyperparameters"],
    "lr_boundary": ["hyperparameters"],
    "batch_size": ["heatmap"],
    "weight_decay": ["hyperparameters"],
    "momentum": ["heatmap"],
    "hidden_units": ["hyperparameters"],
    "kernel_width": ["hyperparameters"],
    "initializer": ["groups", "hyperparameters"],
    "activation": ["groups", "hyperparameters"],
    "dropout": ["heatmap"],
    "grad_clip": ["heatmap"],
    "random_vs_grid": [],  # its own figure: the members of each search in the plane
    "mnist1d_paper": ["curves"],
}
DPI = 70


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _run(config, out: Path, quiet: bool = True):
    return sweepjax.run(config.replace(out_dir=str(out)), quiet=quiet, overwrite=True)


def _budget(config, steps: int):
    every = max(steps // 6, 1)
    return config.replace(steps=steps, eval_every=every, checkpoint_every=None)


def _figures(name: str, out_dir: Path, docs: Path, prefix: str = "") -> list[Path]:
    result = read_sweep(out_dir)
    written = []
    for figure in GALLERY[name]:
        fig = FIGURES[figure][0](result)
        if fig is not None:
            path = docs / f"{prefix or name}_{figure}.png"
            _save(fig, path)
            written.append(path)
    return written


def random_vs_grid_figure(module, out_dirs: dict[str, Path]):
    """Members of each search in the (learning rate, weight decay) plane, coloured by accuracy."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(out_dirs), figsize=(4 * len(out_dirs), 3.4), sharey=True)
    for axis, (method, out_dir) in zip(axes, out_dirs.items(), strict=True):
        rows = read_sweep(out_dir).rows
        x = [r[module.IMPORTANT] for r in rows]
        y = [r[module.UNIMPORTANT] for r in rows]
        c = [r["final_val_accuracy"] if r["status"] == "ok" else 0.0 for r in rows]
        points = axis.scatter(x, y, c=c, cmap="viridis", vmin=0.0, vmax=1.0, s=40)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("learning rate (matters)")
        distinct = len(set(x))
        axis.set_title(f"{method}: {distinct} distinct learning rates", fontsize=10)
    axes[0].set_ylabel("weight decay (does not)")
    fig.colorbar(points, ax=list(axes), label="final val. accuracy")
    return fig


def make(name: str, runs: Path, docs: Path, steps: int) -> tuple[list[Path], str]:
    """Run experiment `name` on a small budget; its figures and its summary text."""
    module = load_module(name)
    if name == "random_vs_grid":
        dirs = {}
        for method in ("grid", "random", "quasi_random"):
            config = _budget(module.get_config(), steps).replace(searcher=method)
            dirs[method] = runs / name / method
            _run(config, dirs[method])
        path = docs / f"{name}.png"
        _save(random_vs_grid_figure(module, dirs), path)
        return [path], module.summarize(*dirs.values())
    if name == "mnist1d_paper":
        written, dirs = [], {}
        for model, config in module.get_configs().items():
            config = _budget(config, steps).replace(population=min(config.population, 8))
            dirs[model] = runs / name / model
            _run(config, dirs[model])
            written += _figures(name, dirs[model], docs, prefix=f"{name}_{model}")
        return written, module.table(dirs)
    config = _budget(module.get_config(), steps)
    _run(config, runs / name)
    return _figures(name, runs / name, docs), module.summarize(runs / name)


def _sections(path: Path) -> dict[str, str]:
    """The per-experiment blocks of an existing summaries file (kept when `--only` runs a few)."""
    if not path.is_file():
        return {}
    blocks = path.read_text().split("\n## ")[1:]
    return {b.split(" ", 1)[0]: "## " + b.rstrip("\n") + "\n" for b in blocks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps of every sweep")
    parser.add_argument("--runs", default="runs/gallery", help="where the sweeps are written")
    parser.add_argument("--docs", default="docs/gallery", help="where the figures go")
    parser.add_argument("--only", nargs="*", default=list(GALLERY), choices=list(GALLERY))
    args = parser.parse_args(argv)
    runs, docs = Path(args.runs), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    sections, failed = _sections(docs / "summaries.md"), []
    start = time.perf_counter()
    for name in args.only:
        began = time.perf_counter()
        try:
            written, text = make(name, runs, docs, args.steps)
        except Exception as err:  # one experiment's failure must not lose the others
            traceback.print_exc()
            failed.append(f"{name}: {type(err).__name__}: {err}")
            continue
        seconds = time.perf_counter() - began
        print(f"{name}: {seconds:.0f} s, {', '.join(str(p) for p in written)}", file=sys.stderr)
        sections[name] = f"## {name} ({args.steps} steps, {seconds:.0f} s)\n\n```\n{text}\n```\n"
    total = time.perf_counter() - start
    header = (
        "# Gallery summaries\n\nWritten by `tools/make_gallery.py`; each block is what the "
        "experiment's `summarize()` printed (`sweepjax summarize`).\n"
    )
    ordered = [sections[n] for n in GALLERY if n in sections]
    (docs / "summaries.md").write_text("\n".join([header, *ordered]))
    print(f"gallery: {len(args.only) - len(failed)} experiments in {total:.0f} s", file=sys.stderr)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
