"""Tasks: parity with plain loops, pytree batches, metrics, ranking direction, bad input.

The session has two CPU devices (conftest), so every `sweepjax.run` here splits its population
across them, as the `sweepjax` command does.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import count_compiles

import sweepjax
from sweepjax.engine.data import batch_indices, from_arrays, from_examples
from sweepjax.engine.evaluation import make_evaluate
from sweepjax.engine.population import init_population, make_train_chunk
from sweepjax.engine.tasks import TASKS, Task
from sweepjax.runner.run import program_of, sample_hparams


def _regression_data(outputs: int = 2, n: int = (240, 60), seed: int = 0) -> sweepjax.Dataset:
    """Targets a noisy linear function of 12 features, in `outputs` columns (float32)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(12, outputs))

    def make(count):
        x = rng.normal(size=(count, 12)).astype(np.float32)
        return x, (x @ weights + 0.1 * rng.normal(size=(count, outputs))).astype(np.float32)

    (x, y), (xt, yt) = make(n[0]), make(n[1])
    return from_arrays(x, y, xt, yt, val_size=40, name="linear")


class _Regressor(nn.Module):
    outputs: int = 2

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.outputs)(nn.tanh(nn.Dense(8)(x)))


def _weighted_huber(outputs, batch):
    """A user loss over a dict batch with a per-example weight the model never sees."""
    return batch["weight"] * optax.huber_loss(outputs, batch["y"]).mean(-1)


HUBER = Task(
    "weighted_huber",
    loss=_weighted_huber,
    metrics=lambda outputs, batch: {"mae": jnp.abs(outputs - batch["y"]).mean(-1)},
    rank_by="mae",
    direction="min",
    inputs=lambda batch: batch["features"],
)


def _huber_data() -> sweepjax.Dataset:
    """The regression set as dicts of `features`, `y` and a per-example `weight`."""
    data = _regression_data()

    def rename(split, seed):
        weight = np.random.default_rng(seed).uniform(0.5, 1.5, len(split["targets"]))
        return {"features": split["inputs"], "y": split["targets"], "weight": weight}

    return from_examples(
        rename(data.train, 1), rename(data.test, 2), rename(data.val, 3), name="weighted"
    )


def _config(**changes) -> sweepjax.Config:
    base = sweepjax.Config(
        task="regression",
        model=_Regressor(),
        optimizer="sgd",
        space={"learning_rate": 0.05, "momentum": 0.9},
        population=2,
        steps=25,
        batch_size=16,
        eval_every=25,
        out_dir=None,
    )
    return base.replace(**changes)


def _plain_loop(config, data, loss_of, inputs_of):
    """Member 1 (seed 1) trained by a plain Flax + Optax loop on the engine's batches."""
    module = config.model
    train = jax.tree.map(jnp.asarray, data.train)
    count = len(jax.tree.leaves(train)[0])
    params = module.init(jax.random.split(jax.random.key(1))[0], inputs_of(train)[:16])["params"]
    tx = optax.sgd(config.space["learning_rate"], momentum=config.space["momentum"])
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            return loss_of(module.apply({"params": p}, inputs_of(batch)), batch).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for t in range(config.steps):
        idx = batch_indices(jax.random.key(config.seed), t, count, config.batch_size)
        params, opt_state, loss = step(
            params, opt_state, jax.tree.map(lambda a, i=idx: a[i], train)
        )
        losses.append(float(loss))
    return params, np.asarray(losses)


def _engine(config, data):
    """The population trained by the engine's chunk: `(population, losses [steps, P])`."""
    program, hparams = program_of(config), sample_hparams(config)
    train = jax.device_put(data.train)
    pop = init_population(program, hparams, program.task.inputs(train)[: config.batch_size])
    pop, losses = make_train_chunk(program, config.steps)(
        pop, hparams, train, jax.random.key(config.seed)
    )
    return program, pop, np.asarray(losses)


