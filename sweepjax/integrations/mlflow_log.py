"""Optional MLflow logs: one MLflow run per trial, in one experiment per sweep.

Turned on by the config key `mlflow`. `True` logs to `$MLFLOW_TRACKING_URI` when it is set,
else to a SQLite store in the sweep's folder that needs no server and no network,
`sqlite:///OUT_DIR/mlflow/mlflow.db` (MLflow's recommended local store; its plain file store
is deprecated), opened with `mlflow ui --backend-store-uri sqlite:///OUT_DIR/mlflow/mlflow.db`.
A string is the tracking URI itself (`http://host:5000`, `databricks`, another database).

The experiment is named after the sweep (`sweepjax.integrations.trial_log.sweep_name`). Each run is named `member_XXXX` like the
trial's row of `results.csv`; its params are that row's hyperparameters, its metrics the
trial's curves at their global steps, its tag `status` how the trial ended (`ok`, `stopped`,
`diverged`). A trial's run is FINISHED when the trial ends, KILLED when the sweep stops first
(FAILED on an error); a resumed sweep continues it (`sweepjax.integrations.trial_log.TrialRuns`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sweepjax.integrations.trial_log import TrialRuns, hyperparameters, run_name, sweep_name
from sweepjax.sweep.config import Config
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.tracker_options import FOLDER, tracking_uri
from sweepjax.sweep.trials import Trial


class MlflowLog(TrialRuns):
    """One MLflow run per trial (a `sweepjax.sweep.loop.Callback`; see the module docstring).

    Args:
      config: the sweep; `config.mlflow` says where it logs, its `out_dir` keeps the book of
        runs (and the local store).
      state: the sweep's state before its first chunk here.
    """

    def __init__(self, config: Config, state: SweepState):
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        folder = Path(config.out_dir) / FOLDER
        uri = tracking_uri(config.mlflow, config.out_dir, os.environ)
        local = uri == tracking_uri(True, config.out_dir, {})
        if local:
            folder.mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
        with _quiet("mlflow.store.db.utils"):  # it announces creating and migrating its tables
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment = _experiment(
                self.client,
                sweep_name(config.out_dir),
                (folder / "artifacts").resolve().as_uri() if local else None,
            )
        self._metric, self._param = Metric, Param
        super().__init__(folder, config, state)

    def _open(self, trial: Trial, run_id: str | None) -> tuple[str, str]:
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id, run_id
        run_id = self.client.create_run(self.experiment, run_name=run_name(trial)).info.run_id
        params = hyperparameters(self.config, trial).items()
        self.client.log_batch(run_id, params=[self._param(k, str(v)) for k, v in params])
        return run_id, run_id

    def _log(self, run: str, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(k, v, now, step) for k, v in values.items()]
        self.client.log_batch(run, metrics=metrics)

    def _end(self, run: str, status: str | None, error: bool) -> None:
        if status is not None:
            self.client.set_tag(run, "status", status)
        stopped = "FAILED" if error else "KILLED"
        self.client.set_terminated(run, "FINISHED" if status is not None else stopped)


def _experiment(client: Any, name: str, artifacts: str | None) -> str:
    """The id of the experiment `name`, created (its artifacts in `artifacts`) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifacts)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Logger `name` at WARNING for the block; its own level again after."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
