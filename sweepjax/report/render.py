"""The report of a sweep directory: facts, tables and figures, as a page and as Markdown.

Members rank by the sweep's ranking metric in its direction (`rank_by`, `rank_direction` of
`sweep.json`, see `sweepjax.sweep.results.ranking`; results written before sweeps had tasks rank by
the final validation accuracy, highest first). The numbers come from `sweepjax.report.analysis`
and `sweepjax.report.importance`, the PNG figures from `sweepjax.report.figures`, their
interactive versions from `sweepjax.report.interactive`.
`write_report(out_dir)` writes into `out_dir`:
  * `figures/*.png`: the figures (matplotlib, no display needed);
  * `report.html`: one self-contained page that works offline: plotly.js inlined once, each
    figure interactive where it has an interactive version, else its PNG embedded;
  * `report.md`: the same in Markdown, linking the PNG files.
"""

from __future__ import annotations

import base64
import html
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweepjax.files import atomic_write
from sweepjax.report.analysis import (
    as_number,
    config_of,
    divergence_boundary,
    format_value,
    is_diverged,
)
from sweepjax.report.figure_axes import sweep_title, write_png
from sweepjax.report.figures import FIGURES, caption_of
from sweepjax.report.importance import importance_table
from sweepjax.report.interactive import figure_html, plotly_script
from sweepjax.report.read import (
    check_top,
    no_results_yet,
    read_folder,
    status_line,
    written_while,
)
from sweepjax.sweep.code_record import UserCodeWarning, schedule_problems
from sweepjax.sweep.columns import hyperparameter_columns
from sweepjax.sweep.results import RANK_BY, Result, metric_of, rank_rows, ranking


