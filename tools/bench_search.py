"""Benchmark: search quality per wall-clock second, sweepjax's schedulers against Optuna.

On MNIST-1D, for the MLP (hidden 100-100), the paper's 1-D CNN and the MLP with its structure
searched (`structure`: hidden width 16 to 512 and depth 1 to 3, one compiled program per
structure), over one search space (SGD: learning rate log-uniform, weight decay log-uniform,
momentum; for the CNN also the learning-rate schedule, constant or cosine) and one total budget
of member-steps, in one process, one method after another:

  fixed   sweepjax, a fixed population: every configuration trained for `--steps`
  fixed_all  the same, over the configurations ASHA tries (more than the budget: it shows how
          much sooner ASHA evaluates as many configurations)
  asha    sweepjax, ASHA with refill: `trials` configurations through `population` slots
  pbt     sweepjax, population-based training
  optuna  Optuna TPE + HyperbandPruner, one Flax trial at a time (`tools/search_baseline.py`)
  tpe     sweepjax with Optuna's TPE proposing batches, ASHA scheduling them

Each method is timed with `time.perf_counter` from before it loads its data to its best
configuration's test accuracy, compilation included; JAX's and sweepjax's caches of compiled
programs are cleared before each method, so each starts as a fresh process would. The CPU is
split into one JAX device per core, as the `sweepjax` command does.

Writes `bench_search.json`, `bench_search.md` (the table) and `bench_search.png` (best-so-far
validation accuracy against wall-clock seconds, one line per method) into `--out`.

Run (from the repository root):
    .venv/bin/python tools/bench_search.py                       # MLP, 64 x 1000 member-steps
    .venv/bin/python tools/bench_search.py --model both --out runs/bench_search
    .venv/bin/python tools/bench_search.py --model structure --methods optuna,tpe,asha
    .venv/bin/python tools/bench_search.py --quick               # smoke test with a self check
    .venv/bin/python tools/bench_search.py --quick --methods optuna,fixed
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # search_baseline beside this file

import numpy as np  # noqa: E402
import search_baseline  # noqa: E402

from sweepjax.engine import placement  # noqa: E402

METHODS = ("fixed", "fixed_all", "asha", "pbt", "optuna", "tpe")
LABELS = {
    "fixed": "(1) sweepjax fixed population",
    "fixed_all": "(1b) sweepjax fixed population, ASHA's configurations",
    "asha": "(2) sweepjax ASHA + refill",
    "pbt": "(3) sweepjax PBT",
    "optuna": "(4) Optuna TPE + Hyperband, Flax loop",
    "tpe": "(5) sweepjax TPE batches + ASHA",
}
MODEL_SPECS = {
    "mlp": {"name": "mlp", "hidden": [100, 100]},
    "cnn": {"name": "cnn1d", "channels": [25, 25, 25], "kernel": 5},
    "structure": {"name": "mlp", "hidden": [100, 100]},  # width and depth searched
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """One model's comparison: the shared budget and the sweepjax methods' sizes."""

    model: str
    budget: int  # total member-steps of every method
    steps: int  # a configuration's full budget of steps
    eval_every: int
    population: int  # sweepjax's device slots (fixed: at most budget // steps)
    trials: int  # configurations ASHA and TPE may try
    eta: int = 3
    batch_size: int = 100
    seed: int = 0

    @property
    def full_configs(self) -> int:
        """Configurations the budget trains to the full `steps` (fixed, PBT)."""
        return max(self.budget // self.steps, 1)


def asha_cost(steps: int, min_steps: int, eta: int) -> float:
    """Expected member-steps of one ASHA trial: all reach `min_steps`, 1/eta of them each next
    rung (`min_steps * eta**k`), the last rung `steps`.

    >>> round(asha_cost(1000, 100, 3), 1)
    237.0
    """
    rungs = [min_steps]
    while rungs[-1] * eta < steps:
        rungs.append(rungs[-1] * eta)
    rungs.append(steps)
    return rungs[0] + sum((b - a) / eta**k for k, (a, b) in enumerate(itertools.pairwise(rungs), 1))


def engine_space(model: str) -> dict[str, Any]:
    """`search_baseline.SPACE` as sweepjax distributions (the CNN's with the schedule choice;
    `structure`'s with the MLP's width and depth, one population per structure in play)."""
    from sweepjax.search.space import Choice, IntUniform, LogUniform, Uniform

    space = {
        name: (LogUniform if log else Uniform)(lo, hi)
        for name, (lo, hi, log) in search_baseline.SPACE.items()
    }
    if model == "cnn":
        space["schedule"] = Choice(list(search_baseline.SCHEDULES))
    if model == "structure":
        space["model.width"] = Choice(list(search_baseline.WIDTHS))
        space["model.depth"] = IntUniform(*search_baseline.DEPTHS)
    return space


def engine_config(plan: Plan, method: str):
    """The sweepjax `Config` of `method` under `plan` (ASHA's first rung at `eval_every`)."""
    from sweepjax import Config

    asha = {"name": "asha", "eta": plan.eta, "min_steps": plan.eval_every}
    base = {
        "dataset": "mnist1d",
        "model": MODEL_SPECS[plan.model],
        "optimizer": "sgd",
        "space": engine_space(plan.model),
        "steps": plan.steps,
        "batch_size": plan.batch_size,
        "eval_every": plan.eval_every,
        "seed": plan.seed,
        "out_dir": None,
    }
    full, slots = plan.full_configs, min(plan.population, plan.full_configs)
    if method == "fixed":  # `trials` only when slots are refilled (the engine's older API lacks it)
        extra = {"population": slots} | ({"trials": full} if slots < full else {})
        return Config(**base, **extra)
    if method == "pbt":
        return Config(**base, population=full, scheduler="pbt")
    if method == "fixed_all":  # every configuration ASHA tries, each trained to the full budget
        return Config(**base, population=plan.population, trials=plan.trials)
    searcher = {"asha": "quasi_random", "tpe": "tpe"}[method]
    return Config(
        **base, population=plan.population, trials=plan.trials, scheduler=asha, searcher=searcher
    )


def warm_up() -> None:
    """Once, before any clock starts: JAX's runtime and the data set's cache (every method
    would share both in one process; neither is a method's compilation)."""
    import jax

    from sweepjax.engine.loaders import load_dataset

    jax.block_until_ready(jax.jit(lambda x: x + 1)(np.float32(1)))
    load_dataset("mnist1d", 500, "standard")


def cold_start() -> None:
    """Forget compiled programs, as a fresh process would: JAX's caches and sweepjax's."""
    import jax

    from sweepjax.engine import evaluation, population, reassign, stream, widths

    jax.clear_caches()
    for module, names in (
        (population, ("make_train_chunk", "make_stream_chunk")),
        (evaluation, ("make_evaluate",)),
        (stream, ("_indices_fn",)),
        (reassign, ("_keep_or_copy", "_select")),
    ):
        for name in names:
            getattr(module, name).cache_clear()
    widths.CHOSEN_WIDTHS.clear()  # the width search's remembered choices


def _trained_steps(row: dict[str, Any]) -> float | None:
    for key in ("steps_trained", "trained_steps", "steps"):
        if isinstance(row.get(key), int | float):
            return row[key]
    return None


def engine_curve(result: Any, wall: float) -> list[tuple[float, float]]:
    """(seconds, best validation accuracy of any trial at that point) per evaluation, from
    `result.curves` and `summary["chunk_seconds"]`; else the final point alone."""
    best = result.best or {}
    final = [(wall, float(best.get("final_val_accuracy", math.nan)))]
    seconds = result.summary.get("chunk_seconds")
    val = result.curves.get("val_accuracy")
    if seconds is None or val is None or len(seconds) != len(val):
        return final
    val = np.asarray(val, dtype=float).reshape(len(seconds), -1)
    points = np.where(np.isfinite(val), val, -np.inf).max(axis=1)  # NaN: not in a slot
    return [(float(t), float(v)) for t, v in zip(seconds, points, strict=True) if v > -np.inf]


def run_engine(plan: Plan, method: str) -> dict[str, Any]:
    """One sweepjax method, cold, timed from the call to `run` to its result; a record."""
    from sweepjax import run

    config = engine_config(plan, method)
    cold_start()
    started = time.perf_counter()
    result = run(config, quiet=True)
    wall = time.perf_counter() - started
    rows, best, summary = result.rows, result.best or {}, result.summary
    trained = [_trained_steps(r) for r in rows]
    if all(t is not None for t in trained):
        completed = sum(t >= plan.steps for t in trained)
    else:  # no per-trial step count: trials the scheduler did not stop early
        completed = sum(r.get("status") not in ("stopped", "pruned", "killed") for r in rows)
    spent = summary.get(
        "member_steps", config.population * plan.steps if method == "fixed" else None
    )
    return {
        "tried": len(rows),
        "completed": completed,
        "member_steps": spent,
        "wall_seconds": wall,
        "compile_seconds": summary.get("compile_seconds"),
        "best_val_accuracy": float(best.get("final_val_accuracy", math.nan)),
        "test_accuracy": float(best.get("test_accuracy", math.nan)),
        "best_hparams": {k: best[k] for k in engine_space(plan.model) if k in best},
        "curve": engine_curve(result, wall),
        "curve_is_final_point_only": "chunk_seconds" not in summary,
    }


def run_method(plan: Plan, method: str) -> dict[str, Any]:
    """A record of `method` under `plan`; a failure is recorded (with its error), not raised."""
    print(f"bench_search: {plan.model} {LABELS[method]} ...", file=sys.stderr, flush=True)
    try:
        if method == "optuna":
            cold_start()
            sizes = (plan.model, plan.budget, plan.steps, plan.eval_every)
            record = search_baseline.run_optuna(*sizes, batch_size=plan.batch_size, seed=plan.seed)
        else:
            record = run_engine(plan, method)
    except Exception as err:  # the engine's API may not have landed yet: keep the others
        traceback.print_exc(file=sys.stderr)
        return {"method": method, "error": f"{type(err).__name__}: {err}".splitlines()[0]}
    record["method"] = method
    print(
        f"bench_search: {plan.model} {method}: {record['wall_seconds']:.1f} s, best val "
        f"{record['best_val_accuracy']:.3f}, test {record['test_accuracy']:.3f}",
        file=sys.stderr,
    )
    return record


def seconds_to_reach(curve: Sequence[Sequence[float]], target: float) -> float | None:
    """The first second at which the best-so-far value of `curve` reaches `target`.

    >>> seconds_to_reach([(1.0, 0.5), (2.0, 0.7), (3.0, 0.6)], 0.7)
    2.0
    >>> seconds_to_reach([(1.0, 0.5)], 0.7) is None
    True
    """
    for seconds, value in curve:
        if value >= target - 1e-9:
            return float(seconds)
    return None


def add_comparisons(records: list[dict[str, Any]]) -> float | None:
    """Give each record `seconds_to_target` and `speedup` against the Optuna record's best
    validation accuracy; returns that target (None without an Optuna record)."""
    optuna = next((r for r in records if r["method"] == "optuna" and "error" not in r), None)
    if optuna is None or not math.isfinite(optuna["best_val_accuracy"]):
        return None
    target = optuna["best_val_accuracy"]
    base = seconds_to_reach(optuna["curve"], target)
    for record in records:
        if "error" in record:
            continue
        reached = seconds_to_reach(record["curve"], target)
        record["seconds_to_target"] = reached
        record["speedup"] = base / reached if reached and base else None
    return target


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def markdown(model: str, records: list[dict[str, Any]], target: float | None, plan: Plan) -> str:
    """The comparison table of one model."""
    goal = "n/a" if target is None else f"{target:.3f}"
    lines = [
        f"### {model}: {plan.budget:,} member-steps, {plan.steps} steps per configuration",
        "",
        "Seconds to target: the first wall-clock second (compilation included) at which the "
        "method's best-so-far validation accuracy (any configuration, at any evaluation) reaches "
        f"Optuna's best validation accuracy ({goal}); speedup: Optuna's seconds / the method's.",
        "",
        "| method | tried | completed | member-steps | wall s | best val | its test "
        "| s to target | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {LABELS[r['method']]} | failed: {r['error']} |||||||")
            continue
        reached = r.get("seconds_to_target")
        to_target = (
            "not reached" if target is not None and reached is None else _cell(reached, ".1f")
        )
        cells = [
            LABELS[r["method"]],
            str(r["tried"]),
            str(r["completed"]),
            _cell(r["member_steps"], ",d"),
            _cell(r["wall_seconds"], ".1f"),
            _cell(r["best_val_accuracy"], ".3f"),
            _cell(r["test_accuracy"], ".3f"),
            to_target,
            _cell(r.get("speedup"), ".2f") + ("x" if r.get("speedup") else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Best-so-far validation accuracy against wall-clock seconds, a panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, (model, entry) in zip(axes[0], results.items(), strict=True):
        for r in entry["records"]:
            if "error" in r or not r["curve"]:
                continue
            t, v = np.array(r["curve"], dtype=float).T
            style = "o" if len(t) == 1 else "-"
            ax.step(t, np.maximum.accumulate(v), style, where="post", label=LABELS[r["method"]])
        if entry["target"] is not None:
            ax.axhline(entry["target"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlim(left=0)
        ax.set(title=model, xlabel="wall-clock seconds (compile included)")
        ax.set(ylabel="best-so-far validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    """Where it ran."""
    import jax
    import optuna

    return {
        "platform": platform.platform(),
        "cpu_cores": placement.cpu_cores(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "optuna": optuna.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def write_outputs(out: Path, results: dict[str, dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "models": results}
    (out / "bench_search.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tables = [markdown(m, e["records"], e["target"], Plan(**e["plan"])) for m, e in results.items()]
    (out / "bench_search.md").write_text("\n".join(tables))
    plot(results, out / "bench_search.png")


def self_check(results: dict[str, dict[str, Any]], plans: dict[str, Plan]) -> None:
    """`--quick`'s check (no pytest): the baseline is sweepjax's model and optimizer, the
    accounting holds, every curve is in time order and ends by the method's wall time, and
    `engine_curve` reads the engine's assumed curves (NaN where a trial is not in a slot)."""
    nan = math.nan
    curves = {"val_accuracy": [[0.2, nan], [nan, 0.5], [0.4, 0.6]]}
    fake = argparse.Namespace(best={"final_val_accuracy": 0.6}, curves=curves, summary={})
    assert engine_curve(fake, 3.5) == [(3.5, 0.6)], "engine_curve: the final point fallback"
    fake.summary = {"chunk_seconds": [1.0, 2.0, 3.0]}
    assert engine_curve(fake, 3.5) == [(1.0, 0.2), (2.0, 0.5), (3.0, 0.6)], "engine_curve"
    for model, entry in results.items():
        search_baseline.check_equivalence(model, MODEL_SPECS[model])
        if model == "structure":  # each structure is the engine's MLP of that width and depth
            spec = {**MODEL_SPECS[model], "width": 32, "depth": 3}
            search_baseline.check_equivalence(model, spec, structure=(32, 3))
        for r in entry["records"]:
            if "error" in r:
                continue
            times = [t for t, _ in r["curve"]]
            assert times == sorted(times), f"{model} {r['method']}: curve out of time order"
            assert not times or times[-1] <= r["wall_seconds"] + 1e-6, f"{r['method']}: late point"
            assert r["completed"] <= r["tried"], f"{model} {r['method']}: completed > tried"
            if r["method"] == "optuna":
                assert r["member_steps"] == plans[model].budget, "optuna: budget not spent exactly"
                once = r["structures"]  # one compilation per structure, not per trial
                assert r["train_step_compilations"] == once, "optuna: the step compiled per trial"
                assert r["init_compilations"] == once, "optuna: the init compiled per trial"
                assert r["tried"] == r["completed"] + r["pruned"], "optuna: unfinished trials"
    print("bench_search: self check passed", file=sys.stderr)


def plans_from_args(args: argparse.Namespace) -> dict[str, Plan]:
    models = {"both": ["mlp", "cnn"], "all": list(MODEL_SPECS)}.get(args.model, [args.model])
    quick = {"steps": 40, "eval_every": 10, "budget": 320} if args.quick else {}
    steps = args.steps or quick.get("steps", 1000)
    eval_every = args.eval_every or quick.get("eval_every", 100)
    budget = args.budget or quick.get("budget", 64 * steps)
    population = args.population or max(budget // steps, 1)
    trials = args.trials or max(round(budget / asha_cost(steps, eval_every, 3)), population)
    return {
        m: Plan(m, budget, steps, eval_every, population, trials, seed=args.seed) for m in models
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=(*MODEL_SPECS, "both", "all"), default="mlp")
    parser.add_argument("--budget", type=int, help="total member-steps (default 64 x --steps)")
    parser.add_argument("--steps", type=int, help="a configuration's steps (default 1000)")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations (default 100)")
    parser.add_argument("--population", type=int, help="sweepjax slots (default budget/steps)")
    parser.add_argument(
        "--trials",
        type=int,
        help="ASHA/TPE configurations (default: budget / ASHA's expected steps per trial)",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma list of " + ",".join(METHODS)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_search", help="folder for the outputs")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a self check")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    placement.use_cpu_cores()  # before JAX computes: one CPU device per core, as `sweepjax` does
    args = build_parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"bench_search: unknown methods {unknown}; allowed: {list(METHODS)}")
    plans = plans_from_args(args)
    warm_up()
    results = {}
    for model, plan in plans.items():
        records = [run_method(plan, m) for m in methods]
        target = add_comparisons(records)
        results[model] = {"plan": dataclasses.asdict(plan), "target": target, "records": records}
    write_outputs(Path(args.out), results)
    print("\n".join(markdown(m, e["records"], e["target"], plans[m]) for m, e in results.items()))
    if args.quick:
        self_check(results, plans)
    return results


if __name__ == "__main__":
    main()
