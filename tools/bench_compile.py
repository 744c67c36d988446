"""Compile seconds of a sweep against its population, its schedule families and its model.

Each case runs `sweepjax.run` for a few steps (no output folder) as a fresh process would:
JAX's and sweepjax's in-memory caches are cleared first. It is run three times:

  cold:   the persistent compilation cache off: every program is compiled;
  filled: a new, empty cache folder: every program is compiled and written to it;
  cached: that folder again: every program is loaded from it (what a rerun, a resume or the
          next sweep of the same structure does).

Reported per case: compile seconds (tracing, lowering and XLA: what a sweep's summary counts),
the programs, the XLA seconds of the most expensive program, and the three runs' compile
seconds. Run:

    PYTHONPATH=. python tools/bench_compile.py                       # every case, this machine
    PYTHONPATH=. python tools/bench_compile.py --cases population --json compile.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections import defaultdict
from typing import Any

import jax
from bench_search import cold_start

import sweepjax
from sweepjax.engine import placement
from sweepjax.engine.loaders import load_dataset
from sweepjax.engine.schedules import BUILTIN_SCHEDULES

XLA_EVENT = "/jax/core/compile/backend_compile_duration"
_xla_seconds: dict[str, float] = defaultdict(float)  # program name -> XLA seconds, this run


def _by_program(event: str, duration: float, fun_name: str = "?", **_: Any) -> None:
    if event == XLA_EVENT:
        _xla_seconds[fun_name] += duration


jax.monitoring.register_event_duration_secs_listener(_by_program)


def base_config(**changes: Any) -> sweepjax.Config:
    """The default experiment's sweep (MLP 40-100-100-10, SGD), 20 steps, no output."""
    config = sweepjax.Config(
        model={"name": "mlp", "hidden": [100, 100]},
        space={
            "learning_rate": sweepjax.LogUniform(1e-3, 1.0),
            "weight_decay": sweepjax.LogUniform(1e-6, 1e-2),
            "momentum": sweepjax.Uniform(0.0, 0.99),
        },
        population=64,
        steps=20,
        eval_every=10,
        out_dir=None,
    )
    return config.replace(**changes)


def families(count: int) -> sweepjax.Config:
    """`count` schedule families as a per-member choice, with the peak learning rate swept."""
    names = BUILTIN_SCHEDULES[:count]
    space = {**base_config().space, "schedule": sweepjax.Choice(list(names))}
    return base_config(schedule=tuple(names), space=space, population=max(64, count))


CASES: dict[str, dict[str, sweepjax.Config]] = {
    "population": {f"P = {p}": base_config(population=p) for p in (16, 64, 256, 1024)},
    "families": {
        f"{k} schedule famil{'y' if k == 1 else 'ies'}": families(k)
        for k in (1, 4, len(BUILTIN_SCHEDULES))
    },
    "model": {
        "MLP hidden 32": base_config(model={"name": "mlp", "hidden": [32, 32]}),
        "MLP hidden 512": base_config(model={"name": "mlp", "hidden": [512, 512]}),
        "MLP 4 layers of 128": base_config(model={"name": "mlp", "hidden": [128] * 4}),
        "CNN (MNIST-1D)": base_config(model={"name": "cnn1d"}),
    },
}


@dataclasses.dataclass
class CompileRun:
    seconds: float
    programs: int
    from_cache: int
    slowest: tuple[str, float]


def compile_once(config: sweepjax.Config, data: Any, cache: str) -> CompileRun:
    """One run of `config` as a fresh process would start it; what it spent compiling."""
    cold_start()
    _xla_seconds.clear()
    summary = sweepjax.run(config.replace(compile_cache=cache), quiet=True, dataset=data).summary
    slowest = max(_xla_seconds.items(), key=lambda item: item[1], default=("", 0.0))
    return CompileRun(
        summary["compile_seconds"],
        summary["programs_compiled"] + summary["programs_from_cache"],
        summary["programs_from_cache"],
        slowest,
    )


def measure(config: sweepjax.Config, data: Any) -> dict[str, Any]:
    """The case's cold, filled and cached runs."""
    cold = compile_once(config, data, "off")
    with tempfile.TemporaryDirectory() as folder:
        filled = compile_once(config, data, folder)
        cached = compile_once(config, data, folder)
    return {
        "cold": dataclasses.asdict(cold),
        "filled": dataclasses.asdict(filled),
        "cached": dataclasses.asdict(cached),
    }


def markdown(records: dict[str, dict[str, Any]], device: str) -> str:
    lines = [
        f"Device: {device}, jax {jax.__version__}; 20 steps, chunks of 10, compile seconds as a "
        "sweep's summary counts them.",
        "",
        "| case | programs | compile s | slowest program (XLA s) | with an empty cache | "
        "cached rerun | from cache |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, r in records.items():
        cold, filled, cached = r["cold"], r["filled"], r["cached"]
        program, seconds = cold["slowest"]
        lines.append(
            f"| {name} | {cold['programs']} | {cold['seconds']:.2f} | {program} ({seconds:.2f}) "
            f"| {filled['seconds']:.2f} | {cached['seconds']:.2f} "
            f"| {cached['from_cache']} of {cached['programs']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--json", metavar="OUT", help="write the records here")
    args = parser.parse_args(argv)
    placement.use_cpu_cores()
    data = load_dataset("mnist1d", 500, "standard")
    compile_once(base_config(population=2, steps=2, eval_every=1), data, "off")  # warm JAX up
    records = {}
    for group in args.cases:
        for name, config in CASES[group].items():
            records[name] = measure(config, data)
            print(f"done: {name}", file=sys.stderr, flush=True)
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    print(markdown(records, device))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "records": records}, f, indent=2)
    return records


if __name__ == "__main__":
    main()
