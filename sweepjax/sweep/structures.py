"""Structures: trials whose model options differ, each structure a population of its own.

A space key `model.<option>` (e.g. `"model.hidden": Choice([[32], [64, 64]])`) changes the
model's shapes, so it cannot ride in the population as data: each structure compiles its own
programs. A fixed sweep over structure trains one bucket after another (`buckets.py`). A sweep
whose trials come and go (a scheduler, a trial budget larger than the population, or a
model-based searcher) keeps one population of slots per structure in play instead: a *block*
of the sweep's slot axis. The blocks advance chunk by chunk together, and between chunks a
freed slot takes the searcher's next trial of its structure, or its block shrinks and the
next trial's structure grows its own (`plan_blocks`). The scheduler sees every trial, so it
compares trials of every structure at the same rung budget.

The searcher sees a structural `Choice` whose values are not numbers or strings (a list of
widths) as a `Choice` of their JSON labels (`'[64, 64]'`), so every searcher, Optuna's
included, takes it as a categorical dimension; a trial's row carries the label, and its
structure is decoded from it (`structure_options`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.engine.layout import MIN_WIDTH
from sweepjax.search.distributions import Choice, IntUniform
from sweepjax.search.space import METHODS
from sweepjax.search.stateful import builtin
from sweepjax.sweep.config import Config, effective_space, is_adaptive, policy_of

STRUCTURAL_PREFIX = "model."


def structural_keys(config: Config) -> list[str]:
    """The space's keys that change the model's structure (`model.<option>`).

    >>> structural_keys(Config(space={"model.hidden": Choice([[8], [16]]), "learning_rate": 0.1}))
    ['model.hidden']
    """
    return [k for k in config.space if k.startswith(STRUCTURAL_PREFIX)]


def trains_in_blocks(config: Config) -> bool:
    """Whether a structural sweep keeps a population per structure in play (its trials come
    and go), rather than training its fixed buckets one after another."""
    searcher = policy_of(config.searcher, "searcher")[0]
    return bool(structural_keys(config)) and (is_adaptive(config) or searcher not in METHODS)


def _labelled(dim: Any) -> bool:
    """Whether a structural dimension is shown to the searcher by JSON labels."""
    return isinstance(dim, Choice) and not all(
        isinstance(v, str | bool | int | float | np.generic) for v in dim.values
    )


def searcher_space(config: Config) -> dict[str, Any]:
    """The space the searcher draws from: structural `Choice`s of lists by their JSON labels.

    >>> searcher_space(Config(space={"model.hidden": Choice([[8], [16, 16]])}))
    {'model.hidden': Choice(values=('[8]', '[16, 16]'))}
    """
    return {
        k: Choice([json.dumps(v) for v in dim.values])
        if k.startswith(STRUCTURAL_PREFIX) and _labelled(dim)
        else dim
        for k, dim in effective_space(config).items()
    }


def structure_options(config: Config, row: Mapping[str, Any]) -> dict[str, Any]:
    """The model options a trial's row chooses (`hidden`, `activation`, ...), decoded.

    >>> config = Config(space={"model.hidden": Choice([[8], [16]]), "learning_rate": 0.1})
    >>> structure_options(config, {"model.hidden": "[16]", "learning_rate": 0.1})
    {'hidden': [16]}
    """
    options = {}
    for key in structural_keys(config):
        value = builtin(row[key])
        options[key.removeprefix(STRUCTURAL_PREFIX)] = (
            json.loads(value) if _labelled(config.space[key]) else value
        )
    return options


def structure_label(options: Mapping[str, Any]) -> str:
    """A structure's name, as the buckets of a fixed sweep are named.

    >>> structure_label({"hidden": [16], "activation": "relu"})
    'model.hidden=[16], model.activation="relu"'
    """
    return ", ".join(f"{STRUCTURAL_PREFIX}{k}={json.dumps(v)}" for k, v in options.items())


def structure_config(config: Config, options: Mapping[str, Any]) -> Config:
    """The config of one structure: its model options fixed, no structural key in the space."""
    keys = structural_keys(config)
    return config.replace(
        model={**config.model, **options},
        space={k: v for k, v in config.space.items() if k not in keys},
    )


@dataclasses.dataclass
class Blocks:
    """The sweep's slot axis as consecutive blocks, one per structure in play: each block's
    model options (`structure_options`) and its slots.

    >>> blocks = Blocks([{"hidden": [8]}, {"hidden": [16]}], [2, 4])
    >>> blocks.labels, blocks.slices(), blocks.locate(3)
    (['model.hidden=[8]', 'model.hidden=[16]'], [slice(0, 2, None), slice(2, 6, None)], (1, 1))
    """

    options: list[dict[str, Any]]
    sizes: list[int]

    @property
    def labels(self) -> list[str]:
        return [structure_label(o) for o in self.options]

    def slices(self) -> list[slice]:
        ends = np.cumsum([0, *self.sizes])
        return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]

    def locate(self, slot: int) -> tuple[int, int]:
        """The block holding slot `slot` of the whole axis, and its index within that block."""
        for index, part in enumerate(self.slices()):
            if part.start <= slot < part.stop:
                return index, slot - part.start
        raise IndexError(f"slot {slot} is beyond the {sum(self.sizes)} slots")

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"label": structure_label(o), "options": o, "size": int(s)}
            for o, s in zip(self.options, self.sizes, strict=True)
        ]

    @classmethod
    def from_json(cls, saved: Sequence[Mapping[str, Any]]) -> Blocks:
        return cls([dict(b["options"]) for b in saved], [int(b["size"]) for b in saved])


def candidate_structures(config: Config, limit: int = 64) -> list[dict[str, Any]]:
    """The model options a structural space can choose (the first `limit` of them), to check
    each builds, takes the data and fits before anything trains.

    >>> from sweepjax.search.distributions import IntUniform
    >>> space = {"model.hidden": Choice([[8], [16]]), "model.kernel_size": IntUniform(3, 4)}
    >>> candidate_structures(Config(space=space))[:2]
    [{'hidden': [8], 'kernel_size': 3}, {'hidden': [8], 'kernel_size': 4}]
    """
    choices = []
    for key in structural_keys(config):
        dim = config.space[key]
        if isinstance(dim, Choice):
            values = list(dim.values)
        elif isinstance(dim, IntUniform):
            values = list(range(int(dim.low), int(dim.high) + 1))
        else:
            values = [dim]
        choices.append([(key.removeprefix(STRUCTURAL_PREFIX), builtin(v)) for v in values])
    return [dict(combo) for combo in itertools.islice(itertools.product(*choices), limit)]


def block_key(index: int) -> str:
    """The name of block `index`'s population in a checkpoint.

    >>> block_key(3)
    '03'
    """
    return f"{index:02d}"


def grown_size(needed: int, population: int, devices: int) -> int:
    """The slots of a structure that must hold `needed` running trials: the next power of two
    (at least `MIN_WIDTH`), a multiple of `devices`, at most the population so rounded.

    >>> grown_size(3, 16, 1), grown_size(1, 16, 2), grown_size(12, 12, 1)
    (4, 2, 12)
    """
    size = max(MIN_WIDTH, devices, 1 << max(needed - 1, 0).bit_length())
    size = -(-size // devices) * devices
    return max(min(size, -(-population // devices) * devices), needed)
