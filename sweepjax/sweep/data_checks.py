"""The data fits the sweep: checked on the host before anything compiles or is written.

Every split holds examples (the train split at least one batch), has the train split's leaves
with the same per-example shapes and kinds of dtype, and holds finite numbers only; the model
takes the train split's inputs and gives the outputs the task needs, and the task takes the
model's outputs and the targets (`tasks.check_task`). Each refusal is a one-line `ValueError`
naming the split and the leaf. Memory-mapped arrays are not scanned for non-finite values (it
would read them whole before the sweep starts): a NaN there shows as diverged members.

>>> from sweepjax.engine.data import from_arrays
>>> x, x_test = np.ones((8, 2)), np.ones((6, 2))
>>> x_test[5, 1] = np.inf
>>> check_splits(from_arrays(x, np.arange(8) % 2, x_test, np.ones(6, int), 2, name="mine"), 2)
Traceback (most recent call last):
...
ValueError: dataset: 'mine' test inputs hold 1 non-finite value (NaN or infinity), the first at index (5, 1); allowed: finite numbers only (drop or impute those examples).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweepjax.engine.data import Dataset, augmentation_of, check_augmentation, first, num_examples
from sweepjax.engine.loaders import load_dataset
from sweepjax.engine.population import Program
from sweepjax.engine.tasks import Task, check_task
from sweepjax.engine.user_code import describe_failure, name_of
from sweepjax.sweep.config import Config

SPLITS = ("train", "val", "test")
# Why the evaluation splits need examples, for the refusal of an empty one.
NEEDED_FOR = {
    "val": "members are evaluated and ranked on it; from_examples carves it from train by val_size",
    "test": "the members are tested on it when the sweep ends",
}


def dataset_of(value: Any, config: Config) -> Dataset:
    """The data set a sweep trains on: `value` itself, the named set, or `config.dataset`'s."""
    if value is None or isinstance(value, str):
        return load_dataset(value or config.dataset, config.val_size, config.normalize)
    if isinstance(value, Dataset):
        return value
    shape = f" of shape {np.shape(value)}" if hasattr(value, "shape") else ""
    raise ValueError(
        "dataset: expected a sweepjax.Dataset (from sweepjax.from_arrays or load_dataset) or a "
        f"name, got {type(value).__name__}{shape}; wrap arrays with sweepjax.from_arrays("
        "train_x, train_y, test_x, test_y, val_size)."
    )


def check_splits(dataset: Dataset, batch_size: int) -> None:
    """Every split holds examples shaped and typed like the train split's, all finite."""
    counts = {name: num_examples(getattr(dataset, name), f"dataset {name}") for name in SPLITS}
    if batch_size > counts["train"]:
        raise ValueError(
            f"batch_size: {batch_size} exceeds the {counts['train']} training examples; "
            f"allowed: a train split of at least {batch_size} examples, or a smaller batch_size."
        )
    for name, why in NEEDED_FOR.items():
        if counts[name] == 0:
            raise ValueError(
                f"dataset: {dataset.name!r} {name} split has 0 examples; allowed: at least 1 "
                f"({why})."
            )
    train = _leaves(dataset.train)
    for name in ("val", "test"):
        _check_like(dataset.name, name, _leaves(getattr(dataset, name)), train)
    for name in SPLITS:
        for leaf, values in _leaves(getattr(dataset, name)).items():
            _check_finite(f"{dataset.name!r} {_label(name, leaf)}", values)


def _leaves(split: Any) -> dict[str, Any]:
    """A split's arrays by their dotted path (`inputs`, `features.image`; '' for a bare array)."""
    paths = jax.tree_util.tree_leaves_with_path(split)
    return {jax.tree_util.keystr(path, simple=True, separator="."): a for path, a in paths}


def _label(split: str, leaf: str) -> str:
    return f"{split} {leaf or 'examples'}"


def _kind(dtype: Any) -> str:
    for kind in ("bool", "integer", "inexact"):
        if jnp.issubdtype(dtype, getattr(jnp, kind)):
            return kind
    return np.dtype(dtype).name


