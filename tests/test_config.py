"""Invariant 7: bad input is rejected before anything compiles, with a message that names it."""

import argparse

import jax
import numpy as np
import pytest
from conftest import count_compiles

import sweepjax
from sweepjax import cli
from sweepjax.runner.run import sample_hparams
from sweepjax.sweep.config import Config, apply_overrides, parse_value
from sweepjax.sweep.validation import validate

pytestmark = pytest.mark.quick


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"space": {"learning_rate": sweepjax.LogUniform(0, 1)}},
            r"learning_rate: .*needs low > 0",
        ),
        (
            {"space": {"momentum": sweepjax.Uniform(0.9, 0.1)}},
            r"momentum: Uniform\(0.9, 0.1\) needs low < high",
        ),
        ({"space": {"momentum": sweepjax.Choice([])}}, r"momentum: Choice\(\[\]\) is empty"),
        (
            {"searcher": "bayes"},
            r"searcher: unknown searcher 'bayes'; allowed: \['grid', 'random', 'quasi_random', ",
        ),
        (
            {"space": {"beta1": 0.9}},
            r"space.beta1: 0.9 is not a hyperparameter of optimizer 'sgd'.*allowed: \[",
        ),
        ({"optimizer": "sgd", "space": {"b1": 0.9}}, r"space.b1: .*allowed: \[.*'momentum'"),
        (
            {"space": {"momentum": 1.5}},
            r"space.momentum: 1.5 is out of range; allowed: \[0.0, 1.0\]",
        ),
        ({"optimizer": "adagrad2"}, r"optimizer: unknown family 'adagrad2'; allowed: \["),
        (
            {"model": {"name": "mlp", "channels": 3}},
            r"model.channels: 3 is not an option of 'mlp'; allowed: \[",
        ),
        (
            {"model": {"name": "mlp", "width": 16, "depth": -1}},
            r"model.depth: -1 is not allowed; allowed: an int >= 0",
        ),
        (
            {"model": {"name": "perceiver"}},
            r"model.name: unknown model 'perceiver'; allowed: \[",
        ),
        ({"steps": 0}, r"steps: 0 must be a positive integer"),
        ({"batch_size": 10_000}, r"batch_size: 10000 exceeds the 200 training examples"),
        (
            {
                "population": 5,
                "searcher": "grid",
                "space": {"learning_rate": sweepjax.Choice([0.1, 0.2])},
            },
            r"population: 5 does not match the grid's 2 points",
        ),
        (
            {"model": {"name": "mlp", "num_classes": 4}},
            r"model: outputs 4 classes but 'tiny' has 3",
        ),
        (
            {"precision": "float16"},
            r"precision: unknown 'float16'; allowed: \['float32', 'bfloat16'\]",
        ),
        (
            {"dataset": "imagenet", "steps": 1},
            r"dataset: unknown data set 'imagenet'; allowed: the embedded",
        ),
    ],
)
def test_bad_input_is_rejected_before_compiling(tiny_config, tiny_data, changes, message):
    config = tiny_config.replace(**changes)
    dataset = None if "dataset" in changes else tiny_data
    with count_compiles() as compiles, pytest.raises(ValueError, match=message):
        sweepjax.run(config, quiet=True, dataset=dataset)
    assert compiles[0] == 0


def test_a_feature_shape_the_model_cannot_take(tiny_data):
    config = Config(
        model={"name": "cnn1d", "channels": [4, 4, 4, 4, 4, 4], "num_classes": 3}, out_dir=None
    )
    with pytest.raises(
        ValueError, match=r"model: cannot take features of shape \(12,\) from 'tiny'"
    ):
        sweepjax.run(config, quiet=True, dataset=tiny_data)


def test_overrides_reach_nested_keys_and_reject_unknown_ones():
    config = apply_overrides(
        Config(),
        ["model.hidden=[8, 8]", "space.learning_rate=LogUniform(1e-4, 0.1)", "population=4"],
    )
    assert config.model == {"name": "mlp", "hidden": [8, 8]}
    assert config.space["learning_rate"] == sweepjax.LogUniform(1e-4, 0.1)
    assert config.population == 4 and Config().model == {"name": "mlp"}  # the original is untouched
    with pytest.raises(ValueError, match=r"stepz: unknown key; valid keys: \[.*'steps'"):
        apply_overrides(Config(), ["stepz=3"])
    with pytest.raises(ValueError, match=r"unknown distribution 'Normal'"):
        parse_value("Normal(0, 1)")


def test_config_json_round_trip():
    config = Config(space={"learning_rate": sweepjax.LogUniform(1e-3, 1.0), "momentum": 0.9})
    assert Config.from_json(config.to_json()) == config


