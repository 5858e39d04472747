"""Tests of the GRU entry: its two networks, masking, saving, and `python -m training.run gru` end to end."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasdl import artifact
from kerasdl.models.gru import gru, text_gru
from kerasdl.models.recurrent import build_text_vocabulary, text_token_model
from kerasdl.models.registry import get_model_entry
from training.run import main

# No cross-validated epoch choice on the 120-text table's 12 validation texts (3 fold models
# more; tests/training/test_small_data.py covers it).
QUIET = ["--set", "train.verbose=2", "--set", "train.warmup_epochs=0", "--set", "train.min_validation_examples=0"]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return gru(input_shape=(None, 2), num_classes=3, hidden_size=8, num_layers=2, normalization_mean=[1.0, -1.0], normalization_variance=[4.0, 0.25])


def test_layers_are_grus_with_the_generic_kernel(model):
    names = [layer.name for layer in model.layers]
    assert names == ["sequences", "masking", "normalization", "gru_0", "dropout_0", "gru_1", "dropout_1", "logits"]
    grus = [layer for layer in model.layers if isinstance(layer, keras.layers.GRU)]
    assert [layer.return_sequences for layer in grus] == [True, False]
    assert all(layer.use_cudnn is False for layer in grus)
    assert model.output_shape == (None, 3)


def test_padding_never_changes_a_prediction(model):
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(length, 2)).astype("float32") + 2 for length in (4, 9, 1)]
    batch = np.zeros((3, 12, 2), "float32")
    for index, sequence in enumerate(sequences):
        batch[index, : len(sequence)] = sequence
    alone = np.concatenate([model.predict(sequence[None], verbose=0) for sequence in sequences])
    np.testing.assert_allclose(model.predict(batch, verbose=0), alone, atol=1e-5)


def test_text_gru_takes_strings_and_its_token_model_shares_weights():
    texts = np.array(["a good film", "a bad film", "not good", "great fun"], dtype=object)
    vocabulary = build_text_vocabulary(texts, max_tokens=20)
    keras.utils.set_random_seed(0)
    text_model = text_gru(num_classes=2, vocabulary=vocabulary, sequence_length=6, embedding_dim=4, hidden_size=4)
    assert text_model.get_layer("bidirectional_0").forward_layer.name.startswith("forward_gru_0")
    logits = text_model.predict(texts, verbose=0)
    ids = np.asarray(text_model.get_layer("text_vectorization")(texts)).astype("int64")
    np.testing.assert_allclose(text_token_model(text_model).predict(ids, verbose=0), logits, atol=1e-6)


def test_saved_and_loaded_gru_predicts_the_same(model, tmp_path):
    path = tmp_path / "gru.keras"
    artifact.save_model(model, path, {"model": "gru", "modality": "sequence", "class_names": ["a", "b", "c"]})
    loaded, metadata = artifact.load_model(path)
    batch = np.random.default_rng(1).normal(size=(2, 5, 2)).astype("float32")
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    assert metadata["model"] == "gru"


def test_the_entry_takes_series_and_text():
    entry = get_model_entry("gru")
    assert entry.modalities == ("sequence", "text") and entry.text.tokenizer == "text_vectorization"
    assert entry.builder_arguments()["hidden_size"] == 64


def test_training_run_gru_on_digits_rows_and_on_text(tmp_path):
    assert main(["gru", "--epochs", "2", "--output", str(tmp_path / "series"), *QUIET]) == 0
    (run_dir,) = sorted((tmp_path / "series" / "gru").iterdir())
    metadata = artifact.load_metadata(run_dir / "model.keras")
    assert metadata["model"] == "gru" and metadata["modality"] == "sequence"
    assert json.loads((run_dir / "metrics.json").read_text())["test_accuracy"] > 0.3
    texts = tmp_path / "texts.csv"
    rows = ["text,label"] + [f"a {'good' if index % 2 else 'bad'} film number {index},{index % 2}" for index in range(120)]
    texts.write_text("\n".join(rows) + "\n")
    assert main(["gru", "--data", str(texts), "--epochs", "1", "--output", str(tmp_path / "text"), *QUIET]) == 0
    (text_run,) = sorted(Path(tmp_path / "text" / "gru").iterdir())
    assert artifact.load_metadata(text_run / "model.keras")["text"]["tokenizer"] == "text_vectorization"
