"""Tests of the BERT builder: from scratch, from a preset folder, saving, the token-id model, ONNX."""

import json

import keras
import numpy as np
import pytest

from kerasdl import artifact
from kerasdl.data.synthetic_text import load_synthetic_sentiment
from kerasdl.models.bert import (
    RESERVED_TOKENS,
    bert,
    bert_token_model,
    build_wordpiece_vocabulary,
    save_bert_tokenizer,
)

SIZE = dict(sequence_length=16, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)


def _texts_and_labels(count):
    splits = load_synthetic_sentiment(num_examples=count, seed=0, validation_fraction=0.0, test_fraction=0.0)
    texts, labels = [], []
    for text, label in splits.train.dataset.as_numpy_iterator():
        texts.append(text.decode())
        labels.append(int(label))
    return np.array(texts, dtype=object), np.array(labels)


@pytest.fixture(scope="module")
def data():
    return _texts_and_labels(200)


@pytest.fixture(scope="module")
def vocabulary(data):
    return build_wordpiece_vocabulary(data[0], vocabulary_size=200)


@pytest.fixture(scope="module")
def classifier(vocabulary):
    keras.utils.set_random_seed(0)
    return bert(num_classes=2, vocabulary=vocabulary, **SIZE)


def test_wordpiece_vocabulary_starts_with_reserved_tokens(vocabulary):
    assert vocabulary[:5] == RESERVED_TOKENS
    assert 100 < len(vocabulary) <= 200
    assert "good" in vocabulary and "not" in vocabulary
    assert all(token == token.lower() for token in vocabulary[5:])
    with pytest.raises(ValueError, match="no texts"):
        build_wordpiece_vocabulary([], vocabulary_size=50)


def test_strings_in_logits_out(classifier, data):
    import keras_hub

    assert isinstance(classifier, keras_hub.models.BertTextClassifier)
    assert classifier.layers[-1].name == "logits"
    assert classifier.layers[-1].activation is keras.activations.linear
    assert classifier.preprocessor.sequence_length == 16
    logits = classifier.predict(data[0][:4], verbose=0)
    assert logits.shape == (4, 2)
    features = classifier.preprocessor(data[0][:1])
    assert sorted(features) == ["padding_mask", "segment_ids", "token_ids"]
    token_ids = keras.ops.convert_to_numpy(features["token_ids"])[0]
    assert token_ids[0] == RESERVED_TOKENS.index("[CLS]")


def test_preset_folder_round_trip_gives_the_same_logits(classifier, data, tmp_path):
    expected = classifier.predict(data[0][:4], verbose=0)
    folder = str(tmp_path / "preset")
    classifier.save_to_preset(folder)
    loaded = bert(num_classes=2, preset=folder, sequence_length=16)
    np.testing.assert_allclose(loaded.predict(data[0][:4], verbose=0), expected, atol=1e-5)
    # A different number of classes keeps the backbone and starts a new head.
    other = bert(num_classes=3, preset=folder, sequence_length=16)
    assert other.predict(data[0][:2], verbose=0).shape == (2, 3)
    backbone_weights = classifier.backbone.get_weights()
    for before, after in zip(backbone_weights, other.backbone.get_weights()):
        np.testing.assert_array_equal(after, before)


def test_keras_file_round_trip_predicts_the_same(classifier, data, tmp_path):
    path = tmp_path / "model.keras"
    artifact.save_model(classifier, path, {"model": "bert", "text": {"tokenizer": "bert", "sequence_length": 16}})
    loaded, metadata = artifact.load_model(path)
    assert metadata["text"]["tokenizer"] == "bert"
    np.testing.assert_allclose(
        loaded.predict(data[0][:4], verbose=0), classifier.predict(data[0][:4], verbose=0), atol=1e-5
    )


def test_token_model_and_tokenizer_files_export_to_onnx(classifier, data, tmp_path):
    import onnxruntime

    texts = data[0][:5]
    expected = classifier.predict(texts, verbose=0)
    features = {
        name: keras.ops.convert_to_numpy(value).astype("int64") for name, value in classifier.preprocessor(texts).items()
    }
    token_model = bert_token_model(classifier)
    assert sorted(token_model.input) == ["padding_mask", "segment_ids", "token_ids"]
    np.testing.assert_allclose(token_model.predict(features, verbose=0), expected, atol=1e-5)

    path = str(tmp_path / "model.onnx")
    token_model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert sorted((item.name, item.type) for item in session.get_inputs()) == [
        ("padding_mask", "tensor(int64)"),
        ("segment_ids", "tensor(int64)"),
        ("token_ids", "tensor(int64)"),
    ]
    (actual,) = session.run(None, features)
    np.testing.assert_allclose(actual, expected, atol=1e-4)

    vocabulary_path, json_path = save_bert_tokenizer(classifier, str(tmp_path / "tokenizer"))
    with open(vocabulary_path) as handle:
        assert handle.read().splitlines() == classifier.preprocessor.tokenizer.get_vocabulary()
    with open(json_path) as handle:
        description = json.load(handle)
    assert description["lowercase"] is True
    assert description["sequence_length"] == 16
    assert description["special_tokens"]["[CLS]"] == 1


def test_preset_errors_are_one_line(tmp_path, monkeypatch):
    import keras_hub

    with pytest.raises(ValueError, match="not found") as error:
        bert(num_classes=2, preset=str(tmp_path / "missing"))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown bert preset 'no_such_preset'"):
        bert(num_classes=2, preset="no_such_preset")

    def offline(*args, **kwargs):
        import requests

        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.BertTextClassifier, "from_preset", offline)
    with pytest.raises(ValueError) as error:
        bert(num_classes=2, preset="bert_tiny_en_uncased")
    message = str(error.value)
    assert "\n" not in message
    assert "--preset /local/dir" in message and "without --preset" in message
    with pytest.raises(ValueError, match="needs a WordPiece vocabulary"):
        bert(num_classes=2)
    with pytest.raises(ValueError, match="lacks the reserved tokens"):
        bert(num_classes=2, vocabulary=["a", "b"])


def test_loss_drops_over_a_few_steps(vocabulary, data):
    keras.utils.set_random_seed(0)
    model = bert(num_classes=2, vocabulary=vocabulary, dropout_rate=0.0, **SIZE)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    texts, labels = data[0][:32], data[1][:32]
    losses = model.fit(texts, labels, epochs=2, batch_size=32, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
