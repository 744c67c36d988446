"""Write the table of config keys in docs/guide.md, between its markers, from the key specs
(`sweepjax.sweep.keys`); tests/test_config_keys.py fails while it is out of date.

Run:
    python tools/key_table.py
"""

from __future__ import annotations

from pathlib import Path

from sweepjax.sweep.config import Config
from sweepjax.sweep.keys import KEYS, markdown_table

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
BEGIN, END = "<!-- key table: begin -->\n", "\n<!-- key table: end -->"


def current_table() -> str:
    """The table the key specs give today."""
    return markdown_table(vars(Config()))


def guide_table(text: str) -> str:
    """The table between the markers of the guide's `text`."""
    return text.partition(BEGIN)[2].partition(END)[0]


def main() -> None:
    text = GUIDE.read_text()
    head, _, rest = text.partition(BEGIN)
    if not rest:
        raise SystemExit(f"{GUIDE}: no line {BEGIN.strip()!r} to write the table after.")
    GUIDE.write_text(head + BEGIN + current_table() + END + rest.partition(END)[2])
    print(f"wrote the table of {len(KEYS)} keys in {GUIDE}")


if __name__ == "__main__":
    main()
