"""Kill sweeps at seeded random moments and check that each resumes to bitwise its results.

For every policy (a fixed population, ASHA with refill, Hyperband, PBT, TPE with refill,
coarse-to-fine, and TPE with ASHA over the model's width: one population per width in play),
the tool runs the `sweepjax` command once uninterrupted, then again into a fresh folder that it kills (SIGKILL or SIGTERM, seeded) at random moments across the whole run:
at any evaluation step, in the tail where a refill sweep's global step is past `steps`, and
after training while the test split is measured and the results are written. Each kill is
followed by `sweepjax resume OUT` or the same `sweepjax run` again (seeded too), which may be
killed in turn; the last one runs to the end. A case passes when every exit code is a
documented one and `results.csv`, `curves.npz` and `sweep.json` (but for its timings) equal the
uninterrupted run's bit for bit.

    python tools/kill_matrix.py                  # every policy, 6 cases each
    python tools/kill_matrix.py --cases 2 --policies tpe_refill asha_refill --seed 3

The command runs as users run it, one JAX device per CPU core. `tests/test_kill_matrix.py`
runs a slice of this matrix in the suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from sweepjax.runner.training import MEASURED_KEYS
from sweepjax.sweep.lock import holder

STEPS, EVAL_EVERY = 60, 10
EXPERIMENT = f'''
"""A tiny MNIST-1D sweep whose checkpoints are written at every evaluation."""
import sweepjax


def get_config():
    return sweepjax.Config(
        model={{"name": "mlp", "hidden": [16]}},
        optimizer="sgd",
        space={{"learning_rate": sweepjax.LogUniform(1e-2, 0.5), "momentum": sweepjax.Uniform(0.0, 0.9)}},
        population=4,
        steps={STEPS},
        batch_size=32,
        eval_every={EVAL_EVERY},
        val_size=200,
    )
'''
# The policies of the matrix, as `--set` overrides of EXPERIMENT.
POLICIES = {
    "fixed": [],
    "asha_refill": ["scheduler=asha", "scheduler.min_steps=10", "trials=10"],
    "hyperband": ["scheduler=hyperband", "scheduler.min_steps=10", "trials=10"],
    "pbt": ["scheduler=pbt", "scheduler.ready=20"],
    "tpe_refill": ["searcher=tpe", "trials=8"],
    "coarse_to_fine": ["searcher=coarse_to_fine", "trials=8"],
    # one population per width in play, TPE proposing widths with the numbers, ASHA stopping
    "structure_tpe_asha": [
        "space.model.hidden=Choice([[8], [16], [32]])",
        "searcher=tpe",
        "scheduler=asha",
        "scheduler.min_steps=10",
        "trials=10",
    ],
}
# Exit codes a stopped command may give: done, stopped resumable, killed by SIGKILL.
ALLOWED_CODES = {signal.SIGKILL: {0, 75, -signal.SIGKILL}, signal.SIGTERM: {0, 75}}


@dataclasses.dataclass
class Outcome:
    """One case: the kills made (`signal@step+delay -> exit code`) and what differed (none:
    resumed bitwise)."""

    policy: str
    kills: list[str]
    problems: list[str]

    @property
    def bitwise(self) -> bool:
        return not self.problems


def command(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`sweepjax ARGV` as a user starts it, its stderr piped."""
    script = [sys.executable, "-m", "sweepjax.cli"]
    return subprocess.Popen(
        [*script, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def run_argv(experiment: Path, out: Path, policy: str) -> list[str]:
    sets = [arg for item in POLICIES[policy] for arg in ("--set", item)]
    return ["run", str(experiment), "--out", str(out), "--quiet", *sets]


def reached(out: Path) -> int:
    """The step the sweep in `out` has reached by its lock (-1 before its first chunk)."""
    info = holder(out) if out.is_dir() else None
    return int(info.get("step", -1)) if info else -1


def kill_at(process: subprocess.Popen, out: Path, step: int, delay: float, signum: int) -> int:
    """Send `signum` once the sweep in `out` reached `step`, `delay` seconds later (unless the
    process ended first); its exit code."""
    while process.poll() is None and reached(out) < step:
        time.sleep(0.005)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signum)
    try:
        process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    return process.returncode


def last_step(folder: Path) -> int:
    """The sweep's last global step, from its curves."""
    with np.load(folder / "curves.npz") as curves:
        return int(curves["steps"][-1])


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two finished sweep folders' result files, bit for bit."""
    problems = []
    if (a / "results.csv").read_bytes() != (b / "results.csv").read_bytes():
        problems.append("results.csv differs")
    with np.load(a / "curves.npz") as ca, np.load(b / "curves.npz") as cb:
        if set(ca) != set(cb):
            problems.append(f"curves.npz keys {sorted(ca)} != {sorted(cb)}")
        for key in set(ca) & set(cb):
            if ca[key].shape != cb[key].shape or ca[key].tobytes() != cb[key].tobytes():
                problems.append(f"curves.npz[{key}] differs")
    sa, sb = (json.loads((d / "sweep.json").read_text()) for d in (a, b))
    for summary in (sa, sb):
        summary["config"].pop("out_dir")
        for key in MEASURED_KEYS:
            summary.pop(key, None)
    problems += [
        f"sweep.json[{k}] differs" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)
    ]
    return problems


