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
    "apply_overrides": ("sweepjax.config", "apply_overrides"),
    "as_model": ("sweepjax.models", "as_model"),
    "Augment": ("sweepjax.data", "Augment"),
    "bench_schedules": ("sweepjax.benchmark", "bench_schedules"),
    "build_model": ("sweepjax.models", "build_model"),
    "CheckpointError": ("sweepjax.checkpoint", "CheckpointError"),
    "CheckpointMismatch": ("sweepjax.checkpoint", "CheckpointMismatch"),
    "export_study": ("sweepjax.optuna_study", "export_study"),
    "CheckpointWarning": ("sweepjax.checkpoint", "CheckpointWarning"),
    "Choice": ("sweepjax.space", "Choice"),
    "CNN1D": ("sweepjax.models", "CNN1D"),
    "CNN2D": ("sweepjax.models", "CNN2D"),
    "Config": ("sweepjax.config", "Config"),
    "Dataset": ("sweepjax.data", "Dataset"),
    "datasets": ("sweepjax.data", None),
    "divergence_boundary": ("sweepjax.report.analysis", "divergence_boundary"),
    "DoesNotFit": ("sweepjax.placement", "DoesNotFit"),
    "EXIT_INTERRUPTED": ("sweepjax.errors", "EXIT_INTERRUPTED"),
    "export_member": ("sweepjax.export", "export_member"),
    "FolderBusy": ("sweepjax.lock", "FolderBusy"),
    "from_arrays": ("sweepjax.data", "from_arrays"),
    "from_examples": ("sweepjax.data", "from_examples"),
    "HParams": ("sweepjax.space", "HParams"),
    "init_population": ("sweepjax.population", "init_population"),
    "Interrupted": ("sweepjax.errors", "Interrupted"),
    "IntUniform": ("sweepjax.space", "IntUniform"),
    "learning_rate_at": ("sweepjax.schedules", "learning_rate_at"),
    "load_dataset": ("sweepjax.loaders", "load_dataset"),
    "LogUniform": ("sweepjax.space", "LogUniform"),
    "make_evaluate": ("sweepjax.population", "make_evaluate"),
    "make_stream_chunk": ("sweepjax.population", "make_stream_chunk"),
    "make_train_chunk": ("sweepjax.population", "make_train_chunk"),
    "MLP": ("sweepjax.models", "MLP"),
    "Model": ("sweepjax.models", "Model"),
    "Optimizer": ("sweepjax.optim", "Optimizer"),
    "Population": ("sweepjax.population", "Population"),
    "Program": ("sweepjax.population", "Program"),
    "read_result": ("sweepjax.read_results", "read_result"),
    "read_sweep": ("sweepjax.report", "read_sweep"),
    "register_schedule": ("sweepjax.schedules", "register_schedule"),
    "ResNet": ("sweepjax.models", "ResNet"),
    "Result": ("sweepjax.results", "Result"),
    "resume": ("sweepjax.sweep", "resume"),
    "run": ("sweepjax.sweep", "run"),
    "schedule_parameters": ("sweepjax.schedules", "schedule_parameters"),
    "SearchSpace": ("sweepjax.space", "SearchSpace"),
    "Task": ("sweepjax.tasks", "Task"),
    "TASKS": ("sweepjax.tasks", "TASKS"),
    "StorageError": ("sweepjax.errors", "StorageError"),
    "sweep_status": ("sweepjax.report", "sweep_status"),
    "Uniform": ("sweepjax.space", "Uniform"),
    "validate": ("sweepjax.config", "validate"),
    "write_report": ("sweepjax.report", "write_report"),
}

if TYPE_CHECKING:
    from sweepjax import data as datasets  # noqa: F401
    from sweepjax.benchmark import bench_schedules as bench_schedules
    from sweepjax.checkpoint import CheckpointError as CheckpointError
    from sweepjax.checkpoint import CheckpointMismatch as CheckpointMismatch
    from sweepjax.checkpoint import CheckpointWarning as CheckpointWarning
    from sweepjax.config import Config as Config
    from sweepjax.config import apply_overrides as apply_overrides
    from sweepjax.config import validate as validate
    from sweepjax.data import Augment as Augment
    from sweepjax.data import Dataset as Dataset
    from sweepjax.data import from_arrays as from_arrays
    from sweepjax.data import from_examples as from_examples
    from sweepjax.errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
    from sweepjax.errors import Interrupted as Interrupted
    from sweepjax.errors import StorageError as StorageError
    from sweepjax.export import export_member as export_member
    from sweepjax.loaders import load_dataset as load_dataset
    from sweepjax.lock import FolderBusy as FolderBusy
    from sweepjax.models import CNN1D as CNN1D
    from sweepjax.models import CNN2D as CNN2D
    from sweepjax.models import MLP as MLP
    from sweepjax.models import Model as Model
    from sweepjax.models import ResNet as ResNet
    from sweepjax.models import as_model as as_model
    from sweepjax.models import build_model as build_model
    from sweepjax.optim import Optimizer as Optimizer
    from sweepjax.optuna_study import export_study as export_study
    from sweepjax.placement import DoesNotFit as DoesNotFit
    from sweepjax.population import Population as Population
    from sweepjax.population import Program as Program
    from sweepjax.population import init_population as init_population
    from sweepjax.population import make_evaluate as make_evaluate
    from sweepjax.population import make_stream_chunk as make_stream_chunk
    from sweepjax.population import make_train_chunk as make_train_chunk
    from sweepjax.read_results import read_result as read_result
    from sweepjax.report import read_sweep as read_sweep
    from sweepjax.report import sweep_status as sweep_status
    from sweepjax.report import write_report as write_report
    from sweepjax.report.analysis import divergence_boundary as divergence_boundary
    from sweepjax.results import Result as Result
    from sweepjax.schedules import learning_rate_at as learning_rate_at
    from sweepjax.schedules import register_schedule as register_schedule
    from sweepjax.schedules import schedule_parameters as schedule_parameters
    from sweepjax.space import Choice as Choice
    from sweepjax.space import HParams as HParams
    from sweepjax.space import IntUniform as IntUniform
    from sweepjax.space import LogUniform as LogUniform
    from sweepjax.space import SearchSpace as SearchSpace
    from sweepjax.space import Uniform as Uniform
    from sweepjax.sweep import resume as resume
    from sweepjax.sweep import run as run
    from sweepjax.tasks import TASKS as TASKS
    from sweepjax.tasks import Task as Task

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
