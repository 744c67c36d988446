"""Vectorization width, memory planning and several devices never change what members learn."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import assert_same, count_compiles, make_tiny_data, xla_flags

import sweepjax
from sweepjax import cli
from sweepjax.engine import placement, widths
from sweepjax.engine.layout import CPU_ISA_FLAG
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams
from sweepjax.sweep.config import complete_hparams

ROOT = Path(__file__).resolve().parent.parent


def tiny():
    """The conftest's tiny data and a config, built without fixtures (for the subprocess)."""
    data = make_tiny_data()
    config = sweepjax.Config(
        model={"name": "mlp", "hidden": [16], "num_classes": 3},
        space={"learning_rate": sweepjax.LogUniform(1e-2, 0.5)},
        population=8,
        steps=30,
        batch_size=16,
        eval_every=10,
        out_dir=None,
    )
    return data, config


def _train(config, data, width=None, mesh=None, steps=12):
    program = program_of(config)
    hp = placement.place(jax.device_put(sample_hparams(config)), mesh)
    train = placement.replicate(jax.device_put(data.train), mesh)
    pop = placement.place(init_population(program, hp, train["inputs"][: config.batch_size]), mesh)
    pop, losses = make_train_chunk(program, steps, width, mesh)(pop, hp, train, jax.random.key(0))
    return np.asarray(losses), jax.tree.map(np.asarray, pop.params)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_the_result_does_not_depend_on_the_width(tiny_config, tiny_data, width):
    ref_losses, ref_params = _train(tiny_config, tiny_data)
    losses, params = _train(tiny_config, tiny_data, width=width)
    assert losses.shape == ref_losses.shape == (12, tiny_config.population)
    assert_same(losses, ref_losses)  # the same program for every member (sweepjax.engine.layout)
    jax.tree.map(assert_same, params, ref_params)


def _tiny_sweep(config, data):
    program = program_of(config)
    hp = jax.device_put(sample_hparams(config))
    train = jax.device_put(data.train)
    return program, init_population(program, hp, train["inputs"][: config.batch_size]), hp, train


@pytest.fixture
def chosen_widths():
    """The width search's memory, empty: nothing remembered from other tests, nothing left
    for them."""
    with widths.CHOSEN_WIDTHS.scoped() as chosen:
        yield chosen


def test_a_fixed_width_is_kept_and_auto_tries_widths_widest_first(
    tiny_config, tiny_data, chosen_widths
):
    args = _tiny_sweep(tiny_config, tiny_data)
    for setting, width in ((3, 3), (100, 8)):
        search = widths.width_search(setting, *args)
        assert (search.width, search.searching) == (width, False)
    search = widths.width_search("auto", *args, member_steps=100)
    assert (search.width, search.searching) == (8, True)


def test_the_search_keeps_the_fastest_width():
    search = widths.WidthSearch([8, 2, 1], member_steps=10**9)
    for width, seconds in ((8, 3.0), (2, 1.0), (1, 2.5)):  # per 1000 member-steps; 2 is best
        assert search.width == width and search.searching
        search.record(seconds, compile_seconds=1.0, member_steps=1000)
    assert (search.width, search.searching) == (2, False)
    assert search.rates == {8: 333.3, 2: 1000.0, 1: 400.0}
    search.record(9.0, 0.0, 1000)  # later chunks change nothing
    assert search.width == 2


def test_the_search_stops_at_a_width_twice_as_slow():
    search = widths.WidthSearch([8, 2, 1], member_steps=10**9)
    search.record(1.0, 1.0, 1000)
    search.record(2.5, 1.0, 1000)  # 2 is over twice as slow as 8: 1 is not tried
    assert (search.width, search.searching, list(search.rates)) == (8, False, [8, 2])


def test_the_search_tries_a_width_only_when_the_rest_of_the_sweep_pays_for_it():
    # 1000 member-steps per second: 10,000 left take 9 s after the first chunk; trying a
    # width that took 1 s of compilation and 1 s of training is over TRY_BUDGET of that.
    short = widths.WidthSearch([8, 2, 1], member_steps=10_000)
    short.record(1.0, compile_seconds=1.0, member_steps=1000)
    assert (short.width, short.searching) == (8, False)
    long = widths.WidthSearch([8, 2, 1], member_steps=100_000)
    long.record(1.0, compile_seconds=1.0, member_steps=1000)
    assert (long.width, long.searching) == (2, True)
    assert widths._candidates(128, 128) == [128, 32, 8, 2]  # 2: the narrowest group
    assert widths._candidates(32, 5) == [5, 2]


