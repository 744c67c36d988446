"""Mutation testing: plant one small change at a time in the code that computes what users read,
run the tests that should notice, and list the changes no test noticed (the survivors).

A mutant changes one operator or constant in one function: `<` to `<=`, `+` to `-`, `max` to
`min`, `argmax` to `argmin`, `and` to `or`, `True` to `False`, an integer `n` to `n + 1`, a
`not` or a unary minus dropped, a call statement removed. Strings are left alone (a changed
message is not a wrong number). Each mutant runs in its own copy of the checkout, its tests run
there with `pytest -x` in a session forked from this process, which imported the heavy libraries
once (`pytest_forks.py`: about a third of a fresh process's time); a failing or timed-out run
kills it. `docs/testing.md` lists the
targets, the survivors and what was done about each.

Run:
    python tools/mutate.py --list                      # the mutants, without running them
    python tools/mutate.py --jobs 2 --json mutants.json
    python tools/mutate.py --only results.py:summarize:3 --show   # one mutant's change
    python tools/mutate.py --only tasks.py --tests tests/test_tasks.py   # other tests
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_forks import PYTEST_ARGS, Forks

ROOT = Path(__file__).resolve().parent.parent

READ_BY_USERS = ["tests/test_metrics_recomputed_apart.py"]
# (module, functions or methods, the tests that should notice a change in them)
TARGETS = [
    ("engine/evaluation.py", ["_eval_batches", "_evaluate_members"], [*READ_BY_USERS, "tests/test_layout.py"]),
    (
        "sweep/results.py",
        ["Result.ranked", "Result.best", "rank_rows", "finished_rows", "member_rows", "summarize", "leaderboard"],
        [*READ_BY_USERS, "tests/test_report.py", "tests/test_cli.py", "tests/test_tasks.py"],
    ),
    (
        "report/analysis.py",
        [
            "varying_dimensions", "is_log_scale",
            "rank_correlation", "important_pair", "divergence_boundary", "member_schedules",
            "best_index", "is_categorical", "categories",
        ],
        ["tests/test_report_analysis_by_hand.py", "tests/test_report.py", "tests/test_cli.py",
         "tests/test_report_tasks.py"],
    ),
    (
        "report/importance.py",
        ["finished_members", "fit_scales", "_why_not", "fanova_importance", "_fit_values",
         "_distributions", "_spreads"],
        ["tests/test_importance.py", "tests/test_report.py"],
    ),
    (
        "report/figure_groups.py",
        ["group_stats"],
        ["tests/test_report_analysis_by_hand.py"],
    ),
    (
        "report/figure_history.py",
        ["best_so_far", "member_steps", "seconds_at", "optimization_history"],
        ["tests/test_report_analysis_by_hand.py", "tests/test_report_tasks.py"],
    ),
    (
        "report/read.py",
        ["sweep_status", "status_line"],
        ["tests/test_report_analysis_by_hand.py", "tests/test_report.py", "tests/test_cli.py",
         "tests/test_report_tasks.py"],
    ),
    (
        "report/render.py",
        ["leaderboard_rows", "_facts"],
        ["tests/test_report_analysis_by_hand.py", "tests/test_report.py", "tests/test_cli.py",
         "tests/test_report_tasks.py"],
    ),
    (
        "search/space.py",
        ["HParams.member", "HParams.select", "SearchSpace.grid_size", "SearchSpace.check_grid",
         "SearchSpace.sample", "SearchSpace._draw", "SearchSpace._grid_points"],
        ["tests/test_space.py", "tests/test_config.py"],
    ),
    # The policies, the tasks and the trial bookkeeping: every function of the module (None).
    ("search/schedulers.py", None, ["tests/test_scheduler_references.py", "tests/test_schedulers.py"]),
    ("search/pbt.py", None, ["tests/test_pbt_references.py", "tests/test_schedulers.py"]),
    ("search/protocol.py", None, ["tests/test_scheduler_references.py", "tests/test_pbt_references.py",
                                    "tests/test_schedulers.py"]),
    ("sweep/policies.py", None, ["tests/test_search_references.py", "tests/test_searchers.py",
                                   "tests/test_schedulers.py"]),
    ("search/searchers.py", None, ["tests/test_search_references.py", "tests/test_searchers.py"]),
    ("search/optuna_search.py", None, ["tests/test_optuna_references.py", "tests/test_search_references.py",
                                         "tests/test_searchers.py"]),
    ("integrations/optuna_study.py", None, ["tests/test_optuna_references.py", "tests/test_refill_rederived.py"]),
    ("engine/tasks.py", None, ["tests/test_task_references.py"]),
    ("sweep/trials.py", None, ["tests/test_trial_bookkeeping.py", *READ_BY_USERS]),
    ("sweep/trial_results.py", None, ["tests/test_trial_bookkeeping.py", *READ_BY_USERS]),
    ("sweep/sweep_state.py", None, ["tests/test_trial_bookkeeping.py"]),
    ("sweep/slot_changes.py", None, ["tests/test_trial_bookkeeping.py", "tests/test_structures.py"]),
    ("sweep/block_plan.py", None, ["tests/test_structures.py"]),
    ("sweep/frames.py", None, ["tests/test_frames_by_hand.py", "tests/test_frames.py"]),
    ("sweep/columns.py", None, ["tests/test_report_analysis_by_hand.py", "tests/test_report_tasks.py"]),
]  # fmt: skip

SWAPS = {  # operator and name replacements
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Add: ast.Sub, ast.Sub: ast.Add,
    ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult, ast.Pow: ast.Mult,
    ast.And: ast.Or, ast.Or: ast.And,
}  # fmt: skip
NAMES = {"max": "min", "min": "max", "argmax": "argmin", "argmin": "argmax", "any": "all",
         "all": "any", "nanmax": "nanmin", "nanmin": "nanmax", "argsort": "sort"}  # fmt: skip


Site = Callable[[ast.AST], None] | str  # how a site's node changes, or `_DROP`


@dataclasses.dataclass(frozen=True)
class Mutant:
    module: str
    function: str
    index: int  # the function's n-th mutable site, in `ast.walk` order
    line: int
    change: str

    @property
    def id(self) -> str:
        return f"{self.module}:{self.function}:{self.index}"

    def source(self) -> str:
        return mutated_source(self)


def _sites(node: ast.AST) -> Iterator[tuple[ast.AST, str, Site]]:
    """Each site in `node` once: `(node, description, apply)`, `apply` mutating the node."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in SWAPS:
                yield node, f"{type(op).__name__} -> {SWAPS[type(op)].__name__}", _set_op(i)
    elif isinstance(node, ast.BinOp | ast.AugAssign | ast.BoolOp) and type(node.op) in SWAPS:
        yield node, f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}", _set_op(None)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        yield node, f"{type(node.op).__name__} dropped", _DROP
    elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
        new = (not node.value) if isinstance(node.value, bool) else node.value + 1
        yield node, f"{node.value!r} -> {new!r}", lambda n, new=new: setattr(n, "value", new)
    elif isinstance(node, ast.Name | ast.Attribute) and _name(node) in NAMES:
        yield node, f"{_name(node)} -> {NAMES[_name(node)]}", _rename
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield node, "call statement removed", _DROP


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr


