import numpy as np

from kerasdl.models import mlp, ngram_mlp


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


TEXTS = ["a good film", "a good , moving film", "not a good film", "a bad film", "bad acting", "a bad , dull film", "good", "bad"]


def test_ngram_mlp_takes_strings_and_its_token_model_shares_the_weights(tmp_path):
    import keras

    from kerasdl.models.mlp import build_ngram_vocabulary, ngram_token_model

    vectorizer = build_ngram_vocabulary(TEXTS, min_document_frequency=2)
    # Words and word pairs in at least 2 texts, most frequent first; IDF ln((1 + 8) / (1 + df)) + 1.
    frequency = {"a": 5, "film": 5, "good": 4, "bad": 4, "a good": 3, "good film": 2, "a bad": 2}
    assert sorted(vectorizer["vocabulary"]) == sorted(frequency)
    assert [frequency[gram] for gram in vectorizer["vocabulary"]] == sorted(frequency.values(), reverse=True)
    expected_idf = [np.log(9 / (1 + frequency[gram])) + 1 for gram in vectorizer["vocabulary"]]
    np.testing.assert_allclose(vectorizer["idf"], expected_idf, rtol=1e-6)
    model = ngram_mlp(num_classes=2, **vectorizer)
    assert [layer.name for layer in model.layers] == ["text", "text_vectorization", "tf_idf", "dropout_input", "hidden_0", "dropout_0", "logits"]
    assert model.get_layer("hidden_0").units == 64 and model.get_layer("dropout_0").rate == 0.2
    texts = np.array(TEXTS + ["", "unseen words only"], dtype=object)
    logits = model.predict(texts, verbose=0)
    token_model = ngram_token_model(model)
    assert token_model.input.name == "token_counts" and token_model.input.dtype == "int64" and token_model.input.shape == (None, 8)
    counts = np.asarray(model.get_layer("text_vectorization")(texts)).astype("int64")
    np.testing.assert_allclose(token_model.predict(counts, verbose=0), logits, atol=1e-6)
    assert counts[-1].tolist() == [5] + [0] * 7  # "unseen", "words", "only" and two pairs: all out of vocabulary
    # The registered TF-IDF layer and its IDF weights survive saving.
    model.save(tmp_path / "ngram.keras")
    loaded = keras.saving.load_model(tmp_path / "ngram.keras")
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), logits, atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.get_layer("tf_idf").idf), [0.0] + vectorizer["idf"], rtol=1e-6)


def test_the_mlp_entry_builds_the_ngram_network_for_text():
    from kerasdl.config import default_config, fill_modality_defaults
    from kerasdl.models.registry import DataFacts, get_model_entry

    entry = get_model_entry("mlp")
    assert entry.modalities == ("features", "image", "text") and entry.text.tokenizer == "ngram_counts"
    config = fill_modality_defaults(default_config("mlp"), "text")
    assert (config.model["hidden_units"], config.model["dropout_rate"], config.model["max_features"], config.model["ngrams"]) == (64, 0.2, 20000, 2)
    assert fill_modality_defaults(default_config("mlp"), "features").model["hidden_units"] == 128
    model = entry(DataFacts("text", (), 2, train_texts=TEXTS), **config.model)
    # Every word and word pair of the training texts (min_document_frequency 1), plus [UNK].
    words = [text.lower().replace(",", " ").split() for text in TEXTS]
    ngrams = {word for text in words for word in text} | {" ".join(pair) for text in words for pair in zip(text, text[1:])}
    assert model.name == "ngram_mlp" and model.get_layer("text_vectorization").vocabulary_size() == len(ngrams) + 1
    features = entry(DataFacts("features", (64,), 10, np.zeros(64), np.ones(64)), **fill_modality_defaults(default_config("mlp"), "features").model)
    assert features.name == "mlp" and features.get_layer("hidden_0").units == 128


def test_ngram_vocabulary_errors_say_what_to_do():
    import pytest

    from kerasdl.models.mlp import build_ngram_vocabulary

    with pytest.raises(ValueError, match=r"no word or word pair occurs in 2 of the 3 training texts; use more texts or a lower --set model\.min_document_frequency \(1 keeps every word\)"):
        build_ngram_vocabulary(["one", "two", "three"], min_document_frequency=2)
    # The default keeps n-grams seen once (scikit-learn's min_df=1).
    assert sorted(build_ngram_vocabulary(["one", "two", "three"])["vocabulary"]) == ["one", "three", "two"]
    with pytest.raises(ValueError, match="no words after lowercasing and removing punctuation"):
        build_ngram_vocabulary(["!!", "..."])
    with pytest.raises(ValueError, match="got 2 IDF weights for 3 vocabulary entries"):
        ngram_mlp(num_classes=2, vocabulary=["a", "b", "c"], idf=[1.0, 1.0])


def test_a_text_table_without_shared_words_is_one_line_on_the_command_line(tmp_path, cli):
    table = tmp_path / "unique.csv"
    table.write_text("text,label\n" + "".join(f"word{index},{index % 2}\n" for index in range(40)))
    result = cli(
        "training.run", "mlp", "--data", str(table), "--output", str(tmp_path / "runs"), "--set", "report.baseline=false",
        "--set", "model.min_document_frequency=2",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: cannot build mlp with model.min_document_frequency=2: no word or word pair occurs in 2 of the 32 training texts; "
        "use more texts or a lower --set model.min_document_frequency (1 keeps every word)"
    )
    assert not (tmp_path / "runs").exists()