BAD_CONFIGS = [
    # booleans where a number is expected (True is the int 1 in Python)
    (
        {"space": {"learning_rate": True}},
        r"space\.learning_rate: True is a boolean, not a number; allowed: numbers in \(0\.0, inf\)",
    ),
    (
        {"space": {"momentum": sweepjax.Choice([True, False])}},
        r"space\.momentum: True is a boolean, not a number; allowed: numbers in \[0\.0, 1\.0\]",
    ),
    (
        {"space": {"learning_rate": sweepjax.LogUniform(True, 2)}},
        r"space\.learning_rate: LogUniform\(True, 2\): low=True is not a number; allowed: numbers with 0 < low < high",
    ),
    (
        {"space": {"seed": True}},
        r"space\.seed: True is not a member's seed; allowed: integers from 0 to 2147483647",
    ),
    ({"steps": True}, r"steps: True has type bool; allowed: int"),
    ({"population_width": False}, r"population_width: False has type bool; allowed: int or str"),
    # distributions
    (
        {"space": {"learning_rate": sweepjax.LogUniform("a", "b")}},
        r"space\.learning_rate: LogUniform\('a', 'b'\): low='a' is not a number; allowed: numbers with 0 < low < high",
    ),
    (
        {"space": {"learning_rate": sweepjax.LogUniform(1e-3, 1.0, num=0)}},
        r"space\.learning_rate: LogUniform\(0\.001, 1\.0, num=0\): num=0 is not allowed; allowed: None or a positive integer",
    ),
    (
        {"space": {"momentum": sweepjax.Uniform(0.0, 0.9, num=-2)}},
        r"space\.momentum: Uniform\(0\.0, 0\.9, num=-2\): num=-2 is not allowed; allowed: None or a positive integer",
    ),
    (
        {"space": {"seed": sweepjax.IntUniform(0, 4, num=1.5)}},
        r"space\.seed: IntUniform\(0, 4, num=1\.5\): num=1\.5 is not allowed",
    ),
    (
        {"space": {"momentum": sweepjax.Choice(0.9)}},
        r"space\.momentum: Choice\(0\.9\) needs a list of values; allowed: a non-empty list",
    ),
    (
        {"space": {"optimizer": sweepjax.Choice("adam")}},
        r"space\.optimizer: Choice\('adam'\) needs a list of values",
    ),
    (
        {"space": {"momentum": sweepjax.Choice([None])}},
        r"space\.momentum: None is not a number; allowed: numbers in \[0\.0, 1\.0\]",
    ),
    (
        {"space": {"learning_rate": sweepjax.Uniform(1.0, 1e39)}},
        r"space\.learning_rate: Uniform\(1\.0, 1e\+39\): high is out of range; allowed: numbers of magnitude at most 3\.403e\+38 \(float32\)",
    ),
    (
        {"space": {"seed": sweepjax.IntUniform(0, 2**40)}},
        r"space\.seed: IntUniform\(0, 1099511627776\): high is out of range; allowed: integers from -2147483648 to 2147483647",
    ),
    # the space itself
    (
        {"space": None},
        r"space: None is not a mapping; allowed: a mapping of hyperparameter name to a distribution \(Choice, IntUniform, LogUniform, Uniform\) or a fixed number or string",
    ),
    (
        {"space": [1, 2]},
        r"space: \[1, 2\] is not a mapping; allowed: a mapping of hyperparameter name",
    ),
    (
        {"space": {1: 0.1}},
        r"space: 1 is not a hyperparameter name; allowed: a mapping of hyperparameter name",
    ),
    (
        {"space": {"optimizer": 5}},
        r"space\.optimizer: 5 is not a family; allowed: a name from \['adadelta'",
    ),
    (
        {"space": {"schedule": sweepjax.IntUniform(0, 1)}},
        r"space\.schedule: IntUniform\(.*\) is not a family; allowed: a name from \['constant'",
    ),
    # seeds
    (
        {"seed": 2**70},
        r"seed: 1180591620717411303424 is out of range; allowed: integers from 0 to 4294967295 \(2\*\*32 - 1\)",
    ),
    ({"seed": -1}, r"seed: -1 is out of range; allowed: integers from 0 to 4294967295"),
    ({"seed": 2**32}, r"seed: 4294967296 is out of range; allowed: integers from 0 to 4294967295"),
    (
        {"space": {"seed": -1}},
        r"space\.seed: -1 is not a member's seed; allowed: integers from 0 to 2147483647 \(2\*\*31 - 1\)",
    ),
    ({"space": {"seed": 0.5}}, r"space\.seed: 0\.5 is not a member's seed"),
    (
        {"space": {"seed": 2**40}},
        r"space\.seed: 1099511627776 is out of range; allowed: integers from -2147483648 to 2147483647",
    ),
    # out_dir: None writes nothing; an empty name is a mistake
    (
        {"out_dir": ""},
        r"out_dir: '' names no folder; allowed: a folder path, or None to write nothing",
    ),
    ({"out_dir": "  "}, r"out_dir: '  ' names no folder"),
    # huge values
    ({"steps": 10**30}, r"steps: 10{30} is too large; allowed: 1 to 2147483647 \(2\*\*31 - 1\)"),
    ({"population": 2**31}, r"population: 2147483648 is too large; allowed: 1 to 16777216"),
    ({"eval_batch": 10**12}, r"eval_batch: 10{12} is too large; allowed: 1 to 2147483647"),
    ({"keep_checkpoints": 10**30}, r"keep_checkpoints: 10{30} is too large"),
    # more keys that raised TypeError or passed
    ({"model": {"name": ["mlp"]}}, r"model\.name: unknown model \['mlp'\]; allowed: \['cnn1d'"),
    (
        {"normalize": "zscore"},
        r"normalize: unknown 'zscore'; allowed: \['standard', 'scale', 'none'\]",
    ),
    (
        {"model": {"name": "cnn1d"}, "space": {"model.kernel": sweepjax.IntUniform(3.0, 4.5)}},
        r"space\.model\.kernel: IntUniform\(3\.0, 4\.5\) needs integer bounds",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD_CONFIGS)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(changes, message):
    with pytest.raises(ValueError, match=message):
        validate(Config(out_dir=None).replace(**changes))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("space.learning_rate=true", r"space\.learning_rate: True is a boolean, not a number"),
        (
            "space.learning_rate=Uniform(1, 2, 3, 4, 5)",
            r"space\.learning_rate: Uniform\(1, 2, 3, 4, 5\): too many positional arguments; allowed: Uniform\(low, high, num=None\)",
        ),
        (
            "space.learning_rate=LogUniform(1e-3, 1, foo=2)",
            r"space\.learning_rate: LogUniform\(0\.001, 1, foo=2\): got an unexpected keyword argument 'foo'; allowed: LogUniform\(low, high, num=None\)",
        ),
        (
            'space.learning_rate=LogUniform("a", "b")',
            r"space\.learning_rate: LogUniform\('a', 'b'\): low='a' is not a number",
        ),
        (
            "space.learning_rate=LogUniform(1e-3, 1, num=0)",
            r"space\.learning_rate: LogUniform\(0\.001, 1, num=0\): num=0 is not allowed",
        ),
        (
            "space.momentum=Choice()",
            r"space\.momentum: Choice\(\): missing a required argument: 'values'; allowed: Choice\(values\)",
        ),
        (
            "space.momentum=Choice(0.1, 0.9)",
            r"space\.momentum: Choice\(0\.1, 0\.9\): too many positional arguments",
        ),
        (
            "space.learning_rate=Uniform(lr, 1)",
            r"space\.learning_rate: Uniform\(lr, 1\): arguments must be literal numbers, strings or lists; allowed: Uniform\(low, high, num=None\)",
        ),
        (
            "space.learning_rate=Uniform(**{'low': 1})",
            r"space\.learning_rate: .*arguments must be literal",
        ),
        (
            "space.learning_rate=Normal(0, 1)",
            r"space\.learning_rate: unknown distribution 'Normal'; allowed: \['Choice'",
        ),
        ("seed=2**70", r"seed: '2\*\*70' has type str; allowed: int"),
        (
            "seed=1180591620717411303424",
            r"seed: 1180591620717411303424 is out of range; allowed: integers from 0 to 4294967295",
        ),
        ("model=[1]", r"model\.name: unknown model \[1\]"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        validate(apply_overrides(Config(out_dir=None), [override]))


def test_on_off_flags_take_booleans():
    config = Config(schedule="exponential", space={"staircase": True}, population=2, out_dir=None)
    assert sample_hparams(validate(config))["staircase"].tolist() == [1.0, 1.0]


def test_the_largest_seeds_sample_and_key_members():
    top = Config(seed=2**32 - 1, space={"seed": 2**31 - 1}, population=2, out_dir=None)
    assert sample_hparams(validate(top))["seed"].tolist() == [2**31 - 1] * 2
    drawn = top.replace(space={"seed": sweepjax.IntUniform(0, 2**31 - 1)}, searcher="random")
    assert sample_hparams(validate(drawn))["seed"].dtype == np.int32
    assert jax.random.key_data(jax.random.key(top.seed)).tolist() == [0, 2**32 - 1]


def test_a_saved_config_with_an_unknown_key_is_a_value_error():
    with pytest.raises(ValueError, match=r"config: unknown keys \['stepz'\]; allowed: \['dataset'"):
        Config.from_json({**Config().to_json(), "stepz": 3})


def test_an_empty_out_reaches_validation():
    args = argparse.Namespace(experiment="default", overrides=["population=2"], out="")
    with pytest.raises(ValueError, match=r"out_dir: '' names no folder"):
        validate(cli._experiment_config(args))
