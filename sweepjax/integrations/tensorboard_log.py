"""Optional TensorBoard logs: one run per trial, its hyperparameters in the HParams plugin.

Written from the host between chunks (never inside one) with `tensorboardX`, so TensorFlow is not
needed. Turned on by the config key `tensorboard=True`; the runs land in
`out_dir/tensorboard/member_XXXX` and are viewed with `tensorboard --logdir OUT_DIR/tensorboard`.
The trials, values and hyperparameters logged are those of `sweepjax.integrations.trial_log`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweepjax.integrations.trial_log import Held, hyperparameters, run_name
from sweepjax.sweep.config import Config
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trials import Trial


class TensorBoardLog:
    """One `tensorboardX.SummaryWriter` per trial, opened when the trial first holds a slot (a
    `sweepjax.sweep.loop.Callback`).

    Args:
      config: the sweep; its `out_dir` holds the logs.
      state: the sweep's state before its first chunk here.

    Raises:
      ValueError: if tensorboardX is not installed or `config.out_dir` is None.
    """

    def __init__(self, config: Config, state: SweepState):
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
        self.root, self.config = Path(config.out_dir) / "tensorboard", config
        self.metrics, self.held = list(state.curves.values), Held(state)
        self._open, self._summaries = SummaryWriter, hparams_summaries
        self.writers: dict[int, Any] = {}

    def _writer(self, trial: Trial) -> Any:
        """The trial's writer; its hyperparameters go to the HParams plugin when it is opened."""
        if trial.id not in self.writers:
            writer = self._open(logdir=str(self.root / run_name(trial)))
            values = hyperparameters(self.config, trial)
            for summary in self._summaries(values, {m: 0.0 for m in self.metrics}):
                writer.file_writer.add_summary(summary)
            self.writers[trial.id] = writer
        return self.writers[trial.id]

    def after_chunk(self, state: SweepState, pop: Any, chunk: Any, final: bool) -> None:
        """Log the chunk's metrics of every trial that held a slot in it; non-finite values
        are left out."""
        for trial, values in self.held.after(state):
            writer = self._writer(trial)
            for name, value in values.items():
                writer.add_scalar(name, value, chunk.step)
            writer.add_scalar("diverged", float(trial.status == "diverged"), chunk.step)
            writer.flush()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        for writer in self.writers.values():
            writer.close()
