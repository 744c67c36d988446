"""Invariant 2: a member's numbers do not depend on the layout it trains in.

A member trained alone, in populations of 8 and 64, at widths 1, 4 and full ends bitwise equal on
the CPU, and so it does on 2 and 4 devices: the same program runs for each member whatever its
neighbours (`sweepjax.engine.layout`). One device and several agree to float32 rounding, a named
exception (`test_one_device_and_several_agree_to_float32_rounding`). Four devices need their
own process. The models: an MLP (batched products) and a user's `nn.Conv` module (under vmap,
a grouped convolution).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same, xla_flags

from sweepjax.engine.layout import CPU_ISA_FLAG, cap_cpu_isa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from layout_check import follow  # noqa: E402

ONE_DEVICE = [("mlp", size, width) for size in (8, 64) for width in (None, 4, 1)]
SEVERAL = [("mlp", 8, 4), ("mlp", 8, 1), ("mlp", 64, None), ("mlp", 64, 4), ("mlp", 64, 1)]
CONV = [("user_conv", 64, 4)]  # a grouped convolution: one layout of each kind is enough
LAYOUTS = [(*one, 1) for one in ONE_DEVICE + CONV] + [(*two, 2) for two in SEVERAL + CONV]


@functools.cache
def reference(model: str) -> tuple[dict, dict]:
    """The followed member alone on one device, and in a population of 8 on two."""
    return follow(model, 1, None, 1), follow(model, 8, None, 2)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "size", "width", "devices"), LAYOUTS)
def test_a_member_is_bitwise_the_same_in_every_layout_on_one_device_or_on_several(
    model, size, width, devices
):
    """Against the member alone on one device, or in a population of 8 on two."""
    expected = reference(model)[0 if devices == 1 else 1]
    got = follow(model, size, width, devices)
    for name, value in expected.items():
        assert_same(got[name], value)


def test_the_cpu_cap_is_added_once_and_a_users_own_cap_wins(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    cap_cpu_isa()
    cap_cpu_isa()
    expected = f"--xla_force_host_platform_device_count=2 {CPU_ISA_FLAG}"
    assert os.environ["XLA_FLAGS"] == expected
    monkeypatch.delenv("XLA_FLAGS")
    cap_cpu_isa()
    assert os.environ["XLA_FLAGS"] == CPU_ISA_FLAG
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=SSE4_2")
    cap_cpu_isa()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_max_isa=SSE4_2"
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.delenv("XLA_FLAGS")
    cap_cpu_isa()
    assert "XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("model", ["mlp", "user_conv"])
def test_one_device_and_several_agree_to_float32_rounding(model):
    """The named exception: XLA compiles a program split across devices with other
    floating-point rewrites than the same program on one device (in Adam's bias correction,
    `m / broadcast(c)` becomes `m * broadcast(1 / c)` in one and `(a / b) / c` becomes
    `a / (b * c)` in the other; docs/performance.md, "Layouts and numbers"). An update may then
    differ by one rounding (2^-24 relative) per step; over 8 steps of this small model the
    differences stay within a few float32 roundings of the values, far inside 1e-5."""
    alone, split = reference(model)
    for name, value in alone.items():
        np.testing.assert_allclose(split[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


FOUR = """
import json, sys
import jax
sys.path.insert(0, "tools")
from layout_check import follow
assert jax.device_count() == 4
layouts = [(8, None), (8, 4), (64, None), (64, 4), (64, 1)]
out = {f"{s}/{w}": {k: v.tolist() for k, v in follow("mlp", s, w, 4).items()} for s, w in layouts}
print(json.dumps(out))
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_four_devices_give_the_same_member_as_two():
    _, split = reference("mlp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = xla_flags(4)
    proc = subprocess.run(
        [sys.executable, "-c", FOUR], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out) == 5
    for layout in out.values():
        for name, value in split.items():
            got = np.asarray(layout[name], value.dtype)
            if name == "test_loss":  # a long batch's forward pass: see docs/performance.md
                np.testing.assert_allclose(got, value, rtol=1e-6, err_msg=name)
            else:  # training is bitwise on every count of devices from 2
                assert_same(got, value)
