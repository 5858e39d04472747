"""The pure-Python tokenizers give the same ids as the TensorFlow ones, on real SST-2 lines."""

import numpy as np
import pytest

from kerasdl.tokenizer import (
    TextVectorizationTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
    write_tokenizer_files,
)

# Lines that probe the corners: punctuation inside words, ASCII-only lowercasing
# in TextVectorization, accents, CJK, control/format characters, tabs, a word
# over 100 bytes, empty text.
TRICKY = [
    "Don't STOP -- it's a \"must-see\"!!",
    "ÉCOLE Café naïve résumé Straße",
    "tabs\tand\nnewlines  and   spaces ",
    "电影很好 a 好 film",
    "zero\u200bwidth soft\u00adhyphen",
    "x" * 120 + " end",
    "",
    "...",
    "ﬁne ligatures and ＦＵＬＬＷＩＤＴＨ",
]


def sst2_sentences(folder, split, count):
    """The first `count` sentences of a real SST-2 file (`label<TAB>sentence` lines after a header)."""
    with open(folder / "sst2" / f"{split}.tsv", encoding="utf-8") as handle:
        next(handle)
        return [line.rstrip("\n").split("\t", 1)[1] for _, line in zip(range(count), handle)]


@pytest.fixture(scope="module")
def sst2(shared_data):
    return sst2_sentences(shared_data, "train", 1000), sst2_sentences(shared_data, "dev", 872) + TRICKY


@pytest.mark.parametrize("sequence_length", [32, None])
def test_text_vectorization_ids_match_keras_on_sst2(sst2, sequence_length):
    import keras
    import tensorflow as tf

    from kerasdl.models.recurrent import build_text_vocabulary

    train, texts = sst2
    vocabulary = build_text_vocabulary(train, max_tokens=1000)  # small: many words are out of vocabulary
    layer = keras.layers.TextVectorization(
        vocabulary=vocabulary[2:], standardize="lower_and_strip_punctuation", split="whitespace",
        output_mode="int", output_sequence_length=sequence_length,
    )
    expected = np.asarray(layer(tf.constant(texts)))
    tokenizer = TextVectorizationTokenizer(layer.get_vocabulary(), sequence_length=sequence_length)
    actual = tokenizer.encode_batch(texts)["token_ids"]
    assert actual.dtype == np.int64 and actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    assert (actual == 1).any() and (actual == 0).any()  # out-of-vocabulary and padding both occur


def test_text_vectorization_lowercases_ascii_only_like_tf():
    tokenizer = TextVectorizationTokenizer(["", "[UNK]", "école", "Écolé".lower()], sequence_length=None)
    # tf.strings.lower leaves non-ASCII capitals alone: "ÉCOLE" -> "École".
    assert tokenizer.tokenize("ÉCOLE, Don't!") == ["École", "dont"]


def test_wordpiece_ids_match_keras_hub_bert_preprocessor_on_sst2(sst2):
    import keras_hub
    import tensorflow as tf

    from kerasdl.models.bert import build_wordpiece_vocabulary

    train, texts = sst2
    vocabulary = build_wordpiece_vocabulary(train + ["电影 好 café"], vocabulary_size=600)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=24)
    expected = {name: np.asarray(value) for name, value in preprocessor(tf.constant(texts)).items()}
    python = WordPieceTokenizer(vocabulary, sequence_length=24, lowercase=True, strip_accents=False)
    actual = python.encode_batch(texts)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(actual[name], expected[name].astype("int64"), err_msg=name)
    assert (actual["token_ids"] == python.unknown_id).any()  # unknown pieces occur


def test_wordpiece_with_accent_stripping_matches_keras_hub(sst2):
    import keras_hub
    import tensorflow as tf

    train, texts = sst2
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "cafe", "naive", "resume", "ecole", "strasse", "film",
                  "a", "##s", "##e", "good", "好", "电", "影", "很", ",", "!", "-", "'", "t", "don", "fine"]
    keras_tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=True, strip_accents=True)
    python = WordPieceTokenizer(vocabulary, sequence_length=64, lowercase=True, strip_accents=True)
    for text in texts[:200] + TRICKY:
        expected = [int(token) for token in np.asarray(keras_tokenizer(tf.constant(text)))]
        assert [python._ids[token] for token in python.tokenize(text)] == expected, text


def test_tokenizer_files_round_trip(tmp_path):
    vocabulary = ["", "[UNK]", "good", "line\u2028separator", "film"]
    config = write_tokenizer_files(tmp_path, TextVectorizationTokenizer(vocabulary, sequence_length=5))
    assert config["vocabulary_size"] == 5 and config["type"] == "text_vectorization"
    loaded = load_tokenizer(tmp_path)
    assert loaded.vocabulary == vocabulary and loaded.sequence_length == 5
    assert loaded.encode("Good FILM, bad") == [2, 4, 1, 0, 0]

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "##s"]
    write_tokenizer_files(tmp_path / "bert", WordPieceTokenizer(pieces, sequence_length=6))
    bert = load_tokenizer(tmp_path / "bert")
    assert bert.encode("Goods") == ([2, 4, 5, 3, 0, 0], [0] * 6, [1, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="lacks the special tokens"):
        WordPieceTokenizer(["good"], sequence_length=4)
