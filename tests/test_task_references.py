"""Tasks against references written apart from them: numpy formulas on the shapes users have.

Each task is evaluated here as the engine evaluates a split (`_split_metrics`: pieces of a few
examples, the last padded with zeros and masked out, the sums added, divided by the real count,
then `reported`) and compared with numpy in float64 on the whole split, in both ranking
directions (docs/architecture.md, invariant 10). Nothing trains or compiles a model: the tasks
are called on small arrays, so the file runs in seconds.

Tolerances: the means are of O(1) float32 values over a few examples, so a relative error of a
few float32 ulps (about 1e-7 each); exp and ratios of means at most double it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepjax.engine.tasks import (
    TASKS,
    Task,
    check_task,
    metric_names,
    reported,
    split_sums,
    task_of,
)

pytestmark = pytest.mark.quick

RTOL = 2e-6  # a mean of a few float32 values: a few ulps
COUNT = 7  # pieces of 3: the last piece holds 1 example and 2 of padding
PIECE = 3
GARBAGE = 50.0  # the padding's model outputs: counted anywhere, they show


def _split_metrics(task: Task, outputs, batch, piece: int = PIECE) -> dict[str, np.ndarray]:
    """The task's reported metrics over a split evaluated in pieces of `piece` examples."""
    pad = -COUNT % piece
    outputs = np.concatenate([outputs, np.full((pad, *outputs.shape[1:]), GARBAGE, np.float32)])
    batch = {
        k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()
    }
    pieces = jax.tree.map(
        lambda a: jnp.asarray(a).reshape(-1, piece, *a.shape[1:]),
        (outputs, batch, np.arange(COUNT + pad) < COUNT),
    )
    return jax.tree.map(np.asarray, _pieces_reported(task, *pieces))


# One small compile per task and shapes (not one per operation); no optimisation: fast to build.
@functools.partial(
    jax.jit, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
)
def _pieces_reported(task: Task, outputs, batch, real):
    sums = jax.vmap(functools.partial(split_sums, task))(outputs, batch, real)
    return reported(task, {k: v.sum(0) / COUNT for k, v in sums.items()})


def _assert_metrics(actual, expected, rtol=RTOL, atol=0.0):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=rtol, atol=atol, err_msg=name)


def _log_softmax(logits):
    z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


# Refusals: the task's functions on one batch, the targets against the model's outputs.

_NONE = lambda out, b: {}  # noqa: E731
_LOSS = lambda out, b: out.mean(-1)  # noqa: E731


@pytest.mark.parametrize(
    ("task", "match"),
    [
        (Task("t", lambda out, b: out, _NONE, "loss", "min"),
         r"task.loss: task 't' .* returns shape \(7, 1\); allowed: one value per example, shape \(7,\)"),
        (Task("t", _LOSS, lambda out, b: {"m": out.mean()}, "loss", "min"),
         r"task.metrics\['m'\]: .* returns shape \(\); allowed: one value per example first"),
        (Task("t", _LOSS, _NONE, "loss", "min", derive=lambda m: {"d": m["loss"] * jnp.ones(2)}),
         r"task.derive\['d'\]: .* returns shape \(2,\); allowed: a scalar"),
        (Task("t", _LOSS, _NONE, "mse", "min"),
         r"task.rank_by: 'mse' is not a metric of task 't'; allowed: \['loss'\]"),
        (Task("t", lambda out, b: b["missing"], _NONE, "loss", "min"),
         r"task: task 't' on outputs \(7, 1\) and batch \{'targets': \(7,\)\} fails: KeyError"),
    ],
    ids=["loss-per-value", "metric-scalar", "derived-vector", "unknown-rank", "raises"],
)  # fmt: skip
def test_a_task_that_does_not_fit_one_batch_is_refused_by_name(task, match):
    with pytest.raises(ValueError, match=match):
        check_task(task, jnp.ones((COUNT, 1)), {"targets": jnp.ones(COUNT)})


