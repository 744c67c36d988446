"""What a sweep shows while it trains: a progress bar and, when asked, a TensorBoard log."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sweepjax import distributed
from sweepjax.config import Config
from sweepjax.space import HParams
from sweepjax.tensorboard_log import TensorBoardLog


class Progress:
    """The progress bar and the optional TensorBoard log of a sweep, updated once per chunk.

    The bar shows only on a terminal; the TensorBoard log is written by process 0 alone.
    """

    def __init__(self, config: Config, hparams: HParams, step: int, quiet: bool):
        self.population = config.population
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
            self.logs = TensorBoardLog(config, hparams)
        self.best, self.last = -np.inf, time.perf_counter()  # best validation accuracy so far

    def __enter__(self) -> Progress:
        return self

    def chunk(self, step: int, length: int, train_loss, val_loss, val_accuracy, alive) -> None:
        """Show the chunk of `length` steps that ended at `step` (per-member numpy arrays)."""
        self.bar.update(length)
        self.best = np.max(np.where(alive, val_accuracy, -np.inf), initial=self.best)
        now = time.perf_counter()
        rate = self.population * length / max(now - self.last, 1e-9)  # over the last chunk
        self.last = now
        self.bar.set_postfix(
            {
                "alive": int(alive.sum()),
                "diverged": int((~alive).sum()),
                "best_val": f"{self.best:.3f}",
                "member-steps/s": f"{rate:,.0f}",
            }
        )
        if self.logs is not None:
            self.logs.write(step, train_loss, val_loss, val_accuracy, alive)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
        if self.logs is not None:
            self.logs.close()
