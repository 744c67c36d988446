"""The `sweepjax` command.

sweepjax run [EXPERIMENT] [--set key=value ...] [--out DIR] [--quiet] [--overwrite] [HOSTS]
sweepjax resume OUT_DIR [--set key=value ...] [--quiet] [HOSTS]
sweepjax export OUT_DIR --member I --to DIR
sweepjax show OUT_DIR [--top N]
sweepjax report OUT_DIR [--top N]
sweepjax bench-schedules [EXPERIMENT] [--set key=value ...] [--out DIR] [--target ACC] [--quiet]
sweepjax summarize EXPERIMENT OUT_DIR [OUT_DIR ...]

HOSTS, to run one sweep as several processes (one per host; see `sweepjax.engine.distributed`):
--coordinator HOST:PORT --num-processes N --process-id I, or --distributed to take them from
the cluster (SLURM and the other environments `jax.distributed.initialize()` detects).

Every failure is one line on stderr (`--verbose` adds the traceback and the libraries' logs).
Exit codes: 0 done; 1 a file or checkpoint could not be written or read (disk full, permissions,
damage); 2 bad input (a config key, a path, a folder another sweep or another process holds);
70 an internal error (a bug: please report it); 75 stopped by SIGINT or SIGTERM, before training
or after saving a checkpoint (run the same command again, or `sweepjax resume OUT_DIR`); 128+N
(130 for Ctrl-C) stopped at once by a second signal N. A signal that arrives once the sweep has
finished (its results written) is answered with one line (in the process's last moment, while
the libraries shut down, silently) and ignored: the exit code stays 0.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweepjax import errors
from sweepjax.sweep.signals import StopOnSignal

if TYPE_CHECKING:
    from sweepjax.sweep.config import Config

# The commands that train: they listen for SIGINT and SIGTERM before importing JAX.
TRAINING_COMMANDS = ("run", "resume", "bench-schedules")


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
    from sweepjax.experiment import load_experiment
    from sweepjax.sweep.config import apply_overrides

    config = apply_overrides(load_experiment(args.experiment), args.overrides)
    return config.replace(out_dir=args.out) if args.out is not None else config


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


DESCRIPTION = """\
Train a whole hyperparameter sweep as one compiled JAX program: every member of the population
trains in parallel, checkpoints between chunks, and resumes exactly where it stopped."""

EXAMPLES = """\
examples:
  sweepjax run                                    the default sweep (experiments/default.py)
  sweepjax run default --set population=8 --set steps=500 --out runs/small
  sweepjax run my_sweep.py --set scheduler=asha --set trials=256
  sweepjax resume runs/small --set steps=1000     continue, or extend, a stopped sweep
  sweepjax show runs/small                        status and leaderboard
  sweepjax report runs/small                      figures, report.html and report.md
  sweepjax export runs/small --member 3 --to member3
  sweepjax bench-schedules                        compare schedule families in one program

Experiments are found by name in ./experiments/ first, then among the built-in ones.
Run `sweepjax COMMAND --help` for a command's options."""


def _parser() -> argparse.ArgumentParser:
    from sweepjax import __version__

    parser = argparse.ArgumentParser(
        prog="sweepjax",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sweepjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    for command in commands.choices.values():
        command.add_argument(
            "--verbose", action="store_true", help="on failure: the traceback and libraries' logs"
        )
    return parser


def _resumable_keys() -> str:
    """The keys `resume --set` may change, as a sentence lists them (read without JAX)."""
    from sweepjax.sweep.keys import RESUME_OVERRIDES

    *others, last = RESUME_OVERRIDES
    return f"{', '.join(others)} or {last}"


def _add_checkpoint_commands(commands) -> None:
    resume = commands.add_parser(
        "resume",
        help="continue a sweep from its latest good checkpoint (raise steps to extend)",
    )
    resume.add_argument("out_dir")
    resume.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"change {_resumable_keys()}",
    )
    resume.add_argument("--quiet", action="store_true", help="no progress bar or leaderboard")
    _add_distributed_arguments(resume)

    export = commands.add_parser(
        "export", help="write one member as a plain Orbax checkpoint of Flax parameters"
    )
    export.add_argument("out_dir")
    export.add_argument("--member", type=int, required=True, help="the member's index")
    export.add_argument("--to", required=True, help="a new (or empty) directory")


