import numpy as np
import pytest

from kerasdl.models import cnn


def test_seed_parameter_count_matches_pytorch():
    # The PyTorch seed on 32x32x3: Conv2d(3, 32, 3, padding=1), MaxPool2d(2), Conv2d(32, 64, 3, padding=1),
    # MaxPool2d(2), Linear(64 * 8 * 8, 512), Dropout(0.5), Linear(512, 10).
    pytorch_parameters = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 8 * 8 * 512 + 512) + (512 * 10 + 10)
    assert pytorch_parameters == 2_122_186
    assert cnn(input_shape=(32, 32, 3), num_classes=10).count_params() == pytorch_parameters


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (28, 28, 1), (33, 47, 3), (1, 1, 5)])
def test_any_input_size_and_channel_count(input_shape):
    model = cnn(input_shape=input_shape, num_classes=4, dense_units=16)
    assert model.output_shape == (None, 4)
    assert model(np.zeros((2, *input_shape), np.float32)).shape == (2, 4)


def test_batch_norm_layers_are_named_and_replace_the_conv_bias():
    model = cnn(input_shape=(16, 16, 3), num_classes=2, batch_norm=True, dense_units=8, normalization_mean=np.zeros(3), normalization_variance=np.ones(3))
    names = [layer.name for layer in model.layers]
    assert names == [
        "inputs", "resize", "normalization",
        "conv_0", "batch_norm_0", "relu_0", "pool_0",
        "conv_1", "batch_norm_1", "relu_1", "pool_1",
        "flatten", "dense", "dropout", "logits",
    ]
    assert model.get_layer("conv_0").bias is None
