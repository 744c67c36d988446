"""sweepjax: train a whole hyperparameter sweep as one compiled JAX program.

>>> import sweepjax
>>> config = sweepjax.Config(population=4, steps=20, eval_every=10, out_dir=None)
>>> result = sweepjax.run(config, quiet=True)
>>> len(result.rows)
4

Names are imported on first use, so `import sweepjax` and the `sweepjax` command start
without importing JAX (the command installs its signal handlers first).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("sweepjax")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"

_LAZY: dict[str, tuple[str, str | None]] = {  # public name: (module, attribute or None)
    "apply_overrides": ("sweepjax.sweep.config", "apply_overrides"),
    "as_model": ("sweepjax.engine.models", "as_model"),
    "Augment": ("sweepjax.engine.data", "Augment"),
    "bench_schedules": ("sweepjax.benchmark", "bench_schedules"),
    "build_model": ("sweepjax.engine.models", "build_model"),
    "CheckpointError": ("sweepjax.sweep.checkpoint", "CheckpointError"),
    "CheckpointMismatch": ("sweepjax.sweep.checkpoint", "CheckpointMismatch"),
    "export_study": ("sweepjax.integrations.optuna_study", "export_study"),
    "CheckpointWarning": ("sweepjax.sweep.checkpoint", "CheckpointWarning"),
    "Choice": ("sweepjax.search.space", "Choice"),
    "CNN1D": ("sweepjax.engine.models", "CNN1D"),
    "CNN2D": ("sweepjax.engine.models", "CNN2D"),
    "Config": ("sweepjax.sweep.config", "Config"),
    "Dataset": ("sweepjax.engine.data", "Dataset"),
    "datasets": ("sweepjax.engine.data", None),
    "divergence_boundary": ("sweepjax.report.analysis", "divergence_boundary"),
    "DoesNotFit": ("sweepjax.engine.placement", "DoesNotFit"),
    "EXIT_INTERRUPTED": ("sweepjax.errors", "EXIT_INTERRUPTED"),
    "export_member": ("sweepjax.sweep.export", "export_member"),
    "FolderBusy": ("sweepjax.sweep.lock", "FolderBusy"),
    "from_arrays": ("sweepjax.engine.data", "from_arrays"),
    "from_examples": ("sweepjax.engine.data", "from_examples"),
    "HParams": ("sweepjax.search.space", "HParams"),
    "init_population": ("sweepjax.engine.population", "init_population"),
    "Interrupted": ("sweepjax.errors", "Interrupted"),
    "IntUniform": ("sweepjax.search.space", "IntUniform"),
    "learning_rate_at": ("sweepjax.engine.schedules", "learning_rate_at"),
    "load_dataset": ("sweepjax.engine.loaders", "load_dataset"),
    "LogUniform": ("sweepjax.search.space", "LogUniform"),
    "make_evaluate": ("sweepjax.engine.evaluation", "make_evaluate"),
    "make_stream_chunk": ("sweepjax.engine.population", "make_stream_chunk"),
    "make_train_chunk": ("sweepjax.engine.population", "make_train_chunk"),
    "MLP": ("sweepjax.engine.models", "MLP"),
    "Model": ("sweepjax.engine.adapters", "Model"),
    "Optimizer": ("sweepjax.engine.optim", "Optimizer"),
    "Population": ("sweepjax.engine.population", "Population"),
    "Program": ("sweepjax.engine.population", "Program"),
    "read_result": ("sweepjax.sweep.read_results", "read_result"),
    "read_sweep": ("sweepjax.report", "read_sweep"),
    "register_schedule": ("sweepjax.engine.schedules", "register_schedule"),
    "ResNet": ("sweepjax.engine.models", "ResNet"),
    "Result": ("sweepjax.sweep.results", "Result"),
    "resume": ("sweepjax.runner.run", "resume"),
    "run": ("sweepjax.runner.run", "run"),
    "schedule_parameters": ("sweepjax.engine.schedules", "schedule_parameters"),
    "SearchSpace": ("sweepjax.search.space", "SearchSpace"),
    "Task": ("sweepjax.engine.tasks", "Task"),
    "TASKS": ("sweepjax.engine.tasks", "TASKS"),
    "StorageError": ("sweepjax.errors", "StorageError"),
    "sweep_status": ("sweepjax.report", "sweep_status"),
    "Uniform": ("sweepjax.search.space", "Uniform"),
    "validate": ("sweepjax.sweep.validation", "validate"),
    "write_report": ("sweepjax.report", "write_report"),
}

if TYPE_CHECKING:
    from sweepjax.benchmark import bench_schedules as bench_schedules
    from sweepjax.engine import data as datasets  # noqa: F401
    from sweepjax.engine.adapters import Model as Model
    from sweepjax.engine.data import Augment as Augment
    from sweepjax.engine.data import Dataset as Dataset
    from sweepjax.engine.data import from_arrays as from_arrays
    from sweepjax.engine.data import from_examples as from_examples
    from sweepjax.engine.evaluation import make_evaluate as make_evaluate
    from sweepjax.engine.loaders import load_dataset as load_dataset
    from sweepjax.engine.models import CNN1D as CNN1D
    from sweepjax.engine.models import CNN2D as CNN2D
    from sweepjax.engine.models import MLP as MLP
    from sweepjax.engine.models import ResNet as ResNet
    from sweepjax.engine.models import as_model as as_model
    from sweepjax.engine.models import build_model as build_model
    from sweepjax.engine.optim import Optimizer as Optimizer
    from sweepjax.engine.placement import DoesNotFit as DoesNotFit
    from sweepjax.engine.population import Population as Population
    from sweepjax.engine.population import Program as Program
    from sweepjax.engine.population import init_population as init_population
    from sweepjax.engine.population import make_stream_chunk as make_stream_chunk
    from sweepjax.engine.population import make_train_chunk as make_train_chunk
    from sweepjax.engine.schedules import learning_rate_at as learning_rate_at
    from sweepjax.engine.schedules import register_schedule as register_schedule
    from sweepjax.engine.schedules import schedule_parameters as schedule_parameters
    from sweepjax.engine.tasks import TASKS as TASKS
    from sweepjax.engine.tasks import Task as Task
    from sweepjax.errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
    from sweepjax.errors import Interrupted as Interrupted
    from sweepjax.errors import StorageError as StorageError
    from sweepjax.integrations.optuna_study import export_study as export_study
    from sweepjax.report import read_sweep as read_sweep
    from sweepjax.report import sweep_status as sweep_status
    from sweepjax.report import write_report as write_report
    from sweepjax.report.analysis import divergence_boundary as divergence_boundary
    from sweepjax.runner.run import resume as resume
    from sweepjax.runner.run import run as run
    from sweepjax.search.space import Choice as Choice
    from sweepjax.search.space import HParams as HParams
    from sweepjax.search.space import IntUniform as IntUniform
    from sweepjax.search.space import LogUniform as LogUniform
    from sweepjax.search.space import SearchSpace as SearchSpace
    from sweepjax.search.space import Uniform as Uniform
    from sweepjax.sweep.checkpoint import CheckpointError as CheckpointError
    from sweepjax.sweep.checkpoint import CheckpointMismatch as CheckpointMismatch
    from sweepjax.sweep.checkpoint import CheckpointWarning as CheckpointWarning
    from sweepjax.sweep.config import Config as Config
    from sweepjax.sweep.config import apply_overrides as apply_overrides
    from sweepjax.sweep.export import export_member as export_member
    from sweepjax.sweep.lock import FolderBusy as FolderBusy
    from sweepjax.sweep.read_results import read_result as read_result
    from sweepjax.sweep.results import Result as Result
    from sweepjax.sweep.validation import validate as validate

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'sweepjax' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
