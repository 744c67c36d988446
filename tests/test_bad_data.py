"""Bad data and failing user code are the user's errors: refused before anything compiles or
any folder content is written, in one line that names the split, the leaf or the user's frame."""

from __future__ import annotations

import inspect
from pathlib import Path

import flax.linen as nn
import numpy as np
import pytest
from conftest import count_compiles
from flax import nnx

import sweepjax
from sweepjax import cli, errors
from sweepjax.sweep.checkpoint import CHECKPOINT_DIR
from sweepjax.sweep.config import Config
from sweepjax.sweep.validation import validate


def examples(count: int, features: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """`count` examples of a two-class problem in `features` float32 features."""
    x = np.random.default_rng(seed).normal(size=(count, features)).astype(np.float32)
    return {"inputs": x, "targets": (x[:, 0] > 0).astype(np.int32)}


def toy(train=None, val=None, test=None) -> sweepjax.Dataset:
    """Explicit splits (no carving, so every example stays where the test puts it)."""
    return sweepjax.from_examples(
        examples(64) if train is None else train,
        examples(16, seed=1) if test is None else test,
        examples(16, seed=2) if val is None else val,
        name="toy",
        num_classes=2,
    )


def toy_config(out_dir: Path, **changes) -> Config:
    return Config(
        model={"name": "mlp", "hidden": [4], "num_classes": 2},
        space={"learning_rate": sweepjax.LogUniform(1e-2, 0.1)},
        population=2,
        steps=4,
        batch_size=8,
        eval_every=2,
        out_dir=str(out_dir / "out"),
    ).replace(**changes)


def refused(config: Config, dataset, message: str) -> str:
    """The refusal of `run(config, dataset=...)`: a one-line ValueError (exit code 2) matching
    `message`, with nothing compiled and nothing but the lock file in the folder."""
    with count_compiles() as compiles, pytest.raises(ValueError, match=message) as caught:
        sweepjax.run(config, dataset=dataset, quiet=True)
    text = str(caught.value)
    assert errors.exit_code(caught.value) == errors.EXIT_BAD_INPUT
    assert "\n" not in text, text
    assert compiles[0] == 0
    out = Path(config.out_dir)
    assert not (out / CHECKPOINT_DIR).exists()
    assert not out.exists() or {p.name for p in out.iterdir()} <= {".sweepjax.lock"}
    return text


def with_value(split: dict[str, np.ndarray], leaf: str, index: tuple, value) -> dict:
    array = split[leaf].copy()
    array[index] = value
    return {**split, leaf: array}


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (
            {"train": with_value(examples(64), "inputs", (3, 2), np.nan)},
            r"dataset: 'toy' train inputs hold 1 non-finite value \(NaN or infinity\), the "
            r"first at index \(3, 2\); allowed: finite numbers only",
        ),
        (
            {
                "test": with_value(
                    with_value(examples(16), "inputs", (5, 0), np.inf), "inputs", 9, -np.inf
                )
            },
            r"dataset: 'toy' test inputs hold 9 non-finite values .*, the first at index \(5, 0\)",
        ),
    ],
)
def test_non_finite_data_is_refused(tmp_path, splits, message):
    refused(toy_config(tmp_path), toy(**splits), message)


def test_non_finite_targets_are_refused(tmp_path):
    def regression(count: int, seed: int) -> dict[str, np.ndarray]:
        inputs = examples(count, seed=seed)["inputs"]
        return {"inputs": inputs, "targets": inputs[:, 0] * 2}

    val = regression(16, seed=2)
    val["targets"][7:] = np.nan
    dataset = sweepjax.from_examples(regression(64, 0), regression(16, 1), val, name="toy")
    config = toy_config(
        tmp_path, task="regression", model={"name": "mlp", "hidden": [4], "num_classes": 1}
    )
    refused(config, dataset, r"dataset: 'toy' val targets hold 9 non-finite values .*index \(7,\)")


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (
            {"test": examples(0)},
            r"dataset: 'toy' test split has 0 examples; allowed: at least 1",
        ),
        ({"val": examples(0)}, r"dataset: 'toy' val split has 0 examples; allowed: at least 1"),
        (
            {"train": examples(0)},
            r"batch_size: 8 exceeds the 0 training examples; allowed: a train split of at "
            r"least 8 examples",
        ),
    ],
)
def test_an_empty_split_is_refused(tmp_path, splits, message):
    refused(toy_config(tmp_path), toy(**splits), message)


def test_a_split_without_validation_examples_is_refused(tmp_path):
    dataset = sweepjax.from_examples(examples(64), examples(16), name="toy")  # val_size=0
    refused(toy_config(tmp_path), dataset, r"'toy' val split has 0 examples")


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (
            {"test": examples(16, features=5)},
            r"dataset: 'toy' test inputs have examples of shape \(5,\) float32, but train inputs "
            r"have \(8,\) float32; allowed: every split's examples shaped and typed as train's",
        ),
        ({"val": examples(16, features=6)}, r"'toy' val inputs have examples of shape \(6,\)"),
        (
            {"test": {**examples(16), "inputs": np.zeros((16, 8), np.int32)}},
            r"'toy' test inputs have examples of shape \(8,\) int32, but train inputs have "
            r"\(8,\) float32",
        ),
        (
            {"test": {"inputs": examples(16)["inputs"], "label": np.zeros(16, np.int32)}},
            r"dataset: 'toy' test examples hold \['inputs', 'label'\], but train examples hold "
            r"\['inputs', 'targets'\]; allowed: the same leaves in every split",
        ),
    ],
)
def test_splits_unlike_the_train_split_are_refused(tmp_path, splits, message):
    refused(toy_config(tmp_path), toy(**splits), message)


