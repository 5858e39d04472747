"""The TensorFlow-free tokenizers (`tokenizers` pipelines) give the Keras layers' ids, on real SST-2 lines and adversarial text."""

import re
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from kerasdl.tokenizer import (
    NgramCountTokenizer,
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


# Adversarial text, a class a line: accents and non-ASCII capitals,
# decomposed accents, CJK and CJK look-alikes, emoji, zero-width and control
# characters, whitespace other than the space, punctuation runs, long words.
ADVERSARIAL = [
    "ÉCOLE Café naïve résumé İstanbul İ ı Straße STRASSE ẞ",
    "ΟΔΟΣ Σίσυφος ς ᾈ\u0301 ᾳ Ⅻ ℌello ſtar",
    "Cafe\u0301 e\u0301\u0323 !\u0301 a\u034f\u0301 <\u0338 =\u0338 ≠",
    "电影很好 a 好 film 𠀀𠀁 ⼀ ㊀ ㈱ ㍱ ＦＵＬＬ！ ﬁne ﬀ",
    "great 👍🏽 ❤️ 👨\u200d👩\u200d👧 🇫🇷 ☺\ufe0e",
    "zero\u200bwidth joiner\u200dnon\u200c soft\u00adhyphen \ufeffbom rtl\u200f \u202eoverride\u202c",
    "bell\x07 nul\x00byte esc\x1b[0m del\x7f c1\x85 \x9f",
    "tabs\tand\nnewlines\r\n and\x0bvt\x0cff",
    "nbsp\u00a0here en\u2002em\u2003thin\u2009 ideo\u3000space ogham\u1680x line\u2028para\u2029 nnbsp\u202f!",
    "!!!???... --- ((())) …‥ «quotes» „low“ ‘single’ — – ¿¡ ﹏",
    "a.b,c;d:e!f?g\"h'i(j)k[l]m{n}o<p>q@r#s$t%u^v&w*x_y+z=~`|\\/",
    "x" * 100 + " " + "x" * 101 + " " + "é" * 50 + " " + "é" * 51 + " " + "Ж" * 60,
    "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรคระหว่างคำในประโยค",
    "\ufffd \ue000 \U000f0000 \u0301 \u0345",
    " ",
    "\t\n",
]


@pytest.fixture(scope="module")
def parity_texts(shared_data):
    """A few thousand real SST-2 sentences (all the non-ASCII ones among them) plus the corner cases."""
    train = sst2_sentences(shared_data, "train", 6000)
    non_ascii = [sentence for sentence in sst2_sentences(shared_data, "train", 70000) if not sentence.isascii()]
    texts = train[2000:6000] + non_ascii + sst2_sentences(shared_data, "test", 2000) + TRICKY + ADVERSARIAL
    return train[:2000], texts


@pytest.fixture(scope="module")
def parity_wordpiece_vocabulary(parity_texts):
    from kerasdl.models.bert import build_wordpiece_vocabulary

    train, _ = parity_texts
    return build_wordpiece_vocabulary(train + ADVERSARIAL, vocabulary_size=1500)


@pytest.mark.parametrize("strip_accents", [False, True])
def test_wordpiece_matches_keras_hub_on_sst2_and_adversarial_text(parity_texts, parity_wordpiece_vocabulary, strip_accents):
    import keras_hub
    import tensorflow as tf

    _, texts = parity_texts
    vocabulary = parity_wordpiece_vocabulary
    keras_tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True, strip_accents=strip_accents)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(keras_tokenizer, sequence_length=40)
    # In a tf.function, as in training's tf.data pipeline and in the SavedModel: eager
    # calls run keras-hub's pure-Python emulation, which differs on rare input (NUL, U+034F).
    expected = {name: np.asarray(value).astype("int64") for name, value in tf.function(preprocessor)(tf.constant(texts)).items()}
    tokenizer = WordPieceTokenizer(vocabulary, sequence_length=40, lowercase=True, strip_accents=strip_accents)
    actual = tokenizer.encode_batch(texts)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        assert actual[name].dtype == np.int64 and actual[name].shape == (len(texts), 40), name
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    exact = [text for text in texts if tokenizer._exact_path(text)]
    assert 0 < len(exact) < len(texts) // 10  # both paths ran; the library one for nearly all text
    assert (actual["token_ids"] == tokenizer.unknown_id).any()
    assert (actual["padding_mask"][:, -1] == 1).any() and (actual["padding_mask"][:, -1] == 0).any()  # cut and padded


