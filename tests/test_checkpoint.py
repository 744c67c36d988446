"""Invariant 6 (docs/architecture.md) in one process: exact resume, damaged and failed saves, refusal,
export, restore onto the current device."""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import logging
import shutil
import signal
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import assert_same
from orbax.checkpoint._src.path import atomicity

import sweepjax
from sweepjax import cli
from sweepjax.engine.models import build_model
from sweepjax.runner.run import program_of
from sweepjax.runner.training import MEASURED_KEYS, restore_target
from sweepjax.sweep import checkpoint
from sweepjax.sweep import loop as training
from sweepjax.sweep.lock import LOCK_FILE
from sweepjax.sweep.metadata import CheckpointMeta
from sweepjax.sweep.read_results import read_rows


def _config(tiny_config, out: Path, **changes) -> sweepjax.Config:
    return tiny_config.replace(
        **{"out_dir": str(out), "steps": 60, "keep_checkpoints": 3, **changes}
    )


def _final_state(config, data) -> dict:
    """The latest checkpoint of `config.out_dir`, restored onto this device."""
    program = program_of(config)
    example = jax.numpy.asarray(data.train["inputs"][: config.batch_size])
    with checkpoint._manager(config.out_dir, read_only=True) as manager:
        snapshot, bad = checkpoint.restore_latest(
            manager, restore_target(config, program, example, ("loss", "accuracy"), None)
        )
    assert not bad
    return snapshot.state


