"""Benchmark: the engine against one-config-at-a-time training, on the same work.

Each row trains the same model on MNIST-1D for the same steps, batch, data stream and optimizer
(SGD with momentum and decoupled weight decay over the default experiment's search space) in
these ways, in one process:

  (a) engine: sweepjax with P members (`program_of`, `sample_hparams`, `init_population`,
      `make_train_chunk`), trained in chunks of `--chunk` steps as `sweepjax.run` does; on a
      CPU split across one JAX device per core, as the `sweepjax` command does
      (`--cpu-devices 1` keeps one device). (b) and (c) run on the first device.
  (b) loop: one config at a time, a Python loop over steps calling a jitted Flax + Optax train
      step (the Flax examples' and most Optuna objectives' way).
  (c) scan: one config at a time, the whole run one jitted `lax.scan`.
  (d) torch: one config at a time in eager PyTorch with `torch.optim.SGD` (CPU).
  (e) torch_vmap: every member at once in eager PyTorch, `torch.func.vmap` over the stacked
      models with per-member hyperparameters (CPU).

(d) and (e) run only when PyTorch is installed (the `bench` extra); see `bench_torch.py`.
They start every member from the engine's parameters, converted, so their losses track the
JAX ways'. They use `--torch-threads` threads (default: the process's cores). Eager torch
compiles nothing: their compile seconds are one untimed warm-up step. Their peak memory is
not reported (torch keeps no peak-allocation count for CPU tensors).

(b), (c) and (d) time `--baseline-members` of the P members and report per member-step (they
are independent, so the rate of a subset is the rate of the whole). (b) and (c) are given
their best case: the hyperparameters are traced arguments (one compile serves every config),
the train state is donated and the minibatches are gathered on the device before the clock
starts.
Compile time is measured apart (AOT `lower().compile()`); throughput excludes it.

FLOP/s and "% of peak" count XLA's FLOPs of one single-member train step (the same count
serves every way) against the best rate of a large float32 product on every device at once.
The roofline columns (`roofline.py`) take each way's own program: XLA's FLOPs and bytes
accessed per member-step, the copy bandwidth measured at its working-set size, the bound that
holds (compute or memory) and the share of it reached. The engine's rows also give the memory
plan's ceiling: the largest population of the row's structure the devices hold.

Run (CPU or GPU; the default rows are the two documented ones):
    PYTHONPATH=. python tools/bench.py
    PYTHONPATH=. python tools/bench.py --hidden 32 128 512 --batch 32 --population 8 64 256
    PYTHONPATH=. python tools/bench.py --model cnn1d --hidden 25 --batch 100 --json bench.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import roofline

from sweepjax import Config, LogUniform, Uniform
from sweepjax.engine import placement, widths
from sweepjax.engine.data import Dataset, batch_indices
from sweepjax.engine.loaders import load_dataset
from sweepjax.engine.models import build_model
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams

WAYS = ("auto", "engine", "loop", "scan", "torch", "torch_vmap")
TORCH_WAYS = ("torch", "torch_vmap")
LABELS = {
    "auto": "(a) engine, auto width",
    "engine": "(a') engine, full vmap",
    "loop": "(b) loop",
    "scan": "(c) scan",
    "torch": "(d) PyTorch, one at a time",
    "torch_vmap": "(e) PyTorch torch.func.vmap",
}
HAS_TORCH = importlib.util.find_spec("torch") is not None
DEFAULT_WAYS = WAYS if HAS_TORCH else tuple(w for w in WAYS if w not in TORCH_WAYS)


@dataclasses.dataclass(frozen=True)
class Row:
    """One benchmark setting; `hidden` is the width of each of `layers` hidden layers."""

    model: str = "mlp"
    hidden: int = 100
    layers: int | None = None  # None: the model's default depth (mlp 2, cnn1d 3)
    batch: int = 100
    population: int = 64
    steps: int = 1000
    sweep_steps: int | None = None  # (a) chooses its width as for a sweep this long; None: steps
    width: int | str = "auto"  # (a)'s population_width: searched, or fixed

    def name(self) -> str:
        depth = "" if self.layers is None else f"x{self.layers}"
        return f"{self.model} h{self.hidden}{depth} b{self.batch} P{self.population}"

    def model_spec(self, num_classes: int = 10) -> dict[str, Any]:
        key = {"mlp": "hidden", "cnn1d": "channels"}[self.model]
        depth = self.layers or {"mlp": 2, "cnn1d": 3}[self.model]
        return {"name": self.model, key: [self.hidden] * depth, "num_classes": num_classes}

    def config(self, num_classes: int = 10) -> Config:
        """The sweep: the default experiment's optimizer and space on this row's structure."""
        return Config(
            model=self.model_spec(num_classes),
            optimizer="sgd",
            space={
                "learning_rate": LogUniform(1e-3, 1.0),
                "weight_decay": LogUniform(1e-6, 1e-2),
                "momentum": Uniform(0.0, 0.99),
            },
            searcher="quasi_random",
            population=self.population,
            steps=self.steps,
            batch_size=self.batch,
            out_dir=None,
        )


@dataclasses.dataclass
class Timing:
    """One way's measurement: `losses[step, i]` is the train loss of `members[i]`."""

    way: str
    members: list[int]
    steps: int
    seconds: float
    compile_seconds: float
    losses: np.ndarray
    width: int | None = None  # the engine's vectorization width
    peak_bytes: int | None = None  # XLA's estimate for the engine's compiled chunk
    cost: roofline.StepCost | None = None  # the engine's own step; None: the one-member step
    ceiling: int | None = None  # the memory plan's largest population at the engine's width

    @property
    def member_steps_per_second(self) -> float:
        return len(self.members) * self.steps / self.seconds


