"""Optional TensorBoard logs: one run per trial, its hyperparameters in the HParams plugin.

Written from the host between chunks (never inside one) with `tensorboardX`, so TensorFlow is not
needed. Turned on by the config key `tensorboard=True`; the runs land in
`out_dir/tensorboard/member_XXXX` and are viewed with `tensorboard --logdir OUT_DIR/tensorboard`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sweepjax.config import Config


class TensorBoardLog:
    """One `tensorboardX.SummaryWriter` per trial, opened when the trial first shows up (a
    `sweepjax.loop.Callback`).

    Args:
      config: the sweep; its `out_dir` holds the logs.
      metrics: the curves' names (`train_loss`, `val_<metric>` for each task metric).

    Raises:
      ValueError: if tensorboardX is not installed or `config.out_dir` is None.
    """

    def __init__(self, config: Config, metrics: list[str]):
        try:
            from tensorboardX import SummaryWriter
            from tensorboardX.summary import hparams as hparams_summaries
        except ImportError as err:
            raise ValueError(
                "tensorboard: True needs the tensorboardX package; install it with "
                "`pip install tensorboardX`, or set tensorboard=False."
            ) from err
        if config.out_dir is None:
            raise ValueError("tensorboard: True needs an out_dir to write the logs into.")
        self.root, self.config, self.metrics = Path(config.out_dir) / "tensorboard", config, metrics
        self._open, self._summaries = SummaryWriter, hparams_summaries
        self.writers: dict[int, Any] = {}

    def _writer(self, trial: Any) -> Any:
        """The trial's writer; its hyperparameters (those the space names, and `seed`) go to
        the HParams plugin when it is opened."""
        if trial.id not in self.writers:
            writer = self._open(logdir=str(self.root / f"member_{trial.id:04d}"))
            names = [n for n in trial.hparams if n in self.config.space or n == "seed"]
            values = {n: _plain(trial.hparams[n]) for n in names}
            for summary in self._summaries(values, {m: 0.0 for m in self.metrics}):
                writer.file_writer.add_summary(summary)
            self.writers[trial.id] = writer
        return self.writers[trial.id]

    def after_chunk(self, state: Any, pop: Any, chunk: Any, final: bool) -> None:
        """Log the chunk's metrics of every trial that held a slot in it; non-finite values
        are left out."""
        latest = {name: values[-1] for name, values in state.curves.values.items()}
        for trial in state.table.rows:
            if trial.id >= len(latest["train_loss"]) or not _held(latest, trial.id):
                continue
            writer = self._writer(trial)
            for name, values in latest.items():
                value = float(values[trial.id])
                if math.isfinite(value):
                    writer.add_scalar(name, value, chunk.step)
            writer.add_scalar("diverged", float(trial.status == "diverged"), chunk.step)
            writer.flush()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        for writer in self.writers.values():
            writer.close()


def _held(latest: dict[str, np.ndarray], trial: int) -> bool:
    """Whether the trial held a slot in the chunk: some validation value is recorded."""
    return any(not np.isnan(v[trial]) for k, v in latest.items() if k != "train_loss")


def _plain(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic | np.ndarray) else value
    return value if isinstance(value, str | bool | int | float) else str(value)
