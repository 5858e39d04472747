"""Tests of the ResNet50 builder: preprocessing, weights, fine-tuning phases, saving, ONNX."""

import os
import urllib.error

import h5py
import keras
import numpy as np
import pytest

from kerasdl import artifact
from kerasdl.models.layers import CaffePreprocessing
from kerasdl.models.resnet50 import (
    IMAGENET_WEIGHTS_FILE,
    resnet50,
    set_trainable_blocks,
)

NUM_CLASSES = 3
FEATURES = 2048  # ResNet50's pooled feature width.
HEAD_PARAMETERS = FEATURES * NUM_CLASSES + NUM_CLASSES
# conv5_block3 (and conv5_block2): 1x1 2048->512, 3x3 512->512, 1x1 512->2048, each with bias.
TOP_BLOCK_PARAMETERS = (2048 * 512 + 512) + (3 * 3 * 512 * 512 + 512) + (512 * 2048 + 2048)


def _images(count, shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


def _trainable_count(model):
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


@pytest.fixture(scope="module")
def grey_model():
    return resnet50(input_shape=(20, 24, 1), num_classes=NUM_CLASSES, weights=None, image_size=32)


def test_output_is_logits_for_grey_and_rgb_images(grey_model):
    assert grey_model.output_shape == (None, NUM_CLASSES)
    assert grey_model.layers[-1].name == "logits"
    assert grey_model.layers[-1].activation is keras.activations.linear
    assert grey_model.get_layer("resize").output.shape[1:] == (32, 32, 3)
    logits = grey_model.predict(_images(2, (20, 24, 1)), verbose=0)
    assert logits.shape == (2, NUM_CLASSES)
    assert np.isfinite(logits).all()


def test_preprocessing_layer_matches_keras_preprocess_input():
    images = _images(2, (5, 5, 3))
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    actual = keras.ops.convert_to_numpy(CaffePreprocessing(name="preprocess_input")(images))
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_grey_images_are_repeated_to_three_channels(grey_model):
    grey = _images(1, (20, 24, 1))
    repeated = keras.Model(grey_model.input, grey_model.get_layer("grey_to_rgb").output)(grey)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(repeated), np.repeat(grey, 3, axis=-1))


def test_preprocessing_exports_to_onnx_with_exactly_one_input(tmp_path):
    # The full ResNet50 export takes ~30 s, so the test exports the same
    # preprocessing layers (the part that used to add a bogus captured-constant
    # input) in front of a small head; the full model was checked by hand.
    import onnxruntime

    inputs = keras.Input(shape=(20, 24, 1), name="images")
    x = keras.layers.Concatenate(axis=-1, name="grey_to_rgb")([inputs, inputs, inputs])
    x = CaffePreprocessing(name="preprocess_input")(keras.layers.Resizing(32, 32, name="resize")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(x))
    images = _images(3, (20, 24, 1))
    expected = model.predict(images, verbose=0)

    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == ["images"]
    (actual,) = session.run(None, {"images": images})
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_keras_file_round_trip_predicts_the_same(grey_model, tmp_path):
    images = _images(2, (20, 24, 1))
    expected = grey_model.predict(images, verbose=0)
    path = tmp_path / "model.keras"
    artifact.save_model(grey_model, path, {"model": "resnet50"})
    loaded, metadata = artifact.load_model(path)
    assert metadata == {"model": "resnet50"}
    assert isinstance(loaded.get_layer("preprocess_input"), CaffePreprocessing)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-5)


def test_local_weights_files_load_exactly_into_the_base(tmp_path):
    source = resnet50(input_shape=(32, 32, 3), num_classes=2, weights=None, image_size=32)
    base = source.get_layer("resnet50")
    keras3_file = str(tmp_path / "base.weights.h5")
    base.save_weights(keras3_file)
    # The Keras ImageNet download is a legacy (layer-name keyed) .h5 file; write one the same way.
    from keras.src.legacy.saving import legacy_h5_format

    legacy_file = str(tmp_path / IMAGENET_WEIGHTS_FILE)
    with h5py.File(legacy_file, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, base)

    for path in (keras3_file, legacy_file):
        rebuilt = resnet50(input_shape=(32, 32, 3), num_classes=2, weights=path, image_size=32)
        rebuilt_weights = rebuilt.get_layer("resnet50").get_weights()
        assert len(rebuilt_weights) == len(base.get_weights())
        for expected, actual in zip(base.get_weights(), rebuilt_weights):
            np.testing.assert_array_equal(actual, expected)


