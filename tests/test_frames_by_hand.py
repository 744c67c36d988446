"""The pandas frames (`frames.py`) against groups summed by hand in plain Python and a
hand-built long list of curve points; no training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import same

from sweepjax.sweep.frames import curves_frame, results_frame, summarize_by

pytestmark = pytest.mark.quick

NAN = math.nan


ROWS = [
    {"member": i, "lr": lr, "opt": o, "seed": i % 3, "status": s, "final_val_mse": v,
     "best_val_mse": b, "test_mse": t}
    for i, (lr, o, s, v, b, t) in enumerate([
        (0.1, "sgd", "ok", 1.0, 0.5, 1.5), (0.1, "sgd", "ok", 3.0, 2.0, 2.5),
        (0.1, "sgd", "stopped", 0.5, 0.25, 0.125), (0.2, "adam", "diverged", math.inf, 9.0, NAN),
        (0.2, "adam", "ok", 2.0, 1.0, NAN), (NAN, "sgd", "ok", 4.0, 3.0, 4.0),
        (0.3, "adam", "ok", NAN, 0.75, 1.0), (0.1, "adam", "ok", 2.0, 1.5, 3.5),
        (0.1, "sgd", "ok", 2.0, 1.0, 0.5),
    ])
]  # fmt: skip
METRICS = ["final_val_mse", "best_val_mse", "test_mse"]


def reference_summary(keys):
    """Each group of `ROWS` by `keys`, in order of first appearance, summed up by hand."""
    groups = {}
    for row in ROWS:
        key = tuple("nan" if row[k] != row[k] else row[k] for k in keys)
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        record = {k: members[0][k] for k in keys}
        record["n"] = len(members)
        record["n_diverged"] = sum(r["status"] == "diverged" for r in members)
        for m in METRICS:
            values = [r[m] for r in members if r["status"] == "ok" and r[m] == r[m]]
            mean = sum(values) / len(values) if values else NAN
            var = (
                sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else NAN
            )
            record[f"{m}_mean"], record[f"{m}_std"] = mean, math.sqrt(var)
        out.append(record)
    return out


@pytest.mark.parametrize("by", [None, "lr", ["opt", "lr"], "seed", []])
def test_summarize_by_matches_groups_summed_by_hand(by):
    keys = ["lr", "opt"] if by is None else [by] if isinstance(by, str) else by
    got = summarize_by(ROWS, by).to_dict("records")
    expected = reference_summary(keys)
    assert [list(g) for g in got] == [list(e) for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert all(same(g[k], e[k]) for k in e), (g, e)
    with pytest.raises(ValueError, match="by: 'test_mse'"):
        summarize_by(ROWS, "test_mse")
    with pytest.raises(ValueError, match="by: 'nope'"):
        summarize_by(ROWS, ["lr", "nope"])


def test_results_and_curves_frames_hold_the_rows_and_the_defined_curve_points():
    frame = results_frame(ROWS)
    assert list(frame.columns) == list(ROWS[0]) and list(frame.index) == list(range(len(ROWS)))
    assert all(same(frame[c][i], r[c]) for i, r in enumerate(ROWS) for c in r)
    assert results_frame([]).empty
    assert results_frame(ROWS[:1])["test_mse"].tolist() == [1.5]
    curves = {
        "steps": np.array([10, 20, 30]),
        "train_loss": np.array([[0.5, NAN], [0.4, 0.9], [NAN, 0.8]]),
        "val_mse": np.array([[1.0, 2.0], [NAN, 3.0], [4.0, NAN]]),
        "seconds": np.array([0.5, 1.0, 1.5]),  # no curve: one value per chunk
    }
    expected = [
        (name, member, int(step), float(curves[name][c, member]))
        for name in ("train_loss", "val_mse")
        for member in range(2)
        for c, step in enumerate(curves["steps"])
        if not math.isnan(curves[name][c, member])
    ]
    long = curves_frame(curves)
    got = list(zip(long["metric"], long["member"], long["step"], long["value"], strict=True))
    assert got == expected and list(long.index) == list(range(len(expected)))
    only = curves_frame(curves, ["val_mse"])
    assert only["metric"].tolist() == ["val_mse"] * 4 and only["value"].tolist() == [1, 4, 2, 3]
    with pytest.raises(ValueError, match="'val_acc' is not a curve"):
        curves_frame(curves, ["val_acc"])
    empty = curves_frame({"steps": np.zeros(0)})
    dtypes = [str(frame[c].dtype) for frame in (empty, long) for c in ("member", "step", "value")]
    assert empty.empty and dtypes == ["int64", "int64", "float64"] * 2
