"""The checkpoint metadata record: its JSON round trip, what it fills in for older checkpoints,
what it refuses, and sweeps written by earlier engines that resume as this engine's own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_data

import sweepjax
from sweepjax.sweep import checkpoint
from sweepjax.sweep.metadata import FORMAT, CheckpointMeta, DataStream

DATA = Path(__file__).parent / "data"
# An ASHA sweep (tiny_config with population=4, steps=40, eval_every=10, scheduler="asha",
# trials=8, keep_checkpoints=1) stopped by SIGTERM after its checkpoint at step 40, written
# by the engine before the metadata record existed.
ASHA_INTERRUPTED = DATA / "sweep_asha_interrupted"
ASHA_META = ASHA_INTERRUPTED / "checkpoints" / "40" / "meta" / "metadata"

# The keys every checkpoint holds, as the first engine to checkpoint wrote them.
OLDEST = {
    "config": {"population": 3, "steps": 20, "seed": 0},
    "data": {"describe": "tiny", "fingerprint": "87b3"},
    "data_stream": {"seed": 0, "step": 10},
    "hparams": {"learning_rate": "float32", "seed": "int32"},
    "curve_points": 1,
    "format": 1,
    "step": 10,
    "checksum": "5ac6",
}


def populated() -> CheckpointMeta:
    return CheckpointMeta(
        config={"population": 4, "steps": 40, "scheduler": "asha"},
        data={"describe": "tiny", "fingerprint": "87b3"},
        data_stream=DataStream(seed=3, step=40),
        hparams={"learning_rate": "float32", "seed": "int64", "start_step": "int32"},
        curve_points=4,
        curve_trials=8,
        population_width=2,
        budget_steps=40,
        slots=[6, 7, 5, -1],
        trials=[{"id": 0, "hparams": {"learning_rate": 0.1, "seed": 0}, "steps": 40}],
        scheduler={"name": "asha", "records": [[[0, 0.5]]]},
        searcher={"name": "quasi_random", "handed": 8},
        slot_steps=160,
        kept_trial=0,
        step=40,
        format=FORMAT,
        checksum="0f6e2e18",
    )


def test_a_populated_record_survives_its_json_round_trip():
    meta = populated()
    assert CheckpointMeta.from_json(json.loads(json.dumps(meta.to_json()))) == meta
    assert meta.trial_count == 1 and meta.most_trial_steps() == 40
    assert meta.trial_hparams(0) == {"learning_rate": 0.1, "seed": 0}


def test_the_oldest_metadata_gets_each_default_an_older_checkpoint_meant():
    meta = CheckpointMeta.from_json(OLDEST)
    assert meta.population_width is None  # not chosen yet
    assert meta.budget_steps == 20  # the config's steps
    assert meta.slots == [0, 1, 2]  # one trial per slot
    assert meta.curve_trials == 3  # one curve column per slot
    assert meta.trials is None and meta.scheduler is None and meta.searcher is None
    assert meta.slot_steps == 30  # every slot trained every step: 3 * 10
    assert meta.kept_trial == -1  # none kept
    assert (meta.trial_count, meta.most_trial_steps()) == (3, 10)
    assert (meta.step, meta.format, meta.checksum) == (10, 1, "5ac6")
    assert meta.data_stream == DataStream(seed=0, step=10)


@pytest.mark.parametrize(
    "saved, message",
    [
        ({**OLDEST, "format": 3}, "format: 3 is not a known format; allowed: 1, 2"),
        ({**OLDEST, "slot_steps": "many"}, "slot_steps: 'many' is not an integer"),
        ({**OLDEST, "hparams": ["seed"]}, r"hparams: \['seed'\] is not a JSON object"),
        ({**OLDEST, "config": {"steps": 20}}, "config.population: None is not an integer"),
        ({k: OLDEST[k] for k in ("config", "data")}, "no data_stream, hparams, curve_points,"),
    ],
)
def test_garbled_metadata_is_refused_naming_the_key(saved, message):
    with pytest.raises(ValueError, match=f"^checkpoint metadata: .*{message}"):
        CheckpointMeta.from_json(saved)


def test_a_checkpoint_of_an_unknown_format_is_not_restored(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32)}
    with checkpoint.open_manager(tmp_path, 2) as manager:
        checkpoint.save(manager, 10, state, CheckpointMeta.from_json(OLDEST))
        checkpoint.wait(manager)
    meta_file = tmp_path / "checkpoints" / "10" / "meta" / "metadata"
    saved = json.loads(meta_file.read_text())
    assert saved["checksum"] == checkpoint.checksum(state) and saved["format"] == FORMAT
    meta_file.write_text(json.dumps({**saved, "format": 3}))
    with (
        checkpoint._manager(tmp_path, read_only=True) as manager,
        pytest.raises(checkpoint.CheckpointError, match="not a sweepjax checkpoint"),
    ):
        checkpoint.restore_latest(manager)
    assert checkpoint.read_meta(tmp_path) is None


def test_the_metadata_of_a_checkpoint_from_before_the_record_reads_and_writes_the_same_bytes():
    text = ASHA_META.read_text()
    meta = CheckpointMeta.from_json(json.loads(text))
    assert (meta.step, meta.format, meta.budget_steps, meta.curve_points) == (40, 2, 40, 4)
    assert meta.data_stream == DataStream(seed=0, step=40) and meta.population_width == 2
    assert (meta.slots, meta.kept_trial, meta.slot_steps) == ([6, 7, 5, -1], 1, 160)
    assert (meta.curve_trials, meta.trial_count) == (8, 8)
    assert meta.searcher == {"name": "quasi_random", "handed": 8}
    assert meta.scheduler["name"] == "asha" and meta.config["scheduler"] == "asha"
    assert json.dumps(meta.to_json()) == text  # Orbax writes `json.dumps` of the dict


def _rows_match(resumed: list[dict], straight: list[dict]) -> None:
    """The same trials with the same decisions; numbers equal to float32 rounding: the first
    40 steps ran on the machine that wrote the fixture, perhaps another CPU family."""
    for a, b in zip(resumed, straight, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                np.testing.assert_allclose(value, b[key], rtol=1e-4, err_msg=key)
            else:
                assert value == b[key], (key, a["member"])


def test_an_asha_sweep_interrupted_before_the_record_existed_resumes(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(ASHA_INTERRUPTED, old)
    saved = np.load(old / "curves.npz")
    resumed = sweepjax.resume(old, dataset=make_tiny_data(), quiet=True)
    assert not resumed.summary["interrupted"] and resumed.summary["trials_running"] == 0
    points, trials = saved["val_loss"].shape
    np.testing.assert_array_equal(resumed.curves["steps"][:points], saved["steps"])
    for name in ("train_loss", "val_loss", "val_accuracy"):  # restored, not retrained
        np.testing.assert_array_equal(resumed.curves[name][:points, :trials], saved[name])
    config = sweepjax.Config.from_json(json.loads((old / "sweep.json").read_text())["config"])
    straight = sweepjax.run(
        config.replace(out_dir=str(tmp_path / "new")), dataset=make_tiny_data(), quiet=True
    )
    statuses = [(r["status"], r["stop_reason"], r["steps_trained"]) for r in straight.rows]
    assert [(r["status"], r["stop_reason"], r["steps_trained"]) for r in resumed.rows] == statuses
    assert {s for s, _, _ in statuses} == {"ok", "stopped"}  # ASHA stopped some
    _rows_match(resumed.rows, straight.rows)
    for name, curve in straight.curves.items():
        np.testing.assert_allclose(resumed.curves[name], curve, rtol=1e-4, err_msg=name)
    for key in ("steps_done", "slot_steps", "trials_finished", "trials_stopped", "best_member"):
        assert resumed.summary[key] == straight.summary[key], key
    last = checkpoint.checkpoint_dir(tmp_path / "new") / str(straight.summary["steps_done"])
    new = json.loads((last / "meta" / "metadata").read_text())
    assert list(new) == list(json.loads(ASHA_META.read_text()))  # the keys, in the same order


BEFORE_TASKS = Path(__file__).parent / "data" / "sweep_before_tasks"


def test_a_checkpoint_written_before_tasks_existed_still_resumes(tmp_path):
    """A classification sweep saved by the engine before tasks (10 of 20 steps; no `task` in
    its config, curves and data fingerprint as they were) resumes as this engine's own."""
    old = tmp_path / "old"
    shutil.copytree(BEFORE_TASKS, old)
    saved = np.load(old / "curves.npz")
    resumed = sweepjax.resume(old, overrides=["steps=20"], dataset=make_tiny_data(), quiet=True)
    assert resumed.summary["steps_done"] == 20 and resumed.summary["task"] == "classification"
    for name in ("steps", "train_loss", "val_loss", "val_accuracy"):  # restored, not retrained
        np.testing.assert_array_equal(resumed.curves[name][:2], saved[name])
    config = sweepjax.Config.from_json(json.loads((old / "sweep.json").read_text())["config"])
    straight = sweepjax.run(
        config.replace(steps=20, out_dir=str(tmp_path / "new")),
        dataset=make_tiny_data(),
        quiet=True,
    )
    # The first 10 steps ran on the machine that wrote the fixture, perhaps another CPU family
    # whose float32 kernels round differently: 10 more steps keep such differences ~1e-6.
    for a, b in zip(resumed.rows, straight.rows, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose(a["final_val_loss"], b["final_val_loss"], rtol=1e-4)