# ------------------------------------------------------------------------------------ (a)


def run_engine(
    row: Row, data: Dataset, chunk: int = 100, repeats: int = 1, width: int | str | None = None
) -> Timing:
    """(a) The engine: every member, chunks of `chunk` steps, as `sweepjax.run` trains them.

    `width`: None trains every member in one `vmap` (full vmap); `"auto"` (or an int) chooses
    the vectorization width as `sweepjax.run` does (its trial chunks, run before the clock
    starts, counted as compile time).
    With several devices the population is split across them, as `sweepjax.run` does. The
    fastest of `repeats` timed runs counts (each from a fresh population).
    """
    config = row.config(data.num_classes)
    program = program_of(config)
    mesh = placement.population_mesh(row.population)
    hparams = placement.place(jax.device_put(sample_hparams(config)), mesh)
    train = placement.replicate(jax.device_put(data.train), mesh)
    key = jax.random.key(config.seed)
    lengths = [chunk] * (row.steps // chunk) + ([row.steps % chunk] if row.steps % chunk else [])

    def fresh():
        pop = init_population(program, hparams, train["inputs"][: row.batch])
        return jax.block_until_ready(placement.place(pop, mesh))

    pop = fresh()
    start = time.perf_counter()
    if width is not None:
        search = widths.width_search(
            width, program, pop, hparams, train, mesh=mesh,
            member_steps=row.population * (row.sweep_steps or row.steps),
        )  # fmt: skip
        while search.searching:  # the first chunks of a sweep try the widths, as in `run`
            began = time.perf_counter()
            fn = make_train_chunk(program, chunk, search.width, mesh)
            fn = fn.lower(pop, hparams, train, key).compile()
            compiled = time.perf_counter()
            pop, losses = jax.block_until_ready(fn(pop, hparams, train, key))
            seconds = time.perf_counter() - compiled
            search.record(seconds, compiled - began, row.population * chunk)
        width = search.width
    compiled = {
        n: make_train_chunk(program, n, width, mesh).lower(pop, hparams, train, key).compile()
        for n in sorted(set(lengths))
    }
    compile_seconds = time.perf_counter() - start
    for n in compiled:  # warm-up: first-call allocations stay off the clock
        pop, losses = compiled[n](pop, hparams, train, key)
        jax.block_until_ready(losses)

    seconds = float("inf")
    for _ in range(repeats):
        pop = fresh()
        chunks = []
        start = time.perf_counter()
        for n in lengths:
            pop, losses = compiled[n](pop, hparams, train, key)
            chunks.append(np.asarray(losses))  # the host reads losses per chunk, as sweeps do
        jax.block_until_ready(pop)
        seconds = min(seconds, time.perf_counter() - start)
    timing = Timing(
        "engine" if width is None else "auto", list(range(row.population)), row.steps, seconds,
        compile_seconds, np.concatenate(chunks),
    )  # fmt: skip
    timing.width = row.population // (1 if mesh is None else mesh.size) if width is None else width
    timing.peak_bytes = _peak_bytes(compiled[lengths[0]])
    timing.cost = roofline.group_step_cost(program, hparams, train, timing.width)
    devices = 1 if mesh is None else mesh.size
    plan = placement.plan_memory(program, pop, hparams, train, devices=devices)
    shared = jax.default_backend() == "cpu"  # CPU devices share the host's memory
    timing.ceiling = plan.max_population(timing.width, devices, shared)
    return timing


def _peak_bytes(compiled: Any) -> int | None:
    """Arguments, outputs and temporaries of a compiled program (XLA's memory analysis)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        - analysis.alias_size_in_bytes
        + analysis.temp_size_in_bytes
    )


# ------------------------------------------------------------------------ (b) and (c)


def _optimizer(hp: dict[str, jax.Array]) -> optax.GradientTransformation:
    """SGD with momentum, then decoupled weight decay, scaled by the learning rate."""
    return optax.chain(
        optax.trace(decay=hp["momentum"]),
        optax.add_decayed_weights(hp["weight_decay"]),
        optax.scale_by_learning_rate(hp["learning_rate"]),
    )


def _member_hparams(hparams, member: int) -> tuple[dict[str, jax.Array], int]:
    names = ("learning_rate", "momentum", "weight_decay")
    hp = {k: jnp.float32(hparams[k][member]) for k in names}
    return hp, int(hparams["seed"][member])


def _init(module: nn.Module, seed: int, example: jax.Array, hp: dict[str, jax.Array]):
    """Params as the engine initialises member `seed`: the first half of `key(seed)`."""
    params_key, dropout_key = jax.random.split(jax.random.key(np.uint32(seed)))
    params = module.init({"params": params_key, "dropout": dropout_key}, example)["params"]
    return params, _optimizer(hp).init(params)


def _loss_and_update(module: nn.Module, params, opt_state, hp, xb, yb):
    def loss_fn(p):
        logits = module.apply({"params": p}, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = _optimizer(hp).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def make_loop_step(module: nn.Module):
    """(b)'s jitted train step `(params, opt_state, hp, xb, yb) -> (params, opt_state, loss)`."""
    return jax.jit(functools.partial(_loss_and_update, module), donate_argnums=(0, 1))


def make_scan_train(module: nn.Module):
    """(c)'s jitted run `(params, opt_state, hp, xs, ys) -> (params, losses)` over all steps."""

    def train(params, opt_state, hp, xs, ys):
        def step(carry, batch):
            params, opt_state, loss = _loss_and_update(module, *carry, hp, *batch)
            return (params, opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, opt_state), (xs, ys))
        return params, losses

    return jax.jit(train)


