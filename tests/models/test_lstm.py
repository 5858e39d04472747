"""Tests of the numeric-sequence LSTM builder: masking, normalization, saving, ONNX."""

import keras
import numpy as np
import pytest

from kerasdl import artifact
from kerasdl.models.layers import standardization_layer
from kerasdl.models.lstm import lstm

MEAN = [3.0, -1.0]
VARIANCE = [4.0, 0.25]


def _sequences(lengths, features=2, seed=0):
    """Returns the separate sequences and their zero-padded batch."""
    rng = np.random.default_rng(seed)
    sequences = [(rng.normal(size=(length, features)) * 2 + 3).astype("float32") for length in lengths]
    batch = np.zeros((len(lengths), max(lengths), features), "float32")
    for index, sequence in enumerate(sequences):
        batch[index, : len(sequence)] = sequence
    return sequences, batch


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return lstm(
        input_shape=(None, 2),
        num_classes=3,
        hidden_size=8,
        num_layers=2,
        bidirectional=True,
        normalization_mean=MEAN,
        normalization_variance=VARIANCE,
    )


def test_output_is_logits_and_lstms_use_the_generic_kernel(model):
    assert model.output_shape == (None, 3)
    assert model.layers[-1].name == "logits"
    assert model.input.name == "sequences"
    lstms = [layer.forward_layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert len(lstms) == 2
    assert [layer.return_sequences for layer in lstms] == [True, False]
    assert all(layer.use_cudnn is False for layer in lstms)


def test_padded_batch_predicts_like_each_unpadded_sequence(model):
    sequences, batch = _sequences([3, 7, 5, 1])
    padded = model.predict(batch, verbose=0)
    alone = np.concatenate([model.predict(sequence[None], verbose=0) for sequence in sequences])
    np.testing.assert_allclose(padded, alone, atol=1e-5)
    # More padding changes nothing either.
    longer = np.concatenate([batch, np.zeros((4, 5, 2), "float32")], axis=1)
    np.testing.assert_allclose(model.predict(longer, verbose=0), padded, atol=1e-5)


def test_standardization_matches_keras_normalization():
    values = np.random.default_rng(1).normal(size=(4, 6, 2)).astype("float32")
    expected = keras.layers.Normalization(axis=-1, mean=MEAN, variance=VARIANCE)(values)
    actual = standardization_layer(MEAN, VARIANCE)(values)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected), atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        standardization_layer([0.0, 1.0], [1.0])


def test_onnx_export_has_one_input_with_dynamic_batch_and_time(model, tmp_path):
    import onnxruntime

    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [item.name for item in inputs] == ["sequences"]
    assert not isinstance(inputs[0].shape[0], int) and not isinstance(inputs[0].shape[1], int)
    for lengths in ([3, 7, 5], [2, 11]):
        _, batch = _sequences(lengths, seed=len(lengths))
        (actual,) = session.run(None, {"sequences": batch})
        np.testing.assert_allclose(actual, model.predict(batch, verbose=0), atol=1e-4)


def test_keras_file_round_trip_predicts_the_same(model, tmp_path):
    _, batch = _sequences([4, 2])
    path = tmp_path / "model.keras"
    artifact.save_model(model, path, {"model": "lstm", "modality": "sequence"})
    loaded, metadata = artifact.load_model(path)
    assert metadata["modality"] == "sequence"
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_fixed_length_unidirectional_model_and_bad_shapes():
    model = lstm(input_shape=(12, 1), num_classes=2, hidden_size=4, dropout_rate=0.0)
    assert model.input_shape == (None, 12, 1)
    assert "normalization" not in [layer.name for layer in model.layers]
    with pytest.raises(ValueError, match="time steps or None, features"):
        lstm(input_shape=(12,), num_classes=2)


def test_loss_drops_over_a_few_steps():
    keras.utils.set_random_seed(0)
    _, batch = _sequences([6, 4, 8, 5, 7, 3, 8, 2], seed=3)
    labels = np.array([0, 1] * 4)
    batch[labels == 1] += 1.0 * (batch[labels == 1] != 0)  # a learnable difference, padding kept at zero
    model = lstm(
        input_shape=(None, 2),
        num_classes=2,
        hidden_size=8,
        dropout_rate=0.0,
        normalization_mean=MEAN,
        normalization_variance=VARIANCE,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(batch, labels, epochs=10, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
