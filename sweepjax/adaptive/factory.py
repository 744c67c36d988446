"""A sweep's scheduler and searcher, built from its config (and checked before anything
compiles: `check_policies` runs in `sweepjax.config.validate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sweepjax.adaptive.schedulers import make_scheduler
from sweepjax.adaptive.searchers import make_searcher, warm_start_rows
from sweepjax.config import Config, effective_space, policy_of
from sweepjax.tasks import Task, task_of


class FixedRows:
    """A searcher that hands out given rows in order (a structural bucket's members).

    >>> searcher = FixedRows([{"learning_rate": 0.1, "seed": 0}])
    >>> searcher.ask(2), searcher.ask(1)
    ([{'learning_rate': 0.1, 'seed': 0}], [])
    """

    name = "fixed"

    def __init__(self, rows: Sequence[Mapping[str, Any]]):
        self.rows, self.count = [dict(r) for r in rows], 0

    def ask(self, n: int) -> list[dict[str, Any]]:
        out = self.rows[self.count : self.count + n]
        self.count += len(out)
        return out

    def tell(self, trial: int, value: float, steps: int, status: str) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])


def make_policies(
    config: Config, task: Task, rows: Sequence[Mapping[str, Any]] | None = None
) -> tuple[Any, Any]:
    """`(scheduler, searcher)` of `config`; with `rows`, a searcher handing out those rows.

    Raises:
      ValueError: a bad `scheduler`, `searcher` or option, naming the key and what is allowed.
    """
    space = effective_space(config)
    name, options = policy_of(config.scheduler, "scheduler")
    scheduler = make_scheduler(
        name,
        options,
        direction=task.direction,
        max_steps=config.steps,
        eval_every=config.eval_every,
        population=config.population,
        space=space,
        seed=config.seed,
    )
    if rows is not None:
        return scheduler, FixedRows(rows)
    name, options = policy_of(config.searcher, "searcher")
    warm = options.pop("warm_start", None)
    warm_rows = None
    if warm is not None:
        warm_rows = warm_start_rows(
            warm, rank_by=f"final_val_{task.rank_by}", direction=task.direction
        )
    searcher = make_searcher(
        name,
        options,
        space=space,
        trials=config.trials or config.population,
        population=config.population,
        direction=task.direction,
        seed=config.seed,
        warm_start=warm_rows,
    )
    return scheduler, searcher


def check_policies(config: Config) -> None:
    """Build the config's scheduler and searcher once, to refuse bad settings early."""
    make_policies(config, task_of(config.task))
