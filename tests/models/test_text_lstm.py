"""Tests of the text LSTM builder: vocabulary, tokenizer inside, token-id sub-model, saving, ONNX."""

import keras
import numpy as np
import pytest

from kerasdl import artifact
from kerasdl.models.lstm import text_lstm
from kerasdl.models.recurrent import build_text_vocabulary
from kerasdl.models.recurrent import text_token_model as text_lstm_token_model

TEXTS = np.array(
    ["Good, good film!", "bad film", "not good at all", "a great movie", "a dull, bad movie", "great fun"],
    dtype=object,
)
LABELS = np.array([1, 0, 0, 1, 0, 1])


@pytest.fixture(scope="module")
def vocabulary():
    return build_text_vocabulary(TEXTS, max_tokens=50)


@pytest.fixture(scope="module")
def model(vocabulary):
    keras.utils.set_random_seed(0)
    return text_lstm(num_classes=2, vocabulary=vocabulary, sequence_length=8, embedding_dim=8, hidden_size=4)


def test_vocabulary_is_standardized_and_ordered_by_frequency(vocabulary):
    assert vocabulary[:2] == ["", "[UNK]"]
    assert vocabulary[2] == "good"  # 3 occurrences, the most frequent word
    assert "film!" not in vocabulary and "film" in vocabulary
    assert all(type(token) is str for token in vocabulary)
    assert len(build_text_vocabulary(TEXTS, max_tokens=5)) == 5
    with pytest.raises(ValueError, match="no texts"):
        build_text_vocabulary([], max_tokens=5)


def test_strings_in_logits_out(model, vocabulary):
    assert model.layers[-1].name == "logits"
    assert model.input.dtype == "string"
    logits = model.predict(TEXTS, verbose=0)
    assert logits.shape == (len(TEXTS), 2)
    ids = keras.ops.convert_to_numpy(model.get_layer("text_vectorization")(np.array(["Good film, unseen."], dtype=object)))
    assert ids.tolist() == [[vocabulary.index("good"), vocabulary.index("film"), 1, 0, 0, 0, 0, 0]]
    assert model.get_layer("text_vectorization").get_vocabulary() == vocabulary


def test_padding_does_not_change_the_prediction(model):
    # One text alone and the same text in a batch with a longer one: same ids, same padding, same logits;
    # and an embedding of the padding id that changes must not matter either (it is masked).
    token_model = text_lstm_token_model(model)
    ids = np.array([[2, 3, 0, 0, 0, 0, 0, 0]], dtype="int64")
    before = token_model.predict(ids, verbose=0)
    embedding = model.get_layer("embedding")
    original = embedding.get_weights()
    changed = [original[0].copy()]
    changed[0][0] += 5.0
    embedding.set_weights(changed)
    try:
        np.testing.assert_allclose(token_model.predict(ids, verbose=0), before, atol=1e-6)
        np.testing.assert_allclose(token_model.predict(ids[:, :2], verbose=0), before, atol=1e-6)
    finally:
        embedding.set_weights(original)


def test_token_model_matches_the_string_model_and_exports_to_onnx(model, tmp_path):
    import onnxruntime

    token_model = text_lstm_token_model(model)
    assert token_model.input.name == "token_ids"
    assert token_model.input.dtype == "int64"
    ids = keras.ops.convert_to_numpy(model.get_layer("text_vectorization")(TEXTS))
    expected = model.predict(TEXTS, verbose=0)
    np.testing.assert_allclose(token_model.predict(ids, verbose=0), expected, atol=1e-6)

    path = str(tmp_path / "model.onnx")
    token_model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [(item.name, item.type) for item in session.get_inputs()] == [("token_ids", "tensor(int64)")]
    (actual,) = session.run(None, {"token_ids": ids})
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    with pytest.raises(ValueError, match="not a text_lstm model"):
        text_lstm_token_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="logits")]))


def test_keras_file_round_trip_keeps_vocabulary_and_predictions(model, vocabulary, tmp_path):
    path = tmp_path / "model.keras"
    artifact.save_model(model, path, {"model": "text_lstm", "text": {"tokenizer": "text_vectorization", "sequence_length": 8}})
    loaded, metadata = artifact.load_model(path)
    assert metadata["text"]["sequence_length"] == 8
    assert loaded.get_layer("text_vectorization").get_vocabulary() == vocabulary
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="non-empty vocabulary"):
        text_lstm(num_classes=2, vocabulary=["", "[UNK]"])
    with pytest.raises(ValueError, match="num_layers"):
        text_lstm(num_classes=2, vocabulary=["a"], num_layers=0)


def test_loss_drops_over_a_few_steps(vocabulary):
    keras.utils.set_random_seed(0)
    model = text_lstm(
        num_classes=2, vocabulary=vocabulary, sequence_length=8, embedding_dim=8, hidden_size=8, num_layers=1, dropout_rate=0.0
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(TEXTS, LABELS, epochs=6, batch_size=6, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
