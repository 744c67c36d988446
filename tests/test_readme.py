"""The README's Python examples run as written, each in a fresh process from an empty folder.

A user copies them verbatim, so they are run verbatim: every ```python block of README.md must
exit 0 and leave its sweep's results in the `out_dir` it names.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 4  # the basic sweep, schedules, adaptive, a user's own model


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    source = BLOCKS[index]
    done = subprocess.run(
        [sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for out_dir in re.findall(r'out_dir="([^"]+)"', source):
        assert (tmp_path / out_dir / "results.csv").is_file(), out_dir
    for report_dir in re.findall(r'write_report\("([^"]+)"\)', source):
        assert (tmp_path / report_dir / "report.html").is_file(), report_dir
