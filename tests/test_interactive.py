"""The report's interactive figures (`sweepjax.report.interactive`), in numbers: the axes of the
parallel coordinates, hover texts, colours per category, the heat map's grid means and its
linear interpolation, and `report.html` holding plotly.js once with every figure's div."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import result_row

from sweepjax.report import write_report
from sweepjax.report.figures import FIGURES
from sweepjax.report.interactive import (
    INTERACTIVE,
    MAX_CURVE_POINTS,
    colour_groups,
    figure_curves,
    figure_hyperparameters,
    figure_parallel,
    plotly_script,
    thinned,
)
from sweepjax.report.interactive_map import figure_heatmap, grid_means, interpolate
from sweepjax.sweep.results import Result, write_result

NAN = float("nan")
SPACE = {
    "learning_rate": {"distribution": "LogUniform", "low": 1e-4, "high": 1.0},
    "momentum": {"distribution": "Uniform", "low": 0.0, "high": 0.9},
    "optimizer": {"distribution": "Choice", "values": ["sgd", "adam", "lion"]},
}


def hand_made_sweep(members: int = 12, evaluations: int = 20, seed: int = 0) -> Result:
    """A classification sweep made by hand: a log-uniform learning rate (best near 0.01), a
    momentum, an optimizer family, member 0 diverged at step 80 with the largest learning
    rate; curves rise to each member's final accuracy."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, 0, members)
    lr[0] = 0.9
    momentum = rng.uniform(0, 0.9, members)
    optimizer = [("sgd", "adam", "lion")[i % 3] for i in range(members)]
    steps = np.linspace(0, 200, evaluations).round().astype(int)
    final = 0.4 + 0.5 * np.clip(1 - (np.log10(lr) + 2) ** 2 / 4 - 0.1 * momentum, 0, 1)
    accuracy = 0.33 + (final - 0.33)[None, :] * (1 - np.exp(-steps / 50.0))[:, None]
    accuracy[steps > 80, 0] = np.nan
    final[0] = np.nan
    hps = [
        {"learning_rate": float(lr[i]), "momentum": float(momentum[i]), "optimizer": optimizer[i]}
        for i in range(members)
    ]
    rows = [
        result_row(i, float(final[i]), 80 if i == 0 else -1, **hps[i], seed=i)
        for i in range(members)
    ]
    curves = {
        "steps": steps,
        "train_loss": 1 - accuracy,
        "val_loss": 1 - accuracy,
        "val_accuracy": accuracy,
    }
    config = {"space": SPACE, "steps": 200, "schedule": "cosine", "population": members}
    return Result(rows, curves, {"config": config, "steps_done": 200})


def write_hand_made_sweep(out, members: int = 12, evaluations: int = 20):
    """Write the hand-made sweep's results and report into `out`; the path of report.html."""
    write_result(hand_made_sweep(members, evaluations), out)
    return write_report(out)


def _table(summary=None) -> Result:
    """Six members: a log-uniform learning rate, an optimizer family, member 4 diverged."""
    lrs = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 3e-3]
    optimizers = ["sgd", "adam", "sgd", "lion", "adam", "adam"]
    accuracy = [0.5, 0.7, 0.9, 0.6, NAN, 0.8]
    rows = [
        result_row(i, a, 5 if a != a else -1, learning_rate=lr, optimizer=o, seed=i % 2)
        for i, (lr, o, a) in enumerate(zip(lrs, optimizers, accuracy, strict=True))
    ]
    return Result(rows, {}, {"config": {"space": SPACE}, **(summary or {})})


