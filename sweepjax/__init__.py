"""sweepjax: train a whole hyperparameter sweep as one compiled JAX program.

>>> import sweepjax
>>> config = sweepjax.Config(population=4, steps=20, eval_every=10, out_dir=None)
>>> result = sweepjax.run(config, quiet=True)
>>> len(result.rows)
4
"""

from sweepjax import data as datasets
from sweepjax.benchmark import bench_schedules as bench_schedules
from sweepjax.checkpoint import CheckpointError as CheckpointError
from sweepjax.checkpoint import CheckpointMismatch as CheckpointMismatch
from sweepjax.checkpoint import CheckpointWarning as CheckpointWarning
from sweepjax.checkpoint import export_member as export_member
from sweepjax.config import Config as Config
from sweepjax.config import apply_overrides as apply_overrides
from sweepjax.config import validate as validate
from sweepjax.data import Augment as Augment
from sweepjax.data import Dataset as Dataset
from sweepjax.data import from_arrays as from_arrays
from sweepjax.data import load_dataset as load_dataset
from sweepjax.models import CNN1D as CNN1D
from sweepjax.models import CNN2D as CNN2D
from sweepjax.models import MLP as MLP
from sweepjax.models import Model as Model
from sweepjax.models import ResNet as ResNet
from sweepjax.models import as_model as as_model
from sweepjax.models import build_model as build_model
from sweepjax.optim import Optimizer as Optimizer
from sweepjax.placement import DoesNotFit as DoesNotFit
from sweepjax.population import Population as Population
from sweepjax.population import Program as Program
from sweepjax.population import init_population as init_population
from sweepjax.population import make_evaluate as make_evaluate
from sweepjax.population import make_stream_chunk as make_stream_chunk
from sweepjax.population import make_train_chunk as make_train_chunk
from sweepjax.report import divergence_boundary as divergence_boundary
from sweepjax.report import read_sweep as read_sweep
from sweepjax.report import sweep_status as sweep_status
from sweepjax.report import write_report as write_report
from sweepjax.results import Result as Result
from sweepjax.results import read_result as read_result
from sweepjax.schedules import learning_rate_at as learning_rate_at
from sweepjax.schedules import register_schedule as register_schedule
from sweepjax.schedules import schedule_parameters as schedule_parameters
from sweepjax.space import Choice as Choice
from sweepjax.space import HParams as HParams
from sweepjax.space import IntUniform as IntUniform
from sweepjax.space import LogUniform as LogUniform
from sweepjax.space import SearchSpace as SearchSpace
from sweepjax.space import Uniform as Uniform
from sweepjax.sweep import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from sweepjax.sweep import Interrupted as Interrupted
from sweepjax.sweep import resume as resume
from sweepjax.sweep import run as run

__all__ = [
    "EXIT_INTERRUPTED",
    "CheckpointError",
    "CheckpointMismatch",
    "CheckpointWarning",
    "DoesNotFit",
    "Interrupted",
    "CNN1D",
    "CNN2D",
    "ResNet",
    "build_model",
    "MLP",
    "Augment",
    "Choice",
    "Config",
    "Dataset",
    "HParams",
    "IntUniform",
    "LogUniform",
    "Model",
    "Optimizer",
    "Population",
    "Program",
    "Result",
    "SearchSpace",
    "Uniform",
    "apply_overrides",
    "as_model",
    "bench_schedules",
    "datasets",
    "divergence_boundary",
    "export_member",
    "from_arrays",
    "init_population",
    "learning_rate_at",
    "load_dataset",
    "make_evaluate",
    "make_stream_chunk",
    "make_train_chunk",
    "read_result",
    "read_sweep",
    "resume",
    "run",
    "sweep_status",
    "register_schedule",
    "schedule_parameters",
    "validate",
    "write_report",
]
