"""Export one trial of a sweep's latest checkpoint as a standalone Flax checkpoint.

`sweepjax export OUT_DIR --member I --to DIR` writes trial I's parameters as a plain Orbax
checkpoint in the layout its Flax API loads (linen: the variables `module.apply` takes; nnx:
the pure dict `nnx.replace_by_pure_dict` takes), with the hyperparameters it trained with
beside them, loadable with Orbax and Flax alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from sweepjax.engine.optim import FAMILIES, hyperparameter_names
from sweepjax.engine.population import START
from sweepjax.engine.schedules import SCHEDULES, schedule_parameters
from sweepjax.errors import describe_os_error
from sweepjax.sweep.checkpoint import _manager, checkpoint_dir, restore_latest
from sweepjax.sweep.config import FAMILY_KEYS, Config, families
from sweepjax.sweep.structures import Blocks, block_key, structure_options

# Parts of the optimizer chain present only when the sweep names them (`Optimizer._factory`,
# `Optimizer._chain`), whatever their column holds.
_OPTIONAL = ("clip_norm", "clip_value", "l2", "weight_decay")


def _variables(snapshot: Any, member: int) -> tuple[Any, dict[str, Any], bool]:
    """Trial `member`'s variables, hyperparameters and whether it is alive: from the slot
    holding it, or from the kept best trial of an adaptive sweep (before trials: slot = member)."""
    meta, state = snapshot.meta, snapshot.state
    slots, trials = meta.slots, meta.trial_count
    if not 0 <= member < trials:
        raise ValueError(f"--member: {member} is out of range; allowed: 0 to {trials - 1}.")
    if member in slots:
        slot = slots.index(member)
        population, row = _population_of(snapshot, slot)
        variables = {"params": population["params"], **(population.get("model_state") or {})}
        saved = state["hparams"]
        hparams = {k: np.asarray(saved[k])[slot].item() for k in meta.hparams if k != START}
        alive = bool(np.asarray(population["alive"])[row])
        return jax.tree.map(lambda a: np.asarray(a)[row], variables), hparams, alive
    if member == meta.kept_trial:
        return state["kept"], meta.trial_hparams(member), True
    held = sorted(t for t in slots if t >= 0)
    raise ValueError(
        f"--member: trial {member} left its slot before the latest checkpoint (at step "
        f"{meta.step}); allowed: a trial held then ({held}) or the best finished trial "
        f"({meta.kept_trial})."
    )


def _population_of(snapshot: Any, slot: int) -> tuple[Any, int]:
    """The saved population holding `slot`, and the slot's row in it: the whole population,
    or in a sweep of one block per structure, its block's."""
    if snapshot.meta.blocks is None:
        return snapshot.state["population"], slot
    block, row = Blocks.from_json(snapshot.meta.blocks).locate(slot)
    return snapshot.state["populations"][block_key(block)], row


def _model(config: Config, meta: Any, member: int) -> Any:
    """The model a trial trained: the sweep's, with the trial's structure where it chose one."""
    if meta.blocks is None:
        return meta.config["model"]
    return {**meta.config["model"], **structure_options(config, meta.trial_hparams(member))}


def _unwrap(tree: Any) -> Any:
    """`tree` with each `{"value": array}` (an `nnx.Variable` as Orbax restores it) replaced by
    its array; None if some array is not wrapped so (then it is no nnx state)."""
    if (
        isinstance(tree, Mapping)
        and set(tree) == {"value"}
        and not isinstance(tree["value"], Mapping)
    ):
        return tree["value"]
    if not isinstance(tree, Mapping):
        return None
    out = {key: _unwrap(item) for key, item in tree.items()}
    return None if any(v is None for v in out.values()) else out


def nnx_pure_dicts(variables: Mapping[str, Any]) -> tuple[dict, dict] | None:
    """The pure dicts `(params, rest)` of an nnx model's variables as a sweep holds them
    (`{"params": State, "state": State}`, restored as plain dicts); None for a linen model's.

    `params` is what `nnx.to_pure_dict(nnx.state(model, nnx.Param))` gives, `rest` what
    `nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))` gives. An export written before
    the layout followed the API holds these wrapped variables: this converts them.

    >>> nnx_pure_dicts({"params": {"l1": {"bias": {"value": 0.5}}}, "state": {}})
    ({'l1': {'bias': 0.5}}, {})
    >>> nnx_pure_dicts({"params": {"Dense_0": {"bias": 0.5}}}) is None
    True
    """
    if set(variables) != {"params", "state"}:
        return None
    params, rest = _unwrap(variables["params"]), _unwrap(variables["state"])
    if not params or rest is None:
        return None
    return params, rest