# (task, targets, the model's per-example output shape, accepted)
TARGET_CASES = {
    "labels": ("classification", np.array([0, 3, 1]), (4,), True),
    "labels-past-the-classes": ("classification", np.array([0, 4, 1]), (4,), False),
    "negative-label": ("classification", np.array([-1, 3, 1]), (4,), False),
    "one-hot-labels": ("classification", np.eye(4, dtype=np.int32)[[0, 3]], (4,), False),
    "float-labels": ("classification", np.array([0.0, 1.0]), (4,), False),
    "label-of-a-scalar-output": ("classification", np.array([0, 1]), (), False),
    "no-labels": ("classification", np.zeros(0, np.int32), (4,), True),
    "1-d-for-one-output": ("regression", np.zeros(3, np.float32), (1,), True),
    "1-d-for-two-outputs": ("regression", np.zeros(3, np.float32), (2,), False),
    "column": ("regression", np.zeros((3, 1), np.float64), (1,), True),
    "columns": ("regression", np.zeros((3, 2), np.float32), (2,), True),
    "columns-for-fewer-outputs": ("regression", np.zeros((3, 3), np.float32), (2,), False),
    "images": ("regression", np.zeros((3, 2, 3), np.float32), (2, 3), True),
    "integer-values": ("regression", np.zeros((3, 2), np.int32), (2,), False),
    "zeros-and-ones": ("multilabel", np.array([[0, 1], [1, 0]]), (2,), True),
    "1-d-zeros-and-ones": ("multilabel", np.array([0.0, 1.0, 1.0]), (1,), True),
    "bools": ("multilabel", np.array([[True, False]]), (2,), True),
    "a-half": ("multilabel", np.array([[0.0, 1.0], [0.5, 1.0]]), (2,), False),
    "a-two": ("multilabel", np.array([[0, 2]]), (2,), False),
    "labels-for-fewer-outputs": ("multilabel", np.array([[0, 1, 1]]), (2,), False),
    "tokens": ("next_token", np.array([[0, 5, 2]]), (3, 6), True),
    "token-past-the-vocabulary": ("next_token", np.array([[0, 6, 2]]), (3, 6), False),
    "negative-token": ("next_token", np.array([[0, -1, 2]]), (3, 6), False),
    "longer-sequences": ("next_token", np.array([[0, 1, 2, 3]]), (3, 6), False),
    "float-tokens": ("next_token", np.array([[0.0, 1.0, 2.0]]), (3, 6), False),
    "no-tokens": ("next_token", np.zeros((0, 3), np.int32), (3, 6), True),
}


@pytest.mark.parametrize("case", TARGET_CASES)
def test_targets_are_checked_against_the_models_outputs(case):
    name, targets, output_shape, accepted = TARGET_CASES[case]
    problem = TASKS[name].check_targets(targets, output_shape)
    assert (problem is None) == accepted, problem


def test_target_problems_name_what_is_allowed_and_what_came():
    check = {name: task.check_targets for name, task in TASKS.items()}
    assert check["classification"](np.array([0, 4]), (4,)) == (
        "labels from 0 to 3 (the model's 4 outputs), got labels in [0, 4]"
    )
    assert check["multilabel"](np.array([[0.0, 0.5]]), (2,)) == (
        "targets of 0 and 1, got values in [0.0, 0.5]"
    )
    assert check["next_token"](np.array([[7, -1]]), (2, 6)) == (
        "tokens from 0 to 5, got tokens in [-1, 7]"
    )


def test_a_task_is_a_builtin_name_or_a_task_and_nothing_else():
    assert task_of(RELATIVE) is RELATIVE
    assert task_of("regression") is TASKS["regression"]
    for spec in ("nope", 3, {"name": "regression"}):
        with pytest.raises(ValueError, match=r"task: .* is not a task; allowed: a built-in name"):
            task_of(spec)


def test_a_task_with_an_unknown_direction_or_a_field_that_is_no_function_is_refused():
    with pytest.raises(
        ValueError, match=r"task.direction: 'up' is not allowed; allowed: \['max', 'min'\]"
    ):
        Task("t", _LOSS, _NONE, "loss", "up")
    with pytest.raises(ValueError, match=r"task.metrics: \{\} is not a function"):
        Task("t", _LOSS, {}, "loss", "max")


# Classification: integer labels [N] against logits [N, C].


def _classification_reference(logits, labels):
    nll = -np.take_along_axis(_log_softmax(logits), labels[:, None], -1)[:, 0]
    return {"loss": nll.mean(), "accuracy": (logits.argmax(-1) == labels).mean()}


def test_classification_loss_and_accuracy_are_numpy_cross_entropy_and_hits():
    logits = (2 * _rng().normal(size=(COUNT, 4))).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0, 1, 2], np.int32)
    expected = _classification_reference(logits, labels)
    assert 0 < expected["accuracy"] < 1
    actual = _split_metrics(TASKS["classification"], logits, {"targets": labels})
    _assert_metrics(actual, expected)


