"""What the experiment trackers' logs share: the trials a chunk trained, their values, their runs.

`sweepjax.integrations.tensorboard_log`, `sweepjax.integrations.mlflow_log` and `sweepjax.integrations.wandb_log` are callbacks of the
chunk loop (`sweepjax.sweep.loop.Callback`), each made with the `SweepState` it follows. After a chunk,
each logs every trial that held a slot in it (`Held`): the latest finite value of each curve, at
the chunk's global step; a trial's hyperparameters are those of its `results.csv` row
(`hyperparameters`).

`TrialRuns` is what the trackers whose runs outlive the process (MLflow, W&B) share: one run per
trial, ended with the trial's status as `results.csv` gives it (`ok`, `stopped`, `diverged`),
and a book, `runs.json` in the tracker's folder, of each trial's run and the last step logged to
it. A sweep restored from a checkpoint continues the runs its book names and skips the steps
they hold; a sweep that starts afresh begins a new book.
"""

from __future__ import annotations

import abc
import json
import math
from pathlib import Path
from typing import Any

from sweepjax.files import atomic_write
from sweepjax.sweep.config import Config
from sweepjax.sweep.sweep_state import SweepState
from sweepjax.sweep.trial_results import hyperparameter_columns
from sweepjax.sweep.trials import RESULT_STATUS, Trial

BOOK = "runs.json"  # in the tracker's folder: trial -> its run and the last step logged


def hyperparameters(config: Config, trial: Trial) -> dict[str, Any]:
    """A trial's hyperparameters as its `results.csv` row shows them: those the space names,
    `seed`, and each family by name; plain Python values.

    >>> hyperparameters(Config(), Trial(0, {"learning_rate": 0.1, "seed": 3}, start=0))
    {'learning_rate': 0.10000000149011612, 'seed': 3}
    """
    columns = hyperparameter_columns(config, [trial.hparams])
    return {name: column[0].item() for name, column in columns.items()}


def sweep_name(out_dir: str) -> str:
    """What a sweep's runs are grouped under: its folder's name; for the population of one
    structure of a structural sweep (`OUT_DIR/buckets/NN`), the sweep's and the bucket's.

    >>> sweep_name("runs/lr"), sweep_name("runs/lr/buckets/03")
    ('lr', 'lr/buckets/03')
    """
    folder = Path(out_dir).resolve()
    if folder.parent.name == "buckets":
        return f"{folder.parent.parent.name}/buckets/{folder.name}"
    return folder.name


def run_name(trial: Trial) -> str:
    """The name of a trial's run, as its row is numbered in `results.csv`.

    >>> run_name(Trial(7, {}, start=0))
    'member_0007'
    """
    return f"member_{trial.id:04d}"


class Held:
    """Which trials hold a slot in the next chunk: those running when the last one ended (or,
    before the first, when the sweep began or was restored)."""

    def __init__(self, state: SweepState):
        self.running = _running(state)

    def after(self, state: SweepState) -> list[tuple[Trial, dict[str, float]]]:
        """The trials that held a slot in the chunk `state` recorded last, each with the finite
        values of its curves there (none for a trial that diverged at once)."""
        latest = {name: rows[-1] for name, rows in state.curves.values.items()}
        held = [
            (
                state.table.rows[t],
                {k: float(v[t]) for k, v in latest.items() if math.isfinite(v[t])},
            )
            for t in self.running
        ]
        self.running = _running(state)
        return held


def _running(state: SweepState) -> list[int]:
    return [trial.id for trial in state.table.rows if trial.status == "running"]


class RunBook:
    """Each trial's run and the last step logged to it, kept in a JSON file."""

    def __init__(self, path: Path, resumed: bool):
        """Read `path` if the sweep `resumed` from a checkpoint and it exists; else start empty."""
        self.path = path
        entries = json.loads(path.read_text())["runs"] if resumed and path.exists() else {}
        self.runs: dict[int, str] = {int(t): e["run"] for t, e in entries.items()}
        self.steps: dict[int, int] = {int(t): e["step"] for t, e in entries.items()}

    def write(self) -> None:
        entries = {str(t): {"run": r, "step": self.steps.get(t, -1)} for t, r in self.runs.items()}
        atomic_write(self.path, lambda f: json.dump({"runs": entries}, f, indent=1))


class TrialRuns(abc.ABC):
    """A tracker's log with one run per trial; a context manager that ends the runs still open.

    A subclass opens (`_open`), logs to (`_log`) and ends (`_end`) its tracker's runs; this
    class decides when. A trial's run opens when the trial first holds a slot (or reopens, in
    a resumed sweep), takes each chunk's values at the chunk's step unless its book holds that
    step already, and ends when the trial does, with its status, or when the sweep stops first
    (status None).

    Args:
      folder: where the book is kept (`folder/runs.json`).
      config: the sweep.
      state: the sweep's state before its first chunk here; one restored from a checkpoint (it
        holds curves) continues the runs of the book.
    """

    def __init__(self, folder: Path, config: Config, state: SweepState):
        self.config, self.held = config, Held(state)
        self.book = RunBook(folder / BOOK, resumed=bool(state.curves.steps))
        self.open: dict[int, tuple[Trial, Any]] = {}  # trial id -> (trial, its run)

    @abc.abstractmethod
    def _open(self, trial: Trial, run_id: str | None) -> tuple[Any, str]:
        """Start the trial's run (`run_id` None), or reopen run `run_id`: `(run, its id)`."""

    @abc.abstractmethod
    def _log(self, run: Any, values: dict[str, float], step: int) -> None:
        """Log the values of a trial's curves at a global step."""

    @abc.abstractmethod
    def _end(self, run: Any, status: str | None, error: bool) -> None:
        """End a run: `status` is how its trial ended, None if the sweep stopped before
        (`error`: by an exception)."""

    def after_chunk(self, state: SweepState, pop: Any, chunk: Any, final: bool) -> None:
        """Open the runs of new trials (booked before anything is logged to them), log the
        chunk, and end the runs whose trial ended."""
        held = self.held.after(state)
        new = [trial for trial, _ in held if trial.id not in self.open]
        for trial in new:
            run, self.book.runs[trial.id] = self._open(trial, self.book.runs.get(trial.id))
            self.open[trial.id] = (trial, run)
        if new:
            self.book.write()
        for trial, values in held:
            if values and chunk.step > self.book.steps.get(trial.id, -1):
                self._log(self.open[trial.id][1], values, chunk.step)
                self.book.steps[trial.id] = chunk.step
        for trial, run in list(self.open.values()):
            if trial.status != "running":
                self._end(run, RESULT_STATUS[trial.status], error=False)
                del self.open[trial.id]
        self.book.write()

    def __enter__(self) -> TrialRuns:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        for _, run in self.open.values():
            self._end(run, None, error=kind is not None)
        self.open.clear()