def test_a_bare_array_is_not_a_dataset(tmp_path):
    refused(
        toy_config(tmp_path),
        np.zeros((10, 3)),
        r"^dataset: expected a sweepjax.Dataset \(from sweepjax.from_arrays or load_dataset\) "
        r"or a name, got ndarray of shape \(10, 3\)",
    )


@pytest.mark.parametrize("key", ["population", "trials"])
def test_a_population_or_trial_count_beyond_the_bound_is_refused(key):
    with pytest.raises(ValueError, match=rf"^{key}: 1000000000 is too large; allowed: .*16777216"):
        validate(Config(**{key: 10**9}))


def test_the_command_refuses_a_huge_population_before_anything(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "default", "--set", "population=1000000000", "--out", str(out)]
    with count_compiles() as compiles:
        code = cli.main(argv)
    stderr = capsys.readouterr().err
    assert code == errors.EXIT_BAD_INPUT, stderr
    assert "population: 1000000000 is too large; allowed: 1 to 16777216" in stderr
    assert compiles[0] == 0 and not out.exists()


class BrokenInit(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        raise RuntimeError("no weights today")

    def __call__(self, x):
        return x


class BrokenCall(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.dense(x[:, :3])  # 3 features into a layer of 8


class BrokenSetup(nn.Module):
    def setup(self):
        raise KeyError("missing layer")

    def __call__(self, x):
        return x


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x)


def line_of(function, text: str) -> int:
    """The line of this file where `function`'s source holds `text`."""
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            BrokenInit,
            rf"model: BrokenInit raised RuntimeError: no weights today \(at "
            rf".*test_bad_data.py:{line_of(BrokenInit.__init__, 'raise')}, in __init__\)",
        ),
        (
            BrokenCall,
            rf"model: cannot take features of shape \(8,\) from 'toy': BrokenCall raised "
            rf"\w+: .* \(at .*test_bad_data.py:{line_of(BrokenCall.__call__, 'return')}, "
            rf"in __call__\)",
        ),
        (
            BrokenSetup(),
            rf"model: cannot take features of shape \(8,\) from 'toy': BrokenSetup raised "
            rf"KeyError: 'missing layer' \(at .*test_bad_data.py:"
            rf"{line_of(BrokenSetup.setup, 'raise')}, in setup\)",
        ),
        (
            LinenNet,
            r"model: LinenNet is a flax.linen.Module class; allowed: an instance of it "
            r"\(model=LinenNet\(\)\)",
        ),
    ],
)
def test_a_failing_user_model_is_the_users_error(tmp_path, model, message):
    refused(toy_config(tmp_path, model=model), toy(), message)


EXPERIMENT = """
from flax import nnx
import sweepjax


class Net(nnx.Module):
    def __init__(self, rngs):
        raise ValueError("my bug")


def get_config():
    return sweepjax.Config(model=Net, population=2, steps=4, batch_size=8, eval_every=2)
"""


def test_the_command_names_the_users_frame_of_a_model_that_fails(tmp_path, capsys):
    experiment, out = tmp_path / "experiment.py", tmp_path / "out"
    experiment.write_text(EXPERIMENT)
    with count_compiles() as compiles:
        code = cli.main(["run", str(experiment), "--out", str(out)])
    stderr = capsys.readouterr().err
    line = EXPERIMENT.splitlines().index('        raise ValueError("my bug")') + 1
    assert code == errors.EXIT_BAD_INPUT, stderr
    assert f"model: Net raised ValueError: my bug (at {experiment}:{line}, in __init__)" in stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert compiles[0] == 0 and not out.exists()


class ScalarNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)[:, 0]


def test_outputs_without_a_class_axis_are_described_as_shapes(tmp_path):
    text = refused(
        toy_config(tmp_path, model=ScalarNet),
        toy(),
        r"^model: ScalarNet returns outputs of shape \(8,\) for a batch of 8; task "
        r"'classification' needs \[batch, num_classes\] = \(8, 2\)",
    )
    assert "set the model's num_classes" not in text


def test_a_built_in_model_with_the_wrong_classes_is_told_to_set_them(tmp_path):
    config = toy_config(tmp_path, model={"name": "mlp", "hidden": [4], "num_classes": 3})
    refused(
        config,
        toy(),
        r"^model: outputs 3 classes but 'toy' has 2; task 'classification' needs "
        r"\[batch, num_classes\] = \(8, 2\), got \(8, 3\); set model.num_classes=2\.",
    )
