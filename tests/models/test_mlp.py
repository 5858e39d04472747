import numpy as np

from kerasdl.models import mlp


def test_output_shape_and_named_layers():
    model = mlp(input_shape=(64,), num_classes=10, hidden_units=32, num_hidden_layers=2, dropout_rate=0.1, normalization_mean=np.zeros(64), normalization_variance=np.ones(64))
    assert model.output_shape == (None, 10)
    assert [layer.name for layer in model.layers] == ["inputs", "normalization", "flatten", "hidden_0", "dropout_0", "hidden_1", "dropout_1", "logits"]
    assert model(np.zeros((3, 64), np.float32)).shape == (3, 10)


def test_seed_parameter_count_matches_pytorch():
    # The PyTorch seed: nn.Linear(784, 128), ReLU, nn.Linear(128, 10).
    pytorch_parameters = (784 * 128 + 128) + (128 * 10 + 10)
    assert pytorch_parameters == 101_770
    assert mlp(input_shape=(784,), num_classes=10).count_params() == pytorch_parameters


def test_images_are_flattened_and_normalization_is_inside():
    mean, variance = np.full(1, 100.0, np.float32), np.full(1, 400.0, np.float32)
    model = mlp(input_shape=(8, 8, 1), num_classes=3, normalization_mean=mean, normalization_variance=variance)
    normalized = model.get_layer("normalization")(np.full((1, 8, 8, 1), 120.0, np.float32))
    np.testing.assert_allclose(np.asarray(normalized), 1.0, rtol=1e-5)
    # Statistics are not trainable: only the Dense kernels and biases are.
    assert sum(int(np.prod(weight.shape)) for weight in model.trainable_weights) == 64 * 128 + 128 + 128 * 3 + 3