def leaderboard_rows(
    rows: Sequence[Mapping[str, Any]], top: int = 10, column: str = RANK_BY, direction: str = "max"
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The best `top` healthy members by `column` in `direction` (best first) and every
    diverged member (by step).

    >>> rows = [{"member": 0, "status": "ok", "final_val_accuracy": 0.5, "diverged_at_step": -1},
    ...         {"member": 1, "status": "ok", "final_val_accuracy": 0.9, "diverged_at_step": -1},
    ...         {"member": 2, "status": "diverged", "final_val_accuracy": 0.1, "diverged_at_step": 7}]
    >>> [[r["member"] for r in part] for part in leaderboard_rows(rows)]
    [[1, 0], [2]]
    """
    diverged = sorted(
        (r for r in rows if is_diverged(r)),
        key=lambda r: (as_number(r.get("diverged_at_step")), r["member"]),
    )
    return rank_rows(rows, column, direction)[:top], diverged


Table = tuple[str, list[str], list[list[str]]]  # title, header, cells


def _tables(result: Result, top: int) -> list[Table]:
    """The report's tables: the leaderboard, the diverged members and the divergence boundary,
    each where it has rows, and the importance of each hyperparameter (or why there is none)."""
    rows = result.rows
    column, direction = ranking(result.summary)
    best, diverged = leaderboard_rows(rows, top, column, direction)
    tables = [_leaderboard_table(rows, best, column, direction)]
    hps = hyperparameter_columns(rows)
    if diverged:
        header = ["member", *hps, "diverged_at_step", "final_train_loss"]
        cells = [[format_value(r.get(c)) for c in header] for r in diverged]
        tables.append((f"Diverged members ({len(diverged)})", header, cells))
    boundary = divergence_boundary(rows)
    if boundary:
        groups = list(boundary[0]["setting"])
        header = [*groups, "members", "diverged", "smallest diverged lr", "largest healthy lr"]
        keys = ("members", "diverged", "smallest_diverged", "largest_healthy")
        cells = [
            [*(format_value(b["setting"][g]) for g in groups), *(format_value(b[k]) for k in keys)]
            for b in boundary
        ]
        tables.append(("Divergence boundary (learning rate)", header, cells))
    tables.append(importance_table(result))
    return tables


def _leaderboard_table(rows, best, column: str, direction: str) -> Table:
    """The leaderboard: the hyperparameters, then the ranking metric's final, best and test
    values, the final validation and train losses."""
    metric = metric_of(column)
    wanted = (column, f"best_val_{metric}", "final_val_loss", "final_train_loss", f"test_{metric}")
    metrics = [m for m in dict.fromkeys(wanted) if rows and m in rows[0]]
    columns = [*hyperparameter_columns(rows), *metrics]
    healthy = sum(not is_diverged(r) for r in rows)
    order = "highest" if direction == "max" else "lowest"
    title = (
        f"Leaderboard (top {len(best)} of {healthy} healthy members, ranked by {column}, "
        f"{order} first)"
    )
    cells = [
        [str(k + 1), str(r["member"]), *(format_value(r[c]) for c in columns)]
        for k, r in enumerate(best)
    ]
    return title, ["rank", "member", *columns], cells


def _facts(result: Result) -> list[tuple[str, str]]:
    summary, config = result.summary, config_of(result.summary)
    facts = [("status", status_line(result))]
    for key in (
        "dataset",
        "optimizer",
        "schedule",
        "searcher",
        "population",
        "steps",
        "batch_size",
    ):
        if key == "dataset" and isinstance(summary.get("dataset"), str):
            facts.append((key, summary["dataset"]))  # what was trained on, described
        elif key in config:
            facts.append((key, format_value(config[key])))
    model = config.get("model")
    if model is not None:
        facts.append(("model", json.dumps(model) if isinstance(model, dict) else str(model)))
    if isinstance(config.get("space"), dict):
        facts.append(("space", json.dumps(config["space"])))
    facts += _trial_facts(summary, config)
    for key in ("device", "compile_seconds", "train_seconds"):
        if key in summary:
            facts.append((key, format_value(summary[key])))
    speed = summary.get("member_steps_per_second")
    if isinstance(speed, int | float):
        facts.append(("member_steps_per_second", f"{speed:,.0f}"))
    return facts


def _trial_facts(summary: Mapping[str, Any], config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An adaptive sweep's scheduler, how its trials ended, and the compute it spent."""
    if "trials" not in summary:
        return []
    counts = {s: summary.get(f"trials_{s}", 0) for s in ("finished", "stopped", "diverged")}
    ended = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    full = summary["trials"] * config.get("steps", 0)
    spent = summary.get("member_steps", 0)
    share = f" ({spent / full:.0%} of every trial's full budget)" if full else ""
    return [
        ("scheduler", format_value(config.get("scheduler"))),
        ("trials", f"{summary['trials']} ({ended})"),
        ("member-steps", f"{spent:,}{share}; slots ran {summary.get('slot_steps', 0):,}"),
    ]


def write_report(out_dir: str | os.PathLike, top: int = 10) -> Path:
    """Write the figures, `report.html` (figures embedded) and `report.md` of a sweep directory.

    Args:
      out_dir: a sweep directory (finished, interrupted or running).
      top: how many healthy members the leaderboard lists.

    Returns:
      The path of `report.html`.

    Raises:
      ValueError: `top` is not a positive integer, or `out_dir` holds no results (a
        `FolderBusy` while a sweep that has written none yet runs there).
      StorageError: a result file is damaged or cannot be read.

    While a sweep runs in `out_dir`, the report is of the results it wrote last (an earlier
    run's), and says so. The schedule families the user registered are imported from where
    the folder records them; one that cannot be leaves out the schedules figure with a
    `UserCodeWarning` and a line in the report naming it.
    """
    check_top(top)
    result, running = read_folder(out_dir)
    if result is None:
        raise no_results_yet(out_dir, running)
    out = Path(out_dir)
    left_out = [
        f"the schedules figure: {problem}"
        for problem in schedule_problems(config_of(result.summary))
    ]
    for line in left_out:
        warnings.warn(f"report of {out_dir} leaves out {line}", UserCodeWarning, stacklevel=2)
    figures: list[tuple[str, str, bytes]] = []
    plots: dict[str, str] = {}  # the interactive versions, for report.html
    for name, (make, _) in FIGURES.items():
        fig = make(result)
        if fig is None:
            continue
        png = write_png(fig, out / "figures" / f"{name}.png")
        figures.append((name, caption_of(name, result), png))
        plot = figure_html(name, result)
        if plot is not None:
            plots[name] = plot
    tables = _tables(result, top)
    facts = _facts(result) + [("left out", line) for line in left_out]
    if running is not None:
        facts.insert(0, ("running", written_while(running, result)))
    title = f"sweepjax report: {sweep_title(result)}"
    atomic_write(out / "report.md", lambda f: f.write(_markdown(title, facts, tables, figures)))
    page = _html(title, facts, tables, figures, plots)
    atomic_write(out / "report.html", lambda f: f.write(page))
    return out / "report.html"


def _markdown(title, facts, tables, figures) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    for name, header, cells in tables:
        lines += ["", f"## {name}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(c) + " |" for c in cells]
    for name, caption, _ in figures:
        lines += ["", f"## {caption}", "", f"![{caption}](figures/{name}.png)"]
    return "\n".join(lines) + "\n"


def _html(title, facts, tables, figures, plots: Mapping[str, str]) -> str:
    """The page: facts, tables, then each figure, interactive where `plots` has it, else its
    PNG; plotly.js inlined once."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:0.9em}"
        "th{background:#eee}img{max-width:100%;border:1px solid #ddd}"
        "dt{font-weight:bold;float:left;clear:left;width:14em}dd{margin-left:15em}"
        "figure{margin:0 0 2em}</style>",
        plotly_script() if plots else "",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        "<dl>",
        *(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts),
        "</dl>",
    ]
    for name, header, cells in tables:
        parts.append(f"<h2>{e(name)}</h2><table><tr>")
        parts.append("".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in cells]
        parts.append("</table>")
    for name, caption, png in figures:
        body = plots.get(name)
        if body is None:
            data = base64.b64encode(png).decode("ascii")
            body = f'<img alt="{e(caption)}" src="data:image/png;base64,{data}">'
        parts.append(f'<h2>{e(caption)}</h2><figure id="{name}">{body}</figure>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