def _train(args: argparse.Namespace) -> None:
    """`run`, `resume` and `bench-schedules`: the commands that train."""
    from sweepjax.engine import distributed
    from sweepjax.engine.placement import use_cpu_cores

    if args.command in ("run", "resume"):  # before anything else touches JAX's devices
        distributed.initialize(
            args.coordinator, args.num_processes, args.process_id, detect=args.distributed
        )
    use_cpu_cores()
    if args.command == "run":
        from sweepjax.runner.run import run

        run(_experiment_config(args), quiet=args.quiet, overwrite=args.overwrite)
    elif args.command == "resume":
        from sweepjax.runner.run import resume

        resume(args.out_dir, overrides=args.overrides, quiet=args.quiet)
    else:
        from sweepjax.benchmark import bench_schedules

        bench_schedules(_experiment_config(args), target=args.target, quiet=args.quiet)


def _inspect(args: argparse.Namespace) -> None:
    """`export`, `show`, `report` and `summarize`: the commands that read a sweep folder."""
    if args.command == "export":
        from sweepjax.sweep.export import export_member

        to = export_member(args.out_dir, args.member, args.to)
        parts = ["checkpoint/", *(["state/"] if (to / "state").is_dir() else []), "hparams.json"]
        print(f"member {args.member} exported to {to}/ ({', '.join(parts)})")
    elif args.command == "show":
        from sweepjax.report import show

        print(show(args.out_dir, args.top))
    elif args.command == "report":
        from sweepjax.report import write_report

        print(write_report(args.out_dir, args.top))
    else:
        from sweepjax.experiment import summarize

        print(summarize(args.experiment, args.out_dirs))


def _failure(err: BaseException, verbose: bool) -> int:
    """Print `err` as one line (with the traceback when `verbose`); return its exit code."""
    code = errors.exit_code(err)
    if verbose and not isinstance(err, errors.Interrupted):
        traceback.print_exception(err, file=sys.stderr)
    if isinstance(err, errors.Interrupted):
        print(f"sweepjax: {err}", file=sys.stderr)
    elif code == errors.EXIT_INTERNAL:
        frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        where = f" at {frame.filename}:{frame.lineno}" if frame else ""
        print(
            f"sweepjax: internal error: {type(err).__name__}: {err}{where}. This is a bug in "
            "sweepjax; please report it with the command and the output of --verbose.",
            file=sys.stderr,
        )
    elif isinstance(err, OSError) and not isinstance(err, errors.StorageError):
        print(f"sweepjax: error: {errors.describe_os_error(err, 'write or read')}", file=sys.stderr)
    else:
        print(f"sweepjax: error: {err}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The `sweepjax` command; returns its exit code (see the module's docstring).

    `argv` None reads the process's own command line (the `sweepjax` script): the process
    then ends with this call, so a signal after a finished sweep stays answered and ignored
    until it has exited.
    """
    args = _parser().parse_args(argv)
    training = args.command in TRAINING_COMMANDS
    try:
        # Before JAX: a signal at any moment is handled.
        with StopOnSignal(enabled=training, ends_process=argv is None) as stop:
            if not args.verbose:
                from sweepjax.sweep.library_logs import silence_library_logs

                silence_library_logs()
            if training:
                _train(args)
                stop.finish()
            else:
                _inspect(args)
    except KeyboardInterrupt:
        print("sweepjax: interrupted.", file=sys.stderr)
        return errors.EXIT_SIGINT
    except Exception as err:  # every failure: one line and its exit code
        return _failure(err, args.verbose)
    return errors.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