# Regression: float targets [N] (one output [N, 1]), [N, 1], [N, k], [N, h, w].

REGRESSION_SHAPES = {"N": ((), (1,)), "N,1": ((1,), (1,)), "N,3": ((3,), (3,)),
                     "N,2,3": ((2, 3), (2, 3))}  # fmt: skip


def _regression_reference(outputs, targets):
    """MSE and MAE over every value, R^2 per target column averaged (scikit-learn's default)."""
    out, y = outputs.reshape(COUNT, -1).astype(np.float64), targets.reshape(COUNT, -1)
    r2 = 1 - ((out - y) ** 2).mean(0) / y.var(0)
    return {"loss": ((out - y) ** 2).mean(), "mse": ((out - y) ** 2).mean(),
            "mae": np.abs(out - y).mean(), "r2": r2.mean()}  # fmt: skip


@pytest.mark.parametrize("shape", REGRESSION_SHAPES, ids=str)
def test_regression_metrics_are_the_formulas_whatever_the_target_shape(shape):
    """Targets of small spread (variance below 1) and an offset: R^2 is neither floored nor
    read off raw second moments."""
    target_shape, output_shape = REGRESSION_SHAPES[shape]
    targets = (0.3 * _rng(1).normal(size=(COUNT, *target_shape)) + 0.2).astype(np.float32)
    outputs = targets.reshape(COUNT, *output_shape) + 0.1 * _rng(2).normal(
        size=(COUNT, *output_shape)
    ).astype(np.float32)
    expected = _regression_reference(outputs, targets)
    actual = _split_metrics(TASKS["regression"], outputs, {"targets": targets})
    _assert_metrics(actual, expected, rtol=1e-5)  # R^2 = 1 - a / b: a and b's errors, summed


# Multi-label: 0/1 targets [N] (one output [N, 1]), [N, 1], [N, k]; float or integer.


def _multilabel_reference(logits, targets):
    """Sigmoid cross-entropy averaged over labels; micro F1 of `sigmoid(logit) > 0.5`."""
    x, y = logits.reshape(COUNT, -1).astype(np.float64), targets.reshape(COUNT, -1)
    loss = (np.logaddexp(0, x) - y * x).mean()  # -y log(s) - (1 - y) log(1 - s), s = sigmoid
    predicted, actual = x > 0, y == 1
    tp, fp = (predicted & actual).sum(), (predicted & ~actual).sum()
    fn = (~predicted & actual).sum()
    return {"loss": loss, "f1": 2 * tp / (2 * tp + fp + fn),
            "precision": tp / (tp + fp), "recall": tp / (tp + fn)}  # fmt: skip


MULTILABEL_SHAPES = {"N": ((), 1, np.float32), "N,1": ((1,), 1, np.float32),
                     "N,4": ((4,), 4, np.float32), "N,4-int": ((4,), 4, np.int32)}  # fmt: skip
# The first label of each example: 1 true positive, 1 false positive, 2 false negatives (one
# of them a logit of exactly 0, probability 0.5: predicted no), 3 true negatives (one at 0).
FIRST_LABEL = np.array([1, 0, 1, 1, 0, 0, 0])
FIRST_LOGIT = np.array([0.0, 0.0, 1.2, -0.7, 0.8, -1.5, -2.0])


@pytest.mark.parametrize("shape", MULTILABEL_SHAPES, ids=str)
def test_multilabel_loss_and_micro_f1_are_numpy_counts(shape):
    """With one label per example, fewer than one count per example: no floor in F1's ratios
    shows."""
    target_shape, labels, dtype = MULTILABEL_SHAPES[shape]
    targets = (_rng(3).random((COUNT, labels)) < 0.5).astype(dtype)
    logits = _rng(4).normal(size=(COUNT, labels)).astype(np.float32)
    targets[:, 0], logits[:, 0] = FIRST_LABEL, FIRST_LOGIT
    targets = targets.reshape(COUNT, *target_shape)
    expected = _multilabel_reference(logits, targets)
    actual = _split_metrics(TASKS["multilabel"], logits, {"targets": targets})
    _assert_metrics(actual, expected, rtol=5e-6)  # log1p(exp) in float32: a few ulps more