class _Reads(dict):
    """A dict that records which keys were read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def _optimizer_uses(config: Config, family: str) -> dict[str, Any]:
    """The hyperparameters (with defaults) optimizer `family` reads in `config`'s sweep."""
    names = frozenset(config.space) | frozenset(config.schedules)
    defaults, spec = hyperparameter_names(family), FAMILIES[family]
    present = names | spec.always
    reads = _Reads(defaults)
    spec.direction(reads, present, config.nesterov)  # builds, never runs, the transform
    if spec.after is not None:
        spec.after(reads, present, config.nesterov)
    used = reads.read | {"learning_rate"} | (present & set(_OPTIONAL))
    out = {k: v for k, v in defaults.items() if k in used}
    for name, schedule in config.schedules.items():
        if name in out and schedule in SCHEDULES:
            parameters = schedule_parameters(schedule, config.steps)
            out.update({f"{name}.{p}": v for p, v in parameters.items()})
    return out


def _family(config: Config, kind: str, value: Any) -> Any:
    """The member's `kind` family by name (its column holds an index, a trial's the name), or
    the index where the families are not all registered in this process (a user schedule)."""
    if isinstance(value, str):
        return value
    try:
        names = families(config, kind)
    except ValueError:
        configured = config.space.get(kind, getattr(config, kind))
        return configured if isinstance(configured, str) and value is None else value
    return names[0] if value is None else names[int(value)]