def test_parallel_coordinates_axes_log_categorical_and_the_metric():
    (trace,) = figure_parallel(_table()).data
    labels = [d.label for d in trace.dimensions]
    assert labels == ["learning rate (log)", "optimizer", "final validation accuracy"]
    lr, optimizer, metric = trace.dimensions
    # healthy members only, worst first: accuracies 0.5 0.6 0.7 0.8 0.9 (members 0 3 1 5 2)
    assert list(metric.values) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert list(metric.range) == [0.5, 0.9]
    assert np.allclose(lr.values, np.log10([1e-4, 0.1, 1e-3, 3e-3, 1e-2]))
    assert list(lr.range) == [-4.0, -1.0]  # the diverged member's 1.0 is not drawn
    assert list(lr.ticktext) == ["0.0001", "0.001", "0.01", "0.1"]
    assert np.allclose(lr.tickvals, [-4, -3, -2, -1])
    assert list(optimizer.ticktext) == ["adam", "lion", "sgd"]
    assert list(optimizer.tickvals) == [0, 1, 2]
    assert list(optimizer.values) == [2, 1, 0, 0, 2]
    assert list(trace.line.color) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert (trace.line.cmin, trace.line.cmax, trace.line.reversescale) == (0.5, 0.9, False)


def test_a_swept_seed_is_a_categorical_axis_and_a_min_metric_reverses_the_colours():
    space = {**SPACE, "seed": {"distribution": "Choice", "values": [0, 1]}}
    result = _table({"config": {"space": space}})
    for row in result.rows:
        row["final_val_mse"] = 1.0 - row["final_val_accuracy"]
    result.summary.update(rank_by="final_val_mse", rank_direction="min")
    (trace,) = figure_parallel(result).data
    seed = trace.dimensions[2]
    assert seed.label == "seed"
    assert list(seed.ticktext) == ["0", "1"]
    assert trace.dimensions[-1].label == "final validation mse"
    assert trace.line.reversescale  # the lowest mse: the bright end
    assert trace.line.cmin == pytest.approx(0.1) and trace.line.cmax == pytest.approx(0.5)


def test_hover_texts_name_each_member_its_hyperparameters_and_metrics():
    result = hand_made_sweep()
    fig = figure_hyperparameters(result)
    hovers = [t for trace in fig.data for t in trace.hovertext]
    for member in range(12):
        assert any(t.startswith(f"<b>member {member}</b>") for t in hovers)
    assert "<b>member 0</b> (diverged at step 80)" in " ".join(hovers)
    for name in ("learning_rate = ", "momentum = ", "optimizer = ", "final_val_accuracy = "):
        assert all(name in t for t in hovers)
    curves = figure_curves(result)  # a trace per member: its text once
    texts = {trace.text for trace in curves.data if trace.text is not None}
    assert {t.split(":")[0] for t in texts} == {f"member {m}" for m in range(12)}
    assert "member 5: learning_rate=0.4477, momentum=0.4873, optimizer=lion" in texts
    points = [t for trace in figure_heatmap(result).data[1:] for t in trace.hovertext]
    assert len(points) == 12 + 1  # every member, and the best once more under its star


def test_each_category_gets_its_own_colour_and_legend_entry():
    fig = figure_hyperparameters(hand_made_sweep())
    colours = {t.name: t.marker.color for t in fig.data if t.name.startswith("optimizer")}
    assert set(colours) == {"optimizer = adam", "optimizer = lion", "optimizer = sgd"}
    assert len(set(colours.values())) == 3
    assert [t.name for t in fig.data if t.showlegend] == [
        "optimizer = adam", "optimizer = lion", "optimizer = sgd",
        "diverged (on the worse edge)", "best",
    ]  # fmt: skip
    many = Result([result_row(i, 0.5, family=f"f{i:02d}") for i in range(14)], {}, {})
    assert len(set(colour_groups(many)[1].values())) == 14  # beyond ten: a longer palette


def test_diverged_members_are_grey_crosses_on_the_worse_edge():
    fig = figure_hyperparameters(_table())
    (crosses,) = [t for t in fig.data if t.name.startswith("diverged") and t.showlegend]
    assert crosses.marker.symbol == "x" and crosses.marker.color == "grey"
    assert list(crosses.y) == [pytest.approx(0.5 - 0.08 * 0.4)]  # below the worst healthy


