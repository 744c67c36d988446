"""tools/mutate.py plants exactly one change per mutant, and its verdicts are real: a mutant
the tests catch is killed, the unchanged code survives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import mutate  # noqa: E402


def test_every_mutant_changes_one_line_of_its_function():
    mutants = mutate.list_mutants(
        "sweep/results.py", ["summarize", "rank_rows", "finished_rows", "leaderboard"]
    )
    changes = {m.change for m in mutants}
    assert {"Eq -> NotEq", "Gt -> GtE", "USub dropped", "And -> Or"} <= changes
    for mutant in mutants:
        compile(mutate.mutated_source(mutant), mutant.module, "exec")  # still Python
        assert len(mutate.changed_lines(mutant)) == 1, mutant


def test_every_target_names_functions_and_tests_that_exist():
    root = Path(mutate.ROOT)
    for module, functions, tests in mutate.TARGETS:
        assert mutate.list_mutants(module, functions), module  # SystemExit on a missing name
        for test in tests:
            assert (root / test.split("::")[0]).is_file(), (module, test)


def test_docstrings_annotations_and_messages_are_not_mutated():
    for mutant in mutate.list_mutants("search/space.py", ["SearchSpace.check_grid"]):
        ((before, _),) = mutate.changed_lines(mutant)
        assert not before.lstrip().startswith(("def ", '"', "raise ValueError(f")), mutant


def test_a_caught_mutant_is_killed_and_the_unchanged_code_survives():
    tests = ["tests/test_space.py::test_grid_size_mismatch_names_population"]
    (mutant,) = [
        m
        for m in mutate.list_mutants("search/space.py", ["SearchSpace.check_grid"])
        if m.change == "NotEq -> Eq"  # `if size != n: raise` turned around
    ]
    assert mutate.run_mutant(None, tests, timeout=300)["outcome"] == "survived"
    assert mutate.run_mutant(mutant, tests, timeout=300)["outcome"] == "killed"


def test_every_planted_bug_still_finds_its_text():
    import planted

    for bug in planted.BUGS:
        compile(bug.source(), bug.module, "exec")  # SystemExit when the text moved


FORKS_SCRIPT = """
import os
import subprocess
import sys
from pytest_forks import Forks
forks = Forks(jobs=2)
for key, timeout in (("passes", 60), ("fails", 60), ("hangs", 3)):
    forks.start(key, sys.argv[1], [f"test_{key}.py"], timeout)
print(sorted((k, o["returncode"]) for k, o in (forks.next_done() for _ in range(3))))
"""


@pytest.mark.subprocess
def test_forked_sessions_report_pass_fail_and_timeout(tmp_path):
    (tmp_path / "test_passes.py").write_text("def test_it():\n    assert True\n")
    (tmp_path / "test_fails.py").write_text("def test_it():\n    assert False\n")
    (tmp_path / "test_hangs.py").write_text("import time\n\ndef test_it():\n    time.sleep(60)\n")
    tools = str(Path(mutate.ROOT) / "tools")
    env = {**os.environ, "PYTHONPATH": tools}
    done = subprocess.run(
        [sys.executable, "-c", FORKS_SCRIPT, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[('fails', 1), ('hangs', None), ('passes', 0)]"


def test_a_test_that_does_not_exist_is_an_error_never_a_kill():
    assert mutate.outcome_of(1) == "killed" and mutate.outcome_of(2) == "killed"
    assert mutate.outcome_of(0) == "survived" and mutate.outcome_of(None) == "killed (timeout)"
    assert mutate.outcome_of(4).startswith("error") and mutate.outcome_of(5).startswith("error")