def member_hyperparameters(config: Config, values: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters a member of `config`'s sweep trained with, from its `values`.

    Only those its optimizer and schedule families read: an optional part of the optimizer
    (`clip_norm`, `clip_value`, `l2`, `weight_decay`, the momentum of `sgd` and `rmsprop*`) only
    when the sweep names it in `space` or `schedules` (or the family always has it); `dropout`
    only when swept. A value `values` lacks is its family's default. The families come first,
    by name. Columns of a family not registered here (a user schedule) are kept as given.

    >>> config = Config(optimizer="sgd", space={"learning_rate": 0.1})
    >>> values = {"learning_rate": 0.1, "momentum": 0.0, "clip_norm": 1.0, "seed": 3}
    >>> member_hyperparameters(config, values)
    {'optimizer': 'sgd', 'schedule': 'constant', 'learning_rate': 0.1, 'seed': 3, 'warmup_steps': 0, 'batch_size': 100}
    """
    chosen = {kind: _family(config, kind, values.get(kind)) for kind in ("optimizer", "schedule")}
    used, known = {"seed": 0}, {"dropout"}
    if chosen["optimizer"] in FAMILIES:
        used.update(_optimizer_uses(config, chosen["optimizer"]))
        known |= {k for family in FAMILIES for k in hyperparameter_names(family)}
    if "dropout" in config.space:
        used["dropout"] = 0.0
    if chosen["schedule"] in SCHEDULES:
        used.update(schedule_parameters(chosen["schedule"], config.steps))
        known |= {p for family in SCHEDULES for p in schedule_parameters(family, config.steps)}
    for name, family in config.schedules.items():
        if family in SCHEDULES:
            known |= {f"{name}.{p}" for p in schedule_parameters(family, config.steps)}
    used["batch_size"] = config.batch_size
    out = dict(chosen)
    for key, value in values.items():
        if key not in (*FAMILY_KEYS, START) and (key in used or key not in known):
            out[key] = value
    out.update({k: v for k, v in used.items() if k not in out})
    if float(out["batch_size"]).is_integer():
        out["batch_size"] = int(out["batch_size"])
    return out


def _save(path: Path, tree: Any) -> None:
    """Write `tree` as a standard Orbax checkpoint at `path`, synchronously: a failed save
    raises here and leaves no background thread to keep the process alive."""
    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    try:
        checkpointer.save(path, tree)
    finally:
        checkpointer.close()


def _create_target(to: Path) -> None:
    """Create the export folder `to`, or say in one line why it cannot be (before Orbax)."""
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--to: {to}: " + describe_os_error(err, "create")) from err


def export_member(out_dir: str | os.PathLike, member: int, to: str | os.PathLike) -> Path:
    """Write member `member` of the latest good checkpoint as a standalone Orbax checkpoint.

    `to/checkpoint/` is a standard Orbax checkpoint of plain nested dicts of arrays, in the
    layout the model's Flax API loads; `ocp.StandardCheckpointer().restore(path)` reads it:

    * linen (the built-in models): `{"params": ..., **collections}` (`batch_stats` ...), the
      variables `module.apply` takes.
    * nnx: the pure dict `nnx.to_pure_dict(nnx.state(model, nnx.Param))` gives, which
      `nnx.replace_by_pure_dict` takes. A model with other variables has their pure dict
      (`nnx.state(model, nnx.Not(nnx.Param))`) in `to/state/`.

    `to/hparams.json` holds the member's step, whether it is alive, its model (`api`:
    `flax.linen` or `flax.nnx`), the data set, and its `hyperparameters`: its optimizer and
    schedule families by name and only the values they read (`member_hyperparameters`).
    Exports from before held an nnx model as `{"params": ..., "state": ...}` with each array
    wrapped as `{"value": array}`; `nnx_pure_dicts` converts those. A linen export is unchanged.

    A user nnx module, swept, exported and loaded into a fresh instance with nnx alone:

    >>> import tempfile, jax.numpy as jnp, numpy as np, orbax.checkpoint as ocp, sweepjax
    >>> from flax import nnx
    >>> class Net(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.out = nnx.Linear(4, 2, rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.out(x)
    >>> x, y, out = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2, tempfile.mkdtemp()
    >>> data = sweepjax.from_arrays(x, y, x, y, val_size=8)
    >>> config = sweepjax.Config(model=Net, space={"learning_rate": 0.1}, population=2, steps=4,
    ...                          batch_size=8, eval_every=4, out_dir=f"{out}/nnx")
    >>> _ = sweepjax.run(config, quiet=True, dataset=data)
    >>> restored = ocp.StandardCheckpointer().restore(export_member(config.out_dir, 1, f"{out}/m1") / "checkpoint")
    >>> model = Net(nnx.Rngs(0))
    >>> state = nnx.state(model, nnx.Param)
    >>> nnx.replace_by_pure_dict(state, restored)
    >>> nnx.update(model, state)
    >>> model(jnp.ones((1, 4))).shape
    (1, 2)

    A built-in (linen) model's export goes to `module.apply` as it is
    (`build_model(config.model).apply(variables, x)`; `tests/test_export_loads.py`).

    >>> import shutil; shutil.rmtree(out)

    Args:
      out_dir: a sweep's output directory.
      member: the trial's number (its `member` column in `results.csv`): one holding a slot
        in the latest checkpoint (every member of a fixed population does), or the best
        finished trial of an adaptive sweep, kept when its slot was handed on.
      to: a directory that does not exist yet or is empty.

    Returns:
      `to`, as a `Path`.

    Raises:
      ValueError: `member` is not a trial of the checkpoint, `to` is a file, a folder that is
        not empty or one that cannot be created, or `out_dir` holds no checkpoint.
      CheckpointError: no checkpoint of `out_dir` could be read.
    """
    to = _check_target(out_dir, Path(to).absolute())
    with _manager(out_dir, read_only=True) as manager:
        snapshot, _ = restore_latest(manager)
    variables, values, alive = _variables(snapshot, member)
    _create_target(to)
    pure = nnx_pure_dicts(variables)
    if pure is None:
        _save(to / "checkpoint", variables)
    else:
        _save(to / "checkpoint", pure[0])
        if pure[1]:
            _save(to / "state", pure[1])
    config = Config.from_json(snapshot.meta.config)
    info = {
        "member": member,
        "step": snapshot.step,
        "alive": alive,
        "hyperparameters": member_hyperparameters(config, values),
        "model": _model(config, snapshot.meta, member),
        "api": "flax.linen" if pure is None else "flax.nnx",
        "dataset": snapshot.meta.data["describe"],
    }
    (to / "hparams.json").write_text(json.dumps(info, indent=2) + "\n")
    return to


def _check_target(out_dir: str | os.PathLike, to: Path) -> Path:
    """`to` if it is a new or empty directory and `out_dir` holds checkpoints; else why not."""
    if to.exists() and not to.is_dir():
        raise ValueError(f"--to: {to} is a file; allowed: a new or empty directory.")
    if to.exists() and any(to.iterdir()):
        raise ValueError(f"--to: {to} exists and is not empty; allowed: a new or empty directory.")
    if not checkpoint_dir(out_dir).is_dir():
        raise ValueError(
            f"export: {out_dir} holds no checkpoint; give the out_dir of a sweep (its checkpoints "
            "are in OUT_DIR/checkpoints)."
        )
    return to
