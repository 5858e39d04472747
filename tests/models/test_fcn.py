"""Tests of the FCN entry (Wang et al. 2017): layers, padding that changes no prediction, saving, the entry, a tiny
train on real ECG200 series, and `python -m training.run fcn` end to end."""

import json

import keras
import numpy as np
import pytest

from kerasdl import artifact
from kerasdl.models.fcn import fcn
from kerasdl.models.registry import DataFacts, get_model_entry
from training.run import main

SMALL = (8, 16, 8)


def _randomize_batch_norm(model, seed=0):
    """Moving statistics and shifts far from their initial 0/1, so that inference-mode tests see them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, size))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, size))
            layer.beta.assign(rng.normal(0, 0.5, size))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size))


def _padded(series, length):
    batch = np.zeros((len(series), length, series[0].shape[-1]), "float32")
    for index, one in enumerate(series):
        batch[index, : len(one)] = one
    return batch


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    built = fcn(input_shape=(None, 1), num_classes=3, filters=SMALL)
    _randomize_batch_norm(built)
    return built


def test_the_default_network_is_the_papers_three_blocks():
    network = fcn(input_shape=(96, 1), num_classes=2)
    names = [layer.name for layer in network.layers]
    assert names == [
        "sequences", "padding_mask", "series_normalization", "zero_padding_input",
        "conv_0", "batch_norm_0", "relu_0", "zero_padding_0",
        "conv_1", "batch_norm_1", "relu_1", "zero_padding_1",
        "conv_2", "batch_norm_2", "relu_2", "zero_padding_2",
        "global_average_pooling", "logits",
    ]
    convolutions = [network.get_layer(f"conv_{index}") for index in range(3)]
    assert [(layer.filters, layer.kernel_size, layer.padding, layer.use_bias) for layer in convolutions] == [
        (128, (8,), "same", False), (256, (5,), "same", False), (128, (3,), "same", False),
    ]
    assert all(network.get_layer(f"batch_norm_{index}").momentum == 0.9 for index in range(3))
    assert network.output_shape == (None, 2)
    # conv 1*128*8 + 128*256*5 + 256*128*3, batch norm 4 per channel, logits 128*2 + 2.
    assert network.count_params() == 1024 + 163840 + 98304 + 4 * (128 + 256 + 128) + 258


def test_several_features_use_the_dataset_statistics_and_dropout_is_optional():
    network = fcn(input_shape=(None, 2), num_classes=4, filters=(4,), kernel_sizes=(3,), dropout_rate=0.3,
                  normalization_mean=[1.0, -1.0], normalization_variance=[4.0, 0.25])
    names = [layer.name for layer in network.layers]
    assert set(names[:4]) == {"sequences", "padding_mask", "normalization", "zero_padding_input"}
    assert names[-3:] == ["global_average_pooling", "dropout", "logits"]
    assert "series_normalization" not in names
    assert network.output_shape == (None, 4)


@pytest.mark.parametrize("features, options", [
    (1, {}),
    (2, {"normalization_mean": [1.0, -1.0], "normalization_variance": [4.0, 0.25]}),
    (2, {"normalization": "none"}),
])
def test_padding_never_changes_a_prediction(features, options):
    keras.utils.set_random_seed(1)
    network = fcn(input_shape=(None, features), num_classes=3, filters=SMALL, **options)
    _randomize_batch_norm(network, seed=features)
    rng = np.random.default_rng(features)
    series = [rng.normal(size=(length, features)).astype("float32") + 2 for length in (5, 11, 1, 20)]
    alone = np.concatenate([network.predict(one[None], verbose=0) for one in series])
    batch = _padded(series, 32)
    padded = network.predict(batch, verbose=0)
    np.testing.assert_allclose(keras.ops.softmax(padded).numpy(), keras.ops.softmax(alone).numpy(), atol=1e-5)
    np.testing.assert_allclose(padded, alone, atol=1e-4)
    # Without the re-zeroing and the masked pooling the padding would move the answers: check it is not trivial.
    assert np.abs(network.predict(_padded(series, 33), verbose=0) - alone).max() < 1e-4
    assert np.abs(padded).max() > 0.1


def test_batch_norm_training_statistics_skip_the_padding():
    """In training mode a padded batch normalizes with the statistics of the valid steps only."""
    keras.utils.set_random_seed(2)
    network = fcn(input_shape=(None, 1), num_classes=2, filters=SMALL)
    series = np.random.default_rng(3).normal(size=(4, 15, 1)).astype("float32")
    padded = np.concatenate([series, np.zeros((4, 9, 1), "float32")], axis=1)
    unpadded_logits = np.asarray(network(series, training=True))
    padded_logits = np.asarray(network(padded, training=True))
    np.testing.assert_allclose(padded_logits, unpadded_logits, atol=1e-4)


def test_a_series_of_zeros_is_a_series_not_an_empty_one(model):
    """All steps 0.0 would be all padding: the mask keeps them, so the mean divides by the length, not by 0."""
    logits = model.predict(np.zeros((2, 7, 1), "float32"), verbose=0)
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits[0], logits[1])


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match=r"fcn needs sequences of shape \(time steps or None, features\), got \(12,\)"):
        fcn(input_shape=(12,), num_classes=2)
    with pytest.raises(ValueError, match=r"fcn needs one kernel size per convolution block, got filters=\(8, 8\) and kernel_sizes=\(3,\)"):
        fcn(input_shape=(None, 1), num_classes=2, filters=(8, 8), kernel_sizes=(3,))
    with pytest.raises(ValueError, match="normalization must be one of auto, dataset, series, none, got 'global'"):
        fcn(input_shape=(None, 1), num_classes=2, normalization="global")


def test_saved_and_loaded_fcn_predicts_the_same(model, tmp_path):
    path = tmp_path / "fcn.keras"
    artifact.save_model(model, path, {"model": "fcn", "modality": "sequence", "class_names": ["a", "b", "c"]})
    loaded, metadata = artifact.load_model(path)
    batch = _padded([np.random.default_rng(4).normal(size=(length, 1)).astype("float32") for length in (6, 3)], 9)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    assert metadata["model"] == "fcn"


def test_the_entry():
    entry = get_model_entry("fcn")
    assert entry.modalities == ("sequence",) and entry.text is None
    assert entry.builder_arguments() == {
        "filters": (128, 256, 128), "kernel_sizes": (8, 5, 3), "dropout_rate": 0.0, "batch_norm_momentum": 0.9, "normalization": "auto",
    }
    assert entry.backend == "jax" and entry.quantization == "static"
    network = entry(DataFacts("sequence", (None, 1), 3), filters=SMALL)
    assert network.output_shape == (None, 3) and network.get_layer("conv_1").filters == 16


def _ucr(shared_data, part):
    rows = np.loadtxt(shared_data / "ucr" / f"ECG200_{part}.txt")
    return rows[:, 1:, None].astype("float32"), (rows[:, 0] > 0).astype("int64")


def test_a_tiny_fcn_learns_real_ecg200_series(shared_data):
    """A quarter-width FCN, 30 epochs of the 100 training series: well above the majority class on the test split."""
    x_train, y_train = _ucr(shared_data, "TRAIN")
    x_test, y_test = _ucr(shared_data, "TEST")
    keras.utils.set_random_seed(0)
    network = fcn(input_shape=(None, 1), num_classes=2, filters=(32, 64, 32))
    network.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    network.fit(x_train, y_train, batch_size=16, epochs=30, verbose=0)
    majority = max(np.mean(y_test), 1 - np.mean(y_test))
    _, accuracy = network.evaluate(x_test, y_test, verbose=0)
    assert majority == 0.64 and accuracy >= 0.8, accuracy


def test_training_run_fcn_on_a_ucr_set(shared_data, tmp_path):
    arguments = [
        "fcn", "--data", str(shared_data / "ucr" / "Coffee"), "--epochs", "2", "--output", str(tmp_path),
        "--set", "model.filters=[8,16,8]", "--set", "train.min_validation_examples=0", "--set", "train.verbose=2",
    ]
    assert main(arguments) == 0
    (run_dir,) = sorted((tmp_path / "fcn").iterdir())
    metadata = artifact.load_metadata(run_dir / "model.keras")
    assert metadata["model"] == "fcn" and metadata["modality"] == "sequence" and metadata["input"]["shape"] == [None, 1]
    loaded, _ = artifact.load_model(run_dir / "model.keras")
    assert loaded.get_layer("conv_1").filters == 16 and loaded.get_layer("series_normalization") is not None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_examples"] == 28 and metrics["epochs"] == 2
    assert metrics["baseline"]["name"] == "1nn_euclidean" and metrics["baseline"]["test_accuracy"] == 1.0
