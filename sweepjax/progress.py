"""What a sweep shows while it trains: a progress bar and, when asked, a TensorBoard log."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sweepjax import distributed
from sweepjax.config import Config
from sweepjax.results import curve_names
from sweepjax.space import HParams
from sweepjax.tasks import Task
from sweepjax.tensorboard_log import TensorBoardLog


class Progress:
    """The progress bar and the optional TensorBoard log of a sweep, updated once per chunk.

    The bar shows only on a terminal; the TensorBoard log is written by process 0 alone.
    """

    def __init__(
        self,
        config: Config,
        task: Task,
        names: tuple[str, ...],
        hparams: HParams,
        step: int,
        quiet: bool,
    ):
        self.population, self.task = config.population, task
        self.bar = tqdm(
            total=config.steps,
            initial=step,
            disable=quiet or not sys.stderr.isatty(),
            unit="step",
            desc="sweep",
            leave=False,
        )
        self.logs = None
        if config.tensorboard and distributed.is_primary():
            self.logs = TensorBoardLog(config, hparams, curve_names(names))
        self.sign = 1.0 if task.direction == "max" else -1.0
        # The best validation value of the ranking metric so far, times `sign` (higher is better).
        self.best, self.last = -np.inf, time.perf_counter()

    def __enter__(self) -> Progress:
        return self

    def chunk(self, step: int, length: int, values: dict[str, np.ndarray], alive) -> None:
        """Show the chunk of `length` steps that ended at `step`: `values` maps `train_loss` and
        `val_<metric>` to per-member numpy arrays."""
        self.bar.update(length)
        ranking = self.sign * values[f"val_{self.task.rank_by}"]
        finite = alive & np.isfinite(ranking)
        self.best = np.max(np.where(finite, ranking, -np.inf), initial=self.best)
        now = time.perf_counter()
        rate = self.population * length / max(now - self.last, 1e-9)  # over the last chunk
        self.last = now
        self.bar.set_postfix(
            {
                "alive": int(alive.sum()),
                "diverged": int((~alive).sum()),
                f"best_val_{self.task.rank_by}": f"{self.sign * self.best:.4g}",
                "member-steps/s": f"{rate:,.0f}",
            }
        )
        if self.logs is not None:
            self.logs.write(step, values, alive)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
        if self.logs is not None:
            self.logs.close()
