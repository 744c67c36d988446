"""What a sweep shows while it trains: a progress bar, and the folder lock's progress line.

Both are callbacks of the chunk loop (`sweepjax.sweep.loop`). The bar counts steps, or trials when
the sweep is adaptive (a scheduler, or more trials than slots); it shows only on a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sweepjax.sweep.config import is_adaptive
from sweepjax.sweep.lock import FolderLock
from sweepjax.sweep.sweep_state import Chunk, SweepState


class ProgressBar:
    """The progress bar of a sweep, updated once per chunk (a `sweepjax.sweep.loop.Callback`)."""

    def __init__(self, state: SweepState, step: int, quiet: bool):
        config = state.config
        self.by_trial = is_adaptive(config)
        self.step, self.ended = step, _ended(state)
        self.bar = tqdm(
            total=state.trial_count if self.by_trial else config.steps,
            initial=self.ended if self.by_trial else step,
            disable=quiet or not sys.stderr.isatty(),
            unit="trial" if self.by_trial else "step",
            desc="sweep",
            leave=False,
        )
        self.sign = 1.0 if state.direction == "max" else -1.0
        # The best validation value of the ranking metric so far, times `sign` (higher is better).
        self.best, self.last = -np.inf, time.perf_counter()

    def __enter__(self) -> ProgressBar:
        return self

    def after_chunk(self, state: SweepState, pop: Any, chunk: Chunk, final: bool) -> None:
        ended = _ended(state)
        self.bar.update(ended - self.ended if self.by_trial else chunk.step - self.step)
        length, self.step, self.ended = chunk.step - self.step, chunk.step, ended
        ranking = self.sign * chunk.val[state.rank_by]
        finite = chunk.alive & np.isfinite(ranking)
        self.best = np.max(np.where(finite, ranking, -np.inf), initial=self.best)
        now = time.perf_counter()
        rate = chunk.losses.shape[1] * length / max(now - self.last, 1e-9)  # over the last chunk
        self.last = now
        diverged = sum(t.status == "diverged" for t in state.table.rows)
        self.bar.set_postfix(
            {
                "running": int(state.running_slots().sum()),
                "diverged": diverged,
                f"best_val_{state.rank_by}": f"{self.sign * self.best:.4g}",
                "member-steps/s": f"{rate:,.0f}",
            }
        )

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


def _ended(state: SweepState) -> int:
    return sum(t.status != "running" for t in state.table.rows)


class LockProgress:
    """Keeps the folder lock's progress line current (`sweepjax resume` shows it to others)."""

    def __init__(self, lock: FolderLock):
        self.lock = lock

    def after_chunk(self, state: SweepState, pop: Any, chunk: Chunk, final: bool) -> None:
        # An adaptive sweep's global step runs past `steps` (a trial's budget): no last step.
        last = {} if is_adaptive(state.config) else {"steps": state.config.steps}
        self.lock.update(step=chunk.step, **last)
