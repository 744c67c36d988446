"""Reading and reporting a sweep directory: `show` for a terminal, `write_report` for a page.

The parts: `read` (where a sweep stands, the text of `sweepjax show`), `analysis` (the numbers:
dimensions and categories, the divergence boundary, each member's schedule), `importance`
(fANOVA), `figures` and its `figure_*` helpers (matplotlib PNGs), `interactive` and
`interactive_map` (Plotly figures), and `render` (`report.html`, `report.md`).

For example, on the folder `sweepjax run` writes:

    from sweepjax.report import show, write_report
    print(show("runs/default"))
    write_report("runs/default")  # runs/default/report.html
"""

from sweepjax.report.read import check_top, show, status_line, sweep_status
from sweepjax.report.render import leaderboard_rows, write_report
from sweepjax.sweep.read_results import read_summary, read_sweep

__all__ = [
    "check_top",
    "leaderboard_rows",
    "read_summary",
    "read_sweep",
    "show",
    "status_line",
    "sweep_status",
    "write_report",
]
