"""Tasks: what a member minimizes and what is measured.

A `Task` is a few pure functions of one member's model outputs and the batch (a pytree of
arrays with a leading example axis; the built-in tasks read `batch["inputs"]` and
`batch["targets"]`):

  * `loss(outputs, batch) -> [B]`: the per-example training loss (the member averages it);
  * `metrics(outputs, batch) -> {name: [B, ...]}`: per-example values, averaged over a split;
  * `derive(means) -> {name: scalar}`: metrics that are functions of those averages rather
    than averages themselves (R^2, F1, perplexity); names starting with `_` are averages only
    `derive` reads, never reported;
  * `rank_by` and `direction`: the metric that ranks members, `"max"` or `"min"`.

Every task also reports `loss`, the mean of `loss` over the split. A task is static and
hashable: it keys the compiled programs like the model does.

>>> task = task_of("regression")
>>> outputs, batch = jnp.zeros((4, 2)), {"targets": jnp.ones((4, 2))}
>>> task.rank_by, task.direction, metric_names(task, outputs, batch)
('mse', 'min', ('loss', 'mse', 'mae', 'r2'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

DIRECTIONS = ("max", "min")
PerExample = Callable[[Any, Any], jax.Array]
Metrics = Callable[[Any, Any], Mapping[str, jax.Array]]
TargetCheck = Callable[[Any, tuple[int, ...]], str | None]


def _nothing_derived(means: Mapping[str, jax.Array]) -> Mapping[str, jax.Array]:
    return {}


def _inputs(batch: Any) -> Any:
    return batch["inputs"]


@dataclasses.dataclass(frozen=True)
class Task:
    """What a member minimizes (`loss`) and what is measured (`metrics`, `finish`).

    Args:
      name: shown in results and reports.
      loss: `(outputs, batch) -> [B]` per-example loss of one member.
      metrics: `(outputs, batch) -> {name: [B, ...]}` per-example values, averaged over a split.
      rank_by: the reported metric that ranks members (`loss`, a `metrics` or `derive` name).
      direction: `"max"` (higher is better) or `"min"`.
      derive: `{name: mean} -> {name: scalar}`, metrics computed from the split means.
      inputs: `batch -> model input` (default `batch["inputs"]`).
      check_targets: `(targets, output_shape) -> problem or None`, run on the host before
        anything compiles (`targets` is the split's `batch["targets"]`; `output_shape` the
        model's per-example output shape).

    >>> mae = Task("mae", loss=lambda out, b: jnp.abs(out - b["targets"]).mean(-1),
    ...            metrics=lambda out, b: {}, rank_by="loss", direction="min")
    >>> metric_names(mae, jnp.zeros((4, 2)), {"targets": jnp.ones((4, 2))})
    ('loss',)
    """

    name: str
    loss: PerExample
    metrics: Metrics
    rank_by: str
    direction: str
    derive: Callable[[Mapping[str, jax.Array]], Mapping[str, jax.Array]] = _nothing_derived
    inputs: Callable[[Any], Any] = _inputs
    check_targets: TargetCheck | None = None

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"task.direction: {self.direction!r} is not allowed; allowed: {list(DIRECTIONS)}."
            )
        for field in ("loss", "metrics", "derive", "inputs"):
            if not callable(getattr(self, field)):
                raise ValueError(f"task.{field}: {getattr(self, field)!r} is not a function.")


def _per_example_mean(values: jax.Array) -> jax.Array:
    """Average every axis but the first (the example axis)."""
    return values.reshape(values.shape[0], -1).mean(axis=1)


# Classification: integer labels, logits over classes.


def _softmax_loss(outputs, batch):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])


def _accuracy(outputs, batch):
    return {"accuracy": (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)}


def _integer_labels(targets: Any, output_shape: tuple[int, ...]) -> str | None:
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer) or targets.ndim != 1:
        return f"integer class labels of shape [N], got {targets.dtype} of shape {targets.shape}"
    classes = output_shape[-1] if output_shape else 1
    if targets.size and (targets.min() < 0 or targets.max() >= classes):
        return (
            f"labels from 0 to {classes - 1} (the model's {classes} outputs), got labels in "
            f"[{targets.min()}, {targets.max()}]"
        )
    return None


# Regression: float targets shaped like the outputs.


def _like_targets(outputs, targets):
    """One output per example against 1-D targets: `[B, 1]` read as `[B]`."""
    return outputs.reshape(targets.shape) if outputs.size == targets.size else outputs


def _squared_error(outputs, batch):
    outputs = _like_targets(outputs, batch["targets"])
    return _per_example_mean(jnp.square(outputs - batch["targets"]))


def _regression_metrics(outputs, batch):
    targets = batch["targets"]
    outputs = _like_targets(outputs, targets)
    flat = targets.reshape(targets.shape[0], -1)
    return {
        "mse": _squared_error(outputs, batch),
        "mae": _per_example_mean(jnp.abs(outputs - targets)),
        # Per column, so R^2 is each target column's own, averaged (as scikit-learn's default).
        "_squared_error": jnp.square(outputs - targets).reshape(flat.shape),
        "_target": flat,
        "_target_squared": jnp.square(flat),
    }


def _r2(means):
    variance = means["_target_squared"] - jnp.square(means["_target"])
    r2 = 1.0 - means["_squared_error"] / jnp.maximum(variance, 1e-12)
    return {"r2": r2.mean()}


def _float_targets(targets: Any, output_shape: tuple[int, ...]) -> str | None:
    targets = np.asarray(targets)
    shape = (1,) if targets.ndim == 1 else targets.shape[1:]  # 1-D: one output per example
    if not np.issubdtype(targets.dtype, np.floating) or shape != output_shape:
        return (
            f"float targets shaped like the model's outputs [N, {', '.join(map(str, output_shape))}]"
            f", got {targets.dtype} of shape {targets.shape}"
        )
    return None


# Multi-label: one independent yes/no per output; 1-D targets for one output, as in regression.


def _sigmoid_loss(outputs, batch):
    outputs = _like_targets(outputs, batch["targets"])
    return _per_example_mean(optax.sigmoid_binary_cross_entropy(outputs, batch["targets"]))


def _label_counts(outputs, batch):
    predicted = _like_targets(outputs, batch["targets"]) > 0
    actual = batch["targets"] > 0.5
    count = lambda a: a.reshape(a.shape[0], -1).sum(axis=1).astype(jnp.float32)  # noqa: E731
    return {
        "_true_positive": count(predicted & actual),
        "_false_positive": count(predicted & ~actual),
        "_false_negative": count(~predicted & actual),
    }


def _f1(means):
    tp, fp, fn = means["_true_positive"], means["_false_positive"], means["_false_negative"]
    return {
        "f1": 2 * tp / jnp.maximum(2 * tp + fp + fn, 1e-12),
        "precision": tp / jnp.maximum(tp + fp, 1e-12),
        "recall": tp / jnp.maximum(tp + fn, 1e-12),
    }


def _binary_targets(targets: Any, output_shape: tuple[int, ...]) -> str | None:
    values = np.asarray(targets)
    problem = _float_targets(values.astype(np.float32), output_shape)
    if problem is None and values.size and not np.isin(values, (0, 1)).all():
        problem = f"targets of 0 and 1, got values in [{values.min()}, {values.max()}]"
    return problem


# Next-token prediction: logits [B, T, V] for integer tokens [B, T], an optional mask [B, T].


def _token_weights(batch):
    targets = batch["targets"]
    mask = batch.get("mask") if isinstance(batch, Mapping) else None
    return jnp.ones(targets.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)


def _token_loss(outputs, batch):
    nll = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])
    weights = _token_weights(batch)
    return (nll * weights).sum(-1) / jnp.maximum(weights.sum(-1), 1.0)


def _token_metrics(outputs, batch):
    nll = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])
    weights = _token_weights(batch)
    correct = (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)
    return {
        "_nll": (nll * weights).sum(-1),
        "_correct": (correct * weights).sum(-1),
        "_tokens": weights.sum(-1),
    }


def _perplexity(means):
    tokens = jnp.maximum(means["_tokens"], 1e-12)
    return {
        "perplexity": jnp.exp(means["_nll"] / tokens),  # per token, however the mask falls
        "accuracy": means["_correct"] / tokens,
    }


def _token_targets(targets: Any, output_shape: tuple[int, ...]) -> str | None:
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer) or targets.shape[1:] != output_shape[:-1]:
        return (
            f"integer tokens of shape [N, {', '.join(map(str, output_shape[:-1]))}] (the model's "
            f"positions), got {targets.dtype} of shape {targets.shape}"
        )
    vocabulary = output_shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= vocabulary):
        return (
            f"tokens from 0 to {vocabulary - 1}, got tokens in [{targets.min()}, {targets.max()}]"
        )
    return None


TASKS: dict[str, Task] = {
    "classification": Task(
        "classification", _softmax_loss, _accuracy, "accuracy", "max",
        check_targets=_integer_labels,
    ),
    "regression": Task(
        "regression", _squared_error, _regression_metrics, "mse", "min", _r2,
        check_targets=_float_targets,
    ),
    "multilabel": Task(
        "multilabel", _sigmoid_loss, _label_counts, "f1", "max", _f1,
        check_targets=_binary_targets,
    ),
    "next_token": Task(
        "next_token", _token_loss, _token_metrics, "perplexity", "min", _perplexity,
        check_targets=_token_targets,
    ),
}  # fmt: skip


def task_of(spec: str | Task) -> Task:
    """The `Task` a config's `task` names: a built-in by name, or a `Task` itself.

    >>> task_of("classification").rank_by
    'accuracy'
    """
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, str) and spec in TASKS:
        return TASKS[spec]
    raise ValueError(
        f"task: {spec!r} is not a task; allowed: a built-in name from {sorted(TASKS)}, or a "
        "sweepjax.Task(name, loss, metrics, rank_by, direction)."
    )


def split_sums(task: Task, outputs: Any, batch: Any, mask: jax.Array) -> dict[str, jax.Array]:
    """Sums over a batch of `loss` and every per-example metric, masked examples left out."""
    values = {"loss": task.loss(outputs, batch), **task.metrics(outputs, batch)}

    def total(v):  # a select, not a product: a padded example's inf or NaN counts nowhere
        real = mask.reshape(mask.shape + (1,) * (v.ndim - 1))
        return jnp.sum(jnp.where(real, v.astype(jnp.float32), 0.0), axis=0)

    return {name: total(v) for name, v in values.items()}


def reported(task: Task, means: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The reported metrics of one member from its split means: those and what `derive` adds,
    `_` names dropped."""
    out = {**means, **task.derive(dict(means))}
    return {k: v for k, v in out.items() if not k.startswith("_")}


def metric_names(task: Task, outputs: Any, batch: Any) -> tuple[str, ...]:
    """The reported metric names in display order: `loss`, the ranking metric, the rest sorted.

    `outputs` and `batch` are one member's (shapes suffice: nothing is computed).
    """
    return _in_display_order(task, _reported_shapes(task, outputs, batch))


def _reported_shapes(task: Task, outputs: Any, batch: Any) -> dict[str, jax.ShapeDtypeStruct]:
    return jax.eval_shape(lambda o, b: reported(task, _means(task, o, b)), outputs, batch)


def _in_display_order(task: Task, names: Any) -> tuple[str, ...]:
    rest = sorted(set(names) - {"loss", task.rank_by})
    return ("loss", *([task.rank_by] if task.rank_by != "loss" else []), *rest)


def _means(task: Task, outputs: Any, batch: Any) -> dict[str, jax.Array]:
    count = jax.tree.leaves(batch)[0].shape[0]
    sums = split_sums(task, outputs, batch, jnp.ones(count, bool))
    return {k: v / count for k, v in sums.items()}


def _shapes(tree: Any) -> Any:
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def check_task(task: Task, outputs: Any, batch: Any) -> tuple[str, ...]:
    """Check `task` on one member's `outputs` and `batch` (shapes suffice); its metric names.

    Raises:
      ValueError: the loss is not one value per example, a metric has no example axis, a
        derived metric is not a scalar, or `rank_by` names no metric.
    """
    count = jax.tree.leaves(batch)[0].shape[0]
    where = f"task {task.name!r} on outputs {_shapes(outputs)} and batch {_shapes(batch)}"
    try:
        loss = jax.eval_shape(task.loss, outputs, batch)
        metrics = jax.eval_shape(task.metrics, outputs, batch)
        names = _reported_shapes(task, outputs, batch)
    except Exception as err:  # any error the user's functions raise while tracing
        raise ValueError(f"task: {where} fails: {type(err).__name__}: {err}") from err
    if getattr(loss, "shape", None) != (count,):
        raise ValueError(
            f"task.loss: {where} returns shape {getattr(loss, 'shape', loss)}; allowed: one "
            f"value per example, shape ({count},)."
        )
    for name, value in metrics.items():
        if value.shape[:1] != (count,):
            raise ValueError(
                f"task.metrics[{name!r}]: {where} returns shape {value.shape}; allowed: one "
                f"value per example first, shape ({count}, ...)."
            )
    for name, value in names.items():
        if value.shape != ():
            raise ValueError(
                f"task.derive[{name!r}]: {where} returns shape {value.shape}; allowed: a scalar."
            )
    if task.rank_by not in names:
        raise ValueError(
            f"task.rank_by: {task.rank_by!r} is not a metric of task {task.name!r}; allowed: "
            f"{sorted(names)}."
        )
    return _in_display_order(task, names)
