"""The metadata record of a checkpoint: what each key holds, and what an older checkpoint meant.

Every checkpoint saves, beside its arrays, one JSON object (`checkpoint.py`'s `meta` item).
`CheckpointMeta` is that object typed: `SweepState.checkpoint_meta` builds it, `checkpoint.save`
stamps its format, step and checksum and writes `to_json()`, and every reader takes
`CheckpointMeta.from_json` of what it read. Keys were added as the engine grew (the trials,
policies and slots, then the kept trial, then the trial budget); `from_json` alone says what a
checkpoint written before each of them meant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

FORMAT = 2  # 2: the checksum digests each row's CRC-32 (1: each whole array's)
_FORMATS = (1, FORMAT)
# The keys every checkpoint holds, since the first one was written.
_ALWAYS = ("config", "data", "data_stream", "hparams", "curve_points", "format", "step", "checksum")


@dataclasses.dataclass(frozen=True)
class DataStream:
    """Where the shared minibatch stream stood: its seed and the global step it reached.

    >>> DataStream(seed=0, step=40).to_json()
    {'seed': 0, 'step': 40}
    """

    seed: int
    step: int

    def to_json(self) -> dict[str, int]:
        return {"seed": self.seed, "step": self.step}


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata (see the module docstring): one field per JSON key.

    >>> old = {"config": {"population": 2, "steps": 30}, "data": {"describe": "tiny"},
    ...        "data_stream": {"seed": 0, "step": 10}, "hparams": {"seed": "int32"},
    ...        "curve_points": 1, "format": 2, "step": 10, "checksum": "5ac6"}
    >>> meta = CheckpointMeta.from_json(old)
    >>> meta.slots, meta.slot_steps, meta.budget_steps, meta.kept_trial, meta.trial_count
    ([0, 1], 20, 30, -1, 2)
    >>> meta.most_trial_steps()  # every trial trained every step before trials were recorded
    10
    """

    config: dict[str, Any]  # the sweep's `Config.to_json()`
    data: dict[str, str]  # the data set's identity: `describe` and `fingerprint`
    data_stream: DataStream
    hparams: dict[str, str]  # each saved hyperparameter column's dtype, in the slots' order
    curve_points: int  # the chunk boundaries the saved curves hold
    curve_trials: int  # the trials (columns) the saved curves hold
    population_width: int | None  # the population width chosen; None: not chosen yet
    budget_steps: int  # the steps each trial trains, never to be compared with `step`
    slots: list[int]  # the trial each slot holds, -1: none (idle)
    trials: list[dict[str, Any]] | None  # the trial table (`TrialTable.to_json()`)
    scheduler: dict[str, Any] | None  # the scheduler's `state_dict()`
    searcher: dict[str, Any] | None  # the searcher's `state_dict()`
    slot_steps: int  # steps trained by every slot, idle ones included: the compute spent
    kept_trial: int  # the best finished trial whose variables are saved as `kept`; -1: none
    step: int  # the global step of the checkpoint
    blocks: list[dict[str, Any]] | None = None  # a structure's `label` and `size` per block
    format: int = FORMAT  # how `checksum` digests the arrays; stamped by `checkpoint.save`
    checksum: str = ""  # the digest of every saved array; stamped by `checkpoint.save`

    def to_json(self) -> dict[str, Any]:
        """The JSON object a checkpoint saves, its keys in the order they are written.

        >>> meta = CheckpointMeta({"population": 2, "steps": 30}, {}, DataStream(0, 10), {}, 1, 2,
        ...                       None, 30, [0, 1], [], None, None, 20, -1, step=10)
        >>> list(meta.to_json())[-4:], CheckpointMeta.from_json(meta.to_json()) == meta
        (['kept_trial', 'format', 'step', 'checksum'], True)
        """
        return {
            "config": self.config,
            "data": self.data,
            "data_stream": self.data_stream.to_json(),
            "hparams": self.hparams,
            "curve_points": self.curve_points,
            "curve_trials": self.curve_trials,
            "population_width": self.population_width,
            "budget_steps": self.budget_steps,
            "slots": self.slots,
            "trials": self.trials,
            "scheduler": self.scheduler,
            "searcher": self.searcher,
            "slot_steps": self.slot_steps,
            "kept_trial": self.kept_trial,
            **({} if self.blocks is None else {"blocks": self.blocks}),
            "format": self.format,
            "step": self.step,
            "checksum": self.checksum,
        }

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> CheckpointMeta:
        """The record of a checkpoint's saved metadata, this engine's or an older one's.

        A checkpoint written before trials existed held one trial per slot, all from step 0:
        its slots are `0, 1, ...` of its population, each of which trained every step, its
        curves hold one column per slot, and it records no trial table, scheduler or searcher
        (None: the searcher's first rows, in slot order). One written before the kept trial
        keeps none (-1); one written before the budget was recorded has its config's `steps`.

        >>> CheckpointMeta.from_json({"format": 3})
        Traceback (most recent call last):
        ...
        ValueError: checkpoint metadata: no config, data, data_stream, hparams, curve_points, step, checksum.

        Raises:
          ValueError: a key every checkpoint holds is missing, or a value is not of its kind
            (an unknown `format`, a count that is not an integer); the message names the key.
        """
        missing = [key for key in _ALWAYS if key not in saved]
        if missing:
            raise ValueError(f"checkpoint metadata: no {', '.join(missing)}.")
        if saved["format"] not in _FORMATS:
            raise ValueError(
                f"checkpoint metadata: format: {saved['format']!r} is not a known format; "
                f"allowed: {', '.join(map(str, _FORMATS))}."
            )
        config, step = _json_object(saved, "config"), _integer(saved, "step")
        population = _integer(config, "population", within="config.")
        budget = _integer(config, "steps", within="config.")
        slots = [int(trial) for trial in saved.get("slots", range(population))]
        stream = _json_object(saved, "data_stream")
        return cls(
            config=config,
            data=_json_object(saved, "data"),
            data_stream=DataStream(_integer(stream, "seed"), _integer(stream, "step")),
            hparams=_json_object(saved, "hparams"),
            curve_points=_integer(saved, "curve_points"),
            curve_trials=_integer(saved, "curve_trials", len(slots)),
            population_width=saved.get("population_width"),
            budget_steps=_integer(saved, "budget_steps", budget),
            slots=slots,
            trials=saved.get("trials"),
            scheduler=saved.get("scheduler"),
            searcher=saved.get("searcher"),
            slot_steps=_integer(saved, "slot_steps", population * step),
            kept_trial=_integer(saved, "kept_trial", -1),
            step=step,
            blocks=saved.get("blocks"),
            format=int(saved["format"]),
            checksum=str(saved["checksum"]),
        )

    @property
    def trial_count(self) -> int:
        """How many trials the sweep had started (one per slot before trials were recorded)."""
        return len(self.slots if self.trials is None else self.trials)

    def most_trial_steps(self) -> int:
        """The most steps a trial trained (the global step before trials were recorded)."""
        return max((int(row["steps"]) for row in self.trials or ()), default=self.step)

    def trial_hparams(self, trial: int) -> dict[str, Any]:
        """Trial `trial`'s hyperparameters as the searcher gave them (a family by name)."""
        return dict((self.trials or [])[trial]["hparams"])


def _integer(
    saved: Mapping[str, Any], key: str, default: int | None = None, *, within: str = ""
) -> int:
    """`saved[key]` (or `default` where it lacks the key) as an int; `within`: where `saved`
    lies in the metadata, for the message."""
    value = saved.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"checkpoint metadata: {within}{key}: {value!r} is not an integer."
        ) from None


def _json_object(saved: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = saved.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"checkpoint metadata: {key}: {value!r} is not a JSON object.")
    return dict(value)
