"""tools/bench.py keeps working, and its ways train the same members to the same losses.

A correctness check on a tiny size, not a timing check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench  # noqa: E402
import roofline  # noqa: E402

TINY = bench.Row(hidden=8, batch=16, population=3, steps=12)
TINY_CNN = bench.Row("cnn1d", hidden=4, layers=2, batch=16, population=3, steps=12)


@pytest.mark.slow
def test_the_ways_train_the_same_members_to_the_same_losses(tiny_data):
    engine = bench.run_engine(TINY, tiny_data, chunk=5)
    grouped = bench.run_engine(TINY, tiny_data, chunk=5, width=2)
    np.testing.assert_allclose(grouped.losses, engine.losses, rtol=1e-6, atol=1e-6)
    loop = bench.run_baseline("loop", TINY, tiny_data, members=[0, 2])
    scan = bench.run_baseline("scan", TINY, tiny_data, members=[0, 2])
    assert engine.losses.shape == (12, 3)
    assert loop.losses.shape == scan.losses.shape == (12, 2)
    assert np.isfinite(engine.losses).all()
    np.testing.assert_allclose(loop.losses, engine.losses[:, [0, 2]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scan.losses, engine.losses[:, [0, 2]], rtol=1e-5, atol=1e-6)
    assert not np.allclose(engine.losses[:, 0], engine.losses[:, 2])  # distinct members
    for timing in (engine, loop, scan):
        assert timing.member_steps_per_second > 0 and timing.compile_seconds > 0


def test_a_row_record_and_its_table(tiny_data):
    record = bench.bench_row(TINY, tiny_data, baseline_members=1, chunk=12, peak=1e9)
    assert set(record["ways"]) == set(bench.DEFAULT_WAYS)
    assert record["engine_over_loop"] > 0 and record["auto_over_scan"] > 0
    assert record["ways"]["auto"]["width"] in (1, 2, 3)
    assert record["flops_per_member_step"] > 0
    assert record["max_loss_difference"] < 1e-4
    assert record["max_loss_difference_first_100_steps"] <= record["max_loss_difference"]
    for way in record["ways"].values():
        assert way["bound"] in ("compute", "memory") and way["percent_of_roofline"] > 0
        assert way["cost"]["bytes_accessed"] > 0 and way["bandwidth"] > 0
    info = {**bench.machine(), "peak_flops": 1e9, "dram_bandwidth": 1e10}
    table = bench.markdown([record], info)
    assert table.count("\n| mlp h8 b16 P3 |") == len(bench.DEFAULT_WAYS)
    assert "| % of roofline |" in table
    json.dumps(record)  # the --json output is serialisable


@pytest.mark.parametrize("row", [TINY, TINY_CNN], ids=["mlp", "cnn1d"])
def test_the_torch_ways_start_from_the_engines_members_and_track_its_losses(row, tiny_data):
    pytest.importorskip("torch", reason="PyTorch comes with the bench extra: '.[dev,bench]'")
    scan = bench.run_baseline("scan", row, tiny_data, members=[0, 2])
    one = bench.run_torch("torch", row, tiny_data, members=[0, 2])
    population = bench.run_torch("torch_vmap", row, tiny_data, members=[0])
    assert one.losses.shape == (12, 2) and population.members == [0, 1, 2]
    np.testing.assert_allclose(population.losses[:, [0, 2]], one.losses, rtol=1e-5)
    np.testing.assert_allclose(one.losses, scan.losses, rtol=1e-4)
    assert not np.allclose(population.losses[:, 0], population.losses[:, 1])


def test_torch_ways_without_torch_stop_with_a_message(monkeypatch):
    monkeypatch.setattr(bench, "HAS_TORCH", False)
    with pytest.raises(SystemExit, match="need PyTorch"):
        bench.main(["--ways", "scan", "torch"])


def test_rows_from_flags():
    args = bench.build_parser().parse_args(
        ["--hidden", "32", "128", "--batch", "32", "--population", "8", "64"]
    )
    rows = bench.rows_from_args(args)
    assert [(r.hidden, r.batch, r.population) for r in rows] == [
        (32, 32, 8),
        (32, 32, 64),
        (128, 32, 8),
        (128, 32, 64),
    ]
    with pytest.raises(SystemExit):
        bench.rows_from_args(bench.build_parser().parse_args(["--hidden", "1", "2", "3"]))


def test_width_flag_takes_auto_or_a_positive_integer():
    parse = bench.build_parser().parse_args
    assert {r.width for r in bench.rows_from_args(parse([]))} == {"auto"}
    assert {r.width for r in bench.rows_from_args(parse(["--width", "4"]))} == {4}
    for bad in ("0", "-2", "wide"):
        with pytest.raises(SystemExit):
            parse(["--width", bad])


def test_the_roofline_is_the_lower_of_the_two_bounds():
    step = roofline.StepCost(flops=1e6, bytes_accessed=1e5, working_set=0)  # 10 FLOP per byte
    memory = roofline.roofline(5e10, step, peak=1e12, bandwidth=1e10)  # bound: 1e11 FLOP/s
    assert memory["bound"] == "memory" and memory["attainable_flops"] == 1e11
    assert memory["percent_of_roofline"] == 50.0
    compute = roofline.roofline(5e10, step, peak=1e11, bandwidth=1e11)  # 1e11 < 1e12
    assert compute["bound"] == "compute" and compute["percent_of_roofline"] == 50.0


def test_a_group_step_grows_with_its_width_and_moves_every_members_state(tiny_data):
    from sweepjax.engine.population import init_population
    from sweepjax.runner.run import program_of, sample_hparams

    config = TINY.config(tiny_data.num_classes)
    program, hparams = program_of(config), sample_hparams(config)
    narrow, wide = (roofline.group_step_cost(program, hparams, tiny_data.train, w) for w in (2, 3))
    assert 3 * wide.flops > 2 * narrow.flops and 3 * wide.bytes_accessed > 2 * narrow.bytes_accessed
    pop = init_population(program, hparams, tiny_data.train["inputs"][: TINY.batch])
    # SGD with momentum reads and writes every parameter and moment at least once a step
    params = sum(x.nbytes for x in jax.tree.leaves(pop.params)) / TINY.population
    assert narrow.bytes_accessed >= 4 * params
    assert narrow.working_set > 0