def test_chosen_widths_keep_the_latest_and_a_scope_keeps_its_own(chosen_widths):
    for program in range(widths.REMEMBERED + 1):
        chosen_widths.remember((program, 8), 2)
    assert chosen_widths.get((0, 8)) is None and chosen_widths.get((1, 8)) == 2
    with chosen_widths.scoped():
        assert chosen_widths.get((1, 8)) is None
        chosen_widths.remember((1, 8), 4)
    assert chosen_widths.get((1, 8)) == 2


def test_a_sweep_tries_widths_on_its_own_chunks_and_reports_them(
    tiny_config, tiny_data, monkeypatch, chosen_widths
):
    monkeypatch.setattr(widths, "TRY_BUDGET", 1e9)  # the tiny sweep pays for any trial
    config = tiny_config.replace(steps=400, eval_every=100)
    result = sweepjax.run(config, dataset=tiny_data, quiet=True)
    rates = result.summary["population_width_rates"]
    assert list(rates)[0] == 4 and set(rates) == {4, 2}  # 8 members on the session's 2 devices
    assert result.summary["population_width"] == max(rates, key=rates.get)
    again = sweepjax.run(config, dataset=tiny_data, quiet=True)  # the choice is remembered
    assert again.summary["population_width_rates"] == {}
    assert again.summary["population_width"] == result.summary["population_width"]
    for key in ("final_val_loss", "final_train_loss"):  # every width: the same numbers
        assert_same([r[key] for r in again.rows], [r[key] for r in result.rows])


def test_memory_plan_and_a_member_that_cannot_fit(tiny_config, tiny_data, monkeypatch):
    program = program_of(tiny_config)
    hp = jax.device_put(sample_hparams(tiny_config))
    train = jax.device_put(tiny_data.train)
    pop = init_population(program, hp, train["inputs"][:16])
    plan = placement.plan_memory(program, pop, hp, train)
    assert plan.state_per_member > 0 and plan.temp_per_member > 0 and plan.limit > 0
    assert plan.max_width(8) == 8
    small = placement.MemoryPlan(
        limit=int((plan.bytes_at(8, 2) + 1) / placement.HEADROOM),
        fixed=plan.fixed,
        state_per_member=plan.state_per_member,
        temp_per_member=plan.temp_per_member,
    )
    assert small.max_width(8) == 2  # a population larger than the memory runs in groups
    monkeypatch.setattr(placement, "device_memory", lambda device=None: 1000)
    with pytest.raises(placement.DoesNotFit, match="a group of 2 members needs about"):
        widths.width_search("auto", program, pop, hp, train)


def test_a_population_whose_state_cannot_fit_is_refused_from_shapes(
    tiny_config, tiny_data, monkeypatch
):
    monkeypatch.setattr(placement, "device_memory", lambda device=None: 16 * 2**30)
    program, x = program_of(tiny_config), tiny_data.train["inputs"][:16]
    columns = complete_hparams(tiny_config, {"seed": np.zeros(2, np.int32)})
    with count_compiles() as compiles:
        placement.check_fits(program, columns, x, 10**6)  # about 2 GiB of state: fits
        with pytest.raises(
            placement.DoesNotFit,
            match=r"population: 1000000000 members need about [\d,.]+ MiB in the host's memory "
            r".*\([\d,]+ bytes a member: .*over 75% of its 16,384\.0 MiB; allowed: about "
            r"[\d,]+ members here",
        ):
            placement.check_fits(program, columns, x, 10**9)
    assert compiles[0] == 0


def test_a_sweep_too_large_for_the_memory_is_refused_before_anything_compiles(
    tiny_config, tiny_data, monkeypatch
):
    """`sweep.run` calls `placement.check_fits` before it samples the population."""
    monkeypatch.setattr(placement, "device_memory", lambda device=None: 2**20)
    config = tiny_config.replace(population=1024)  # about 2 MiB of state
    with (
        count_compiles() as compiles,
        pytest.raises(placement.DoesNotFit, match=r"population: 1024 members need about"),
    ):
        sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert compiles[0] == 0


def test_population_width_is_validated(tiny_config):
    for bad in ("wide", 0, -2):
        with pytest.raises(ValueError, match="population_width"):
            sweepjax.validate(tiny_config.replace(population_width=bad))


