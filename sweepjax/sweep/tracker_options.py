"""The trackers' options, checked with the config before anything starts: the value each of
`tensorboard`, `mlflow` and `wandb` takes, where MLflow logs and which packages each needs.

The trackers themselves (`sweepjax.integrations`) read these too.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from sweepjax.sweep.config import Config

FOLDER = "mlflow"  # in out_dir: the local store and the book of runs
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # stores that need SQLAlchemy
PROJECT_FORBIDS = "/\\#?%:"  # characters a W&B project name cannot hold


def tracking_uri(value: bool | str, out_dir: str, environ: Mapping[str, str]) -> str:
    """Where `mlflow=value` logs: the value if a string, else `$MLFLOW_TRACKING_URI`, else
    the SQLite store in `out_dir/mlflow`.

    >>> tracking_uri("http://localhost:5000", "/runs/a", {"MLFLOW_TRACKING_URI": "databricks"})
    'http://localhost:5000'
    >>> tracking_uri(True, "/runs/a", {"MLFLOW_TRACKING_URI": "databricks"})
    'databricks'
    >>> tracking_uri(True, "/runs/a", {})
    'sqlite:////runs/a/mlflow/mlflow.db'
    """
    if isinstance(value, str):
        return value
    if environ.get("MLFLOW_TRACKING_URI"):
        return environ["MLFLOW_TRACKING_URI"]
    return "sqlite:///" + str(Path(out_dir).resolve() / FOLDER / "mlflow.db")


def required_modules(uri: str) -> tuple[str, ...]:
    """The modules that logging to `uri` imports: MLflow's, and for a database SQLAlchemy's
    and Alembic's (which `mlflow-skinny` leaves out).

    >>> required_modules("http://localhost:5000"), required_modules("sqlite:///mlflow.db")
    (('mlflow',), ('mlflow', 'sqlalchemy', 'alembic'))
    """
    scheme = uri.partition(":")[0].partition("+")[0]
    return ("mlflow", "sqlalchemy", "alembic") if scheme in DATABASES else ("mlflow",)


def is_project_name(name: str) -> bool:
    """Whether W&B takes `name` as a project: 1 to 128 characters, none of `PROJECT_FORBIDS`.

    >>> is_project_name("mnist-sweeps"), is_project_name("team/mnist"), is_project_name(" ")
    (True, False, False)
    """
    return bool(name.strip()) and len(name) <= 128 and not set(name) & set(PROJECT_FORBIDS)


def check_trackers(config: Config) -> None:
    """`tensorboard`, `mlflow` and `wandb`: the value each takes, an out_dir, their packages.

    >>> check_trackers(Config(wandb="team/mnist"))
    Traceback (most recent call last):
    ...
    ValueError: wandb: 'team/mnist' is not a W&B project name; allowed: True (the project $WANDB_PROJECT, else 'sweepjax'), a name of 1 to 128 characters without any of '/\\\\#?%:', or False.
    """
    if isinstance(config.mlflow, str) and not config.mlflow.strip():
        raise ValueError(
            f"mlflow: {config.mlflow!r} names no tracking URI; allowed: True (the local store "
            "in out_dir/mlflow), a tracking URI such as 'http://localhost:5000', or False."
        )
    if isinstance(config.wandb, str) and not is_project_name(config.wandb):
        raise ValueError(
            f"wandb: {config.wandb!r} is not a W&B project name; allowed: True (the project "
            "$WANDB_PROJECT, else 'sweepjax'), a name of 1 to 128 characters without any of "
            f"{PROJECT_FORBIDS!r}, or False."
        )
    for key in ("tensorboard", "mlflow", "wandb"):
        value = getattr(config, key)
        if not value:
            continue
        if config.out_dir is None:
            raise ValueError(
                f"{key}: {value!r} needs an out_dir to write the logs into; set out_dir, or "
                f"set {key}=False."
            )
        if key == "mlflow":
            modules = required_modules(tracking_uri(value, config.out_dir, os.environ))
        else:
            modules = {"tensorboard": ("tensorboardX",), "wandb": ("wandb",)}[key]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                f"{key}: {value!r} needs {', '.join(missing)} (not installed); install with "
                f"`pip install 'sweepjax[{key}]'`, or set {key}=False."
            )
