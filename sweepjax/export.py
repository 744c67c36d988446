"""Export one trial of a sweep's latest checkpoint as a standalone Flax checkpoint.

`sweepjax export OUT_DIR --member I --to DIR` writes trial I's parameters (and model state) as
a plain Orbax checkpoint, with its hyperparameters beside them, loadable with Orbax and Flax
alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from sweepjax.checkpoint import _manager, checkpoint_dir, restore_latest
from sweepjax.population import START


def _variables(snapshot: Any, member: int) -> tuple[Any, dict[str, Any], bool]:
    """Trial `member`'s variables, hyperparameters and whether it is alive: from the slot
    holding it, or from the kept best trial of an adaptive sweep (before trials: slot = member)."""
    meta, state = snapshot.meta, snapshot.state
    population = state["population"]
    slots = list(meta.get("slots", range(len(np.asarray(population["alive"])))))
    trials = len(meta.get("trials", slots))
    if not 0 <= member < trials:
        raise ValueError(f"--member: {member} is out of range; allowed: 0 to {trials - 1}.")
    if member in slots:
        slot = slots.index(member)
        variables = {"params": population["params"], **(population.get("model_state") or {})}
        saved = state["hparams"]
        hparams = {k: np.asarray(saved[k])[slot].item() for k in meta["hparams"] if k != START}
        alive = bool(np.asarray(population["alive"])[slot])
        return jax.tree.map(lambda a: np.asarray(a)[slot], variables), hparams, alive
    if member == meta.get("kept_trial", -1):
        return state["kept"], dict(meta["trials"][member]["hparams"]), True
    held = sorted(t for t in slots if t >= 0)
    raise ValueError(
        f"--member: trial {member} left its slot before the latest checkpoint (at step "
        f"{meta['step']}); allowed: a trial held then ({held}) or the best finished trial "
        f"({meta.get('kept_trial', -1)})."
    )


def export_member(out_dir: str | os.PathLike, member: int, to: str | os.PathLike) -> Path:
    """Write member `member` of the latest good checkpoint as a standalone Orbax checkpoint.

    `to/checkpoint/` is a standard Orbax checkpoint of `{"params": ..., **model_state}` (plain
    nested dicts of arrays, what `module.apply` takes); `to/hparams.json` holds the member's
    hyperparameters, its step, model and data set. Loading needs only Orbax and Flax:
    `ocp.StandardCheckpointer().restore(path)`.

    Args:
      out_dir: a sweep's output directory.
      member: the trial's number (its `member` column in `results.csv`): one holding a slot
        in the latest checkpoint (every member of a fixed population does), or the best
        finished trial of an adaptive sweep, kept when its slot was handed on.
      to: a directory that does not exist yet or is empty.

    Returns:
      `to`, as a `Path`.
    """
    to = Path(to).absolute()
    if to.exists() and not to.is_dir():
        raise ValueError(f"--to: {to} is a file; allowed: a new or empty directory.")
    if to.exists() and any(to.iterdir()):
        raise ValueError(f"--to: {to} exists and is not empty; allowed: a new or empty directory.")
    if not checkpoint_dir(out_dir).is_dir():
        raise ValueError(
            f"export: {out_dir} holds no checkpoint; give the out_dir of a sweep (its checkpoints "
            "are in OUT_DIR/checkpoints)."
        )
    with _manager(out_dir, read_only=True) as manager:
        snapshot, _ = restore_latest(manager)
    variables, hparams, alive = _variables(snapshot, member)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(to / "checkpoint", variables)
    checkpointer.wait_until_finished()
    checkpointer.close()
    info = {
        "member": member,
        "step": snapshot.step,
        "alive": alive,
        "hyperparameters": hparams,
        "model": snapshot.meta["config"]["model"],
        "dataset": snapshot.meta["data"]["describe"],
    }
    (to / "hparams.json").write_text(json.dumps(info, indent=2) + "\n")
    return to