def shared_batches(row: Row, data: Dataset) -> tuple[jax.Array, jax.Array]:
    """The engine's minibatch stream for every step, gathered on the device: `[steps, batch, ...]`."""
    x, y = jax.device_put(data.train["inputs"]), jax.device_put(data.train["targets"])
    key = jax.random.key(row.config(data.num_classes).seed)
    steps = jnp.arange(row.steps)
    idx = jax.jit(jax.vmap(lambda s: batch_indices(key, s, x.shape[0], row.batch)))(steps)
    return jax.block_until_ready((x[idx], y[idx]))


def step_indices(row: Row, data: Dataset) -> jax.Array:
    """The engine's minibatch indices of every step: `[steps, batch]`."""
    key = jax.random.key(row.config(data.num_classes).seed)
    steps = jnp.arange(row.steps)
    n = data.train["inputs"].shape[0]
    return jax.jit(jax.vmap(lambda s: batch_indices(key, s, n, row.batch)))(steps)


def run_baseline(
    way: str,
    row: Row,
    data: Dataset,
    members: Sequence[int],
    repeats: int = 1,
    log_every: int = 100,
) -> Timing:
    """(b) `way="loop"` or (c) `way="scan"`: the given members one after another.

    Each member's fastest of `repeats` timed runs counts.
    """
    config = row.config(data.num_classes)
    hparams = sample_hparams(config)
    module = build_model(config.model)
    xs, ys = shared_batches(row, data)
    hp0, seed0 = _member_hparams(hparams, members[0])
    params, opt_state = _init(module, seed0, xs[0], hp0)

    start = time.perf_counter()
    if way == "loop":
        fn = make_loop_step(module).lower(params, opt_state, hp0, xs[0], ys[0]).compile()
    else:
        fn = make_scan_train(module).lower(params, opt_state, hp0, xs, ys).compile()
    compile_seconds = time.perf_counter() - start
    if way == "loop":
        # The Flax MNIST example's way: numpy arrays on the host, each step's batch indexed
        # there and passed to the jitted step (the epoch permutation is computed beforehand).
        host_x, host_y = np.asarray(data.train["inputs"]), np.asarray(data.train["targets"])
        host_idx = np.asarray(step_indices(row, data))
        warm = fn(params, opt_state, hp0, host_x[host_idx[0]], host_y[host_idx[0]])
    else:
        warm = fn(params, opt_state, hp0, xs, ys)
    jax.block_until_ready(warm)

    seconds, all_losses = 0.0, []
    for member in members:
        hp, seed = _member_hparams(hparams, member)
        best = float("inf")
        for _ in range(repeats):
            params, opt_state = jax.block_until_ready(_init(module, seed, xs[0], hp))
            start = time.perf_counter()
            if way == "loop":
                losses, logged = [], []
                for t, idx in enumerate(host_idx):
                    params, opt_state, loss = fn(params, opt_state, hp, host_x[idx], host_y[idx])
                    losses.append(loss)  # a device value, read only at log points
                    if (t + 1) % log_every == 0 or t + 1 == row.steps:
                        logged.append(float(loss))
                jax.block_until_ready(losses)
            else:
                params, losses = jax.block_until_ready(fn(params, opt_state, hp, xs, ys))
            best = min(best, time.perf_counter() - start)
        seconds += best
        all_losses.append(np.asarray(jnp.stack(losses) if way == "loop" else losses))
    return Timing(way, list(members), row.steps, seconds, compile_seconds, np.stack(all_losses, 1))


