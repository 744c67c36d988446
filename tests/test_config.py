"""Invariant 7: bad input is rejected before anything compiles, with a message that names it."""

import pytest
from conftest import count_compiles

import sweepjax
from sweepjax.config import Config, apply_overrides, parse_value


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
            {"search": "bayes"},
            r"search: unknown method 'bayes'; allowed: \['grid', 'random', 'quasi_random'\]",
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
            {"model": {"name": "mlp", "width": 3}},
            r"model.width: 3 is not an option of 'mlp'; allowed: \[",
        ),
        (
            {"model": {"name": "transformer"}},
            r"model.name: unknown model 'transformer'; allowed: \[",
        ),
        ({"steps": 0}, r"steps: 0 must be a positive integer"),
        ({"batch_size": 10_000}, r"batch_size: 10000 exceeds the 200 training examples"),
        (
            {
                "population": 5,
                "search": "grid",
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