def test_the_heat_map_of_a_grid_averages_repeats():
    grid = [(lr, wd, seed) for lr in (1e-3, 1e-2, 1e-1) for wd in (1e-4, 1e-3) for seed in (0, 1)]
    accuracy = [0.5 + 0.1 * np.log10(lr / 1e-3) + 0.02 * seed for lr, _, seed in grid]
    rows = [
        result_row(i, a, learning_rate=lr, weight_decay=wd, seed=seed)
        for i, (a, (lr, wd, seed)) in enumerate(zip(accuracy, grid, strict=True))
    ]
    space = {n: {"distribution": "LogUniform"} for n in ("learning_rate", "weight_decay")}
    surface = figure_heatmap(Result(rows, {}, {"config": {"space": space}})).data[0]
    assert surface.type == "heatmap"
    assert np.allclose(surface.x, [-3, -2, -1]) and np.allclose(surface.y, [-4, -3])
    assert np.allclose(surface.z, [[0.51, 0.61, 0.71], [0.51, 0.61, 0.71]])  # mean over seeds


@pytest.mark.parametrize("seed", range(5))
def test_interpolation_stays_within_the_members_and_is_blank_outside_their_hull(seed):
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    u, v = rng.uniform(-4, 0, 15), rng.uniform(0, 0.9, 15)
    z = rng.normal(size=15)
    us, vs, surface = interpolate(u, v, z, size=50)
    inside = np.isfinite(surface)
    assert inside.mean() > 0.3
    assert surface[inside].min() >= z.min() - 1e-12 and surface[inside].max() <= z.max() + 1e-12
    low, span = np.array([u.min(), v.min()]), np.array([np.ptp(u), np.ptp(v)])
    grid = np.stack(np.meshgrid(us, vs), -1)
    outside = Delaunay((np.stack([u, v], 1) - low) / span).find_simplex((grid - low) / span) < 0
    assert np.array_equal(~inside, outside)


def test_the_heat_map_of_scattered_members_reaches_no_value_they_did_not():
    result = hand_made_sweep(members=30)
    surface = figure_heatmap(result).data[0]
    z = np.asarray(surface.z, float)
    healthy = [r["final_val_accuracy"] for r in result.rows if r["status"] == "ok"]
    assert np.isnan(z).any()  # blank outside the hull
    assert np.nanmin(z) >= min(healthy) - 1e-6 and np.nanmax(z) <= max(healthy) + 1e-6


def test_grid_means_and_interpolation_refuse_what_they_cannot_draw():
    line = np.array([0.0, 1.0, 2.0])
    assert interpolate(line, line, line) is None  # collinear
    assert interpolate(line[:2], line[:2], line[:2]) is None
    assert grid_means(line, line[::-1], line) is None  # every coordinate once: scattered


def test_nothing_to_draw_gives_none():
    one = Result([result_row(0, 0.5, learning_rate=0.1, momentum=0.9)], {}, {})
    for make in INTERACTIVE.values():
        assert make(one) is None
    single = Result([result_row(i, 0.5, learning_rate=0.1 * (i + 1)) for i in range(3)], {}, {})
    assert figure_heatmap(single) is None  # one dimension: no pair
    assert figure_curves(single) is None  # no curves
    assert figure_parallel(single) is not None


def test_curves_of_a_large_sweep_are_thinned_to_the_budget():
    members, evaluations = 1000, 300
    result = hand_made_sweep(members, evaluations)
    fig = figure_curves(result)
    points = sum(np.isfinite(np.asarray(t.y, float)).sum() for t in fig.data if t.y is not None)
    keep = thinned(evaluations, members * 3)  # three panels: train loss, val loss, accuracy
    assert keep.tolist() == [0, 60, 120, 179, 239, 299]  # 20,000 // 3,000 curves: 6 points each
    assert 0.85 * MAX_CURVE_POINTS < points <= MAX_CURVE_POINTS
    binned = [t for t in fig.data if t.text is not None and not isinstance(t.text, str)]
    assert 3 * 2 <= len(binned) <= 3 * 8  # a trace per colour bin and panel
    assert all(t.startswith("member ") for t in binned[0].text if t)


