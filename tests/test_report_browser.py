"""report.html in a real browser: headless Chromium opens the report of a small hand-made sweep
(a log-scaled and a categorical dimension, a diverged member) with the network unreachable;
every interactive figure draws, the PNG figures decode, the screenshot is not blank."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from test_interactive import write_hand_made_sweep

from sweepjax.report.interactive import INTERACTIVE

BROWSER = next(
    (
        path
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (path := shutil.which(name))
    ),
    None,
)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        BROWSER is None, reason="no Chromium or Chrome on PATH (Debian: apt-get install chromium)"
    ),
]

HEIGHT = 8000  # of the window, in pixels: the whole page in one screenshot

# Runs first in the page: records script errors, then after the load what each plot and image
# became, in a <pre id="probe"> that --dump-dom serializes.
PROBE = """<script>
const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message)));
window.addEventListener("load", () => setTimeout(() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
  const plots = {};
  for (const div of document.querySelectorAll(".plotly-graph-div")) {
    const count = (selector) => div.querySelectorAll(selector).length;
    plots[div.id] = {svg: count(".main-svg"), traces: count(".trace"), points: count("path.point"),
                     cells: count("g.hm image"), canvases: count("canvas"), box: box(div)};
  }
  const images = [...document.images].map((i) => ({size: [i.naturalWidth, i.naturalHeight],
                                                   box: box(i)}));
  const probe = document.createElement("pre");
  probe.id = "probe";
  const fetched = performance.getEntriesByType("resource").map((r) => r.name);
  const height = document.body.scrollHeight;
  probe.textContent = JSON.stringify({plots, images, errors, fetched, height});
  document.body.append(probe);
}, 500));
</script>"""


def _chromium(profile, *args: str) -> str:
    """Run headless Chromium offline (every host name unresolvable) with its own profile."""
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-unsafe-swiftshader",  # WebGL in software (the parallel coordinates): our page
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True).stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of the hand-made sweep, what the probe saw in it, and its screenshot (one
    run of the browser: it parses plotly.js, 4.8 MB, in seconds)."""
    root = tmp_path_factory.mktemp("browser")
    report = write_hand_made_sweep(root / "sweep")
    probed = root / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    shot = root / "screenshot.png"
    size = f"--window-size=1400,{HEIGHT}"
    dom = _chromium(root / "profile", size, "--dump-dom", f"--screenshot={shot}", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe never ran: the page did not finish loading"
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["height"] <= HEIGHT, "the page is taller than the screenshot: raise HEIGHT"
    from matplotlib.image import imread

    return report, dom, probe, imread(shot)[..., :3]


def test_every_interactive_figure_draws_without_script_errors_or_fetches(page):
    report, dom, probe, _ = page
    expected = {f"plot-{name}" for name in INTERACTIVE}
    assert set(probe["plots"]) == expected
    assert probe["errors"] == []
    assert probe["fetched"] == []  # self-contained: nothing loaded but the page
    for name, plot in probe["plots"].items():
        assert plot["svg"] >= 2, name  # Plotly's main-svg layers: the plot was drawn
    assert dom.count('class="main-svg"') >= 2 * len(expected)
    plots = probe["plots"]  # 12 members, 3 panels of curves and of hyperparameters
    assert plots["plot-curves"]["traces"] >= 3 * 12  # a line per member and panel
    assert plots["plot-hyperparameters"]["points"] == 3 * (12 + 1)  # and the best's star
    assert plots["plot-heatmap"]["cells"] == 1 and plots["plot-heatmap"]["points"] == 12 + 1
    assert plots["plot-parallel"]["canvases"] >= 1  # its lines: WebGL


def test_the_png_figures_decode(page):
    report, _, probe, _ = page
    images = probe["images"]
    assert len(images) == report.read_text().count("<img")
    assert images, "the schedules figure has no interactive version: its PNG shows"
    for image in images:
        assert image["size"][0] > 100 and image["size"][1] > 100


def test_the_screenshot_shows_every_figure(page):
    _, _, probe, pixels = page
    assert pixels.shape[1] == 1400
    assert (pixels < 0.9).any(-1).mean() > 0.02  # not a blank page
    boxes = [p["box"] for p in probe["plots"].values()] + [i["box"] for i in probe["images"]]
    for left, top, width, height in boxes:
        region = pixels[int(top) : int(top + height), int(left) : int(left + width)]
        assert region.size, "a figure lies outside the screenshot"
        rgb = (region * 255).astype(np.int64).reshape(-1, 3)
        colours = np.unique(rgb @ np.array([65536, 256, 1]))
        assert len(colours) > 50  # colour scales, markers, text: not an empty frame
        assert (region < 0.9).any(-1).mean() > 0.01
