"""A fixed sweep over structure: one bucket of members per structure, trained in turn.

`train_buckets` trains the buckets of `sweepjax.sweep.buckets.plan_buckets` one after another,
each a population of its own in `OUT_DIR/buckets/NN` that resumes on its own, and merges their
results into the sweep's; `buckets.json` records the plan, so another sweep's is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sweepjax.engine import distributed
from sweepjax.engine.data import Dataset
from sweepjax.engine.population import Program
from sweepjax.errors import Interrupted
from sweepjax.files import atomic_write
from sweepjax.runner.training import train_population
from sweepjax.sweep import checkpoint, same_sweep
from sweepjax.sweep.buckets import PLAN_FILE, Bucket, merge_results
from sweepjax.sweep.config import Config
from sweepjax.sweep.lock import FolderLock
from sweepjax.sweep.out_dir import check_results, keep_advice
from sweepjax.sweep.results import Result, write_result
from sweepjax.sweep.signals import StopOnSignal


def _check_bucket_plan(
    config: Config, dataset: Dataset, buckets: list[Bucket], *, resuming: bool
) -> None:
    """Refuse another sweep's plan or results in `out_dir`; then write this sweep's plan."""
    out_dir = config.out_dir
    plan = {
        "config": config.to_json(),
        "data": checkpoint.data_identity(dataset),
        "buckets": [{"label": b.label, "members": b.members.tolist()} for b in buckets],
    }
    plan_path = Path(out_dir, PLAN_FILE)
    if plan_path.exists():
        diffs = same_sweep.differences(
            json.loads(plan_path.read_text()), plan["config"], plan["data"]
        )
        if diffs:
            raise checkpoint.CheckpointMismatch(
                f"{out_dir} holds a different bucketed sweep: "
                + "; ".join(diffs)
                + ". "
                + keep_advice(out_dir, resuming=resuming)
            )
    else:
        check_results(config, plan["data"], resuming=resuming)
    if distributed.is_primary():
        atomic_write(plan_path, lambda f: json.dump(plan, f, indent=2))
    distributed.barrier("sweepjax-bucket-plan")


def train_buckets(
    config: Config,
    dataset: Dataset,
    buckets: list[Bucket],
    programs: list[Program],
    *,
    stop: StopOnSignal,
    lock: FolderLock | None,
    quiet: bool,
    resuming: bool,
) -> Result:
    """Train the buckets one after another (each resumes on its own) and merge their results."""
    out_dir = config.out_dir
    primary = distributed.is_primary()
    quiet = quiet or not primary
    if out_dir is not None:
        _check_bucket_plan(config, dataset, buckets, resuming=resuming)
    results: list[Result] = []
    for index, (bucket, program) in enumerate(zip(buckets, programs, strict=True)):
        if not quiet:
            print(
                f"sweepjax: bucket {index + 1}/{len(buckets)}: {bucket.label} "
                f"({len(bucket.members)} members)",
                file=sys.stderr,
            )
        try:
            results.append(
                train_population(
                    bucket.config,
                    dataset,
                    program,
                    rows=bucket.rows,
                    stop=stop,
                    lock=lock,
                    quiet=quiet,
                    # a bucket not yet started when the sweep stopped starts afresh
                    resuming=resuming and bool(checkpoint.saved_steps(bucket.config.out_dir)),
                    leaderboard=False,
                )
            )
        except Interrupted as interrupted:
            if interrupted.result is not None:
                results.append(interrupted.result)
            if not results:
                raise
            raise _stopped_in_bucket(config, buckets, results, index, interrupted) from None
    merged = merge_results(config, buckets, results)
    if out_dir is not None and primary:
        write_result(merged, out_dir)
    if not quiet:
        print(merged.leaderboard(), file=sys.stderr)
        if out_dir is not None:
            print(f"results in {out_dir}/", file=sys.stderr)
    return merged


def _stopped_in_bucket(
    config: Config,
    buckets: list[Bucket],
    results: list[Result],
    index: int,
    interrupted: Interrupted,
) -> Interrupted:
    """The sweep stopped in bucket `index`: the buckets' results so far, merged and written."""
    out_dir = config.out_dir
    merged = merge_results(config, buckets, results)
    merged.summary["interrupted"] = True
    if out_dir is not None and distributed.is_primary():
        write_result(merged, out_dir)
    return Interrupted(
        f"interrupted in bucket {index + 1}/{len(buckets)} at step {interrupted.step}; "
        f"the checkpoints and partial results are in {out_dir}. Resume with: "
        f"sweepjax resume {out_dir}",
        step=interrupted.step,
        out_dir=out_dir,
        result=merged,
    )