def test_the_best_curves_are_on_top_and_follow_a_min_metric():
    result = _table()
    steps = np.array([0, 10])
    for row in result.rows:
        row["final_val_mse"] = 1.0 - row["final_val_accuracy"]
    result.summary.update(rank_by="final_val_mse", rank_direction="min")
    mse = np.array([[1.0] * 6, [r["final_val_mse"] for r in result.rows]])
    result.curves.update(steps=steps, val_mse=mse)
    fig = figure_curves(result)
    assert [a.text for a in fig.layout.annotations] == ["validation mse"]
    last = [t for t in fig.data if t.name][-1]  # drawn last: on top
    assert last.name == "best: member 2" and last.line.color == "black"


def test_a_metric_spanning_decades_is_coloured_on_a_log_scale():
    mse = [3.0, 0.3, 0.03, 0.003]
    rows = [
        {"member": i, "learning_rate": 10.0**-i, "momentum": 0.1 * (i % 3), "status": "ok",
         "diverged_at_step": -1, "final_val_mse": m, "best_val_mse": m}
        for i, m in enumerate(mse)
    ]  # fmt: skip
    result = Result(rows, {}, {"rank_by": "final_val_mse", "rank_direction": "min"})
    (trace,) = figure_parallel(result).data
    assert np.allclose(trace.line.color, np.log10(mse))  # the worst first
    assert trace.line.colorbar.ticktext == ("0.01", "0.1", "1")
    assert np.allclose(trace.line.colorbar.tickvals, [-2, -1, 0])
    assert trace.dimensions[-1].label == "final validation mse (log)"
    heat = figure_heatmap(result)
    surface, members = heat.data[0], heat.data[1]
    assert np.allclose(members.marker.color, np.log10(mse))
    z, shown = np.asarray(surface.z, float), np.asarray(surface.customdata, float)[..., 2]
    assert np.allclose(z[np.isfinite(z)], np.log10(shown[np.isfinite(z)]), atol=1e-6)
    assert "customdata[2]" in surface.hovertemplate  # hover: the mse, not its logarithm


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_hand_made_sweep(tmp_path_factory.mktemp("interactive") / "sweep")


def test_report_html_inlines_plotly_once_and_references_no_url(report):
    page = report.read_text()
    assert page.count(plotly_script()) == 1
    assert page.count("plotly.js v") == 1  # the library's header
    own = page.replace(plotly_script(), "")  # plotly.js's source names its home pages
    assert own.count("Plotly.newPlot(") == len(INTERACTIVE)
    assert not re.search(r"<script[^>]*\bsrc=", own)
    assert not re.search(r"""\b(src|href)=["']?(https?:)?//""", own)
    assert "http://" not in own and "https://" not in own
    assert report.stat().st_size < 6_000_000


def test_report_html_shows_the_interactive_figures_and_the_other_pngs(report):
    page = report.read_text()
    pngs = {p.stem for p in (report.parent / "figures").glob("*.png")}
    assert set(INTERACTIVE) < pngs
    for name in pngs:
        figure = page.split(f'<figure id="{name}">', 1)[1].split("</figure>", 1)[0]
        if name in INTERACTIVE:
            assert f'<div id="plot-{name}" class="plotly-graph-div"' in figure
            assert "<img" not in figure
        else:
            assert figure.startswith('<img alt="') and "plotly" not in figure
    assert page.count('<img alt="') == len(pngs - set(INTERACTIVE))


def test_report_md_still_links_the_pngs(report):
    markdown = (report.parent / "report.md").read_text()
    pngs = sorted(p.stem for p in (report.parent / "figures").glob("*.png"))
    assert set(FIGURES) >= set(pngs) >= set(INTERACTIVE)
    for name in pngs:
        assert re.search(rf"!\[[^\]]+\]\(figures/{name}\.png\)", markdown)
    assert "<div" not in markdown and "plotly" not in markdown.lower()