def _rename(node: ast.AST) -> None:
    setattr(node, "id" if isinstance(node, ast.Name) else "attr", NAMES[_name(node)])


def _set_op(i: int | None):
    def apply(node):
        if i is None:
            node.op = SWAPS[type(node.op)]()
        else:
            node.ops[i] = SWAPS[type(node.ops[i])]()

    return apply


_DROP = "drop"  # the node is replaced: its operand for a unary operator, `pass` for a call


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = item
    return found


def _body_nodes(function: ast.FunctionDef) -> Iterator[ast.AST]:
    """The function's statements' nodes, skipping its docstring, annotations and f-strings."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    nodes = [node for statement in body for node in ast.walk(statement)]
    skipped = set()
    for node in nodes:
        parts = [node] if isinstance(node, ast.JoinedStr) else []
        parts += [getattr(node, "annotation", None), getattr(node, "returns", None)]
        skipped |= {id(n) for part in parts if part is not None for n in ast.walk(part)}
    return (node for node in nodes if id(node) not in skipped)


def list_mutants(module: str, functions: Sequence[str] | None) -> list[Mutant]:
    """The mutants of `functions` in `module` (None: of all its functions and methods)."""
    tree = ast.parse((ROOT / "sweepjax" / module).read_text())
    defs, mutants = _functions(tree), []
    for name in defs if functions is None else functions:
        if name not in defs:
            raise SystemExit(f"tools/mutate.py: {module} has no function {name!r}")
        for index, (node, change, _) in enumerate(_all_sites(defs[name])):
            mutants.append(Mutant(module, name, index, getattr(node, "lineno", 0), change))
    return mutants


def _all_sites(function: ast.FunctionDef) -> list[tuple[ast.AST, str, Site]]:
    return [site for node in _body_nodes(function) for site in _sites(node)]


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST):
        self.target, self.replacement = target, replacement

    def generic_visit(self, node):
        if node is self.target:
            return self.replacement
        return super().generic_visit(node)


def mutated_source(mutant: Mutant) -> str:
    """The module's source with the one change of `mutant`."""
    tree = ast.parse((ROOT / "sweepjax" / mutant.module).read_text())
    node, _, apply = _all_sites(_functions(tree)[mutant.function])[mutant.index]
    if apply == _DROP:
        replacement = ast.Pass() if isinstance(node, ast.Expr) else copy.deepcopy(node.operand)
        tree = _Replace(node, ast.copy_location(replacement, node)).visit(tree)
    else:
        apply(node)
    return ast.unparse(ast.fix_missing_locations(tree))


