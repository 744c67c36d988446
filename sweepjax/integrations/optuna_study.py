"""A finished sweep as an Optuna study, for Optuna's dashboard and importance evaluators.

`export_study(out_dir, storage)` writes one Optuna trial per row of `results.csv`: the swept
hyperparameters as its params (with Optuna's distribution of each dimension of the space), the
ranking metric as its value, in the sweep's direction, and the metric's validation curve as its
intermediate values. A trial that finished is `COMPLETE`, one a scheduler stopped early
`PRUNED`, one that diverged `FAIL`. Its `member`, `status`, seed and every metric column are
user attributes. `study_of(result)` does the same for a `Result` in hand (what `sweepjax.run`
returns), optionally with distributions of its own. `optuna-dashboard sqlite:///sweep.db` then
shows the sweep, and `optuna.importance.get_param_importances(study)` ranks its hyperparameters
(fANOVA by default; the report's `sweepjax.report.importance` fits it over log-scaled dimensions'
decades). Needs Optuna (`pip install 'sweepjax[optuna]'`).

A trial's intermediate values are at its own steps (the sweep's step less the step it started
at), as the Optuna searchers report them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweepjax.search.distributions import is_distribution
from sweepjax.search.optuna_search import optuna_distributions
from sweepjax.sweep.config import Config, effective_space
from sweepjax.sweep.read_results import read_result
from sweepjax.sweep.results import Result, is_finite_number, metric_of, ranking

if TYPE_CHECKING:
    import optuna

_STATES = {"ok": "COMPLETE", "stopped": "PRUNED", "diverged": "FAIL"}


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise ImportError(
            "export_study needs Optuna; install it with: pip install 'sweepjax[optuna]'"
        ) from err
    return optuna


def swept_dimensions(config_json: dict[str, Any]) -> dict[str, Any]:
    """The distributions of a sweep's space (`config.effective_space`), from its saved config;
    fixed values are left out, a family chosen per member is a `Choice` of names.

    >>> lr = {"distribution": "LogUniform", "low": 0.001, "high": 1.0}
    >>> swept_dimensions({"space": {"lr": lr, "momentum": 0.9},
    ...                   "schedule": ["cosine", "constant"], "optimizer": "sgd"})
    {'schedule': Choice(values=('cosine', 'constant')), 'lr': LogUniform(low=0.001, high=1.0, num=None)}
    """
    space = effective_space(Config.from_json(config_json))
    return {k: v for k, v in space.items() if is_distribution(v)}


def export_study(
    out_dir: str | os.PathLike,
    storage: str | Any | None = None,
    study_name: str | None = None,
) -> optuna.Study:
    """The sweep in `out_dir` as an Optuna study, written to `storage` (None: in memory).

    Args:
      out_dir: a sweep's folder (finished, or stopped: its results so far).
      storage: an Optuna storage or its URL, e.g. `"sqlite:///sweep.db"`.
      study_name: default: the folder's name. A study of that name must not exist yet.

    Returns:
      The study, one trial per row of `results.csv`.

    >>> import pytest, tempfile, sweepjax; _ = pytest.importorskip("optuna")
    >>> out = tempfile.mkdtemp()
    >>> config = sweepjax.Config(population=4, steps=20, eval_every=10, out_dir=out)
    >>> _ = sweepjax.run(config, quiet=True)
    >>> study = export_study(out)  # or export_study(out, "sqlite:///sweep.db")
    >>> len(study.trials), study.direction.name
    (4, 'MAXIMIZE')
    """
    name = study_name or Path(out_dir).resolve().name
    return study_of(read_result(out_dir), storage=storage, study_name=name)


def study_of(
    result: Result,
    distributions: dict[str, Any] | None = None,
    storage: str | Any | None = None,
    study_name: str = "sweep",
) -> optuna.Study:
    """The sweep `result` holds as an Optuna study: one trial per row (see the module's
    docstring), its params the row's values of the dimensions of `distributions`.

    Args:
      result: a sweep's results (`sweepjax.read_result`, or what `sweepjax.run` returns).
      distributions: Optuna's distribution of each dimension; default: those of the sweep's
        space (`swept_dimensions` of the config in `result.summary`).
      storage: an Optuna storage or its URL; None: in memory.
      study_name: a study of that name must not exist yet in `storage`.
    """
    optuna = _optuna()
    rank_by, direction = ranking(result.summary)
    if distributions is None:
        distributions = optuna_distributions(swept_dimensions(result.summary["config"]))
    trials = [_trial(optuna, row, distributions, rank_by, result) for row in result.rows]
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize" if direction == "max" else "minimize",
    )
    study.add_trials(trials)
    return study


def _trial(
    optuna: Any, row: dict[str, Any], distributions: dict, rank_by: str, result: Result
) -> Any:
    """One row of `results.csv` as a frozen Optuna trial (a finished trial without a finite
    value is a failed one)."""
    states = optuna.trial.TrialState
    state = states[_STATES.get(row["status"], "FAIL")]
    value = row.get(rank_by)
    if state == states.COMPLETE and not is_finite_number(value):
        state = states.FAIL
    return optuna.trial.create_trial(
        state=state,
        value=float(value) if state == states.COMPLETE else None,
        params={name: _param(row[name], distributions[name]) for name in distributions},
        distributions=distributions,
        user_attrs={
            "status": row["status"],
            **{k: v for k, v in row.items() if k not in distributions and is_finite_number(v)},
        },
        intermediate_values=_curve(result, row, rank_by),
    )


def _param(value: Any, distribution: Any) -> Any:
    """A row's value as `distribution` holds it: results keep float32, so a float `Choice`
    value (0.01) reads back rounded (0.009999999776...) and is matched to its choice."""
    for choice in getattr(distribution, "choices", ()):
        floats = isinstance(choice, float) and isinstance(value, float)
        if floats and np.float32(choice) == np.float32(value):
            return choice
    return value


def _curve(result: Result, row: dict[str, Any], rank_by: str) -> dict[int, float]:
    """The trial's validation curve of the ranking metric: its own step (the sweep's step less
    the step it started at, as the Optuna searchers report it) -> value, finite entries only."""
    curve, member = result.curves.get(f"val_{metric_of(rank_by)}"), row["member"]
    if curve is None or member >= curve.shape[1]:
        return {}
    steps = result.curves["steps"] - row.get("start_step", 0)
    return {
        int(s): float(v)
        for s, v in zip(steps, curve[:, member], strict=True)
        if is_finite_number(v)
    }