def _check_like(name: str, split: str, leaves: dict[str, Any], train: dict[str, Any]) -> None:
    if leaves.keys() != train.keys():
        raise ValueError(
            f"dataset: {name!r} {split} examples hold {sorted(leaves)}, but train examples hold "
            f"{sorted(train)}; allowed: the same leaves in every split."
        )
    for leaf, values in leaves.items():
        ours, theirs = values, train[leaf]
        if ours.shape[1:] != theirs.shape[1:] or _kind(ours.dtype) != _kind(theirs.dtype):
            raise ValueError(
                f"dataset: {name!r} {_label(split, leaf)} have examples of shape "
                f"{tuple(ours.shape[1:])} {ours.dtype}, but {_label('train', leaf)} have "
                f"{tuple(theirs.shape[1:])} {theirs.dtype}; allowed: every split's examples "
                "shaped and typed as train's."
            )


def _check_finite(where: str, values: Any) -> None:
    if isinstance(values, np.memmap) or not jnp.issubdtype(values.dtype, jnp.inexact):
        return
    finite = np.isfinite(np.asarray(values))
    bad = int(finite.size - np.count_nonzero(finite))
    if bad:
        index = tuple(int(i) for i in np.unravel_index(np.argmin(finite), finite.shape))
        raise ValueError(
            f"dataset: {where} hold {bad} non-finite value{'' if bad == 1 else 's'} (NaN or "
            f"infinity), the first at index {index}; allowed: finite numbers only (drop or "
            "impute those examples)."
        )


def check_model_and_task(config: Config, dataset: Dataset, program: Program) -> None:
    """The model takes the train split's inputs and gives what the task needs from the data."""
    task, example = program.task, first(dataset.train, config.batch_size)
    try:
        inputs = task.inputs(example)
    except Exception as err:  # the user's task cannot find its inputs in the batch
        raise ValueError(f"task.inputs: {task.name!r} fails on the batch: {err!r}") from err
    # Augmentation acts on the batch's `inputs` (population._augmented), whatever the task reads.
    augmented = example.get("inputs") if isinstance(example, Mapping) else None
    check_augmentation(augmentation_of(config.augment), np.shape(augmented)[1:], dataset.name)
    model = program.model
    code = model.apply if model.module is None else model.module  # what the user wrote
    try:
        outputs = jax.eval_shape(lambda x: model.apply_fresh(x)[0], inputs)
    except Exception as err:  # the user's module (or a built-in one) cannot take the features
        shapes = jax.tree.map(lambda a: np.shape(a)[1:], inputs)
        raise ValueError(
            f"model: cannot take features of shape {shapes} from {dataset.name!r}: "
            f"{describe_failure(code, err)}"
        ) from err
    if task.name == "classification":
        _check_classes(config, dataset, name_of(code), tuple(outputs.shape))
    _check_targets(task, dataset, tuple(outputs.shape[1:]))
    check_task(task, outputs, example)


def _check_classes(config: Config, dataset: Dataset, model: str, shape: tuple[int, ...]) -> None:
    """Classification outputs are logits `[batch, num_classes]`, one per class of the data."""
    classes = dataset.num_classes
    if len(shape) == 2 and classes in (None, shape[1]):
        return
    batch = config.batch_size
    needs = (
        f"task 'classification' needs [batch, num_classes] = ({batch}, {classes or 'num_classes'})"
    )
    if len(shape) != 2:
        raise ValueError(
            f"model: {model} returns outputs of shape {shape} for a batch of {batch}; "
            f"{needs}: one logit per class."
        )
    advice = (
        f"set model.num_classes={classes}"
        if isinstance(config.model, Mapping)
        else f"make {model} return {classes} logits per example"
    )
    raise ValueError(
        f"model: outputs {shape[1]} classes but {dataset.name!r} has {classes}; {needs}, got "
        f"{shape}; {advice}."
    )


def _check_targets(task: Task, dataset: Dataset, output_shape: tuple[int, ...]) -> None:
    if task.check_targets is None:
        return
    for name in SPLITS:
        split = getattr(dataset, name)
        if not isinstance(split, Mapping) or "targets" not in split:
            raise ValueError(
                f"dataset: {dataset.name!r} {name} examples have no 'targets' (they hold "
                f"{jax.tree.map(np.shape, split)}); allowed for task {task.name!r}: a dict "
                "with 'inputs' and 'targets'."
            )
        problem = task.check_targets(split["targets"], output_shape)
        if problem is not None:
            raise ValueError(
                f"dataset: {dataset.name!r} {name} targets do not fit task {task.name!r}; "
                f"allowed: {problem}."
            )
