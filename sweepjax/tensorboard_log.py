"""Optional TensorBoard logs: one run per member, its hyperparameters in the HParams plugin.

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
from sweepjax.space import HParams


class TensorBoardLog:
    """One `tensorboardX.SummaryWriter` per member.

    Args:
      config: the sweep; its `out_dir` holds the logs.
      hparams: the population's hyperparameters; those the space names (and `seed`) are
        recorded in the HParams plugin.
      metrics: the curves' names (`train_loss`, `val_<metric>` for each task metric).

    Raises:
      ValueError: if tensorboardX is not installed or `config.out_dir` is None.
    """

    def __init__(self, config: Config, hparams: HParams, metrics: list[str]):
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
        root = Path(config.out_dir) / "tensorboard"
        names = [n for n in hparams.names if n in config.space or n == "seed"]
        self.writers = []
        for i in range(hparams.size):
            writer = SummaryWriter(logdir=str(root / f"member_{i:04d}"))
            values = {n: _plain(np.asarray(hparams[n])[i]) for n in names}
            for summary in hparams_summaries(values, {m: 0.0 for m in metrics}):
                writer.file_writer.add_summary(summary)
            self.writers.append(writer)

    def write(self, step: int, metrics: dict[str, np.ndarray], alive: np.ndarray) -> None:
        """Log one chunk's metrics (name -> `[P]` array) at `step`; non-finite values are left out."""
        for i, writer in enumerate(self.writers):
            for name, values in metrics.items():
                value = float(values[i])
                if math.isfinite(value):
                    writer.add_scalar(name, value, step)
            writer.add_scalar("diverged", float(not alive[i]), step)
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def _plain(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic | np.ndarray) else value
    return value if isinstance(value, str | bool | int | float) else str(value)