@pytest.mark.parametrize("sequence_length", [16, None])
def test_text_vectorization_matches_keras_on_sst2_and_adversarial_text(parity_texts, sequence_length):
    import keras
    import tensorflow as tf

    train, texts = parity_texts
    layer = keras.layers.TextVectorization(
        max_tokens=2000, standardize="lower_and_strip_punctuation", split="whitespace",
        output_mode="int", output_sequence_length=sequence_length,
    )
    layer.adapt(tf.constant(train + ADVERSARIAL))
    expected = np.asarray(layer(tf.constant(texts)))
    actual = TextVectorizationTokenizer(layer.get_vocabulary(), sequence_length=sequence_length).encode_batch(texts)["token_ids"]
    assert actual.dtype == np.int64 and actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    assert (actual == 1).any() and (actual[:, -1] != 0).any() and (actual[:, -1] == 0).any()


def test_every_bmp_character_matches_keras_hub():
    """Each assigned BMP character, between letters, after "<", before a combining mark and alone, on both paths.

    The vocabulary is every character our words contain, alone and as a `##`
    suffix, so WordPiece spells each word out character by character: the ids
    show the exact characters keras-hub's words hold.
    """
    import keras_hub
    import tensorflow as tf

    # NUL ends a text in keras-hub's graph (ADVERSARIAL has one); Cn and Cs are no characters.
    characters = [chr(code) for code in range(1, 0x10000) if unicodedata.category(chr(code)) not in ("Cn", "Cs")]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    probe = WordPieceTokenizer(specials, sequence_length=4, strip_accents=False)  # BertTokenizer's default
    fast = [character for character in characters if not probe._exact_path(character)]
    exact = [character for character in characters if probe._exact_path(character)]

    def texts_of(group, tail=""):
        return [" ".join(f"a{c}b <{c} {c}\u0301 {c}" for c in group[i: i + 16]) + tail for i in range(0, len(group), 16)]

    # "ß" sends a text down the exact path, so every character also goes through it.
    texts = texts_of(fast) + texts_of(exact) + texts_of(fast, tail=" ß")
    assert not any(probe._exact_path(text) for text in texts_of(fast))
    pieces = sorted({character for text in texts for word in probe.words(text) for character in word} - set(specials))
    vocabulary = specials + pieces + ["##" + piece for piece in pieces]
    tokenizer = WordPieceTokenizer(vocabulary, sequence_length=400, strip_accents=False)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True), sequence_length=400)
    expected = np.asarray(tf.function(preprocessor)(tf.constant(texts))["token_ids"]).astype("int64")
    actual = tokenizer.encode_batch(texts)["token_ids"]
    assert (actual[:, -1] == 0).all()  # nothing cut
    differing = [texts[row] for row in np.nonzero((actual != expected).any(axis=1))[0]]
    assert not differing, (len(differing), differing[:3])


@pytest.mark.parametrize("text, reason", [
    ("Straße", "case folding is not lowercasing: ß -> ss"),
    ("Ꭰ", "Cherokee folds to capitals, lowercasing goes the other way"),
    ("nbsp\u00a0word", "NFKC makes NBSP a space inside keras-hub's word"),
    ("wait…", "… folds to ... as one punctuation word"),
    ("film⼀film", "a Kangxi radical folds to a CJK ideograph after the split"),
    ("<\u0338", "NFKC would compose ≮ across the split"),
    ("ᾀ\u0301", "the iota subscript folds to ι before the accent composes"),
    ("é" * 51, "102 UTF-8 bytes but 51 characters: [UNK] for FastWordpiece"),
])
def test_texts_the_library_alone_cannot_match_take_the_exact_path(text, reason):
    import keras_hub
    import tensorflow as tf

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "stra", "##sse", "##ß", "Ꭰ", "nbsp",
                  "word", "wait", ".", "…", "一", "⼀", "film", "##一", "##film", "<", "≮", "\u0338", "ἀ", "ἄ", "##ί", "##ι", "é", "##é"]
    tokenizer = WordPieceTokenizer(vocabulary, sequence_length=64, strip_accents=False)
    keras_tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=True, strip_accents=False)
    expected = [int(token) for token in np.asarray(tf.function(keras_tokenizer)(tf.constant(text)))]
    library_only = tokenizer._pipeline.encode(text)
    library_only = library_only.ids[1: sum(library_only.attention_mask) - 1]
    assert library_only != expected, reason  # why the hand-written path exists
    assert tokenizer._exact_path(text)
    assert [tokenizer._ids[token] for token in tokenizer.tokenize(text)] == expected, reason
    ids, _, mask = tokenizer.encode(text)
    assert ids[: sum(mask)] == [tokenizer.cls_id] + expected + [tokenizer.sep_id]


