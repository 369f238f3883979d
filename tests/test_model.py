"""The tutorial model's shape and training's reproducibility and resume."""

import numpy as np
import pytest

from toolkit.model import ARCHITECTURES, TrainConfig, epoch_order, train

EXPECTED_PARAMETERS = {"mlp": 101_770}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architecture_shapes(arch):
    model = ARCHITECTURES[arch]()
    assert tuple(model.input_shape) == (None, 28, 28)
    assert tuple(model.output_shape) == (None, 10)
    assert model.inputs[0].name == "images"
    assert model.layers[-1].name == "probabilities"
    assert model.count_params() <= 101_770


def test_tutorial_model_parameter_count():
    assert ARCHITECTURES["mlp"]().count_params() == EXPECTED_PARAMETERS["mlp"]


def test_epoch_order_depends_only_on_seed_and_epoch():
    assert np.array_equal(epoch_order(3, 1, 100), epoch_order(3, 1, 100))
    assert not np.array_equal(epoch_order(3, 1, 100), epoch_order(3, 2, 100))


def _weights(dataset, tmp_path, name, **config):
    result = train(dataset, TrainConfig(limit=500, epochs=2, **config), tmp_path / name)
    return result.model.get_weights()


def test_same_seed_gives_bit_identical_weights(dataset, tmp_path):
    first = _weights(dataset, tmp_path, "a", seed=7)
    second = _weights(dataset, tmp_path, "b", seed=7)
    other = _weights(dataset, tmp_path, "c", seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))