def test_multilabel_with_no_positive_predicted_reports_zero_precision_not_nan():
    targets = np.eye(COUNT, 4, dtype=np.float32)
    actual = _split_metrics(TASKS["multilabel"], np.full((COUNT, 4), -1.0, np.float32),
                            {"targets": targets})  # fmt: skip
    assert (actual["f1"], actual["precision"], actual["recall"]) == (0.0, 0.0, 0.0)


# Next-token prediction: logits [N, T, V], tokens [N, T], an optional padding mask [N, T].

LENGTHS = np.array([4, 1, 3, 2, 4, 1, 2])  # real tokens per sequence; the rest is padding


def _token_case(lengths=LENGTHS, seed=5):
    """Logits, tokens and a mask; padded positions hold outputs that would dominate if counted."""
    logits = (2 * _rng(seed).normal(size=(COUNT, 4, 6))).astype(np.float32)
    tokens = _rng(seed + 1).integers(0, 6, (COUNT, 4)).astype(np.int32)
    mask = np.arange(4) < lengths[:, None]
    np.put_along_axis(
        logits, tokens[..., None], np.where(mask, logits.max(), -GARBAGE)[..., None], -1
    )
    logits[..., 0] += np.where(mask, 0, 2 * GARBAGE)  # padding's best guess: token 0, wrongly
    logits[:, 0, 5] = logits.max() + 1  # first positions: some real tokens predicted wrong
    return logits, tokens, mask


def _token_reference(logits, tokens, mask):
    """Perplexity and accuracy per real token, padding left out."""
    nll = -np.take_along_axis(_log_softmax(logits), tokens[..., None], -1)[..., 0]
    correct = logits.argmax(-1) == tokens
    return {"perplexity": np.exp((nll * mask).sum() / mask.sum()),
            "accuracy": (correct * mask).sum() / mask.sum(), "nll": nll}  # fmt: skip


def test_next_token_padding_counts_nowhere_and_means_are_per_real_token():
    """The loss is each sequence's mean over its real tokens (one sequence has a single one),
    averaged over sequences; perplexity and accuracy are per real token of the split."""
    logits, tokens, mask = _token_case()
    expected = _token_reference(logits, tokens, mask)
    expected["loss"] = ((expected.pop("nll") * mask).sum(-1) / mask.sum(-1)).mean()
    assert 0 < expected["accuracy"] < 1
    batch = {"targets": tokens, "mask": mask.astype(np.float32)}
    actual = _split_metrics(TASKS["next_token"], logits, batch)
    _assert_metrics(actual, expected, rtol=5e-6)  # exp of a mean: its error, times the mean


def test_next_token_without_a_mask_counts_every_position():
    logits, tokens, _ = _token_case(lengths=np.full(COUNT, 4))
    expected = _token_reference(logits, tokens, np.ones(tokens.shape, bool))
    expected["loss"] = expected.pop("nll").mean()
    actual = _split_metrics(TASKS["next_token"], logits, {"targets": tokens})
    _assert_metrics(actual, expected, rtol=5e-6)


def test_next_token_perplexity_is_per_real_token_when_most_sequences_are_padding():
    """A boolean mask, fewer real tokens than sequences: the mean count per sequence is below 1."""
    logits, tokens, mask = _token_case(lengths=np.array([2, 0, 0, 1, 0, 0, 0]))
    expected = _token_reference(logits, tokens, mask)
    actual = _split_metrics(TASKS["next_token"], logits, {"targets": tokens, "mask": mask})
    for name in ("perplexity", "accuracy"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=5e-6, err_msg=name)


# A user's tasks through the same harness: one-hot labels maximised, a relative error minimised.


def _one_hot_metrics(outputs, batch):
    return {"accuracy": (outputs.argmax(-1) == batch["labels"].argmax(-1)).astype(jnp.float32)}


ONE_HOT = Task(
    "one_hot", lambda out, b: optax.softmax_cross_entropy(out, b["labels"]), _one_hot_metrics,
    "error_rate", "min", derive=lambda means: {"error_rate": 1 - means["accuracy"]},
)  # fmt: skip
RELATIVE = Task(
    "relative", lambda out, b: jnp.abs(out[:, 0] - b["targets"]) / jnp.abs(b["targets"]),
    lambda out, b: {"log_ratio": jnp.log(out[:, 0] / b["targets"])}, "loss", "min",
)  # fmt: skip