def test_text_vectorization_edge_batches():
    tokenizer = TextVectorizationTokenizer(["", "[UNK]", "good"], sequence_length=None)
    np.testing.assert_array_equal(tokenizer.encode_batch(["", " \t"])["token_ids"], [[0], [0]])
    np.testing.assert_array_equal(tokenizer.encode_batch(["good", "GOOD good bad!"])["token_ids"], [[2, 0, 0], [2, 2, 1]])
    assert tokenizer.encode_batch([])["token_ids"].shape == (0, 1)
    with pytest.raises(ValueError, match="padding and out-of-vocabulary"):
        TextVectorizationTokenizer([""])


@pytest.mark.parametrize("texts, error, message", [
    ("good film", TypeError, "a list of texts, not a single string"),
    (["good", b"film"], TypeError, "text 1 is a bytes, not a str"),
    ([None], TypeError, "text 0 is a NoneType, not a str"),
    (["good", "a\ud800b"], ValueError, "text 1 is not valid Unicode: surrogates not allowed at character 1"),
])
def test_bad_texts_get_a_clear_error(texts, error, message):
    for tokenizer in (TextVectorizationTokenizer(["", "[UNK]"]), WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]), NgramCountTokenizer(["[UNK]"])):
        with pytest.raises(error, match=re.escape(message)):
            tokenizer.encode_batch(texts)


