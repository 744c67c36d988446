"""The report and `show` on a finished sweep, an interrupted one and one with diverged members."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import struct

import numpy as np
import pytest

import sweepjax
from sweepjax.cli import main
from sweepjax.engine.schedules import learning_rate_at, schedule_parameters
from sweepjax.report import read_sweep, show, write_report
from sweepjax.report.analysis import member_schedules
from sweepjax.report.figure_curves import figure_schedules
from sweepjax.report.figures import FIGURES
from sweepjax.report.importance import MIN_FINISHED

# The figures of a fixed population without categorical dimensions
FIXED = set(FIGURES) - {"trials", "lineage", "groups"}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, tiny_config, tiny_data):
    """Three sweep directories, each with its report written once."""
    root = tmp_path_factory.mktemp("sweeps")
    finished = root / "finished"
    sweepjax.run(tiny_config.replace(out_dir=str(finished)), quiet=True, dataset=tiny_data)

    diverged = root / "diverged"  # the same structure as tiny_config: nothing recompiles
    wild = tiny_config.replace(
        space={
            "learning_rate": sweepjax.LogUniform(1e-2, 300.0),
            "momentum": sweepjax.Choice([0.0, 0.9]),
        },
        out_dir=str(diverged),
    )
    sweepjax.run(wild, quiet=True, dataset=tiny_data)

    # An interrupted sweep: the files as a sweep stopped after 2 of its 6 chunks leaves them.
    interrupted = root / "interrupted"
    shutil.copytree(finished, interrupted)
    summary = json.loads((interrupted / "sweep.json").read_text())
    summary["config"]["steps"] = 60
    (interrupted / "sweep.json").write_text(json.dumps(summary))
    with np.load(interrupted / "curves.npz") as f:
        np.savez(interrupted / "curves.npz", **{k: v[:2] for k, v in f.items()})

    # Results written before sweeps had tasks: no ranking in sweep.json, no test_loss column.
    legacy = root / "legacy"
    shutil.copytree(finished, legacy)
    summary = json.loads((legacy / "sweep.json").read_text())
    for key in ("rank_by", "rank_direction", "task"):
        del summary[key]
    (legacy / "sweep.json").write_text(json.dumps(summary))
    rows = _csv(legacy)
    with open(legacy / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c != "test_loss"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    dirs = {
        "finished": finished,
        "diverged": diverged,
        "interrupted": interrupted,
        "legacy": legacy,
    }
    for path in dirs.values():
        write_report(path)
    return dirs


def _csv(path):
    with open(path / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _drawn(out, figures):
    """`figures` but fANOVA's where fewer members finished than it needs."""
    finished = sum(r["status"] == "ok" for r in _csv(out))
    return figures if finished >= MIN_FINISHED else figures - {"importance"}


def _md_table(text, title):
    """Header and rows of the Markdown table under the heading that starts with `title`."""
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


@pytest.mark.parametrize("kind", ["finished", "interrupted", "diverged", "legacy"])
def test_report_files_exist_and_html_embeds_every_figure(sweeps, kind):
    out = sweeps[kind]
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    assert pngs == _drawn(out, FIXED)
    for name in pngs:
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count('<figure id="') == len(pngs)  # each a PNG or its interactive version
    for name in pngs:
        assert f'<figure id="{name}">' in page
    assert 'src="figures/' not in page  # self-contained
    markdown = (out / "report.md").read_text()
    for name in pngs:
        assert f"(figures/{name}.png)" in markdown


@pytest.mark.parametrize("kind", ["finished", "interrupted", "diverged", "legacy"])
def test_leaderboard_matches_results_csv(sweeps, kind):
    out = sweeps[kind]
    rows = _csv(out)
    markdown = (out / "report.md").read_text()
    header, cells = _md_table(markdown, "Leaderboard")
    assert "ranked by final_val_accuracy, highest first)" in markdown.split("\n## ")[1]
    healthy = [r for r in rows if r["status"] == "ok"]
    expected = sorted(healthy, key=lambda r: -float(r["final_val_accuracy"]))[:10]
    assert [c[header.index("member")] for c in cells] == [r["member"] for r in expected]
    for cell, row in zip(cells, expected, strict=True):
        for column in ("learning_rate", "final_val_accuracy", "test_accuracy"):
            assert float(cell[header.index(column)]) == pytest.approx(float(row[column]), 1e-3)
    diverged = [r for r in rows if r["status"] != "ok"]
    if diverged:
        header, cells = _md_table(markdown, "Diverged members")
        got = {c[header.index("member")]: c[header.index("diverged_at_step")] for c in cells}
        assert got == {r["member"]: r["diverged_at_step"] for r in diverged}
    else:
        assert "## Diverged members" not in markdown


