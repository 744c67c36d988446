"""Budgets and clocks are distinct (docs/architecture.md, invariant 9).

With refill (`trials` above `population`) the sweep's global step runs past `steps`, a trial's
budget: a trial that entered its slot late trains to its own budget. Every checkpoint such a
sweep wrote must resume, the tail past `steps` included, to exactly the uninterrupted result;
the budget changes only by an explicit override, refused where it cannot apply to every trial.

A kill after checkpoint `s` leaves the folder as a finished run with the later checkpoints and
the result files gone, so each case here rewinds a copy of one finished sweep to a checkpoint
and resumes it (the process-level kills are in `tests/test_kill_matrix.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint import assert_same_results

import sweepjax
from sweepjax.engine.population import START
from sweepjax.search.schedulers import FIFO
from sweepjax.search.space import HParams
from sweepjax.sweep import checkpoint
from sweepjax.sweep.lock import FolderLock, holder
from sweepjax.sweep.out_dir import RESULT_FILES
from sweepjax.sweep.policies import FixedRows
from sweepjax.sweep.progress import LockProgress
from sweepjax.sweep.sweep_state import Chunk, SweepState
from sweepjax.sweep.trials import Curves, TrialTable

STEPS = 30


def rewind(finished: Path, to: Path, step: int) -> Path:
    """A copy of the sweep folder `finished` as a kill right after its checkpoint `step` left it."""
    shutil.copytree(finished, to)
    for saved in checkpoint.saved_steps(to):
        if saved > step:
            shutil.rmtree(checkpoint.checkpoint_dir(to) / str(saved))
    for name in RESULT_FILES:
        (to / name).unlink(missing_ok=True)
    return to


@pytest.fixture(scope="module")
def refill(tiny_config, tiny_data, tmp_path_factory):
    """A finished ASHA sweep with refill whose global step ran past `steps`, every checkpoint
    kept."""
    out = tmp_path_factory.mktemp("refill") / "reference"
    config = tiny_config.replace(
        population=4,
        trials=10,
        steps=STEPS,
        scheduler={"name": "asha", "min_steps": 10},
        keep_checkpoints=100,
        out_dir=str(out),
    )
    sweepjax.run(config, dataset=tiny_data, quiet=True)
    return config, out, tiny_data


def test_the_refill_sweep_runs_past_its_budget(refill):
    config, out, data = refill
    steps = checkpoint.saved_steps(out)
    rows = sweepjax.read_result(out).rows
    assert max(steps) > STEPS  # the global clock ran past the budget...
    assert max(r["steps_trained"] for r in rows) == STEPS  # ...no trial's own clock did
    assert any(r["status"] == "stopped" for r in rows)


def test_every_checkpoint_resumes_to_the_uninterrupted_result(refill, tmp_path):
    """The tail past `steps` included: rewound to each of them in turn."""
    config, out, data = refill
    steps = checkpoint.saved_steps(out)
    tail = [s for s in steps if s > STEPS]
    rng = np.random.default_rng(27)
    chosen = sorted({*rng.choice(steps[:-1], 2, replace=False).tolist(), tail[0], steps[-1]})
    for step in chosen:
        folder = rewind(out, tmp_path / f"at{step}", step)
        sweepjax.resume(folder, dataset=data, quiet=True)
        assert_same_results(out, folder)


def test_running_the_same_command_again_continues_past_the_budget(refill, tmp_path):
    config, out, data = refill
    folder = rewind(out, tmp_path / "again", max(checkpoint.saved_steps(out)) - 10)
    sweepjax.run(config.replace(out_dir=str(folder)), dataset=data, quiet=True)
    assert_same_results(out, folder)
    sweepjax.run(
        config.replace(out_dir=str(folder)), dataset=data, quiet=True
    )  # finished: read back
    assert_same_results(out, folder)


def test_a_refill_sweep_refuses_another_budget_and_changes_nothing(refill, tmp_path):
    config, out, data = refill
    folder = rewind(out, tmp_path / "budget", STEPS + 10)
    before = sorted(p.name for p in (folder / "checkpoints").iterdir())
    for steps in (STEPS + 20, STEPS - 10):
        with pytest.raises(ValueError, match=rf"steps: {steps} .*trial budget {STEPS}") as err:
            sweepjax.resume(folder, overrides=[f"steps={steps}"], dataset=data, quiet=True)
        assert "refill" in str(err.value) or "scheduler" in str(err.value)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == before


def test_a_fixed_sweep_extends_its_budget_only_forward(tiny_config, tiny_data, tmp_path):
    """A fixed population: every trial holds its slot, so `steps=N` extends them all; a budget
    below what the trials trained is refused."""
    out = tmp_path / "fixed"
    config = tiny_config.replace(population=4, steps=20, out_dir=str(out))
    sweepjax.run(config, dataset=tiny_data, quiet=True)
    with pytest.raises(ValueError, match=r"steps: 10 is below the 20 steps its trials trained"):
        sweepjax.resume(out, overrides=["steps=10"], dataset=tiny_data, quiet=True)
    with pytest.raises(ValueError, match=rf"steps: 30 is not the trial budget 20 .*resume {out}"):
        sweepjax.run(config.replace(steps=30), dataset=tiny_data, quiet=True)  # not by `run`
    result = sweepjax.resume(out, overrides=["steps=30"], dataset=tiny_data, quiet=True)
    assert result.summary["steps_done"] == 30


def test_the_work_left_counts_each_trial_on_its_own_clock(tiny_config):
    """Past `steps` on the global clock, a trial that entered late still has its own budget to
    train (the width search weighs this work; it was once `population * 1` there)."""
    config = tiny_config.replace(population=2, trials=3, steps=STEPS)
    rows = [{"learning_rate": 0.1, "momentum": 0.5, "seed": i} for i in range(3)]
    state = SweepState(
        config, "accuracy", "max", HParams({}), np.zeros(0, int), TrialTable(),
        Curves.empty(("loss", "accuracy")), FIFO(), FixedRows(rows),
    )  # fmt: skip
    state.admit(rows[:1], step=0)
    state.admit(rows[1:2], step=STEPS - 10)  # the second slot took a trial late
    state.slot_trials = np.array([0, 1])
    state.hparams = HParams({START: np.array([0, STEPS - 10], np.int32)})
    state.table.rows[0].status = "finished"
    step = STEPS + 10  # past the budget on the global clock
    assert state.member_steps_left(step) == (STEPS - 20) + STEPS  # trial 1's 10 left, trial 2


def test_the_lock_gives_no_last_step_for_a_refill_sweep(tiny_config, tmp_path):
    """`show` says "step N of M" from the lock: M is a fixed sweep's last step, but a refill
    sweep's global step runs past its budget, so it has none."""
    for trials, last in ((None, STEPS), (8, None)):
        config = tiny_config.replace(population=4, trials=trials, steps=STEPS)
        state = SweepState(
            config, "accuracy", "max", HParams({}), np.zeros(0, int), TrialTable(),
            Curves.empty(("loss", "accuracy")), FIFO(), FixedRows([]),
        )  # fmt: skip
        chunk = Chunk(STEPS + 10, np.zeros((1, 4)), {}, np.ones(4, bool), np.full(4, -1))
        folder = tmp_path / f"trials{trials}"
        with FolderLock(folder) as lock:
            LockProgress(lock).after_chunk(state, None, chunk, final=False)
            assert holder(folder)["step"] == STEPS + 10
            assert holder(folder).get("steps") == last