def test_bad_weights_arguments_fail_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        resnet50(input_shape=(32, 32, 3), num_classes=2, weights=str(tmp_path / "missing.h5"), image_size=32)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    wrong = str(tmp_path / "other.weights.h5")
    other.save_weights(wrong)
    with pytest.raises(ValueError, match="must hold the weights of the ResNet50 base") as error:
        resnet50(input_shape=(32, 32, 3), num_classes=2, weights=wrong, image_size=32)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="at least 32"):
        resnet50(input_shape=(32, 32, 3), num_classes=2, weights=None, image_size=16)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        resnet50(input_shape=(32, 32, 4), num_classes=2, weights=None, image_size=32)


def test_imagenet_offline_fails_fast_with_the_remedies(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    if os.path.exists(os.path.expanduser(os.path.join("~", ".keras", "models", IMAGENET_WEIGHTS_FILE))):
        pytest.skip("the ImageNet weights are cached here, so nothing would be downloaded")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(ValueError) as error:
        resnet50(input_shape=(32, 32, 3), num_classes=2, weights="imagenet", image_size=32)
    message = str(error.value)
    assert "\n" not in message
    assert "--weights none" in message
    assert f"--weights path/to/{IMAGENET_WEIGHTS_FILE}" in message
    assert "~/.keras/models" in message or ".keras" in message


def test_trainable_parameter_counts_of_both_phases(grey_model):
    model = grey_model
    # A fresh model: the base is frozen, only the head trains.
    assert _trainable_count(model) == HEAD_PARAMETERS

    assert set_trainable_blocks(model, 2) == ["conv5_block3", "conv5_block2"]
    base = model.get_layer("resnet50")
    from_layers = sum(
        int(np.prod(weight.shape))
        for layer in base.layers
        if layer.name.startswith(("conv5_block3_", "conv5_block2_")) and isinstance(layer, keras.layers.Conv2D)
        for weight in layer.weights
    )
    assert from_layers == 2 * TOP_BLOCK_PARAMETERS
    assert _trainable_count(model) == HEAD_PARAMETERS + 2 * TOP_BLOCK_PARAMETERS
    assert not any(
        layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    )

    assert set_trainable_blocks(model, 0) == []
    assert _trainable_count(model) == HEAD_PARAMETERS
    with pytest.raises(ValueError, match="between 0 and 16"):
        set_trainable_blocks(model, 17)


def test_two_phase_fine_tuning_trains_what_each_phase_says():
    keras.utils.set_random_seed(0)
    model = resnet50(input_shape=(32, 32, 3), num_classes=2, weights=None, image_size=32, dropout_rate=0.0)
    base = model.get_layer("resnet50")
    images, labels = _images(16, (32, 32, 3), seed=1), np.array([0, 1] * 8)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # Phase 1: the head alone learns, the loss drops. (A small rate: random
    # ResNet features are large, and a larger one overshoots.)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
    losses = model.fit(images, labels, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]

    # Phase 2: the top block's convolutions train too, BatchNormalization does not.
    set_trainable_blocks(model, 1)
    watched = {
        name: [np.array(weight) for weight in base.get_layer(name).get_weights()]
        for name in ("conv5_block3_2_conv", "conv5_block3_2_bn", "conv5_block2_2_conv", "conv4_block6_3_bn")
    }
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
    model.fit(images, labels, epochs=1, batch_size=16, verbose=0)
    changed = {
        name: any(not np.array_equal(before, after) for before, after in zip(weights, base.get_layer(name).get_weights()))
        for name, weights in watched.items()
    }
    assert changed == {
        "conv5_block3_2_conv": True,  # unfrozen block
        "conv5_block3_2_bn": False,  # BN frozen and in inference mode: moving statistics untouched
        "conv5_block2_2_conv": False,  # below the unfrozen block
        "conv4_block6_3_bn": False,
    }
