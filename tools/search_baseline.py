"""The Optuna baseline of `tools/bench_search.py`: TPE + HyperbandPruner, one Flax trial at a time.

Written as Optuna's users write it: an `objective(trial)` that suggests the hyperparameters,
builds a Flax linen model, trains it with Optax in a Python loop over a jitted train step, and
reports the validation accuracy every `eval_every` steps (`trial.report`, `trial.should_prune`).
It does the engine's work, so the comparison is on the search alone:

  * the same architectures as sweepjax's built-in `mlp` and `cnn1d` (relu, LeCun-normal kernels,
    zero biases; the CNN as `nn.Conv`, which is fast for one model at a time), initialised as
    the engine initialises member `seed` (the first half of `jax.random.key(seed)`);
  * the same optimizer as sweepjax's `sgd` family with momentum and weight decay: momentum, then
    decoupled weight decay, scaled by the (optionally cosine-decayed) learning rate;
  * batch size 100 of epoch-wise shuffled minibatches, the last partial batch dropped.

Fair to Optuna: the hyperparameters are traced arguments, so the train step compiles once per
study (once per structure where the MLP's width and depth are searched), not per trial; the train state is donated; the training set lives on the device and a
step receives its minibatch indices; the host reads nothing between evaluation points.
Member-steps are counted; the trial running when the budget runs out stops there (pruned).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optuna

# The shared search space: name -> (low, high, log). `bench_search` builds the engine's from it.
SPACE = {
    "learning_rate": (1e-3, 1.0, True),
    "weight_decay": (1e-6, 1e-2, True),
    "momentum": (0.0, 0.99, False),
}
SCHEDULES = ("constant", "cosine")  # the CNN's learning-rate schedule families
# The MLP's structure, searched by `bench_search --model structure`: hidden width and depth.
WIDTHS = (16, 32, 64, 128, 256, 512)
DEPTHS = (1, 3)


class FlaxMLP(nn.Module):
    """sweepjax's built-in `mlp` (relu, no norm, no dropout) as a user writes it."""

    hidden: Sequence[int] = (100, 100)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class FlaxCNN(nn.Module):
    """sweepjax's built-in `cnn1d` (the MNIST-1D paper's CNN) with `nn.Conv`."""

    channels: Sequence[int] = (25, 25, 25)
    kernel: int = 5
    stride: int = 2
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if x.ndim == 2 else x
        for width in self.channels:
            conv = nn.Conv(width, (self.kernel,), (self.stride,), padding=((1, 1),))
            x = nn.relu(conv(x))
        return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))


def flax_model(name: str, structure: tuple[int, int] | None = None) -> nn.Module:
    """The baseline's model for `bench_search`'s model name (`mlp`, `cnn`, or `structure`: an
    MLP of `structure = (width, depth)`)."""
    if name == "structure":
        width, depth = structure or (100, 2)
        return FlaxMLP(hidden=(width,) * depth)
    return {"mlp": FlaxMLP(), "cnn": FlaxCNN()}[name]


def make_optimizer(hp: dict[str, jax.Array], decay_steps: int) -> optax.GradientTransformation:
    """SGD with momentum, then decoupled weight decay, scaled by the learning rate (sweepjax's
    `sgd` family); `hp["cosine"]` switches the learning rate to a cosine decay over
    `decay_steps`. The values may be traced: one compiled step serves every trial."""
    cosine = optax.cosine_decay_schedule(hp["learning_rate"], decay_steps)

    def learning_rate(count: jax.Array) -> jax.Array:
        return jnp.where(hp["cosine"], cosine(count), hp["learning_rate"])

    return optax.chain(
        optax.trace(decay=hp["momentum"]),
        optax.add_decayed_weights(hp["weight_decay"]),
        optax.scale_by_learning_rate(learning_rate),
    )


def make_train_step(module: nn.Module, decay_steps: int):
    """The jitted step `(params, opt_state, hp, x_train, y_train, idx) -> (params, opt_state,
    loss)`: gathers the minibatch `idx` from the resident training set, donates the state."""

    def train_step(params, opt_state, hp, x_train, y_train, idx):
        xb, yb = x_train[idx], y_train[idx]

        def loss_fn(p):
            logits = module.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = make_optimizer(hp, decay_steps).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(train_step, donate_argnums=(0, 1))


def make_accuracy(module: nn.Module):
    """The jitted `(params, x, y) -> accuracy` over a whole split."""

    def accuracy(params, x, y):
        return (jnp.argmax(module.apply({"params": params}, x), -1) == y).mean()

    return jax.jit(accuracy)