def test_diverged_sweep_has_a_divergence_boundary(sweeps):
    out = sweeps["diverged"]
    rows = read_sweep(out).rows
    assert any(r["status"] == "diverged" for r in rows)
    boundary = sweepjax.divergence_boundary(rows)
    assert [b["setting"]["momentum"] for b in boundary] == pytest.approx([0.0, 0.9])
    for b in boundary:
        group = [r for r in rows if r["momentum"] == b["setting"]["momentum"]]
        bad = [r["learning_rate"] for r in group if r["status"] == "diverged"]
        good = [r["learning_rate"] for r in group if r["status"] == "ok"]
        assert b["smallest_diverged"] == (min(bad) if bad else None)
        assert b["largest_healthy"] == (max(good) if good else None)
    assert "## Divergence boundary (learning rate)" in (out / "report.md").read_text()


def test_the_report_has_the_fanova_importance_table(sweeps):
    markdown = (sweeps["finished"] / "report.md").read_text()
    header, cells = _md_table(markdown, "Importance of each hyperparameter (fANOVA, seeded)")
    assert header == ["hyperparameter", "scale", "share", "std over trees"]
    assert {c[0]: c[1] for c in cells} == {"learning_rate": "log", "momentum": "linear"}
    assert sum(float(c[2]) for c in cells) == pytest.approx(1.0, abs=1e-3)  # 3 decimals each
    assert "fitted on 8 finished members" in markdown


def test_schedules_follow_each_members_hyperparameters():
    rows = [
        {"member": i, "learning_rate": lr, "alpha": alpha, "status": "ok"}
        for i, (lr, alpha) in enumerate([(0.1, 0.0), (1.0, 0.5)])
    ]
    config = sweepjax.Config(optimizer="adam", schedule="cosine", steps=40).to_json()
    steps, lr = member_schedules(sweepjax.Result(rows, {}, {"config": config}))
    assert steps[0] == 0 and steps[-1] == 40 and lr.shape == (2, len(steps))
    np.testing.assert_allclose(lr[:, 0], [0.1, 1.0], rtol=1e-6)  # cosine from the peak ...
    np.testing.assert_allclose(lr[:, -1], [0.0, 0.5], atol=1e-6)  # ... to alpha * peak
    np.testing.assert_allclose(lr[0, steps == 20], 0.05, rtol=1e-5)
    config["model"] = "MyModule(features=3)"  # a user module is stored as its repr
    assert member_schedules(sweepjax.Result(rows, {}, {"config": config}))[1].shape == lr.shape
    config["schedule"] = "no_such_schedule"
    assert member_schedules(sweepjax.Result(rows, {}, {"config": config})) is None


def test_schedules_follow_each_members_own_family():
    families = ["cosine", "sgdr", "exponential", "inverse_time", "constant", "noisy_linear_cosine"]
    rows = [
        {"member": i, "learning_rate": 0.1 * (i + 1), "T_0": 6.0 + i, "seed": i,
         "schedule": family, "status": "ok"}
        for i, family in enumerate(families)
    ]  # fmt: skip
    space = {"schedule": sweepjax.Choice(families), "learning_rate": sweepjax.Uniform(0.1, 0.5),
             "T_0": sweepjax.Choice([6.0, 7.0, 8.0, 9.0, 10.0, 11.0])}  # fmt: skip
    config = sweepjax.Config(optimizer="sgd", space=space, steps=40).to_json()
    steps, lr = member_schedules(sweepjax.Result(rows, {}, {"config": config}))
    at = [0, 7, 20, 33, 40]
    assert set(at) <= set(steps.tolist())
    for row, got in zip(rows, lr, strict=True):
        # The member's own family with its own defaults: exponential decays by 0.1 over the
        # run, inverse_time by 1 / (1 + 9 t / 40); sgdr restarts after the member's T_0; the
        # noisy family draws its noise from the member's seed.
        hp = {**schedule_parameters(row["schedule"], 40), "learning_rate": row["learning_rate"],
              "seed": row["seed"]}  # fmt: skip
        hp["T_0"] = row["T_0"] if row["schedule"] == "sgdr" else hp.get("T_0")
        own = {k: v for k, v in hp.items() if v is not None}
        want = [float(learning_rate_at(row["schedule"], t, own)) for t in at]
        np.testing.assert_allclose(got[np.searchsorted(steps, at)], want, rtol=1e-6)
    assert lr[2, -1] == pytest.approx(0.3 * 0.1, rel=1e-6)  # exponential: 0.1 of its peak
    assert lr[3, -1] == pytest.approx(0.4 / 10, rel=1e-6)  # inverse_time: 1 / (1 + 9)
    fig = figure_schedules(sweepjax.Result(rows, {}, {"config": config}))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == sorted(families)
    assert len(fig.axes) == 1  # a legend of the families, no colour bar


