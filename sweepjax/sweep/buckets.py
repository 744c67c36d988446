"""Buckets: members grouped by structural hyperparameters, one compiled program per bucket.

A space key `model.<option>` (e.g. `"model.hidden": Choice([[32], [64], [128]])`) changes the
model's shapes, so it cannot ride in the population as data. `plan_buckets` samples the whole
population once (structural dimensions jointly with the numeric ones), groups members by their
structural values and gives each group a `Config` of its own; `merge_results` joins the buckets'
results back into one table in member order.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sweepjax.search.space import Choice, HParams, SearchSpace
from sweepjax.sweep.config import Config, complete_hparams, effective_space
from sweepjax.sweep.results import Result, ranking, summarize
from sweepjax.sweep.structures import STRUCTURAL_PREFIX, structural_keys

PLAN_FILE = "buckets.json"


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Members sharing one structure: their config, global indices and hyperparameters."""

    label: str  # e.g. 'model.hidden=[64]'; empty for a sweep without structural keys
    config: Config
    members: np.ndarray
    hparams: HParams
    rows: list[dict[str, Any]]  # each member's sampled values, as `Searcher.ask` gives them


def plan_buckets(config: Config) -> list[Bucket]:
    """Sample `config`'s population and split it into buckets of equal structure.

    >>> space = {"learning_rate": Choice([0.1, 0.2]), "model.hidden": Choice([[8], [16]])}
    >>> config = Config(space=space, population=4, searcher="grid", out_dir=None)
    >>> [(b.label, b.members.tolist()) for b in plan_buckets(config)]
    [('model.hidden=[8]', [0, 2]), ('model.hidden=[16]', [1, 3])]
    """
    keys = structural_keys(config)
    space = {
        k: Choice(range(len(v.values))) if k in keys and isinstance(v, Choice) else v
        for k, v in effective_space(config).items()
    }
    sample = SearchSpace(space).sample(config.population, config.searcher, config.seed)
    if not keys:
        hparams = complete_hparams(config, sample.values)
        rows = [sample.member(i) for i in range(config.population)]
        return [Bucket("", config, np.arange(config.population), hparams, rows)]

    def value(key: str, i: int) -> Any:
        raw = np.asarray(sample[key])[i].item()
        spec = config.space[key]
        return spec.values[int(raw)] if isinstance(spec, Choice) else raw

    groups: dict[str, list[int]] = {}
    structures: dict[str, dict[str, Any]] = {}
    for i in range(config.population):
        structure = {k: value(k, i) for k in keys}
        label = ", ".join(f"{k}={json.dumps(v)}" for k, v in structure.items())
        groups.setdefault(label, []).append(i)
        structures[label] = structure
    buckets = []
    for index, (label, members) in enumerate(groups.items()):
        options = {k.removeprefix(STRUCTURAL_PREFIX): v for k, v in structures[label].items()}
        sub = config.replace(
            model={**config.model, **options},
            space={k: v for k, v in config.space.items() if k not in keys},
            population=len(members),
            out_dir=None
            if config.out_dir is None
            else str(Path(config.out_dir, "buckets", f"{index:02d}")),
        )
        numeric = {k: np.asarray(v)[members] for k, v in sample.values.items() if k not in keys}
        rows = [{k: v[j].item() for k, v in numeric.items()} for j in range(len(members))]
        hparams = complete_hparams(sub, numeric)
        buckets.append(Bucket(label, sub, np.asarray(members), hparams, rows))
    return buckets


def merge_results(config: Config, buckets: Sequence[Bucket], results: Sequence[Result]) -> Result:
    """One `Result` in global member order from the buckets' results (some may be missing)."""
    keys = structural_keys(config)
    rows: list[dict[str, Any]] = []
    curve_parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    for bucket, result in zip(buckets, results, strict=False):
        structure = _structure(bucket, keys)
        for local, row in enumerate(result.rows):
            merged = {"member": int(bucket.members[local]), **structure}
            merged.update({k: v for k, v in row.items() if k != "member"})
            rows.append(merged)
        curve_parts.append((bucket.members, result.curves))
    rows.sort(key=lambda r: r["member"])
    curves = _merge_curves(curve_parts, config.population)
    summary = {
        "config": config.to_json(),
        "steps_done": min(r.summary["steps_done"] for r in results),
        **summarize(rows, *ranking(results[0].summary)),  # every bucket has the sweep's task
        "buckets": [
            {"label": b.label, "members": b.members.tolist(), "steps_done": r.summary["steps_done"]}
            for b, r in zip(buckets, results, strict=False)
        ],
    }
    for key in ("compile_seconds", "train_seconds", "programs_compiled", "programs_from_cache"):
        summary[key] = round(sum(r.summary.get(key, 0) for r in results), 3)
    trained = sum(len(b.members) for b in buckets[: len(results)])
    summary["member_steps_per_second"] = round(
        trained * summary["steps_done"] / max(summary["train_seconds"], 1e-9), 1
    )
    for key, value in results[-1].summary.items():
        summary.setdefault(key, value)  # dataset, versions, device
    return Result(rows, curves, summary)


def _structure(bucket: Bucket, keys: Sequence[str]) -> dict[str, Any]:
    options = bucket.config.model
    values = {k: options[k.removeprefix(STRUCTURAL_PREFIX)] for k in keys}
    return {
        k: json.dumps(v) if isinstance(v, list | tuple | Mapping) else v for k, v in values.items()
    }


def _merge_curves(parts: Sequence[tuple[np.ndarray, dict[str, np.ndarray]]], population: int):
    """`[C, P]` curves with NaN for members whose bucket has not reached a step yet."""
    steps = max((c["steps"] for _, c in parts), key=len)
    merged = {"steps": steps}
    for name in [k for k in parts[0][1] if k != "steps"]:  # train_loss and the task's val_<m>
        full = np.full((len(steps), population), np.nan, np.float32)
        for members, curves in parts:
            values = curves[name]
            full[: len(values), members] = values
        merged[name] = full
    return merged