SHARDED = """
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
import sweepjax
from conftest import assert_same, count_compiles, make_tiny_data
from sweepjax import cli
from sweepjax.engine import placement, widths
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.runner.run import program_of, sample_hparams
from test_placement import _train, tiny
data, config = tiny()
assert jax.device_count() == 4
mesh = placement.population_mesh(config.population)
assert mesh.size == 4
out = {}
for width in (None, 1):
    losses, params = _train(config, data, width=width, mesh=mesh)
    out[str(width)] = losses.tolist()
wide = config.replace(population=16)  # 4 members per device: the search tries 4, then 2
program = program_of(wide)
hp = placement.place(jax.device_put(sample_hparams(wide)), mesh)
train = placement.replicate(jax.device_put(data.train), mesh)
pop = placement.place(init_population(program, hp, data.train["inputs"][:16]), mesh)
search = widths.width_search("auto", program, pop, hp, train, mesh=mesh, member_steps=10**9)
tried = []
while search.searching:
    tried.append(search.width)
    pop, _ = make_train_chunk(program, 2, search.width, mesh)(pop, hp, train, jax.random.key(0))
    search.record(1.0, 0.0, 64)
out["tried"] = tried
result = sweepjax.run(config.replace(population=6, steps=20), dataset=data, quiet=True)
out["devices"] = result.summary["population_devices"]
out["run"] = [r["final_val_accuracy"] for r in result.rows]
print(json.dumps(out))
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_several_devices_split_the_population_and_match_one_device():
    tiny_data, tiny_config = tiny()
    env = {
        **os.environ,
        "XLA_FLAGS": xla_flags(4),
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ref_losses, _ = _train(tiny_config, tiny_data)
    assert_same(np.array(out["1"], np.float32), np.array(out["None"], np.float32))
    # One device and several agree to float32 rounding (tests/test_layout.py says why).
    np.testing.assert_allclose(np.array(out["None"]), ref_losses, rtol=1e-6, atol=1e-6)
    assert out["tried"] == [4, 2]
    assert out["devices"] == 3  # 6 members: the most devices that divide them
    alone = sweepjax.run(tiny_config.replace(population=6, steps=20), dataset=tiny_data, quiet=True)
    np.testing.assert_allclose(
        out["run"], [r["final_val_accuracy"] for r in alone.rows], rtol=1e-6, atol=1e-6
    )


CORES = """
import json, os, jax
from sweepjax.engine.placement import use_cpu_cores
use_cpu_cores(3)
before = jax.device_count()
use_cpu_cores(5)  # JAX has started: nothing changes, nothing fails
print(json.dumps([before, jax.device_count(), os.environ["XLA_FLAGS"]]))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize(("xla_flags", "expected"), [("", [3, 3]), ("2", [2, 2])])
def test_use_cpu_cores_makes_devices_before_jax_starts_and_respects_xla_flags(xla_flags, expected):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if xla_flags:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={xla_flags}"
    proc = subprocess.run(
        [sys.executable, "-c", CORES], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    *devices, flags = json.loads(proc.stdout.strip().splitlines()[-1])
    assert devices == expected
    if platform.machine().lower() in ("x86_64", "amd64"):  # every width the same program
        assert flags.split().count(CPU_ISA_FLAG) == 1
    with pytest.raises(ValueError, match=r"use_cpu_cores: count=0; allowed: a positive integer"):
        placement.use_cpu_cores(0)


def test_the_command_line_uses_every_cpu_core(monkeypatch):
    calls = []

    def use_cpu_cores():
        calls.append(True)
        raise ValueError("stop before training")

    monkeypatch.setattr(placement, "use_cpu_cores", use_cpu_cores)
    assert cli.main(["run", "--set", "steps=1"]) == 2 and calls


def test_a_resumed_sweep_keeps_the_width_its_search_chose(
    tiny_config, tiny_data, tmp_path, monkeypatch, chosen_widths
):
    monkeypatch.setattr(widths, "TRY_BUDGET", 1e9)
    config = tiny_config.replace(steps=400, eval_every=100, out_dir=str(tmp_path / "sweep"))
    first = sweepjax.run(config, dataset=tiny_data, quiet=True)
    chosen = first.summary["population_width"]
    assert 4 in first.summary["population_width_rates"]  # searched (stops are timing's)
    chosen_widths.clear()  # a new process: nothing remembered
    monkeypatch.setattr(widths, "_candidates", lambda share, fits: [5, 3])
    resumed = sweepjax.resume(
        config.out_dir, overrides=["steps=500"], config=config, dataset=tiny_data, quiet=True
    )
    assert resumed.summary["population_width"] == chosen
    assert resumed.summary["population_width_rates"] == {}