COPIED = ["sweepjax", "tests", "experiments", "tools", "docs", "pyproject.toml", "README.md"]


def _copy_checkout(to: Path) -> None:
    """The files the tests read, in `to`: the tests run there, so the copy is what they import."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, to / name)


def outcome_of(returncode: int | None) -> str:
    """A pytest run's verdict on a mutant: failing tests (1), or a module that no longer
    imports (2), kill it; exit 4 or 5 (no such test, none collected) is an error of the plan,
    never a kill."""
    if returncode is None:
        return "killed (timeout)"
    if returncode in (4, 5):
        return f"error (pytest exit {returncode}: no such test)"
    return "survived" if returncode == 0 else "killed"


def _write_copy(to: Path, mutant: Any) -> None:
    """The checkout in `to`, with `mutant`'s change (None: unchanged)."""
    _copy_checkout(to)
    if mutant is not None:
        (to / "sweepjax" / mutant.module).write_text(mutant.source())


def run_mutant(mutant: Any, tests: Sequence[str], timeout: float) -> dict:
    """Run `tests` against `mutant` (a dataclass with `id`, `module` and `source()`; None: the
    code as it is) in a copy of the checkout; `killed` unless they all pass."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        _write_copy(Path(tmp), mutant)
        # First on the path of the tests and of any `sweepjax` command they start.
        env = {**os.environ, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, "-m", "pytest", *PYTEST_ARGS]
        began = time.perf_counter()
        try:
            done = subprocess.run(
                [*command, *tests], cwd=tmp, env=env, capture_output=True, timeout=timeout
            )
            outcome = outcome_of(done.returncode)
            tail = done.stdout.decode(errors="replace").strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            outcome, tail = outcome_of(None), []
    seconds = round(time.perf_counter() - began, 1)
    result = {"outcome": outcome, "seconds": seconds, "last_line": tail[0] if tail else ""}
    if mutant is None:
        return {"tests": list(tests), **result}
    return {**dataclasses.asdict(mutant), "id": mutant.id, **result}


def _plan(only: Sequence[str], tests: Sequence[str]) -> list[tuple[Mutant, list[str]]]:
    """Each selected mutant with the tests it runs: its target's, or `tests` where given."""
    plan = []
    for module, functions, target_tests in TARGETS:
        for mutant in list_mutants(module, functions):
            if not only or any(mutant.id == o or mutant.id.startswith(o + ":") for o in only):
                plan.append((mutant, list(tests or target_tests)))
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--show", action="store_true", help="print each mutant's changed line")
    parser.add_argument("--only", nargs="*", default=[], help="mutant ids or id prefixes")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    parser.add_argument("--json", help="write every outcome to this file")
    parser.add_argument("--tests", nargs="*", default=[], help="run these tests instead")
    args = parser.parse_args(argv)
    plan = _plan(args.only, args.tests)
    if args.list or args.show:
        for mutant, _ in plan:
            print(f"{mutant.id}  line {mutant.line}: {mutant.change}")
            if args.show:
                print("   ", *(after.strip() for _, after in changed_lines(mutant)))
        return 0
    return _run_plan(plan, args)


