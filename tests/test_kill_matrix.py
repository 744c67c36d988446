"""A slice of `tools/kill_matrix.py` (invariants 6 and 9, docs/architecture.md): the real
command killed with SIGKILL and SIGTERM, in the middle and in the tail past `steps`, resumes or
reruns to bitwise the uninterrupted results. The whole matrix (six policies, seeded random
moments, several kills a sweep) is the tool."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import kill_matrix  # noqa: E402
from command import environment  # noqa: E402

pytestmark = pytest.mark.subprocess

# A refill sweep's global step past `steps`, by which its checkpoint past `steps` is committed
# (a save waits for the one before it).
TAIL = kill_matrix.STEPS + 2 * kill_matrix.EVAL_EVERY


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kills")
    kill_matrix.write_experiment(folder)
    return folder


@pytest.fixture(scope="module")
def references(folder):
    """Each policy's uninterrupted run, made once."""
    made: dict[str, Path] = {}

    def reference(policy: str) -> Path:
        if policy not in made:
            made[policy] = kill_matrix.reference_run(policy, folder, env())
        return made[policy]

    return reference


def env() -> dict[str, str]:
    """The command's environment as users have it: one JAX device per CPU core."""
    return {k: v for k, v in environment().items() if k != "XLA_FLAGS"}


END = -1  # the sweep's last step: a kill there lands after training (test split, results)
CASES = {
    # a refill sweep: SIGTERM mid-run and resumed, SIGKILL in its tail and run again, then
    # SIGTERM after training and resumed (ASHA's tail: tests/test_budgets.py, in-process)
    "tpe_refill": [
        (30, 0.02, signal.SIGTERM, "resume"),
        (TAIL, 0.0, signal.SIGKILL, "run"),
        (END, 0.05, signal.SIGTERM, "resume"),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("policy", list(CASES))
def test_killed_in_the_middle_and_the_tail_resumes_bitwise(folder, references, policy):
    reference = references(policy)
    end = kill_matrix.last_step(reference)
    assert end >= TAIL  # the tail exists
    kills = [
        kill_matrix.Kill(end if step == END else step, delay, signum, restart)
        for step, delay, signum, restart in CASES[policy]
    ]
    outcome = kill_matrix.run_case(policy, kills, folder, reference, env())
    assert outcome.bitwise, outcome


def test_the_comparison_sees_a_changed_bit(references, tmp_path):
    """The verdict is not vacuous: one flipped bit of a curve, or a changed row, is seen."""
    reference = references("tpe_refill")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.csv", "curves.npz", "sweep.json"):
        (copy / name).write_bytes((reference / name).read_bytes())
    assert kill_matrix.differences(reference, copy) == []
    with np.load(copy / "curves.npz") as curves:
        arrays = dict(curves)
    key = next(k for k in arrays if k != "steps")
    arrays[key].view(np.uint32).flat[0] ^= 1
    np.savez(copy / "curves.npz", **arrays)
    assert kill_matrix.differences(reference, copy) == [f"curves.npz[{key}] differs"]
    text = (copy / "results.csv").read_text()
    (copy / "results.csv").write_text(text.replace(",", ";", 1))
    assert "results.csv differs" in kill_matrix.differences(reference, copy)
