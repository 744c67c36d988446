"""Vectorization width, memory planning and several devices never change what members learn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import make_tiny_data

import sweepjax
from sweepjax import cli, placement
from sweepjax.population import init_population, make_train_chunk
from sweepjax.sweep import program_of, sample_hparams

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
    x, y = placement.replicate((jax.device_put(data.train_x), jax.device_put(data.train_y)), mesh)
    pop = placement.place(init_population(program, hp, x[: config.batch_size]), mesh)
    pop, losses = make_train_chunk(program, steps, width, mesh)(pop, hp, x, y, jax.random.key(0))
    return np.asarray(losses), jax.tree.map(np.asarray, pop.params)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_the_result_does_not_depend_on_the_width(tiny_config, tiny_data, width):
    ref_losses, ref_params = _train(tiny_config, tiny_data)
    losses, params = _train(tiny_config, tiny_data, width=width)
    assert losses.shape == ref_losses.shape == (12, tiny_config.population)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), params, ref_params
    )


def test_a_fixed_width_is_kept_and_auto_is_full_for_short_sweeps(tiny_config, tiny_data):
    program = program_of(tiny_config)
    hp = jax.device_put(sample_hparams(tiny_config))
    x, y = jax.device_put(tiny_data.train_x), jax.device_put(tiny_data.train_y)
    pop = init_population(program, hp, x[:16])
    args = (program, pop, hp, x, y, jax.random.key(0))
    assert placement.choose_width(3, *args) == 3
    assert placement.choose_width(100, *args) == 8
    assert placement.choose_width("auto", *args, member_steps=100) == 8


def test_auto_width_probes_the_device(tiny_config, tiny_data, monkeypatch):
    monkeypatch.setattr(placement, "PROBE_MIN_MEMBER_STEPS", 0)
    monkeypatch.setattr(placement, "PROBE_STEPS", 2)
    program = program_of(tiny_config)
    hp = jax.device_put(sample_hparams(tiny_config))
    x, y = jax.device_put(tiny_data.train_x), jax.device_put(tiny_data.train_y)
    pop = init_population(program, hp, x[:16])
    width = placement.choose_width("auto", program, pop, hp, x, y, jax.random.key(0))
    assert width in (8, 4, 2, 1)
    assert np.asarray(pop.alive).all()  # the probe trains copies, never the population


def test_memory_plan_and_a_member_that_cannot_fit(tiny_config, tiny_data, monkeypatch):
    program = program_of(tiny_config)
    hp = jax.device_put(sample_hparams(tiny_config))
    x, y = jax.device_put(tiny_data.train_x), jax.device_put(tiny_data.train_y)
    pop = init_population(program, hp, x[:16])
    plan = placement.plan_memory(program, pop, hp, x, y)
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
    with pytest.raises(placement.DoesNotFit, match="one member needs about"):
        placement.choose_width("auto", program, pop, hp, x, y, jax.random.key(0))


def test_population_width_is_validated(tiny_config):
    for bad in ("wide", 0, -2):
        with pytest.raises(ValueError, match="population_width"):
            sweepjax.validate(tiny_config.replace(population_width=bad))


SHARDED = """
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
import sweepjax
from conftest import make_tiny_data
from sweepjax import cli, placement
from test_placement import _train, tiny
data, config = tiny()
assert jax.device_count() == 4
mesh = placement.population_mesh(config.population)
assert mesh.size == 4
out = {}
for width in (None, 1):
    losses, params = _train(config, data, width=width, mesh=mesh)
    out[str(width)] = losses.tolist()
result = sweepjax.run(config.replace(population=6, steps=20), dataset=data, quiet=True)
out["devices"] = result.summary["population_devices"]
out["run"] = [r["final_val_accuracy"] for r in result.rows]
print(json.dumps(out))
"""


def test_several_devices_split_the_population_and_match_one_device():
    tiny_data, tiny_config = tiny()
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ref_losses, _ = _train(tiny_config, tiny_data)
    for width in ("None", "1"):
        np.testing.assert_allclose(np.array(out[width]), ref_losses, rtol=1e-6, atol=1e-6)
    assert out["devices"] == 3  # 6 members: the most devices that divide them
    alone = sweepjax.run(tiny_config.replace(population=6, steps=20), dataset=tiny_data, quiet=True)
    np.testing.assert_allclose(
        out["run"], [r["final_val_accuracy"] for r in alone.rows], rtol=1e-6, atol=1e-6
    )


CORES = """
import json, jax
from sweepjax.placement import use_cpu_cores
use_cpu_cores(3)
before = jax.device_count()
use_cpu_cores(5)  # JAX has started: nothing changes, nothing fails
print(json.dumps([before, jax.device_count()]))
"""


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
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected
    with pytest.raises(ValueError, match=r"use_cpu_cores: count=0; allowed: a positive integer"):
        placement.use_cpu_cores(0)


def test_the_command_line_uses_every_cpu_core(monkeypatch):
    class Called(Exception):
        pass

    def use_cpu_cores():
        raise Called

    monkeypatch.setattr(cli, "use_cpu_cores", use_cpu_cores)
    with pytest.raises(Called):
        cli.main(["run", "--set", "steps=1"])