# ------------------------------------------------------------------------ (d) and (e)


def run_torch(
    way: str, row: Row, data: Dataset, members: Sequence[int], repeats: int = 1
) -> Timing:
    """(d) `way="torch"` on the given members or (e) `way="torch_vmap"` on all P members.

    Both start from the engine's parameters and follow its minibatch stream (`bench_torch`).
    """
    import bench_torch

    config = row.config(data.num_classes)
    setup = bench_torch.Setup(config, data, np.asarray(step_indices(row, data)))
    if way == "torch_vmap":
        members = range(row.population)
    result = bench_torch.run(way, setup, list(members), repeats)
    return Timing(
        way, list(members), row.steps, result["seconds"], result["warmup_seconds"],
        result["losses"],
    )  # fmt: skip


# ------------------------------------------------------------------------------ cost


def single_step_cost(row: Row, data: Dataset) -> roofline.StepCost:
    """XLA's cost of one member's train step as (b) to (e) run it (one Flax + Optax step)."""
    config = row.config(data.num_classes)
    module = build_model(config.model)
    hp, seed = _member_hparams(sample_hparams(config), 0)
    xb = jnp.asarray(data.train["inputs"][: row.batch])
    yb = jnp.asarray(data.train["targets"][: row.batch])
    params, opt_state = _init(module, seed, xb, hp)
    step = jax.jit(functools.partial(_loss_and_update, module))
    compiled = step.lower(params, opt_state, hp, xb, yb).compile()
    return roofline.StepCost(*roofline.xla_cost(compiled), _peak_bytes(compiled) or 0)


# ------------------------------------------------------------------------------- driver


