"""The `sweepjax` command.

sweepjax run [EXPERIMENT] [--set key=value ...] [--out DIR] [--quiet]
sweepjax show OUT_DIR
sweepjax bench-schedules [EXPERIMENT] [--set key=value ...] [--out DIR] [--target ACC] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sweepjax.config import apply_overrides
from sweepjax.experiment import load_experiment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweepjax", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a sweep (an experiment in experiments/)")
    run.add_argument(
        "experiment", nargs="?", default="default", help="name or path (default: default)"
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key; dotted keys reach model options and space entries",
    )
    run.add_argument("--out", help="output directory (overrides out_dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or leaderboard")

    bench = commands.add_parser(
        "bench-schedules", help="benchmark schedule families (experiments/schedules.py)"
    )
    bench.add_argument(
        "experiment", nargs="?", default="schedules", help="name or path (default: schedules)"
    )
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    bench.add_argument("--out", help="output directory (overrides out_dir)")
    bench.add_argument(
        "--target", type=float, default=0.5, help="validation accuracy for steps-to-target"
    )
    bench.add_argument("--quiet", action="store_true", help="print nothing")

    show = commands.add_parser("show", help="print the leaderboard of a sweep directory")
    show.add_argument("out_dir")
    show.add_argument("--top", type=int, default=10)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from sweepjax.sweep import run

            config = apply_overrides(load_experiment(args.experiment), args.overrides)
            if args.out:
                config = config.replace(out_dir=args.out)
            run(config, quiet=args.quiet)
        elif args.command == "bench-schedules":
            from sweepjax.benchmark import bench_schedules

            config = apply_overrides(load_experiment(args.experiment), args.overrides)
            if args.out:
                config = config.replace(out_dir=args.out)
            bench_schedules(config, target=args.target, quiet=args.quiet)
        elif args.command == "show":
            from sweepjax.results import leaderboard, read_rows

            print(leaderboard(read_rows(f"{args.out_dir}/results.csv"), args.top))
    except ValueError as err:
        print(f"sweepjax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
