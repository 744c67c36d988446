"""The `sweepjax` command.

sweepjax run [EXPERIMENT] [--set key=value ...] [--out DIR] [--quiet] [--overwrite] [HOSTS]
sweepjax resume OUT_DIR [--set key=value ...] [--quiet] [HOSTS]
sweepjax export OUT_DIR --member I --to DIR
sweepjax show OUT_DIR [--top N]
sweepjax report OUT_DIR [--top N]
sweepjax bench-schedules [EXPERIMENT] [--set key=value ...] [--out DIR] [--target ACC] [--quiet]
sweepjax summarize EXPERIMENT OUT_DIR [OUT_DIR ...]

HOSTS, to run one sweep as several processes (one per host; see `sweepjax.distributed`):
--coordinator HOST:PORT --num-processes N --process-id I, or --distributed to take them from
the cluster (SLURM and the other environments `jax.distributed.initialize()` detects).

Exit codes: 0 done, 1 a checkpoint could not be saved or read, 2 a bad config or a checkpoint
of another sweep in OUT_DIR, 75 interrupted by SIGTERM or SIGINT after saving a checkpoint
(resumable: `sweepjax resume OUT_DIR`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sweepjax.config import Config, apply_overrides
from sweepjax.experiment import load_experiment
from sweepjax.placement import use_cpu_cores


def _add_experiment_arguments(command: argparse.ArgumentParser, default: str) -> None:
    """EXPERIMENT, --set, --out and --quiet: what every command that starts a sweep takes."""
    command.add_argument(
        "experiment", nargs="?", default=default, help=f"name or path (default: {default})"
    )
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key; dotted keys reach model options and space entries",
    )
    command.add_argument("--out", help="output directory (overrides out_dir)")
    command.add_argument("--quiet", action="store_true", help="no progress bar or leaderboard")


def _experiment_config(args: argparse.Namespace) -> Config:
    """The experiment's config with the command line's overrides and output directory."""
    config = apply_overrides(load_experiment(args.experiment), args.overrides)
    return config.replace(out_dir=args.out) if args.out else config


def _add_distributed_arguments(command: argparse.ArgumentParser) -> None:
    """The flags that make this process one of several running the same sweep."""
    hosts = command.add_argument_group(
        "several hosts", "run one sweep as N processes: the same command on each host"
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="processes in the sweep")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")
    hosts.add_argument(
        "--distributed",
        action="store_true",
        help="take the three settings from the cluster (SLURM, Open MPI, ...)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweepjax", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a sweep (an experiment in experiments/)")
    _add_experiment_arguments(run, default="default")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the checkpoints and results of another sweep in the output directory",
    )
    _add_distributed_arguments(run)
    _add_checkpoint_commands(commands)

    bench = commands.add_parser(
        "bench-schedules", help="benchmark schedule families (experiments/schedules.py)"
    )
    _add_experiment_arguments(bench, default="schedules")
    bench.add_argument(
        "--target", type=float, default=0.5, help="validation accuracy for steps-to-target"
    )

    show = commands.add_parser("show", help="print the status and leaderboard of a sweep directory")
    show.add_argument("out_dir")
    show.add_argument("--top", type=int, default=10)

    report = commands.add_parser(
        "report", help="write figures, report.html and report.md into a sweep directory"
    )
    report.add_argument("out_dir")
    report.add_argument("--top", type=int, default=10, help="members in the leaderboard")

    summarize = commands.add_parser(
        "summarize", help="print what an experiment's finished sweep(s) show (its summarize())"
    )
    summarize.add_argument("experiment", help="name or path")
    summarize.add_argument("out_dirs", nargs="+", metavar="OUT_DIR")
    return parser


def _add_checkpoint_commands(commands) -> None:
    resume = commands.add_parser(
        "resume", help="continue a sweep from its latest good checkpoint (raise steps to extend)"
    )
    resume.add_argument("out_dir")
    resume.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change steps, eval_every, eval_batch, checkpoint_every, keep_checkpoints or data_placement",
    )
    resume.add_argument("--quiet", action="store_true", help="no progress bar or leaderboard")
    _add_distributed_arguments(resume)

    export = commands.add_parser(
        "export", help="write one member as a plain Orbax checkpoint of Flax parameters"
    )
    export.add_argument("out_dir")
    export.add_argument("--member", type=int, required=True, help="the member's index")
    export.add_argument("--to", required=True, help="a new (or empty) directory")


def _run_checkpointed(args) -> int:
    """`run`, `resume` and `export`; exceptions of the checkpoint layer become exit codes."""
    from sweepjax import distributed

    if args.command in ("run", "resume"):  # before anything else touches JAX's devices
        distributed.initialize(
            args.coordinator, args.num_processes, args.process_id, detect=args.distributed
        )
        use_cpu_cores()
    from sweepjax.checkpoint import CheckpointError, export_member
    from sweepjax.sweep import EXIT_INTERRUPTED, Interrupted, resume, run

    try:
        if args.command == "run":
            run(_experiment_config(args), quiet=args.quiet, overwrite=args.overwrite)
        elif args.command == "resume":
            resume(args.out_dir, overrides=args.overrides, quiet=args.quiet)
        else:
            to = export_member(args.out_dir, args.member, args.to)
            print(f"member {args.member} exported to {to}/ (checkpoint/ and hparams.json)")
    except Interrupted as stop:
        print(f"sweepjax: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CheckpointError as err:
        print(f"sweepjax: error: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("run", "resume", "export"):
            return _run_checkpointed(args)
        elif args.command == "bench-schedules":
            from sweepjax.benchmark import bench_schedules

            use_cpu_cores()
            bench_schedules(_experiment_config(args), target=args.target, quiet=args.quiet)
        elif args.command == "show":
            from sweepjax.report import show

            print(show(args.out_dir, args.top))
        elif args.command == "report":
            from sweepjax.report import write_report

            print(write_report(args.out_dir, args.top))
        elif args.command == "summarize":
            from sweepjax.experiment import summarize

            print(summarize(args.experiment, args.out_dirs))
    except ValueError as err:
        print(f"sweepjax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