def bench_row(
    row: Row,
    data: Dataset,
    ways: Sequence[str] = DEFAULT_WAYS,
    baseline_members: int = 4,
    chunk: int = 100,
    peak: float | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Measure one row in every way; return the JSON-able record (timings and ratios)."""
    members = list(range(min(baseline_members, row.population)))
    timings = {}
    for way in ways:
        if way in ("engine", "auto"):
            timings[way] = run_engine(
                row, data, chunk, repeats, row.width if way == "auto" else None
            )
        elif way in TORCH_WAYS:
            timings[way] = run_torch(way, row, data, members, repeats)
        else:
            timings[way] = run_baseline(way, row, data, members, repeats)
    single = single_step_cost(row, data)
    record: dict[str, Any] = {
        "row": dataclasses.asdict(row),
        "name": row.name(),
        "flops_per_member_step": single.flops,
        "memory_ceiling": next((t.ceiling for t in timings.values() if t.ceiling), None),
        "ways": {},
    }
    for way, t in timings.items():
        rate = t.member_steps_per_second
        cost = t.cost or single
        record["ways"][way] = {
            "members_timed": len(t.members),
            "seconds": t.seconds,
            "compile_seconds": t.compile_seconds,
            "member_steps_per_second": rate,
            "flops_per_second": rate * single.flops,
            "width": t.width,
            "peak_bytes": t.peak_bytes,
            "cost": dataclasses.asdict(cost),
            "bandwidth": roofline.bandwidth_at(cost.working_set),
        }
        rate_against_limits(record["ways"][way], peak)
    for lead in ("auto", "engine"):
        if lead in timings:
            lead_rate = timings[lead].member_steps_per_second
            for way in ways:
                if way != lead:
                    rate = timings[way].member_steps_per_second
                    record[f"{lead}_over_{way}"] = lead_rate / rate
    record["max_loss_difference"] = loss_difference(timings)
    # Rounding differences between ways grow chaotically over long runs at large learning
    # rates; the early steps show whether the ways compute the same training.
    record["max_loss_difference_first_100_steps"] = loss_difference(timings, 100)
    return record


def rate_against_limits(way: dict[str, Any], peak: float | None) -> None:
    """Add the share of the matmul peak and of the roofline (at the bandwidth of the way's
    working set) to a way's record, counting the way's own FLOPs and bytes per member-step."""
    cost = roofline.StepCost(**way["cost"])
    own_flops = way["member_steps_per_second"] * cost.flops
    way["percent_of_peak"] = 100.0 * way["flops_per_second"] / peak if peak else None
    way.update(roofline.roofline(own_flops, cost, peak or float("inf"), way["bandwidth"]))


def loss_difference(timings: dict[str, Timing], steps: int | None = None) -> float | None:
    """The largest |loss| difference between ways on the members they share (finite values),
    over the first `steps` steps (all by default)."""
    ways = list(timings.values())
    worst = None
    for a, b in itertools.combinations(ways, 2):
        shared = [m for m in a.members if m in b.members]
        la = a.losses[:steps, [a.members.index(m) for m in shared]]
        lb = b.losses[:steps, [b.members.index(m) for m in shared]]
        both = np.isfinite(la) & np.isfinite(lb)
        if both.any():
            diff = float(np.abs(la - lb)[both].max())
            worst = diff if worst is None else max(worst, diff)
    return worst


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = placement.cpu_cores()
    info = {
        "device": f"{device.platform}: {device.device_kind}",
        "cpu": cpu,
        "cpu_cores": cores,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "python": sys.version.split()[0],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if HAS_TORCH:
        import bench_torch

        info["torch"] = bench_torch.torch.__version__
        info["torch_threads"] = bench_torch.torch.get_num_threads()
    return info


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} "


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def _way_line(record: dict[str, Any], way: str, w: dict[str, Any]) -> str:
    lead = "auto" if "auto" in record["ways"] else "engine"
    ratio = "1" if way == lead else record.get(f"{lead}_over_{way}")
    ratio = ratio if isinstance(ratio, str) else ("" if ratio is None else f"{ratio:.2f}x")
    mib = "" if w["peak_bytes"] is None else f"{w['peak_bytes'] / 2**20:.1f}"
    cost = w["cost"]
    return (
        f"| {record['name']} | {LABELS[way]} | {w['width'] or ''} | {w['members_timed']} "
        f"| {w['member_steps_per_second']:,.0f} | {ratio} | {w['compile_seconds']:.2f} "
        f"| {mib} | {_si(w['flops_per_second'])} | {_percent(w['percent_of_peak'])} "
        f"| {cost['bytes_accessed'] / 1e3:,.0f} | {cost['flops'] / cost['bytes_accessed']:.2f} "
        f"| {w['bandwidth'] / 1e9:,.0f} | {w['bound']} | {_percent(w['percent_of_roofline'])} |"
    )


def markdown(records: Sequence[dict[str, Any]], info: dict[str, Any]) -> str:
    """The results as a markdown table, one line per row and way."""
    torch = f", torch {info['torch']} ({info['torch_threads']} threads)" if "torch" in info else ""
    sweep = info.get("sweep_steps")
    sweep = f" (a) chose its width as for a sweep of {sweep:,} steps." if sweep else ""
    lines = [
        f"Device: {info['device']} x {info['devices']} ({info['cpu']}, {info['cpu_cores']} cores), "
        f"jax {info['jax']}{torch}; the engine's width is per device; measured float32 matmul "
        f"peak {_si(info['peak_flops'])}FLOP/s, copy bandwidth past the caches "
        f"{info['dram_bandwidth'] / 1e9:,.1f} GB/s.{sweep}",
        "",
        "| row | way | width | members timed | member-steps/s | auto speed-up | compile s "
        "| peak MiB | FLOP/s | % of peak | kB/member-step | FLOP/B | GB/s at working set "
        "| bound | % of roofline |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- | ---: |",
    ]
    for record in records:
        lines += [_way_line(record, way, w) for way, w in record["ways"].items()]
    ceilings = [f"{r['name']}: {r['memory_ceiling']:,}" for r in records if r["memory_ceiling"]]
    if ceilings:
        lines += ["", "Memory ceiling (the memory plan's largest population at the engine's "
                  "width): " + "; ".join(ceilings) + "."]  # fmt: skip
    lines += ["", "Largest loss difference between ways on the members they share:"]
    for record in records:
        early, every = record["max_loss_difference_first_100_steps"], record["max_loss_difference"]
        if every is not None:
            lines.append(f"{record['name']}: {early:.2g} (first 100 steps), {every:.2g} (all).")
    return "\n".join(lines)


def rows_from_args(args: argparse.Namespace) -> list[Row]:
    """The rows the flags ask for: `--hidden` zipped with `--batch`, crossed with the rest."""
    batches = args.batch if len(args.batch) > 1 else args.batch * len(args.hidden)
    if len(batches) != len(args.hidden):
        raise SystemExit("--batch: give one value or one per --hidden value.")
    return [
        Row(model, hidden, args.layers, batch, population, args.steps, args.sweep_steps, args.width)
        for model in args.model
        for hidden, batch in zip(args.hidden, batches, strict=True)
        for population in args.population
    ]


def _width(text: str) -> int | str:
    """`--width`: "auto" or a positive number of members per vectorized group."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'auto' or a positive integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["mlp"], choices=["mlp", "cnn1d"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[100, 32], help="layer widths")
    parser.add_argument("--layers", type=int, default=None, help="hidden layers (model default)")
    parser.add_argument("--batch", nargs="+", type=int, default=[100, 32])
    parser.add_argument("--population", nargs="+", type=int, default=[64])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--sweep-steps",
        type=int,
        default=None,
        help="(a) chooses its width as a sweep of this many steps would (default: --steps)",
    )
    parser.add_argument(
        "--width", type=_width, default="auto", help="(a) at this fixed width (default: searched)"
    )
    parser.add_argument("--chunk", type=int, default=100, help="engine steps per device call")
    parser.add_argument("--baseline-members", type=int, default=4, help="members (b)-(d) time")
    parser.add_argument("--repeats", type=int, default=3, help="the fastest of these counts")
    parser.add_argument(
        "--ways", nargs="+", default=list(DEFAULT_WAYS), choices=WAYS,
        help="default: all (the PyTorch ways only when torch is installed)",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="JAX CPU devices (default: one per core, as the sweepjax command makes)",
    )
    parser.add_argument("--torch-threads", type=int, default=None, help="default: the cores")
    parser.add_argument("--peak-size", type=int, default=None, help="matmul size for the peak")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the records here")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    placement.use_cpu_cores(args.cpu_devices)  # the engine splits its population across them
    if not HAS_TORCH:
        if set(args.ways) & set(TORCH_WAYS):
            raise SystemExit(
                "--ways torch, torch_vmap need PyTorch: pip install 'sweepjax[bench]'."
            )
        print("PyTorch is not installed: ways (d) and (e) skipped.", file=sys.stderr)
    else:
        import bench_torch

        bench_torch.torch.set_num_threads(args.torch_threads or placement.cpu_cores())

    data = load_dataset("mnist1d", Config().val_size)
    info = machine()
    info["peak_flops"] = roofline.matmul_peak(args.peak_size)
    info["dram_bandwidth"] = roofline.copy_bandwidth()
    info["sweep_steps"] = args.sweep_steps
    records = []
    for row in rows_from_args(args):
        record = bench_row(
            row,
            data,
            args.ways,
            args.baseline_members,
            args.chunk,
            info["peak_flops"],
            args.repeats,
        )
        records.append(record)
        print(f"done: {row.name()}", file=sys.stderr, flush=True)
    # A shared machine's speed drifts: the peak is measured before and after, the higher counts.
    info["peak_flops"] = max(info["peak_flops"], roofline.matmul_peak(args.peak_size))
    for record in records:
        for way in record["ways"].values():
            rate_against_limits(way, info["peak_flops"])
    print(markdown(records, info))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": records}, f, indent=2)
    return records


if __name__ == "__main__":
    main()