def test_a_user_task_with_one_hot_labels_is_the_numpy_formula():
    logits = (2 * _rng(6).normal(size=(COUNT, 3))).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0, 1])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    expected = _classification_reference(logits, labels)
    expected["error_rate"] = 1 - expected["accuracy"]
    actual = _split_metrics(ONE_HOT, logits, {"labels": one_hot})
    _assert_metrics(actual, expected)


def test_a_user_metric_undefined_on_the_zero_padding_leaves_the_split_finite():
    """Relative errors divide by the target and take logs: padded examples (target 0) give inf
    and NaN, which must count nowhere. Not compiled, so no compiler rewrites the masking."""
    targets = np.concatenate([1 + _rng(7).random(COUNT), [0.0, 0.0]]).astype(np.float32)
    outputs = (targets * (1 + 0.2 * _rng(8).normal(size=COUNT + 2)))[:, None].astype(np.float32)
    outputs[COUNT:] = GARBAGE
    ratio = outputs[:COUNT, 0].astype(np.float64) / targets[:COUNT]
    expected = {"loss": np.abs(ratio - 1).sum(), "log_ratio": np.log(ratio).sum()}
    real = jnp.arange(COUNT + 2) < COUNT
    actual = split_sums(RELATIVE, jnp.asarray(outputs), {"targets": jnp.asarray(targets)}, real)
    _assert_metrics(actual, expected, rtol=1e-5, atol=1e-6)  # log of a ratio near 1


# Ranking: the metric and its direction, and a better prediction ranks better.

RANKING = {"classification": ("accuracy", "max"), "regression": ("mse", "min"),
           "multilabel": ("f1", "max"), "next_token": ("perplexity", "min")}  # fmt: skip


def _good_and_bad(name):
    """A task's batch, outputs close to its targets and outputs far from them (the shapes of
    the tests above)."""
    rng = _rng(9)
    if name == "classification":
        labels = np.arange(COUNT) % 4
        good = np.eye(4)[labels] * 3 + rng.normal(size=(COUNT, 4))
        return {"targets": labels.astype(np.int32)}, good, good[:, ::-1]
    if name == "regression":
        targets = rng.normal(size=(COUNT, 3)).astype(np.float32)
        return {"targets": targets}, targets + 0.1, targets + 1.0
    if name == "multilabel":
        targets = (rng.random((COUNT, 4)) < 0.5).astype(np.float32)
        return {"targets": targets}, 4 * targets - 2 + rng.normal(size=(COUNT, 4)), 1 - 2 * targets
    logits, tokens, mask = _token_case(lengths=np.full(COUNT, 4))
    return {"targets": tokens, "mask": mask.astype(np.float32)}, logits, -logits


@pytest.mark.parametrize("name", sorted(RANKING))
def test_each_builtin_task_ranks_the_better_prediction_first(name):
    task = task_of(name)
    assert (task.rank_by, task.direction) == RANKING[name]
    batch, good, bad = _good_and_bad(name)
    metric = {
        which: _split_metrics(task, outputs.astype(np.float32), batch)
        for which, outputs in (("good", good), ("bad", bad))
    }
    assert metric["good"]["loss"] < metric["bad"]["loss"]
    good, bad = metric["good"][task.rank_by], metric["bad"][task.rank_by]
    assert good > bad if task.direction == "max" else good < bad


NAMES = {"classification": ("loss", "accuracy"), "regression": ("loss", "mse", "mae", "r2"),
         "multilabel": ("loss", "f1", "precision", "recall"),
         "next_token": ("loss", "perplexity", "accuracy")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NAMES))
def test_reported_names_are_loss_then_the_ranking_metric_then_the_rest_sorted(name):
    batch, good, _ = _good_and_bad(name)
    batch = {"inputs": np.zeros((COUNT, 5), np.float32), **batch}
    outputs = jnp.asarray(good, jnp.float32)
    assert check_task(task_of(name), outputs, batch) == NAMES[name]
    assert metric_names(task_of(name), outputs, batch) == NAMES[name]


def test_a_task_ranked_by_its_loss_lists_loss_once():
    task = Task("t", _LOSS, lambda out, b: {"b": out[:, 0], "a": out[:, 0]}, "loss", "min")
    batch = {"targets": jnp.ones(COUNT)}
    assert check_task(task, jnp.ones((COUNT, 1)), batch) == ("loss", "a", "b")
