"""One spec per top-level config key: the types it takes, its range or choices, whether a resume
may change it, and what a checkpoint written before it existed meant.

`Config`'s fields are the keys, in the same order; validation, the resume checks, the command's
help and the guide's table of keys read them from here.

>>> KEYS["keep_checkpoints"].resumable, KEYS["keep_checkpoints"].bounds
(True, (1, 2147483647))
>>> KEYS["precision"].check("float16")
Traceback (most recent call last):
...
ValueError: precision: unknown 'float16'; allowed: ['float32', 'bfloat16'].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from sweepjax.engine.settings import NORMALIZATIONS, PLACEMENTS, PRECISIONS

# Counts of steps, members, examples and checkpoints: positive, and int32 where on the device.
MAX_COUNT = 2**31 - 1
# Every trial's hyperparameters are sampled when a sweep starts, before the devices' memory
# plan can refuse a population: more members or trials than this exhaust the host first.
MAX_MEMBERS = 2**24
# The sweep's seed seeds numpy's samplers (>= 0) and `jax.random.key`, which keeps only the
# low 32 bits (2**32 would train as 0).
SEEDS = (0, 2**32 - 1)
_COUNT = (1, MAX_COUNT)
_NONE = type(None)


def power_of_two(number: int) -> str:
    """`number`, a power of two or one less than one, written as such.

    >>> power_of_two(2**24), power_of_two(2**31 - 1)
    ('2**24', '2**31 - 1')
    """
    if number & (number - 1) == 0:
        return f"2**{number.bit_length() - 1}"
    return f"2**{number.bit_length()} - 1"


def type_names(types: tuple[type, ...]) -> str:
    """`types` as an error message names them.

    >>> type_names((int, type(None)))
    'int or None'
    """
    return " or ".join("None" if kind is _NONE else kind.__name__ for kind in types)


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    """`isinstance`, but a bool is no int unless `bool` is one of `types`."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """What one top-level config key takes, and how it behaves when a sweep resumes.

    `types`: the Python types its value may have (a bool is no int unless `bool` is named);
    empty where the key's own check in `sweepjax.sweep.validation` decides (a model, a task,
    the space, augmentation). `bounds`: the inclusive range of an int value. `choices`: the
    values a str may be. `resumable`: a resume may change it. `value_before_added`: what a
    checkpoint written before the key existed meant (None: compared as absent). `since`: the
    version that added the key.
    """

    name: str
    types: tuple[type, ...]
    doc: str
    bounds: tuple[int, int] | None = None
    choices: Collection[str] = ()
    resumable: bool = False
    value_before_added: Any = None
    since: str = "0.1"

    def check(self, value: Any) -> None:
        """Raise `ValueError` naming the key, the value and what is allowed, if it is not.

        The checks of a single key; those across keys are `sweepjax.sweep.validation`'s.

        >>> KEYS["steps"].check(0)
        Traceback (most recent call last):
        ...
        ValueError: steps: 0 must be a positive integer; allowed: 1 to 2147483647.
        """
        if self.types and not _has_type(value, self.types):
            raise ValueError(
                f"{self.name}: {value!r} has type {type(value).__name__}; allowed: "
                f"{type_names(self.types)}."
            )
        if self.bounds is not None and isinstance(value, int):
            self._check_bounds(value)
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name}: unknown {value!r}; allowed: {list(self.choices)}.")

    def _check_bounds(self, value: int) -> None:
        low, high = self.bounds
        if low <= value <= high:
            return
        if low != 1:  # the seed; a count's messages say "positive" and "too large"
            raise ValueError(
                f"{self.name}: {value} is out of range; allowed: integers from {low} to {high} "
                f"({power_of_two(high)})."
            )
        if value < low:
            raise ValueError(
                f"{self.name}: {value} must be a positive integer; allowed: 1 to {high}."
            )
        raise ValueError(
            f"{self.name}: {value} is too large; allowed: 1 to {high} ({power_of_two(high)})."
        )


KEYS: dict[str, KeySpec] = {
    spec.name: spec
    for spec in (
        KeySpec("dataset", (str,), "a built-in data set (`sweepjax.engine.loaders.load_dataset`)"),
        KeySpec(
            "task",
            (),
            "what members minimize and how they are ranked: a name in "
            "`sweepjax.engine.tasks.TASKS` or a `sweepjax.Task`",
            value_before_added="classification",
        ),
        KeySpec("val_size", (int,), "training examples held out for validation", _COUNT),
        KeySpec(
            "normalize",
            (str,),
            "how float inputs are normalized, by the training split's statistics",
            choices=NORMALIZATIONS,
        ),
        KeySpec("model", (), "a built-in model spec `{'name': ..., **options}` or a Flax module"),
        KeySpec(
            "optimizer",
            (str, tuple),
            "the optimizer family (`sweepjax.engine.optim.FAMILIES`), or a tuple of several",
        ),
        KeySpec("nesterov", (bool,), "Nesterov momentum where the optimizer takes momentum"),
        KeySpec(
            "schedule",
            (str, tuple),
            "the learning rate's schedule family (`sweepjax.engine.schedules.SCHEDULES`), or a "
            "tuple of several",
        ),
        KeySpec(
            "schedules",
            (Mapping,),
            "another optimizer hyperparameter's schedule family, by the hyperparameter's name",
        ),
        KeySpec(
            "space",
            (),
            "hyperparameter name to a distribution or a fixed value: what the searcher samples",
        ),
        KeySpec(
            "searcher",
            (str, Mapping),
            "who proposes configurations: a name or `{'name': ..., **options}` (`sweepjax.search`)",
        ),
        KeySpec(
            "scheduler",
            (str, Mapping),
            "who stops, promotes or copies trials between chunks: a name or "
            "`{'name': ..., **options}`",
            value_before_added="none",
        ),
        KeySpec(
            "trials",
            (int, _NONE),
            "configurations the sweep may try, from `population` to 2**24 (None: `population`)",
        ),
        KeySpec("population", (int,), "members trained at once", (1, MAX_MEMBERS)),
        # A trial's budget: a resume compares it with the checkpoint's, and may raise it.
        KeySpec("steps", (int,), "training steps of each trial", _COUNT, resumable=True),
        KeySpec("batch_size", (int,), "examples of the batch all members share", _COUNT),
        KeySpec(
            "eval_every", (int,), "steps between evaluations (one chunk)", _COUNT, resumable=True
        ),
        KeySpec("eval_batch", (int,), "examples per evaluation batch", _COUNT, resumable=True),
        KeySpec("seed", (int,), "the sweep's seed: sampling, initialization, batches", SEEDS),
        KeySpec(
            "out_dir",
            (str, _NONE),
            "the folder of checkpoints and results (None: write nothing)",
            resumable=True,
        ),
        # The trackers: where curves are logged, never what a member trains on.
        KeySpec(
            "tensorboard",
            (bool,),
            "TensorBoard logs in `out_dir/tensorboard`",
            resumable=True,
        ),
        KeySpec(
            "mlflow",
            (bool, str),
            "log each trial to MLflow: True, or a tracking URI (docs/integrations.md)",
            resumable=True,
        ),
        KeySpec(
            "wandb",
            (bool, str),
            "log each trial to W&B: True, or a project name (docs/integrations.md)",
            resumable=True,
        ),
        KeySpec(
            "checkpoint_every",
            (int, _NONE),
            "steps between checkpoints, a multiple of `eval_every` (None: every evaluation)",
            resumable=True,
        ),
        KeySpec(
            "keep_checkpoints",
            (int,),
            "the newest checkpoints kept in `out_dir/checkpoints`",
            _COUNT,
            resumable=True,
        ),
        # Both placements train on identical batches.
        KeySpec(
            "data_placement",
            (str,),
            "where the training set lives: on the device, streamed from the host, or 'auto' by size",
            choices=PLACEMENTS,
            resumable=True,
        ),
        KeySpec(
            "augment",
            (),
            "on-device image augmentation: None, True or `{'crop_padding': ..., 'flip': ...}`",
        ),
        KeySpec(
            "population_width",
            (int, str),
            "members vectorized together on one device: 'auto' or a positive int",
            resumable=True,
        ),
        KeySpec(
            "precision",
            (str,),
            "the dtype of the forward and backward pass (bfloat16: mixed precision)",
            choices=PRECISIONS,
        ),
        # Where programs are cached, never what they compute.
        KeySpec(
            "compile_cache",
            (str, _NONE),
            "where compiled programs are kept: 'auto', a folder, or 'off' (or None)",
            resumable=True,
        ),
    )
}


def markdown_table(defaults: Mapping[str, Any]) -> str:
    """The keys as a markdown table, `defaults` giving each key's default (`vars(Config())`).

    >>> print(markdown_table({name: None for name in KEYS}).splitlines()[2])
    | `dataset` | str | `None` |  |  | 0.1 | a built-in data set (`sweepjax.engine.loaders.load_dataset`) |
    """
    lines = [
        "| key | type | default | allowed | resumable | since | meaning |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in KEYS.items():
        cells = (
            f"`{name}`",
            type_names(spec.types) or "see meaning",
            f"`{defaults[name]!r}`",
            _allowed(spec),
            "yes" if spec.resumable else "",
            spec.since,
            spec.doc,
        )
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def _allowed(spec: KeySpec) -> str:
    if spec.bounds is not None:
        low, high = spec.bounds
        return f"{low} to {power_of_two(high)}"
    return ", ".join(f"`{choice!r}`" for choice in spec.choices)


# Config keys that may differ between a checkpoint and the run that resumes it: they change
# where or how often things are written or evaluated, never what a member trains on.
RESUMABLE_KEYS = frozenset(name for name, spec in KEYS.items() if spec.resumable)
# What `resume --set` may change: the resumable keys but the folder itself.
RESUME_OVERRIDES = tuple(sorted(RESUMABLE_KEYS - {"out_dir"}))
