"""Staged tuning: a space swept a few dimensions at a time, the earlier stages' best fixed.

The order of the sweep guides (seed 000): the learning rate first; then batch size, momentum
and hidden units; then layers, decay and regularization. Stage k samples only its own
dimensions, with every earlier stage's dimensions fixed at the best trial's values and every
later stage's dimensions left at their defaults (out of the space). Each stage is an ordinary
sweep of `population` members, so three stages of P / 3 members spend what one joint sweep of P
members spends: `experiments/staged.py` compares the two.

>>> from sweepjax.sweep.config import Config
>>> from sweepjax.search.space import LogUniform, Uniform
>>> config = Config(space={"learning_rate": LogUniform(0.01, 0.5), "momentum": Uniform(0, 0.9)},
...                 population=4, steps=20, eval_every=10, out_dir=None)
>>> results = staged_sweep(config, [["learning_rate"], ["momentum"]], quiet=True)
>>> best_lr = results[0].best["learning_rate"]
>>> {row["learning_rate"] for row in results[1].rows} == {best_lr}
True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweepjax.engine.data import Dataset
from sweepjax.search.distributions import is_distribution
from sweepjax.sweep.config import Config
from sweepjax.sweep.results import Result

# The sweep guides' order, as space keys (`model.<option>` for structural ones).
SEED_000_STAGES = (
    ("learning_rate",),
    ("batch_size", "momentum", "model.hidden"),
    ("model.layers", "weight_decay", "l2", "dropout"),
)


def staged_sweep(
    config: Config,
    stages: Sequence[Sequence[str]] = SEED_000_STAGES,
    *,
    dataset: Dataset | None = None,
    quiet: bool = False,
) -> list[Result]:
    """Run `config` as one sweep per stage (see the module docstring); their `Result`s.

    Stages naming no dimension of `config.space` are skipped; every swept dimension must be in
    some stage. Stage k writes to `config.out_dir/stage_k` (nothing without an out_dir).

    Raises:
      ValueError: a swept dimension is in no stage, naming it.
    """
    from sweepjax.runner.run import run  # here: sweep imports what imports this module

    swept = [k for k, v in config.space.items() if is_distribution(v)]
    staged = {name for stage in stages for name in stage}
    missing = [k for k in swept if k not in staged]
    if missing:
        raise ValueError(
            f"stages: space.{missing[0]} is in no stage; allowed: stages that together name "
            f"every swept dimension {swept}."
        )
    fixed: dict[str, Any] = {k: v for k, v in config.space.items() if k not in swept}
    model = dict(config.model)  # structural choices fixed so far (`model.<option>`)
    results = []
    for index, stage in enumerate(s for s in stages if any(k in swept for k in s)):
        space = {**fixed, **{k: config.space[k] for k in stage if k in swept}}
        out_dir = None if config.out_dir is None else str(Path(config.out_dir, f"stage_{index}"))
        sub = config.replace(space=space, model=dict(model), out_dir=out_dir)
        result = run(sub, quiet=quiet, dataset=dataset)
        if result.best is None:
            raise ValueError(f"stages: stage {index} ({list(stage)}) left no healthy member.")
        for key in (k for k in stage if k in swept):
            value = _value(config, key, result.best[key])
            if key.startswith("model."):
                model[key.removeprefix("model.")] = value
            else:
                fixed[key] = value
        results.append(result)
    return results


def _value(config: Config, key: str, value: Any) -> Any:
    """A best row's value as a fixed space entry (a structural Choice's value as given)."""
    dimension = config.space[key]
    if key.startswith("model.") and isinstance(value, str):
        for choice in getattr(dimension, "values", ()):
            if str(choice).replace(" ", "") == value.replace(" ", ""):
                return choice
    return value