def assert_same_results(a: Path, b: Path) -> None:
    """Identical results.csv, curves and sweep.json (but for timings and the out_dir).

    Bitwise on the CPU; on a GPU, where separate processes may pick other kernels, to float32
    rounding (`conftest.assert_same`).
    """
    if jax.default_backend() == "cpu":
        assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()
    else:
        rows_a, rows_b = read_rows(a / "results.csv"), read_rows(b / "results.csv")
        assert [r.keys() for r in rows_a] == [r.keys() for r in rows_b]
        for ra, rb in zip(rows_a, rows_b, strict=True):
            for key, value in ra.items():
                if isinstance(value, float):
                    assert_same(np.float32(value), np.float32(rb[key]))
                else:
                    assert value == rb[key]
    with np.load(a / "curves.npz") as ca, np.load(b / "curves.npz") as cb:
        assert set(ca) == set(cb)
        for key in ca:
            assert_same(ca[key], cb[key])
    sa, sb = (json.loads((d / "sweep.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        s["config"].pop("out_dir")
        for key in MEASURED_KEYS:
            s.pop(key)
    if jax.default_backend() == "cpu":
        assert sa == sb
    else:  # summary statistics were compared through the rows above
        assert sa["config"] == sb["config"] and set(sa) == set(sb)


def _tree_bytes(folder: Path) -> dict[str, str]:
    """Every file's digest, but the lock's (each process that takes the folder signs it)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else ""
        for p in sorted(folder.rglob("*"))
        if p.name != LOCK_FILE
    }


def test_run_stopped_at_n_and_resumed_to_2n_is_bitwise_the_straight_run(
    tiny_config, tiny_data, tmp_path, capsys
):
    # Space keys out of alphabetical order: the results.csv columns must keep this order.
    space = {"momentum": tiny_config.space["momentum"], **tiny_config.space}
    straight = _config(tiny_config, tmp_path / "straight", space=space)
    sweepjax.run(straight, quiet=True, dataset=tiny_data)
    assert checkpoint.saved_steps(straight.out_dir) == [40, 50, 60]  # keep_checkpoints=3
    assert (tmp_path / "straight" / "results.csv").read_text().startswith("member,momentum,")

    half = straight.replace(out_dir=str(tmp_path / "half"))
    sweepjax.run(half.replace(steps=30), quiet=True, dataset=tiny_data)
    capsys.readouterr()
    with pytest.raises(ValueError, match=r"steps: 60 is not the trial budget 30 .*resume"):
        sweepjax.run(half, quiet=True, dataset=tiny_data)  # a longer budget is resume's to set
    sweepjax.resume(
        half.out_dir, overrides=["steps=60"], config=half, quiet=True, dataset=tiny_data
    )
    assert "resuming" in capsys.readouterr().err

    assert_same_results(tmp_path / "straight", tmp_path / "half")
    a, b = _final_state(straight, tiny_data), _final_state(half, tiny_data)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(a["population"].step) == 60

    # a finished sweep extends with a larger `steps`
    extended = sweepjax.resume(
        half.out_dir, overrides=["steps=70"], config=half, quiet=True, dataset=tiny_data
    )
    assert extended.summary["steps_done"] == 70 and extended.curves["steps"][-1] == 70


@pytest.mark.parametrize("damage", ["overwrite", "truncate", "checksum"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    damage, tiny_config, tiny_data, tmp_path, caplog
):
    config = _config(tiny_config, tmp_path, steps=30)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("results.csv", "curves.npz", "sweep.json"):
        shutil.copy(tmp_path / name, reference / name)

    step_dir = tmp_path / "checkpoints" / "30"
    data_files = [
        p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"
    ]
    assert data_files
    if damage == "checksum":  # arrays that read back fine but are not what was saved
        meta = json.loads((step_dir / "meta" / "metadata").read_text())
        meta["checksum"] = "0" * 64
        (step_dir / "meta" / "metadata").write_text(json.dumps(meta))
        data_files = []
    for path in data_files:
        raw = bytearray(path.read_bytes())
        if damage == "overwrite":
            middle = len(raw) // 2
            raw[middle : middle + 16] = bytes(range(16))
        else:
            raw = raw[: len(raw) // 2]
        path.write_bytes(bytes(raw))

    reason = "checksum mismatch" if damage == "checksum" else ""
    match = rf"step 30 .*{reason}.* falling back .* step 20"
    with pytest.warns(checkpoint.CheckpointWarning, match=match):
        sweepjax.resume(tmp_path, config=config, quiet=True, dataset=tiny_data)
    gc.collect()  # what Orbax's failed read left in flight reports when collected: nothing
    assert [r.getMessage()[:80] for r in caplog.records if r.name == "asyncio"] == []
    assert_same_results(reference, tmp_path)
    assert checkpoint.saved_steps(tmp_path) == [10, 20, 30]


def test_resume_prints_no_library_warnings(tiny_config, tiny_data, tmp_path, capfd, caplog):
    """Orbax warns through absl each time a read-only manager opens; none is opened."""
    caplog.set_level(logging.INFO, logger="absl")  # whatever an earlier test set
    config = _config(tiny_config, tmp_path, steps=20)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    capfd.readouterr()
    sweepjax.resume(tmp_path, overrides=["steps=30"], config=config, quiet=True, dataset=tiny_data)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == []
    err = capfd.readouterr().err
    assert err == f"sweepjax: resuming {tmp_path} from the checkpoint at step 20 of 30\n"


def test_a_damaged_manifest_is_one_warning_and_no_noise(
    tiny_config, tiny_data, tmp_path, capfd, caplog, monkeypatch
):
    """A failed Orbax read leaves reads in flight on a closed event loop: no tracebacks."""
    config = _config(tiny_config, tmp_path, steps=20)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    manifest = tmp_path / "checkpoints" / "20" / "state" / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    caplog.set_level(logging.WARNING)
    capfd.readouterr()
    with pytest.warns(checkpoint.CheckpointWarning) as warned:
        sweepjax.resume(tmp_path, config=config, quiet=True, dataset=tiny_data)
    gc.collect()  # the tasks Orbax left behind report when they are collected
    assert len(warned) == 1 and "manifest" in str(warned[0].message)
    assert "step 20" in str(warned[0].message) and "falling back" in str(warned[0].message)
    assert [r.exc_value for r in unraisable] == []
    assert [r.getMessage()[:80] for r in caplog.records] == []
    err = capfd.readouterr().err
    assert err == f"sweepjax: resuming {tmp_path} from the checkpoint at step 10 of 20\n"


def test_checkpoint_of_another_sweep_is_refused_without_touching_out_dir(
    tiny_config, tiny_data, tmp_path, capsys
):
    config = _config(tiny_config, tmp_path, steps=20)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    before = _tree_bytes(tmp_path)

    wider = config.replace(model={**config.model, "hidden": [32]})
    with pytest.raises(sweepjax.CheckpointMismatch, match=r"model\.hidden: \[16\] .* \[32\]"):
        sweepjax.run(wider, quiet=True, dataset=tiny_data)
    narrow = config.replace(space={**config.space, "learning_rate": sweepjax.LogUniform(1e-3, 0.1)})
    with pytest.raises(sweepjax.CheckpointMismatch, match=r"space\.learning_rate: ") as err:
        sweepjax.resume(tmp_path, config=narrow, quiet=True, dataset=tiny_data)
    assert "model" not in str(err.value) and "--overwrite" in str(err.value)
    other_data = tiny_data._replace(
        train={**tiny_data.train, "inputs": tiny_data.train["inputs"] + 1.0}
    )
    with pytest.raises(sweepjax.CheckpointMismatch, match=r"data\.fingerprint"):
        sweepjax.run(config, quiet=True, dataset=other_data)
    assert _tree_bytes(tmp_path) == before

    capsys.readouterr()
    result = sweepjax.run(wider, quiet=True, dataset=tiny_data, overwrite=True)
    assert "overwriting" in capsys.readouterr().err
    assert result.summary["config"]["model"]["hidden"] == [32]


def test_failed_save_is_reported_and_the_previous_checkpoint_stays_usable(
    tiny_config, tiny_data, tmp_path, monkeypatch
):
    """A full disk, simulated by a writer that fails to commit step 20."""
    config = _config(tiny_config, tmp_path, steps=30)
    real_finalize = atomicity.AtomicRenameTemporaryPath.finalize
    attempts = []

    async def finalize(self):
        attempts.append(self._final_path.name)
        if self._final_path.name == "20":
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_finalize(self)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", finalize)
    with pytest.raises(sweepjax.CheckpointError) as err:
        sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert "20" in attempts
    message = str(err.value)
    assert "No space left on device" in message and "step 20 not committed" in message
    assert "step 10 is intact" in message
    assert checkpoint.saved_steps(tmp_path) == [10]

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", real_finalize)
    resumed = sweepjax.resume(tmp_path, config=config, quiet=True, dataset=tiny_data)
    straight = sweepjax.run(config.replace(out_dir=None), quiet=True, dataset=tiny_data)
    assert resumed.rows == straight.rows


def test_exported_member_loads_with_plain_orbax_and_flax(tiny_config, tiny_data, tmp_path):
    config = _config(tiny_config, tmp_path / "sweep", steps=20)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    member = 5
    assert (
        cli.main(["export", config.out_dir, "--member", str(member), "--to", str(tmp_path / "m5")])
        == 0
    )

    # Only orbax and flax from here on (the module definition aside).
    variables = ocp.StandardCheckpointer().restore((tmp_path / "m5" / "checkpoint").absolute())
    module = build_model(config.model)
    logits = module.apply(variables, jax.numpy.asarray(tiny_data.val["inputs"], jax.numpy.float32))
    logits = np.asarray(logits)
    correct = int(np.sum(logits.argmax(-1) == tiny_data.val["targets"]))

    row = read_rows(Path(config.out_dir) / "results.csv")[member]
    # The sweep evaluated in its own program (vmapped, in batches): its float32 logits may
    # differ from these by some ulps per summed term (~1e-6 relative), so only an example whose
    # two largest logits are within 1e-5 (relative) of each other may count otherwise there.
    top = np.sort(logits, -1)
    near_ties = int(np.sum(top[:, -1] - top[:, -2] <= 1e-5 * np.abs(logits).max(-1)))
    n = len(tiny_data.val["targets"])
    counted = round(float(row["final_val_accuracy"]) * n)
    assert np.float32(row["final_val_accuracy"]) == np.float32(counted) / np.float32(n)
    assert abs(counted - correct) <= near_ties
    info = json.loads((tmp_path / "m5" / "hparams.json").read_text())
    assert info["member"] == member and info["step"] == 20
    assert np.float32(info["hyperparameters"]["learning_rate"]) == np.float32(row["learning_rate"])
    allowed = "allowed: a new or empty directory"
    with pytest.raises(ValueError, match=f"--to: .*m5 exists and is not empty; {allowed}"):
        sweepjax.export_member(config.out_dir, member, tmp_path / "m5")
    file = tmp_path / "m5" / "hparams.json"
    with pytest.raises(ValueError, match=f"^--to: {file} is a file; {allowed}.$"):
        sweepjax.export_member(config.out_dir, member, file)
    with pytest.raises(ValueError, match=r"^--member: -1 is out of range; allowed: 0 to 7\.$"):
        sweepjax.export_member(config.out_dir, -1, tmp_path / "m-1")
    assert cli.main(["export", config.out_dir, "--member", "1", "--to", str(file)]) == 2


def test_restore_targets_the_current_device(tiny_config, tiny_data, tmp_path):
    """Checkpoints hold host arrays; restore places them where this process computes."""
    config = _config(tiny_config, tmp_path, steps=10)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    metadata = (tmp_path / "checkpoints" / "10" / "state" / "_METADATA").read_text()
    assert "np.ndarray" in metadata and "jax.Array" not in metadata  # no device recorded

    state = _final_state(config, tiny_data)
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    for leaf in jax.tree.leaves(state["population"]):
        assert isinstance(leaf, jax.Array) and leaf.sharding == here


def test_the_last_step_is_checkpointed_whatever_checkpoint_every_is(
    tiny_config, tiny_data, tmp_path
):
    config = _config(tiny_config, tmp_path, steps=50, checkpoint_every=20)
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert checkpoint.saved_steps(tmp_path) == [20, 40, 50]
    assert checkpoint.read_meta(tmp_path).step == 50


def test_checkpoint_keys_are_validated(tiny_config):
    with pytest.raises(ValueError, match="checkpoint_every: 15 must be a positive multiple"):
        sweepjax.validate(tiny_config.replace(checkpoint_every=15))
    with pytest.raises(ValueError, match="keep_checkpoints: 0 must be a positive integer"):
        sweepjax.validate(tiny_config.replace(keep_checkpoints=0))
    sweepjax.validate(tiny_config.replace(checkpoint_every=20))


def test_sigint_in_process_raises_interrupted_after_saving(
    tiny_config, tiny_data, tmp_path, monkeypatch
):
    config = _config(tiny_config, tmp_path, steps=30)
    make_train_chunk = training.make_train_chunk

    def interrupting(program, length, *args):
        chunk = make_train_chunk(program, length, *args)

        def run(pop, *args):
            pop, losses = chunk(pop, *args)
            if int(pop.step) == 20:
                signal.raise_signal(signal.SIGINT)
            return pop, losses

        return run

    monkeypatch.setattr(training, "make_train_chunk", interrupting)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(sweepjax.Interrupted, match="SIGINT at step 20 of 30") as stop:
        sweepjax.run(config, quiet=True, dataset=tiny_data)
    assert signal.getsignal(signal.SIGINT) is handler
    assert stop.value.step == 20 and checkpoint.saved_steps(tmp_path) == [10, 20]
    assert sweepjax.read_result(tmp_path).summary["interrupted"]

    monkeypatch.setattr(training, "make_train_chunk", make_train_chunk)
    resumed = sweepjax.run(config, quiet=True, dataset=tiny_data)
    straight = sweepjax.run(config.replace(out_dir=None), quiet=True, dataset=tiny_data)
    assert resumed.rows == straight.rows and not resumed.summary["interrupted"]


def test_cli_refuses_another_sweep_overwrites_and_extends(tmp_path, capsys):
    out = str(tmp_path / "run")
    sets = ["population=4", "steps=40", "eval_every=20", "model.hidden=[16]"]
    run = ["run", *sum((["--set", o] for o in sets), []), "--out", out, "--quiet"]
    assert cli.main(run) == 0
    assert cli.main([*run, "--set", "space.momentum=0.5"]) == 2
    err = capsys.readouterr().err
    assert "holds a checkpoint (step 40) of a different sweep: space.momentum:" in err
    trackers = [Path(out) / name for name in ("tensorboard", "mlflow", "wandb")]
    for folder in trackers:  # the old sweep's tracker runs go with it
        (folder / "run").mkdir(parents=True)
    assert cli.main([*run, "--set", "space.momentum=0.5", "--overwrite"]) == 0
    assert "overwriting" in capsys.readouterr().err
    assert not any(folder.exists() for folder in trackers)
    assert cli.main(["resume", out, "--set", "steps=60", "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert sweepjax.read_result(out).summary["steps_done"] == 60
    assert cli.main(["resume", str(tmp_path / "nothing")]) == 2


def test_checkpoints_of_the_first_format_still_restore(tmp_path):
    """Format 1 digested whole arrays; format 2 digests rows (layout-free across processes)."""
    state = {"w": np.arange(6, dtype=np.float32).reshape(3, 2), "step": np.int32(4)}
    meta = CheckpointMeta.from_json(
        {
            "config": {"population": 3, "steps": 4},
            "data": {},
            "data_stream": {"seed": 0, "step": 4},
            "hparams": {},
            "curve_points": 0,
            "format": 2,
            "step": 4,
            "checksum": "",
        }
    )
    with checkpoint.open_manager(tmp_path, 2) as manager:
        checkpoint.save(manager, 4, state, meta)
        checkpoint.wait(manager)
    meta_file = tmp_path / "checkpoints" / "4" / "meta" / "metadata"
    saved = json.loads(meta_file.read_text())
    assert saved["format"] == checkpoint.FORMAT == 2
    assert saved["checksum"] == checkpoint.checksum(state) != checkpoint._whole_checksum(state)
    meta_file.write_text(
        json.dumps({**saved, "format": 1, "checksum": checkpoint._whole_checksum(state)})
    )
    with checkpoint._manager(tmp_path, read_only=True) as manager:
        snapshot, bad = checkpoint.restore_latest(manager)
    assert not bad
    np.testing.assert_array_equal(snapshot.state["w"], state["w"])