def test_tokenizers_load_and_run_without_tensorflow(tmp_path):
    write_tokenizer_files(tmp_path / "text", TextVectorizationTokenizer(["", "[UNK]", "good"], sequence_length=3))
    write_tokenizer_files(tmp_path / "bert", WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good"], sequence_length=5))
    write_tokenizer_files(tmp_path / "ngram", NgramCountTokenizer(["[UNK]", "good", "good good"], idf=[0.0, 1.5, 2.0]))
    script = textwrap.dedent(
        """
        import sys

        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "keras_hub", "tensorflow_text"):
                    raise ImportError(f"import of {name} on the TensorFlow-free path")

        sys.meta_path.insert(0, NoTensorFlow())
        from kerasdl.tokenizer import load_tokenizer

        folder = sys.argv[1]
        print(load_tokenizer(folder + "/text").encode_batch(["Good, GOOD!"])["token_ids"].tolist())
        print(load_tokenizer(folder + "/bert").encode_batch(["Good Straße"])["token_ids"].tolist())
        print(load_tokenizer(folder + "/ngram").encode_batch(["Good, GOOD!"])["token_counts"].tolist())
        leaked = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras"))
        assert not leaked, leaked
        """
    )
    completed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split("\n")[:3] == ["[[2, 2, 0]]", "[[2, 4, 1, 3, 0]]", "[[0, 2, 1]]"]


@pytest.mark.parametrize("ngrams", [2, 3])
def test_ngram_counts_match_keras_on_sst2_and_adversarial_text(parity_texts, ngrams):
    import keras
    import tensorflow as tf

    from kerasdl.models.mlp import build_ngram_vocabulary

    train, texts = parity_texts
    # Small: many n-grams fall outside and are counted in column 0.
    vectorizer = build_ngram_vocabulary(train + ADVERSARIAL, max_features=3000, ngrams=ngrams)
    layer = keras.layers.TextVectorization(
        vocabulary=vectorizer["vocabulary"], standardize="lower_and_strip_punctuation", split="whitespace", ngrams=ngrams, output_mode="count",
    )
    expected = np.asarray(layer(tf.constant(texts))).astype("int64")
    tokenizer = NgramCountTokenizer(layer.get_vocabulary(), ngrams=ngrams)
    actual = tokenizer.encode_batch(texts)["token_counts"]
    assert actual.dtype == np.int64 and actual.shape == expected.shape == (len(texts), len(vectorizer["vocabulary"]) + 1)
    np.testing.assert_array_equal(actual, expected)
    assert (actual[:, 0] > 0).mean() > 0.5 and (actual > 1).any()  # out-of-vocabulary n-grams and repeated ones both occur
    if ngrams == 3:
        assert any(token.count(" ") == 2 for token in vectorizer["vocabulary"])


def test_ngram_tf_idf_is_scikit_learns_sublinear_tf_idf(parity_texts):
    """The model's weighting (`SublinearTfIdf`) and the tokenizer's `tf_idf` equal scikit-learn's on the same n-grams."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from kerasdl.models.layers import SublinearTfIdf
    from kerasdl.models.mlp import build_ngram_vocabulary

    train, texts = parity_texts
    # Every third text: dense [texts, 3,000] matrices of each kind would hold 0.5 GB otherwise.
    texts = texts[::3]
    vectorizer = build_ngram_vocabulary(train, max_features=3000)
    tokenizer = NgramCountTokenizer(["[UNK]"] + vectorizer["vocabulary"], idf=[0.0] + vectorizer["idf"])
    reference = TfidfVectorizer(
        analyzer=tokenizer.grams, vocabulary={gram: index for index, gram in enumerate(vectorizer["vocabulary"])}, sublinear_tf=True,
    ).fit(train)
    np.testing.assert_allclose(reference.idf_, vectorizer["idf"], rtol=1e-6)
    expected = reference.transform(texts).toarray()
    counts = tokenizer.encode_batch(texts)["token_counts"]
    layer = SublinearTfIdf([0.0] + vectorizer["idf"])
    np.testing.assert_allclose(np.asarray(layer(counts))[:, 1:], expected, atol=1e-6)
    np.testing.assert_allclose(tokenizer.tf_idf(texts)[:, 1:], expected, atol=1e-6)
    assert (expected > 0).sum(axis=1).max() > 10


def test_ngram_tokenizer_files_round_trip(tmp_path):
    tokenizer = NgramCountTokenizer(["[UNK]", "good", "film", "good film", "line\u2028separator"], idf=[0.0, 1.25, 1.5, 2.0, 3.0])
    config = write_tokenizer_files(tmp_path, tokenizer)
    assert (config["type"], config["ngrams"], config["vocabulary_size"], config["idf_file"], config["outputs"]) == ("ngram_counts", 2, 5, "idf.txt", ["token_counts"])
    assert (tmp_path / "idf.txt").read_text().split("\n")[:5] == ["0.0", "1.25", "1.5", "2.0", "3.0"]
    loaded = load_tokenizer(tmp_path)
    assert loaded.vocabulary == tokenizer.vocabulary and loaded.idf.tolist() == [0.0, 1.25, 1.5, 2.0, 3.0]
    # "a" and the pairs "a good" and "film bad", "bad" are outside: 4 out-of-vocabulary n-grams.
    assert loaded.encode("A good film, bad") == [4, 1, 1, 1, 0]
    assert loaded.encode_batch(["", "film film FILM"])["token_counts"].tolist() == [[0, 0, 0, 0, 0], [2, 0, 3, 0, 0]]
    features = loaded.tf_idf(["film film FILM good"])[0]
    weights = np.array([1.25, (1 + np.log(3)) * 1.5])  # good once, film three times
    np.testing.assert_allclose(features[[1, 2]], weights / np.linalg.norm(weights), rtol=1e-6)
    with pytest.raises(ValueError, match="3 IDF weights for 2 vocabulary entries"):
        NgramCountTokenizer(["[UNK]", "good"], idf=[0.0, 1.0, 2.0])