def test_show_and_status_of_each_kind_of_sweep(sweeps, capsys):
    assert sweepjax.sweep_status(read_sweep(sweeps["finished"]).summary) == "finished"
    assert sweepjax.sweep_status(read_sweep(sweeps["interrupted"]).summary) == "interrupted"
    assert main(["show", str(sweeps["interrupted"])]) == 0
    text = capsys.readouterr().out
    assert "interrupted, step 30/60, 8 members" in text and "test_accuracy" in text
    assert re.search(r"diverged \(\d+\): #\d+ at step \d+", show(sweeps["diverged"]))
    assert "divergence boundary" in show(sweeps["diverged"])


def test_status_key_wins(sweeps, tmp_path):
    out = tmp_path / "running"
    shutil.copytree(sweeps["finished"], out, ignore=shutil.ignore_patterns("report.*", "figures"))
    summary = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").write_text(json.dumps({**summary, "status": "running"}))
    assert "running, step 30/30" in show(out)


def test_cli_report_on_partial_files(sweeps, tmp_path, capsys):
    out = tmp_path / "partial"
    out.mkdir()
    shutil.copy(sweeps["diverged"] / "results.csv", out)  # no curves.npz, no sweep.json
    assert main(["report", str(out), "--top", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert figures == _drawn(out, {"hyperparameters", "heatmap", "parallel", "importance"})
    _, cells = _md_table((out / "report.md").read_text(), "Leaderboard")
    assert len(cells) == 3
    assert show(out).startswith(f"{out}: unknown, 8 members")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"sweepjax: error: out_dir: {empty} holds no results (results.csv is missing); is it the "
        "out_dir of a sweep? A sweep writes them when it finishes or stops.\n"
    )
    with pytest.raises(ValueError, match=r"holds no results \(curves\.npz is missing\)"):
        sweepjax.read_result(out)  # strict: every file


def _torn(path):
    """The first third of a file, as a failing disk or a careless copy leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("results.csv", r"line \d+ has \d+ fields, the header \d+"),
        ("curves.npz", "File is not a zip file"),
        ("sweep.json", r"\w.*: line \d+ column \d+"),
    ],
    ids=["results.csv", "curves.npz", "sweep.json"],
)
def test_a_damaged_result_file_is_one_storage_error(sweeps, tmp_path, capsys, name, reason):
    out = tmp_path / "damaged"
    shutil.copytree(sweeps["finished"], out, ignore=shutil.ignore_patterns("report.*", "figures"))
    _torn(out / name)
    message = (
        rf"{re.escape(str(out / name))} is damaged \({reason}.*\); `sweepjax resume "
        rf"{re.escape(str(out))}` rewrites the result files from the sweep's checkpoint\."
    )
    for read in (show, write_report, sweepjax.read_result):
        with pytest.raises(sweepjax.StorageError, match=message):
            read(out)
    assert main(["show", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.fullmatch(f"sweepjax: error: {message}\n", err)
    assert not (out / "report.html").exists()


def test_top_must_be_a_positive_integer(sweeps, capsys):
    message = r"top: -1 is not allowed; allowed: a positive integer \(how many members to list\)"
    for make in (show, write_report):
        with pytest.raises(ValueError, match=message):
            make(sweeps["finished"], top=-1)
    assert main(["show", str(sweeps["finished"]), "--top", "0"]) == 2
    assert "top: 0 is not allowed" in capsys.readouterr().err


def _events(path):
    """The `Event` protos of a TFRecord event file (length, crc, data, crc per record)."""
    from tensorboardX.proto.event_pb2 import Event

    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        events.append(Event.FromString(data[at + 12 : at + 12 + length]))
        at += 12 + length + 4
    return events


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="no tensorboardX")
def test_tensorboard_logs_one_run_per_member_with_hparams(tiny_config, tiny_data, tmp_path):
    config = tiny_config.replace(tensorboard=True, out_dir=str(tmp_path))  # compiled already
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    runs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert runs == [f"member_{i:04d}" for i in range(8)]
    (events_file,) = (tmp_path / "tensorboard" / "member_0005").iterdir()
    values = [v for e in _events(events_file) for v in e.summary.value]
    tags = {v.tag for v in values}
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= tags
    assert {"train_loss", "val_loss", "val_accuracy", "diverged"} <= tags
    steps = [
        e.step
        for e in _events(events_file)
        if e.summary.value[:1] and e.summary.value[0].tag == "val_accuracy"
    ]
    assert steps == [10, 20, 30]


def test_tensorboard_needs_an_out_dir(tiny_config):
    with pytest.raises(ValueError, match="tensorboard: True needs an out_dir"):
        sweepjax.validate(tiny_config.replace(tensorboard=True, out_dir=None))