@dataclasses.dataclass
class Kill:
    """`signum` `delay` seconds after the sweep reached `step`, then `restart` ("resume" or
    "run": the same command again)."""

    step: int
    delay: float
    signum: int
    restart: str

    def __str__(self) -> str:
        return f"{signal.Signals(self.signum).name}@{self.step}+{self.delay:.2f}s, {self.restart}"


def draw_kills(rng: np.random.Generator, end: int, count: int) -> list[Kill]:
    """`count` kills at seeded random moments of a sweep whose last step is `end` (a kill
    at `end` lands after training: the test split, the result files, the exit)."""
    steps = np.sort(rng.integers(1, end // EVAL_EVERY + 1, count)) * EVAL_EVERY
    return [
        Kill(
            int(step),
            float(rng.uniform(0, 0.05)),  # within a chunk or two of this tiny sweep
            signal.SIGKILL if rng.random() < 0.5 else signal.SIGTERM,
            "resume" if rng.random() < 0.5 else "run",
        )
        for step in steps
    ]


def run_case(
    policy: str, kills: list[Kill], folder: Path, reference: Path, env: dict[str, str]
) -> Outcome:
    """Run `policy`'s sweep into a new folder, kill it and each restart as `kills` say, let the
    last restart finish, and compare the folder with `reference`."""
    experiment = folder / "experiment.py"
    out = Path(tempfile.mkdtemp(prefix=f"{policy}-", dir=folder))
    argv, made = run_argv(experiment, out, policy), []
    for kill in kills:
        code = kill_at(command(argv, env), out, kill.step, kill.delay, kill.signum)
        made.append(f"{kill} -> {code}")
        if code not in ALLOWED_CODES[kill.signum]:
            return Outcome(policy, made, [f"exit code {code} after {kill}"])
        resume = ["resume", str(out), "--quiet"]
        argv = resume if kill.restart == "resume" else run_argv(experiment, out, policy)
    process = command(argv, env)
    _, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        problem = f"the last restart exited {process.returncode}: {stderr[-500:]}"
        return Outcome(policy, made, [problem])
    return Outcome(policy, made, differences(reference, out))


def reference_run(policy: str, folder: Path, env: dict[str, str]) -> Path:
    """`policy`'s sweep run once uninterrupted."""
    out = folder / f"{policy}-reference"
    process = command(run_argv(folder / "experiment.py", out, policy), env)
    _, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"{policy}: the uninterrupted run exited {process.returncode}: {stderr}")
    return out


def write_experiment(folder: Path) -> None:
    (folder / "experiment.py").write_text(textwrap.dedent(EXPERIMENT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--cases", type=int, default=6, help="killed sweeps per policy")
    parser.add_argument("--kills", type=int, default=2, help="kills per sweep before it finishes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device per core
    rng = np.random.default_rng(args.seed)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kill-matrix-") as tmp:
        folder = Path(tmp)
        write_experiment(folder)
        for policy in args.policies:
            reference = reference_run(policy, folder, env)
            for _ in range(args.cases):
                kills = draw_kills(rng, last_step(reference), args.kills)
                outcome = run_case(policy, kills, folder, reference, env)
                outcomes.append(outcome)
                verdict = "bitwise" if outcome.bitwise else "; ".join(outcome.problems)
                print(f"{policy:15} {', '.join(outcome.kills):70} {verdict}", flush=True)
    kills = sum(len(o.kills) for o in outcomes)
    good = sum(o.bitwise for o in outcomes)
    print(
        f"{len(outcomes)} sweeps, {kills} kills: {good} resumed bitwise, {len(outcomes) - good} not"
    )
    return 0 if good == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
