"""Optional Weights & Biases logs: one W&B run per trial, grouped by sweep, offline by default.

Turned on by the config key `wandb`: `True` logs to the project `$WANDB_PROJECT` (else
`sweepjax`), a string names the project. Runs are offline unless `$WANDB_MODE` says otherwise
(`online`, `disabled`, ...): their files land in `OUT_DIR/wandb/offline-run-*`, and
`wandb sync OUT_DIR/wandb/offline-run-*` uploads them later (the legs of a resumed run in order).

The runs of a sweep form one group, named after it (`sweepjax.integrations.trial_log.sweep_name`). Each run is named
`member_XXXX` like the trial's row of `results.csv`; its config is that row's hyperparameters,
its history the trial's curves at their global steps, its summary's `status` how the trial
ended (`ok`, `stopped`, `diverged`). A run ends with exit code 0 when its trial ends, 1 when the
sweep stops first; a resumed sweep continues it (`sweepjax.integrations.trial_log.TrialRuns`). W&B's terminal
output, console capture, code and git capture and system metrics are off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweepjax.integrations.trial_log import TrialRuns, hyperparameters, run_name, sweep_name
from sweepjax.sweep.config import Config
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trials import Trial

PROJECT = "sweepjax"  # the project when neither the config nor $WANDB_PROJECT names one
QUIET = {  # wandb.Settings: no terminal output and nothing captured but the logged values
    "silent": True,
    "console": "off",
    "disable_git": True,
    "save_code": False,
    "x_disable_stats": True,
    "x_disable_meta": True,
    "x_save_requirements": False,
}


def run_options(config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
    """The `wandb.init` options shared by a sweep's runs (all but the settings).

    >>> options = run_options(Config(wandb=True, out_dir="/runs/a"), {})
    >>> options["project"], options["group"], options["mode"], options["dir"]
    ('sweepjax', 'a', 'offline', '/runs/a')
    >>> run_options(Config(wandb="demo"), {"WANDB_MODE": "online"})["mode"]
    'online'
    """
    value, out = config.wandb, config.out_dir
    project = value if isinstance(value, str) else environ.get("WANDB_PROJECT", PROJECT)
    mode = environ.get("WANDB_MODE", "offline")
    return {"project": project, "group": sweep_name(out), "mode": mode, "dir": out}


class WandbLog(TrialRuns):
    """One W&B run per trial (a `sweepjax.sweep.loop.Callback`; see the module docstring).

    Args:
      config: the sweep; `config.wandb` names the project, its `out_dir` holds the runs' files
        (`OUT_DIR/wandb`) and the book of runs.
      state: the sweep's state before its first chunk here.
    """

    def __init__(self, config: Config, state: SweepState):
        import wandb

        self._init = wandb.init
        self.options = {**run_options(config, os.environ), "settings": wandb.Settings(**QUIET)}
        super().__init__(Path(config.out_dir) / "wandb", config, state)

    def _open(self, trial: Trial, run_id: str | None) -> tuple[Any, str]:
        run = self._init(
            id=run_id,
            resume="allow" if run_id is not None else None,
            name=run_name(trial),
            config=hyperparameters(self.config, trial),
            reinit="create_new",  # every trial's run stays open beside the others
            **self.options,
        )
        return run, run.id

    def _log(self, run: Any, values: dict[str, float], step: int) -> None:
        run.log(values, step=step)

    def _end(self, run: Any, status: str | None, error: bool) -> None:
        if status is not None:
            run.summary["status"] = status
        run.finish(exit_code=0 if status is not None else 1)