@pytest.mark.parametrize("task", ["regression", "user"])
def test_parity_with_a_plain_flax_optax_loop(task):
    """A member trains as a plain loop with the same init, batches and hyperparameters would:
    the built-in regression task (mean squared error over two target columns) and a user
    task reading its own keys from a dict batch (features, targets and per-example weights)."""
    if task == "regression":
        config, data = _config(), _regression_data()
        loss_of = lambda out, b: jnp.square(out - b["targets"]).mean(-1)  # noqa: E731
        inputs_of = lambda b: b["inputs"]  # noqa: E731
    else:
        config, data = _config(task=HUBER), _huber_data()
        loss_of, inputs_of = _weighted_huber, HUBER.inputs
    _, pop, losses = _engine(config, data)
    params, reference = _plain_loop(config, data, loss_of, inputs_of)
    # Different programs (a vmapped scan and a jitted step) may sum a product's <= 16 terms in
    # another order: ~1e-6 relative a step, so weights and losses agree to 1e-5 (see the
    # classification parity test in test_population.py for the argument).
    np.testing.assert_allclose(losses[:, 1], reference, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(pop.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6)
    assert reference[-1] < reference[0]  # it learned


def _member_outputs(program, pop, inputs, member):
    params = jax.tree.map(lambda a: a[member], pop.params)
    return np.asarray(
        program.model.apply({"params": params}, inputs, train=False, rng=jax.random.key(0))[0]
    )


def test_regression_metrics_are_the_formulas_on_the_members_predictions():
    """MSE, MAE and R^2 (per target column, averaged) over a split that does not fill its
    last eval batch: the padding counts nowhere."""
    config, data = _config(), _regression_data()
    program, pop, _ = _engine(config, data)
    metrics = make_evaluate(program, 16)(pop, jax.device_put(data.val))  # 40 = 16 + 16 + 8
    y = data.val["targets"]
    for member in range(2):
        out = _member_outputs(program, pop, data.val["inputs"], member)
        r2 = 1 - ((out - y) ** 2).mean(0) / y.var(0)
        expected = {"mse": ((out - y) ** 2).mean(), "mae": np.abs(out - y).mean(), "r2": r2.mean()}
        for name, value in expected.items():
            np.testing.assert_allclose(metrics[name][member], value, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"][member], expected["mse"], rtol=2e-5)


def _multilabel_data() -> sweepjax.Dataset:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    y = (x[:, :4] + 0.3 * rng.normal(size=(300, 4)) > 0).astype(np.float32)
    return from_arrays(x[:240], y[:240], x[240:], y[240:], val_size=40, name="labels")


def test_multilabel_f1_precision_and_recall_are_micro_averaged_counts():
    config = _config(task="multilabel", model=_Regressor(outputs=4))
    data = _multilabel_data()
    program, pop, _ = _engine(config, data)
    metrics = make_evaluate(program, 16)(pop, jax.device_put(data.val))
    y = data.val["targets"] > 0.5
    for member in range(2):
        predicted = _member_outputs(program, pop, data.val["inputs"], member) > 0
        tp, fp = (predicted & y).sum(), (predicted & ~y).sum()
        fn = (~predicted & y).sum()
        np.testing.assert_allclose(metrics["f1"][member], 2 * tp / (2 * tp + fp + fn), rtol=1e-6)
        np.testing.assert_allclose(metrics["precision"][member], tp / (tp + fp), rtol=1e-6)
        np.testing.assert_allclose(metrics["recall"][member], tp / (tp + fn), rtol=1e-6)


class _Bigram(nn.Module):
    """A next-token model small enough for a test: logits from the current token alone."""

    vocabulary: int = 7

    @nn.compact
    def __call__(self, tokens):
        return nn.Dense(self.vocabulary)(nn.Embed(self.vocabulary, 8)(tokens))


def _token_data(masked: bool = False) -> sweepjax.Dataset:
    """Sequences of a noisy cycle 0, 1, ..., 6; with `masked`, the last positions are padding."""
    rng = np.random.default_rng(5)
    starts = rng.integers(0, 7, 300)
    tokens = (starts[:, None] + np.arange(9)) % 7
    tokens = np.where(rng.random(tokens.shape) < 0.1, rng.integers(0, 7, tokens.shape), tokens)
    examples = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    if masked:
        examples["mask"] = (np.arange(8) < rng.integers(3, 9, 300)[:, None]).astype(np.float32)
    split = lambda a, b: jax.tree.map(lambda v: v[a:b], examples)  # noqa: E731
    return from_examples(split(0, 200), split(240, 300), split(200, 240), name="cycle")


def test_next_token_perplexity_is_per_token_under_a_padding_mask():
    """Perplexity is exp of the mean cross-entropy per real token (padding left out), the
    accuracy the share of real tokens predicted: not averages of per-sequence values."""
    config = _config(task="next_token", model=_Bigram())
    data = _token_data(masked=True)
    program, pop, losses = _engine(config, data)
    assert losses[-1].mean() < losses[0].mean()
    metrics = make_evaluate(program, 16)(pop, jax.device_put(data.val))
    targets, mask = data.val["targets"], data.val["mask"]
    for member in range(2):
        logits = _member_outputs(program, pop, data.val["inputs"], member)
        nll = -np.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
        per_token = (nll * mask).sum() / mask.sum()
        np.testing.assert_allclose(metrics["perplexity"][member], np.exp(per_token), rtol=1e-5)
        correct = (logits.argmax(-1) == targets) * mask
        np.testing.assert_allclose(
            metrics["accuracy"][member], correct.sum() / mask.sum(), rtol=1e-6
        )


def _task_sweeps():
    """One small sweep per built-in task: `(config, data)`."""
    return {
        "classification": (
            _config(task="classification", model=_Regressor(outputs=3)),
            from_arrays(*_classes(), val_size=40),
        ),
        "regression": (_config(), _regression_data()),
        "multilabel": (_config(task="multilabel", model=_Regressor(outputs=4)), _multilabel_data()),
        "next_token": (_config(task="next_token", model=_Bigram()), _token_data()),
    }


def _classes():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1)
    return x[:240], y[:240], x[240:], y[240:]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_builtin_task_compiles_once_across_hyperparameter_values(name):
    config, data = _task_sweeps()[name]
    first = sweepjax.run(config.replace(eval_every=10), dataset=data, quiet=True)
    other = config.replace(eval_every=10, space={"learning_rate": 0.02, "momentum": 0.5})
    with count_compiles() as compiles:
        again = sweepjax.run(other, dataset=data, quiet=True)
    assert compiles[0] == 0
    metric = f"final_val_{TASKS[name].rank_by}"
    assert again.summary["rank_by"] == metric and first.rows[0][metric] != again.rows[0][metric]
    assert again.summary["rank_direction"] == TASKS[name].direction


def test_a_member_diverging_under_a_user_loss_is_quarantined():
    """Member 1's parameters overflow (a rate near float32's largest: Huber's gradient is
    bounded, so a merely huge rate only grows them); member 0 trains exactly as it does beside
    a healthy member, and the summary ranks only member 0."""
    data = _huber_data()
    rates = sweepjax.Choice([0.05, 1e38])
    result = sweepjax.run(
        _config(task=HUBER, space={"learning_rate": rates, "momentum": 0.9}, searcher="grid"),
        dataset=data,
        quiet=True,
    )
    assert [r["status"] for r in result.rows] == ["ok", "diverged"]
    healthy = sweepjax.run(
        _config(task=HUBER, space={"learning_rate": sweepjax.Choice([0.05, 0.01]), "momentum": 0.9},
                searcher="grid"),
        dataset=data,
        quiet=True,
    )  # fmt: skip
    assert result.rows[0]["final_val_mae"] == healthy.rows[0]["final_val_mae"]
    assert (
        result.summary["best_member"] == 0
        and result.summary["mean_val_mae"] == result.rows[0]["final_val_mae"]
    )


def test_pytree_batches_train_the_same_streamed_or_on_the_device():
    """Dict batches with a key only the loss reads, the population split across two devices:
    the streamed path gathers the same examples as the device path, bit for bit."""
    data = _huber_data()
    rates = sweepjax.Choice([0.01, 0.02, 0.03, 0.05])
    config = _config(
        task=HUBER, population=4, space={"learning_rate": rates, "momentum": 0.9}, searcher="grid"
    ).replace(eval_every=10)
    device = sweepjax.run(config.replace(data_placement="device"), dataset=data, quiet=True)
    streamed = sweepjax.run(config.replace(data_placement="stream"), dataset=data, quiet=True)
    assert device.summary["population_devices"] == 2
    assert streamed.summary["data_placement"] == "stream"
    assert set(device.curves) == {"steps", "train_loss", "val_loss", "val_mae"}
    for name, curve in device.curves.items():
        np.testing.assert_array_equal(curve, streamed.curves[name], err_msg=name)


def test_a_min_metric_ranks_the_lowest_first():
    """Regression ranks by validation MSE, lowest first: `best`, `ranked`, the summary and the
    leaderboard agree, and the best-so-far column is each member's lowest value."""
    rates = sweepjax.Choice([0.001, 0.01, 0.05, 0.2])
    config = _config(population=4, space={"learning_rate": rates, "momentum": 0.5}, searcher="grid")
    result = sweepjax.run(config.replace(eval_every=5), dataset=_regression_data(), quiet=True)
    mse = [r["final_val_mse"] for r in result.rows]
    order = [int(i) for i in np.argsort(mse)]
    assert [r["member"] for r in result.ranked()] == order
    assert result.best["member"] == order[0] == result.summary["best_member"]
    assert result.summary["best_val_mse"] == min(mse)
    board = result.leaderboard().splitlines()
    assert board[0] == "ranked by final_val_mse (lowest first; ties by best_val_mse, then member)"
    assert [int(line.split()[0]) for line in board[2:]] == order
    lowest = np.nanmin(result.curves["val_mse"], axis=0)
    np.testing.assert_array_equal([r["best_val_mse"] for r in result.rows], lowest)


def _per_target_loss(outputs, batch):
    return jnp.square(outputs - batch["targets"])  # [B, 2]: one value per target, not example


@pytest.mark.parametrize(
    ("task", "data", "match"),
    [
        (Task("bad", _per_target_loss, lambda o, b: {}, "loss", "min"), _regression_data,
         r"task.loss: task 'bad' .* returns shape \(16, 2\); allowed: one value per example"),
        (Task("bad", TASKS["regression"].loss, lambda o, b: {}, "r2", "max"), _regression_data,
         r"task.rank_by: 'r2' is not a metric of task 'bad'; allowed: \['loss'\]"),
        ("classification", _regression_data,
         r"dataset: 'linear' train targets do not fit task 'classification'; allowed: integer "
         r"class labels of shape \[N\], got float32 of shape \(200, 2\)"),
        ("regression", lambda: from_arrays(*_classes(), val_size=40),
         r"targets do not fit task 'regression'; allowed: float targets shaped like the "
         r"model's outputs \[N, 2\], got int32 of shape \(200,\)"),
        ("nope", _regression_data, r"task: 'nope' is not a task; allowed: a built-in name from"),
    ],
    ids=["loss-not-per-example", "unknown-rank-metric", "float-labels", "class-labels", "unknown"],
)  # fmt: skip
def test_bad_tasks_and_targets_are_refused_before_anything_compiles(task, data, match):
    data = data()
    with count_compiles() as compiles, pytest.raises(ValueError, match=match):
        sweepjax.run(_config(task=task), dataset=data, quiet=True)
    assert compiles[0] == 0


def test_batches_whose_leaves_disagree_on_the_example_count_are_refused():
    train = {"inputs": np.zeros((10, 3)), "targets": np.zeros(9)}
    with pytest.raises(ValueError, match=r"train: the leaves disagree on the example count"):
        from_examples(train, train)


def test_any_random_access_source_reads_as_the_arrays_themselves(tmp_path):
    """A list of example dicts (what a `tfds.data_source` or a grain source returns by index)
    reads as the arrays themselves; a memory-mapped array stays on the disk and streams."""
    data = _regression_data()
    path = tmp_path / "inputs.f32"
    mapped = np.memmap(path, np.float32, "w+", shape=data.train["inputs"].shape)
    mapped[:] = data.train["inputs"]
    mapped.flush()
    on_disk = {**data.train, "inputs": np.memmap(path, np.float32, "r", shape=mapped.shape)}
    lazy = from_examples(on_disk, data.test, data.val)
    assert isinstance(lazy.train["inputs"], np.memmap)
    config = _config().replace(data_placement="stream", steps=10, eval_every=10)
    streamed = sweepjax.run(config, dataset=lazy, quiet=True)
    in_memory = sweepjax.run(config, dataset=data, quiet=True)
    assert streamed.rows == in_memory.rows
    count = len(data.train["inputs"])
    records = [jax.tree.map(lambda a, i=i: a[i], data.train) for i in range(count)]
    from_records = from_examples(records, data.test, data.val)
    for a, b in zip(jax.tree.leaves(from_records.train), jax.tree.leaves(data.train), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_augmentation_of_a_batch_without_inputs_is_refused_before_compiling(tiny_images):
    """Augmentation acts on `batch["inputs"]`: images a user task reads from another key get a
    clear error, not a failure while tracing."""
    renamed = [{"image": s["inputs"], "targets": s["targets"]} for s in tiny_images[1:4]]
    data = from_examples(renamed[0], renamed[2], renamed[1], name="images")
    task = Task(
        "images", TASKS["classification"].loss, TASKS["classification"].metrics, "accuracy",
        "max", inputs=lambda batch: batch["image"],
    )  # fmt: skip
    config = _config(task=task, model={"name": "cnn2d", "channels": [4], "num_classes": 3})
    with count_compiles() as compiles, pytest.raises(ValueError, match=r"augment: .* needs image"):
        sweepjax.run(config.replace(augment=True), dataset=data, quiet=True)
    assert compiles[0] == 0


def test_a_bucketed_regression_sweep_merges_its_metrics_and_ranks_lowest_first():
    """Structural dimensions split the population into buckets; the merged table, curves and
    summary keep the task's metrics and its direction."""
    config = _config(
        model={"name": "mlp", "num_classes": 2},
        population=4,
        space={
            "learning_rate": sweepjax.Choice([0.01, 0.05]),
            "momentum": 0.5,
            "model.hidden": sweepjax.Choice([[4], [8]]),
        },
        searcher="grid",
    ).replace(eval_every=5, steps=10)
    result = sweepjax.run(config, dataset=_regression_data(), quiet=True)
    assert set(result.curves) == {"steps", "train_loss", "val_loss", "val_mse", "val_mae", "val_r2"}
    mse = [r["final_val_mse"] for r in result.rows]
    assert (
        result.summary["rank_by"] == "final_val_mse" and result.summary["rank_direction"] == "min"
    )
    assert result.summary["best_val_mse"] == min(mse)
    assert result.best["member"] == int(np.argmin(mse))
