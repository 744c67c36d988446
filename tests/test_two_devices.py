"""Every per-member path trains on two devices, as the `sweepjax` command runs it on two cores.

The session has two CPU devices (conftest), so each sweep here splits its population across
them; each test also checks that the members learned (their validation loss fell), so a path
that ran but trained nothing would fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import sweepjax

PATHS = {
    "schedule families": {"schedule": ("cosine", "sgdr", "constant", "piecewise_constant")},
    "optimizer families": {"optimizer": ("sgd", "adam")},
    "buckets": {"space": {"learning_rate": 0.1, "model.hidden": sweepjax.Choice([[8], [16]])}},
    "streamed data": {"data_placement": "stream"},
    "dropout": {"space": {"learning_rate": 0.1, "dropout": sweepjax.Uniform(0.0, 0.3)}},
    "batch size as data": {"space": {"learning_rate": 0.1, "batch_size": sweepjax.Choice([8, 16])}},
    "bfloat16": {"precision": "bfloat16"},
    "augmentation": {"augment": {"crop_padding": 1, "flip": True}},
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_each_per_member_path_trains_split_across_two_devices(
    path, tiny_config, tiny_data, tiny_images
):
    config = tiny_config.replace(population=4, steps=20, eval_every=10, **PATHS[path])
    data = tiny_data
    if path == "augmentation":
        data = tiny_images
        config = config.replace(model={"name": "cnn2d", "channels": [4], "num_classes": 3})
    result = sweepjax.run(config, dataset=data, quiet=True)
    assert result.summary["population_devices"] == 2
    assert result.summary["steps_done"] == 20
    first, last = result.curves["val_loss"][0], result.curves["val_loss"][-1]
    assert np.all(np.isfinite(last)) and np.mean(last) < np.mean(first)