def init_params(module: nn.Module, seed: jax.Array, example: jax.Array) -> Any:
    """Parameters as sweepjax initialises member `seed`: the first half of `key(seed)`."""
    params_key, _ = jax.random.split(jax.random.key(jnp.asarray(seed, jnp.uint32)))
    return module.init(params_key, example)["params"]


def make_init_state(module: nn.Module, decay_steps: int):
    """The jitted `(seed, hp, example) -> (params, opt_state)` of a trial (compiled once)."""

    def init_state(seed, hp, example):
        params = init_params(module, seed, example)
        return params, make_optimizer(hp, decay_steps).init(params)

    return jax.jit(init_state)


def suggest(trial: optuna.Trial, schedules: bool) -> dict[str, jax.Array]:
    """The trial's hyperparameters from `SPACE` (and a schedule family if `schedules`)."""
    hp = {name: trial.suggest_float(name, lo, hi, log=log) for name, (lo, hi, log) in SPACE.items()}
    schedule = trial.suggest_categorical("schedule", SCHEDULES) if schedules else "constant"
    values = {k: jnp.float32(v) for k, v in hp.items()}
    return {**values, "cosine": jnp.bool_(schedule == "cosine")}


def minibatches(seed: int, num_examples: int, batch_size: int) -> Iterator[np.ndarray]:
    """Indices of epoch-wise shuffled minibatches, the last partial batch of an epoch dropped."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(num_examples).astype(np.int32)
        for start in range(0, num_examples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


@dataclasses.dataclass
class Compiled:
    """A model's jitted functions: compiled once per structure, as a user's study would."""

    init_state: Any
    train_step: Any
    accuracy: Any

    @classmethod
    def of(cls, module: nn.Module, steps: int) -> Compiled:
        return cls(
            make_init_state(module, steps), make_train_step(module, steps), make_accuracy(module)
        )


@dataclasses.dataclass
class Study:
    """What one Optuna run shares between trials: data, compiled functions, budget, results."""

    model: str
    splits: dict[str, tuple[jax.Array, jax.Array]]
    steps: int
    eval_every: int
    batch_size: int
    seed: int
    budget: int
    compiled: dict[Any, Compiled] = dataclasses.field(default_factory=dict)  # by structure
    spent: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)
    curve: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    best: tuple[float, Any, int, Any] | None = None  # (val, params, trial, structure)

    def functions(self, structure: tuple[int, int] | None) -> Compiled:
        """The compiled functions of `structure` (None: the model's one structure)."""
        if structure not in self.compiled:
            self.compiled[structure] = Compiled.of(flax_model(self.model, structure), self.steps)
        return self.compiled[structure]

    def take(self, wanted: int) -> int:
        """Member-steps granted from the budget (fewer than `wanted` when it runs out)."""
        granted = max(min(wanted, self.budget - self.spent), 0)
        self.spent += granted
        return granted


def train_until_eval(step_fn: Any, study: Study, state: tuple, hp: dict, batches, length: int):
    """`length` train steps; returns the state and the last loss (a device array, unread)."""
    params, opt_state = state
    x_train, y_train = study.splits["train"]
    loss = jnp.float32(0.0)
    for _ in range(length):
        params, opt_state, loss = step_fn(params, opt_state, hp, x_train, y_train, next(batches))
    return (params, opt_state), loss


def suggest_structure(trial: optuna.Trial, model: str) -> tuple[int, int] | None:
    """The trial's `(width, depth)` when the model's structure is searched, else None."""
    if model != "structure":
        return None
    return trial.suggest_categorical("width", WIDTHS), trial.suggest_int("depth", *DEPTHS)


def objective(trial: optuna.Trial, study: Study) -> float:
    """One trial: suggest, build, train with reports every `eval_every` steps; the final
    validation accuracy. Pruned by Hyperband, by a non-finite loss or by the spent budget."""
    hp = suggest(trial, schedules=study.model == "cnn")
    structure = suggest_structure(trial, study.model)
    compiled = study.functions(structure)
    x_train = study.splits["train"][0]
    state = compiled.init_state(np.uint32(trial.number), hp, x_train[: study.batch_size])
    batches = minibatches(study.seed, x_train.shape[0], study.batch_size)
    step, val = 0, float("nan")
    while step < study.steps:
        wanted = min(study.eval_every, study.steps - step)
        length = study.take(wanted)
        if length == 0:
            trial.set_user_attr("cut_by_budget", True)
            raise optuna.TrialPruned("member-step budget spent")
        state, loss = train_until_eval(compiled.train_step, study, state, hp, batches, length)
        step += length
        val = float(compiled.accuracy(state[0], *study.splits["val"]))
        study.curve.append((time.perf_counter() - study.started, val))
        trial.report(val, step)
        trial.set_user_attr("steps", step)
        if length < wanted:
            trial.set_user_attr("cut_by_budget", True)
            raise optuna.TrialPruned("member-step budget spent")
        if not math.isfinite(float(loss)) or trial.should_prune():
            raise optuna.TrialPruned()
    if study.best is None or val > study.best[0]:
        study.best = (val, state[0], trial.number, structure)
    return val


def _device_splits(dataset: Any) -> dict[str, tuple[jax.Array, jax.Array]]:
    def put(split):
        return jax.device_put(split["inputs"]), jax.device_put(split["targets"])

    return {name: put(getattr(dataset, name)) for name in ("train", "val", "test")}


def run_optuna(
    model: str, budget: int, steps: int, eval_every: int, *, batch_size: int = 100, seed: int = 0
) -> dict[str, Any]:
    """TPE + HyperbandPruner until `budget` member-steps are spent; a `bench_search` record.

    The clock starts before the data are loaded, so it holds every compilation.
    """
    from sweepjax.engine.loaders import load_dataset

    started = time.perf_counter()
    dataset = load_dataset("mnist1d", 500, "standard")
    study = Study(model, _device_splits(dataset), steps, eval_every, batch_size, seed, budget)
    study.started = started
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=eval_every, max_resource=steps, reduction_factor=3
    )
    optuna_study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        study_name=f"bench_search_{model}",  # Hyperband's brackets hash it: reproducible runs
    )

    def stop_when_spent(s: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if study.spent >= study.budget:
            s.stop()

    optuna_study.optimize(lambda t: objective(t, study), callbacks=[stop_when_spent])
    test = float("nan")
    if study.best is not None:
        accuracy = study.functions(study.best[3]).accuracy
        test = float(accuracy(study.best[1], *study.splits["test"]))
    record = _record(study, optuna_study, time.perf_counter() - started, test)
    compiled = study.compiled.values()
    record["structures"] = len(study.compiled)
    record["train_step_compilations"] = sum(c.train_step._cache_size() for c in compiled)
    record["init_compilations"] = sum(c.init_state._cache_size() for c in compiled)
    return record


def _record(study: Study, optuna_study: optuna.Study, wall: float, test: float) -> dict:
    """`bench_search`'s record of one Optuna run."""
    trials = optuna_study.trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = optuna_study.best_trial if complete else None
    return {
        "tried": len(trials),
        "completed": len(complete),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "member_steps": study.spent,
        "wall_seconds": wall,
        "best_val_accuracy": best.value if best else float("nan"),
        "test_accuracy": test,
        "best_hparams": dict(best.params) if best else {},
        "best_trial": best.number if best else None,
        "curve": study.curve,
    }


def check_equivalence(
    model: str, spec: dict[str, Any], steps: int = 3, structure: tuple[int, int] | None = None
) -> None:
    """Raise `AssertionError` unless the baseline's model and optimizer are sweepjax's: the
    same initial parameters and logits as the built-in `spec`, and the same updates as the
    `sgd` family with momentum, weight decay and a cosine learning rate."""
    from sweepjax.engine.models import build_model
    from sweepjax.engine.optim import Optimizer
    from sweepjax.engine.schedules import learning_rate_at, schedule_parameters

    x = jax.random.normal(jax.random.key(1), (8, 40))
    ours, theirs = flax_model(model, structure), build_model(spec)
    params = init_params(ours, 3, x)
    engine = theirs.init({"params": jax.random.split(jax.random.key(np.uint32(3)))[0]}, x)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, engine["params"])
    assert all(jax.tree.leaves(same)), f"{model}: initial parameters differ from sweepjax's"
    diff = jnp.abs(ours.apply({"params": params}, x) - theirs.apply(engine, x)).max()
    assert diff < 1e-4, f"{model}: logits differ from sweepjax's by {diff}"
    hp = {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-3}
    ours_tx = make_optimizer({**hp, "cosine": True}, 10)
    theirs_tx = Optimizer("sgd", frozenset(hp))
    schedule = {**hp, **schedule_parameters("cosine", 10)}
    a, b = ours_tx.init(params), theirs_tx.init(params, hp)
    for step in range(steps):
        grads = jax.tree.map(lambda p, s=step: jnp.sin(p * (s + 1)), params)
        b = theirs_tx.set_hyperparameters(b, hp, learning_rate_at("cosine", step, schedule))
        ua, a = ours_tx.update(grads, a, params)
        ub, b = theirs_tx.update(grads, b, params)
        gap = max(jax.tree.leaves(jax.tree.map(lambda u, v: jnp.abs(u - v).max(), ua, ub)))
        assert gap < 1e-6, f"step {step}: updates differ from sweepjax's sgd by {gap}"