def changed_lines(mutant: Mutant) -> list[tuple[str, str]]:
    """`(before, after)` of each line the mutant changes, both sides as `ast.unparse` writes them."""
    before = ast.unparse(ast.parse((ROOT / "sweepjax" / mutant.module).read_text())).splitlines()
    after = mutated_source(mutant).splitlines()
    return [(a, b) for a, b in zip(before, after, strict=True) if a != b]


def _run_plan(plan: list[tuple[Mutant, list[str]]], args: argparse.Namespace) -> int:
    """Each mutant's tests in a forked pytest session (`pytest_forks`), after the unchanged code
    passed every test selection (else every mutant would count as killed)."""
    forks, folders = Forks(args.jobs), {}

    def launch(key: Any, mutant: Mutant | None, tests: Sequence[str]) -> None:
        folders[key] = tempfile.TemporaryDirectory(prefix="mutant-")
        _write_copy(Path(folders[key].name), mutant)
        forks.start(key, folders[key].name, tests, args.timeout)

    def collect() -> tuple[Any, dict]:
        key, ended = forks.next_done()
        folders.pop(key).cleanup()
        return key, {
            **ended,
            "outcome": outcome_of(ended["returncode"]),
        }

    test_sets = sorted({tuple(tests) for _, tests in plan})
    for tests in test_sets:
        launch(tests, None, tests)
    for _ in test_sets:
        tests, unchanged = collect()
        if unchanged["outcome"] != "survived":
            print(f"the unchanged code fails {list(tests)}: {unchanged}", file=sys.stderr)
            return 1
    by_id, outcomes = {m.id: m for m, _ in plan}, []

    def record() -> None:
        key, ended = collect()
        outcomes.append({**dataclasses.asdict(by_id[key]), "id": key, **ended})
        print(f"[{len(outcomes)}/{len(plan)}] {key} ({by_id[key].change}): "
              f"{ended['outcome']} in {ended['seconds']} s", flush=True)  # fmt: skip

    for mutant, tests in plan:
        launch(mutant.id, mutant, tests)
        while forks.finished:  # ended while waiting for a free job: report them now
            record()
    while len(outcomes) < len(plan):
        record()
    return _report(outcomes, args.json)


def _report(outcomes: list[dict], json_path: str | None) -> int:
    outcomes.sort(key=lambda o: (o["module"], o["function"], o["index"]))
    survivors = [o for o in outcomes if o["outcome"] == "survived"]
    print(f"\n{len(outcomes)} mutants, {len(outcomes) - len(survivors)} killed, "
          f"{len(survivors)} survived")  # fmt: skip
    for o in survivors:
        print(f"  {o['id']}  line {o['line']}: {o['change']}")
    if json_path:
        Path(json_path).write_text(json.dumps(outcomes, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
