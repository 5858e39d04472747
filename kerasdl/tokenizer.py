"""TensorFlow-free tokenizers, built on Hugging Face `tokenizers`, that give the models' in-graph token ids.

An ONNX text model takes token ids, not strings (ONNX has no string ops), so
the tokenizer travels beside it in `tokenizer/`: `vocab.txt` (one token per
line, line number = id) and `tokenizer.json` (the settings). This module turns
text into the ONNX inputs on a box without TensorFlow or Keras (the edge
server imports it): the pipelines are `tokenizers` normalizers,
pre-tokenizers, models and post-processors.

- `TextVectorizationTokenizer` = `keras.layers.TextVectorization(
  standardize="lower_and_strip_punctuation", split="whitespace",
  output_mode="int")` of the recurrent text models: `Replace` normalizers
  lowercase ASCII letters only (as `tf.strings.lower` does) and delete Keras'
  punctuation regex, a `Split` pre-tokenizer splits on ASCII whitespace, a
  `WordLevel` model looks words up (0 = padding, 1 = out of vocabulary), and
  truncation/padding cut or zero-pad to the sequence length. Output:
  `token_ids`.
- `NgramCountTokenizer` = `keras.layers.TextVectorization(standardize=
  "lower_and_strip_punctuation", split="whitespace", ngrams=N,
  output_mode="count")` of the n-gram MLP: the same normalizers and
  pre-tokenizer give the words, Python forms the word n-grams (joined by one
  space, as `tf.strings.ngrams` does) and counts each vocabulary entry; column
  0 counts the n-grams outside the vocabulary. Output: `token_counts`, int64
  `[batch, vocabulary size]`. The IDF weights travel beside the vocabulary
  (`idf.txt`); the model applies them itself (`SublinearTfIdf`), and
  `tf_idf` reproduces that weighting here for checks.
- `WordPieceTokenizer` = keras-hub's `BertTokenizer` plus the
  `BertTextClassifierPreprocessor` packing, as its TensorFlow graph runs them
  (in training's tf.data pipeline and in the SavedModel): end the text at its
  first NUL (`tf_text.regex_split` does), strip accents (NFD, drop `\\p{Mn}`),
  split on ASCII whitespace and `\\p{Cc}`/`\\p{Cf}`, isolate punctuation (all
  ASCII symbols and `\\p{P}`) and CJK ideographs, case-fold, `WordPiece` with
  `##` suffixes, then `[CLS] tokens [SEP]` cut to the sequence length and
  padded. Outputs: `token_ids`, `segment_ids` (all 0, one segment) and
  `padding_mask` (1 on real tokens). (An eager keras-hub call runs its own
  pure-Python emulation instead, which differs from the graph on rare input,
  e.g. NUL or "a" + U+034F + U+0301.)

Hand-written, where `tokenizers` cannot reach keras-hub's ids (WordPiece only):

1. keras-hub case-folds each word *after* splitting (`tf_text.case_fold_utf8`,
   ICU's NFKC_Casefold); a `tokenizers` normalizer runs *before* the split and
   only has Unicode lowercasing. For nearly every character NFKC + lowercase
   on the whole text gives the same words, and such texts run fully in the
   library. A character for which it does not (checked once per character,
   `_fast_path_character`) sends its text down an exact path: the library
   splits, `_casefold` folds each word in Python, and the library runs
   WordPiece and the packing on those words. Examples: "ß" -> "ss" (case
   folding is not lowercasing), Cherokee (folds to capitals), NBSP and other
   spaces that NFKC turns into " " inside a word (keras-hub keeps one word, so
   `[UNK]`), "…" -> "..." (one punctuation word, not three), Kangxi radicals
   that NFKC turns into CJK ideographs (not split), "<" + U+0338 (NFKC would
   compose "≮" across the split), Greek iota subscripts, and marks newer than
   the library's NFKC data.
2. `tf_text.FastWordpieceTokenizer` turns a word of more than 100 UTF-8 *bytes*
   into `[UNK]`; `tokenizers`' WordPiece counts *characters*. An ASCII word has
   as many of one as of the other; a text with a run of 26 or more characters
   that holds non-ASCII takes the exact path, which counts bytes.

Both paths give keras-hub's graph ids for every assigned BMP character, and for
every code point Python's `unicodedata` knows (checked once, word by word,
against `pretokenize` over all 1.1M code points); tests/test_tokenizer.py checks
the BMP. Characters added to Unicode after Python 3.11's Unicode 14 may differ.
The module is over 300 lines because the exact path belongs beside the
pipeline whose gaps it fills, and the three tokenizers share one loader, one
file layout and one word split.

Example:
>>> tokenizer = load_tokenizer("exports/text_lstm/1/tokenizer")
>>> tokenizer.encode_batch(["A good film."])["token_ids"].shape
(1, 64)
"""

import functools
import json
import os
import re
import string
import unicodedata

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

TOKENIZER_FILE = "tokenizer.json"
VOCABULARY_FILE = "vocab.txt"
IDF_FILE = "idf.txt"

# `keras.layers.TextVectorization`'s punctuation regex: all 32 ASCII punctuation characters.
_KERAS_PUNCTUATION = r"[!-/:-@\[-`{-~]"
# `tf.strings.split` without a separator splits on ASCII whitespace only.
_ASCII_WHITESPACE = r"[ \t\n\r\f\v]+"
# keras-hub's delimiters: RE2's \s (ASCII only) plus control and format characters.
_BERT_DELIMITERS = r"[ \t\n\r\f\p{Cc}\p{Cf}]"
# keras-hub's punctuation: all non-letter/number ASCII (as the original BERT) plus Unicode P*.
_BERT_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
# CJK ideograph blocks (from the original BERT tokenizer), split into single-character words.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Default_Ignorable_Code_Points that NFKC_Casefold deletes and that are not
# \p{Cf} (those are delimiters and never reach case folding).
_IGNORABLE_RANGES = ((0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180D),
                     (0x180F, 0x180F), (0x2065, 0x2065),
                     (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0xE0000, 0xE0000),
                     (0xE0002, 0xE001F), (0xE0080, 0xE00FF), (0xE0100, 0xE0FFF))
# `tf_text.FastWordpieceTokenizer` maps words longer than this many bytes to [UNK].
_MAX_BYTES_PER_WORD = 100
# A word over 100 bytes has at least 26 characters (4 bytes at most each).
_LONG_RUN = re.compile(r"[^\x00-\x20!-/:-@\[-`{-~]{26,}")
# "<", "=" or ">" + this mark compose to "≮", "≠", "≯": the only canonical
# composition that joins a split delimiter with the character after it.
_COMBINING_LONG_SOLIDUS = "\u0338"


def _onig_class(ranges):
    return "[" + "".join(f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in ranges) + "]"


_IGNORABLE = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _IGNORABLE_RANGES) + "]")


class TextVectorizationTokenizer:
    """The text models' `TextVectorization` as a `tokenizers` pipeline.

    Args:
        vocabulary: all tokens, index = id, starting with `""` (padding, id 0)
            and `"[UNK]"` (out of vocabulary, id 1).
        sequence_length: ids per text; None pads to the longest text of a batch.
        lowercase: lowercase ASCII letters first.
        strip_punctuation: delete ASCII punctuation.

    Example:
    >>> tokenizer = TextVectorizationTokenizer(["", "[UNK]", "good", "film"], sequence_length=4)
    >>> tokenizer.encode("A GOOD film!")
    [1, 2, 3, 0]
    """

    kind = "text_vectorization"
    input_names = ("token_ids",)

    def __init__(self, vocabulary, sequence_length=None, lowercase=True, strip_punctuation=True):
        self.vocabulary = list(vocabulary)
        if len(self.vocabulary) < 2:
            raise ValueError("a TextVectorization vocabulary starts with the padding and out-of-vocabulary tokens")
        self.sequence_length = sequence_length
        self.lowercase = lowercase
        self.strip_punctuation = strip_punctuation
        self.padding_id = 0
        self.oov_id = 1
        ids = {token: index for index, token in enumerate(self.vocabulary)}
        self._tokenizer = Tokenizer(models.WordLevel(ids, unk_token=self.vocabulary[self.oov_id]))
        self._tokenizer.normalizer, self._tokenizer.pre_tokenizer = _text_vectorization_steps(lowercase, strip_punctuation)
        if sequence_length is not None:
            self._tokenizer.enable_truncation(max_length=sequence_length)
        self._tokenizer.enable_padding(length=sequence_length, pad_id=self.padding_id, pad_token=self.vocabulary[0])

    def tokenize(self, text):
        """Returns the words of `text` after standardization and splitting."""
        normalized = self._tokenizer.normalizer.normalize_str(text)
        return [word for word, _ in self._tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]

    def encode(self, text):
        """Returns the token ids of one text (cut/padded to `sequence_length` when set)."""
        return self._tokenizer.encode(text).ids

    def encode_batch(self, texts):
        """Returns `{"token_ids": int64 [batch, length]}` for a list of texts."""
        rows = [encoding.ids for encoding in self._tokenizer.encode_batch_fast(_text_list(texts))]
        # Without a sequence length an all-empty batch still gets one (padding) column.
        length = self.sequence_length or max([len(row) for row in rows] + [1])
        token_ids = np.full((len(rows), length), self.padding_id, dtype="int64")
        if rows and rows[0]:
            token_ids[:, : len(rows[0])] = rows
        return {"token_ids": token_ids}

    def config(self):
        return {
            "type": self.kind,
            **_text_vectorization_config(self.lowercase, self.strip_punctuation),
            "sequence_length": self.sequence_length,
            "special_tokens": {"padding": {"token": "", "id": 0}, "oov": {"token": "[UNK]", "id": 1}},
            "vocabulary_file": VOCABULARY_FILE,
            "vocabulary_size": len(self.vocabulary),
            "outputs": list(self.input_names),
        }


class NgramCountTokenizer:
    """The n-gram MLP's `TextVectorization(ngrams=N, output_mode="count")` on `tokenizers`' word split.

    Args:
        vocabulary: all entries, index = count column, starting with `"[UNK]"` (column 0
            counts the n-grams outside the vocabulary), as `get_vocabulary()` returns them.
        ngrams: the longest word n-gram (2: words and word pairs).
        idf: one IDF weight per column (`idf.txt`), for `tf_idf`; None when unknown.
        lowercase: lowercase ASCII letters first.
        strip_punctuation: delete ASCII punctuation.

    Example:
    >>> tokenizer = NgramCountTokenizer(["[UNK]", "good", "film", "good film"])
    >>> tokenizer.encode("A good film!")
    [2, 1, 1, 1]
    """

    kind = "ngram_counts"
    input_names = ("token_counts",)

    def __init__(self, vocabulary, ngrams=2, idf=None, lowercase=True, strip_punctuation=True):
        self.vocabulary = list(vocabulary)
        if not self.vocabulary:
            raise ValueError("an n-gram count vocabulary starts with the out-of-vocabulary entry [UNK]")
        self.ngrams = int(ngrams)
        if self.ngrams < 1:
            raise ValueError(f"ngrams must be at least 1, got {ngrams}")
        self.idf = None if idf is None else np.asarray(idf, dtype=np.float32).reshape(-1)
        if self.idf is not None and len(self.idf) != len(self.vocabulary):
            raise ValueError(f"{len(self.idf)} IDF weights for {len(self.vocabulary)} vocabulary entries")
        self.lowercase = lowercase
        self.strip_punctuation = strip_punctuation
        self.oov_id = 0
        self._ids = {token: index for index, token in enumerate(self.vocabulary) if index != self.oov_id}
        self._normalizer, self._pre_tokenizer = _text_vectorization_steps(lowercase, strip_punctuation)

    def tokenize(self, text):
        """Returns the words of `text` after standardization and splitting."""
        return [word for word, _ in self._pre_tokenizer.pre_tokenize_str(self._normalizer.normalize_str(text))]

    def grams(self, text):
        """Returns the word n-grams of `text`, all words first, then the pairs, ... (as TextVectorization forms them)."""
        words = self.tokenize(text)
        return [" ".join(words[start : start + size]) for size in range(1, self.ngrams + 1) for start in range(len(words) - size + 1)]

    def encode(self, text):
        """Returns the count of every vocabulary entry in one text (a list, one int per column)."""
        return self.encode_batch([text])["token_counts"][0].tolist()

    def encode_batch(self, texts):
        """Returns `{"token_counts": int64 [batch, vocabulary size]}` for a list of texts."""
        texts = _text_list(texts)
        counts = np.zeros((len(texts), len(self.vocabulary)), dtype=np.int64)
        for row, text in enumerate(texts):
            columns = [self._ids.get(gram, self.oov_id) for gram in self.grams(text)]
            if columns:
                np.add.at(counts[row], columns, 1)
        return {"token_counts": counts}

    def tf_idf(self, texts):
        """Returns the model's features of `texts`: `(1 + log count) * idf`, each row L2-normalized (float32).

        The model computes these itself (`kerasdl.models.layers.SublinearTfIdf`); this is
        for checking it, and for scikit-learn on the same features.
        """
        if self.idf is None:
            raise ValueError("this tokenizer has no IDF weights (idf.txt)")
        counts = self.encode_batch(texts)["token_counts"].astype(np.float32)
        weighted = np.where(counts > 0, 1.0 + np.log(np.maximum(counts, 1.0)), 0.0).astype(np.float32) * self.idf
        norms = np.sqrt(np.sum(np.square(weighted), axis=-1, keepdims=True))
        return weighted / np.maximum(norms, 1e-7)

    def extra_files(self):
        """`{file name: lines}` written beside `vocab.txt`: the IDF weights, one per vocabulary line."""
        return {} if self.idf is None else {IDF_FILE: [repr(float(value)) for value in self.idf]}

    def config(self):
        return {
            "type": self.kind,
            **_text_vectorization_config(self.lowercase, self.strip_punctuation),
            "ngrams": self.ngrams,
            "ngram_separator": " ",
            "special_tokens": {"oov": {"token": self.vocabulary[self.oov_id], "id": self.oov_id}},
            "vocabulary_file": VOCABULARY_FILE,
            "vocabulary_size": len(self.vocabulary),
            "idf_file": IDF_FILE if self.idf is not None else None,
            "weighting": "inside the model: (1 + log count) * idf, then L2-normalized rows",
            # The fixed width of the count vector: formats with a fixed input (LiteRT) read it here.
            "sequence_length": len(self.vocabulary),
            "outputs": list(self.input_names),
        }


class WordPieceTokenizer:
    """keras-hub's BERT tokenizer and single-segment packer as a `tokenizers` pipeline.

    Args:
        vocabulary: all WordPiece tokens, index = id.
        sequence_length: ids per text, `[CLS]` and `[SEP]` included.
        lowercase: case-fold words (uncased BERT).
        strip_accents: remove accent marks (NFD, then drop nonspacing marks).
        split_on_cjk: make every CJK ideograph its own word.
        cls_token, sep_token, pad_token, unknown_token: the special tokens.
        suffix_indicator: the prefix of word-continuation pieces.

    Example:
    >>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "##s"], sequence_length=6)
    >>> tokenizer.encode("Goods")
    ([2, 4, 5, 3, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0])
    """

    kind = "bert"
    input_names = ("token_ids", "segment_ids", "padding_mask")

    def __init__(
        self,
        vocabulary,
        sequence_length=128,
        lowercase=True,
        strip_accents=True,
        split_on_cjk=True,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unknown_token="[UNK]",
        suffix_indicator="##",
    ):
        self.vocabulary = list(vocabulary)
        self.sequence_length = int(sequence_length)
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.split_on_cjk = split_on_cjk
        self.suffix_indicator = suffix_indicator
        self.special_tokens = {"cls": cls_token, "sep": sep_token, "pad": pad_token, "unknown": unknown_token}
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}
        missing = [token for token in self.special_tokens.values() if token not in self._ids]
        if missing:
            raise ValueError(f"the WordPiece vocabulary lacks the special tokens {missing}")
        self.cls_id, self.sep_id = self._ids[cls_token], self._ids[sep_token]
        self.pad_id, self.unknown_id = self._ids[pad_token], self._ids[unknown_token]
        self._model = models.WordPiece(self._ids, unk_token=unknown_token, continuing_subword_prefix=suffix_indicator,
                                       max_input_chars_per_word=_MAX_BYTES_PER_WORD)
        self._normalizer = _bert_normalizer(strip_accents, lowercase)
        self._pre_tokenizer = _bert_pre_tokenizer(split_on_cjk)
        # The whole pipeline (text in) and the exact path's packer (words in).
        self._pipeline = self._packed(self._normalizer, self._pre_tokenizer)
        self._packer = self._packed(None, None)

    def words(self, text):
        """Returns the words of `text` that WordPiece sees (accents stripped, split, case-folded)."""
        if not self._exact_path(text):
            return [word for word, _ in self._pre_tokenizer.pre_tokenize_str(self._normalizer.normalize_str(text))]
        return self._exact_words(text)

    def tokenize(self, text):
        """Returns the WordPiece tokens of `text` (no special tokens)."""
        return [token.value for word in self.words(text) for token in self._model.tokenize(word)]

    def encode(self, text):
        """Returns `(token_ids, segment_ids, padding_mask)` lists for one text."""
        encoded = self.encode_batch([text])
        return tuple(encoded[name][0].tolist() for name in self.input_names)

    def encode_batch(self, texts):
        """Returns `{"token_ids", "segment_ids", "padding_mask"}`, int64 `[batch, sequence_length]`."""
        texts = _text_list(texts)
        exact = [index for index, text in enumerate(texts) if self._exact_path(text)]
        encodings = self._pipeline.encode_batch_fast(texts) if not exact else [None] * len(texts)
        if exact:
            routed = set(exact)
            fast = [index for index in range(len(texts)) if index not in routed]
            for index, encoding in zip(fast, self._pipeline.encode_batch_fast([texts[index] for index in fast])):
                encodings[index] = encoding
            words = [self._exact_words(texts[index]) for index in exact]
            for index, encoding in zip(exact, self._packer.encode_batch_fast(words, is_pretokenized=True)):
                encodings[index] = encoding
        shape = (len(texts), self.sequence_length)
        return {
            "token_ids": np.asarray([encoding.ids for encoding in encodings], dtype="int64").reshape(shape),
            "segment_ids": np.asarray([encoding.type_ids for encoding in encodings], dtype="int64").reshape(shape),
            "padding_mask": np.asarray([encoding.attention_mask for encoding in encodings], dtype="int64").reshape(shape),
        }

    def config(self):
        return {
            "type": self.kind,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "split_on_cjk": self.split_on_cjk,
            "suffix_indicator": self.suffix_indicator,
            "sequence_length": self.sequence_length,
            "special_tokens": {
                role: {"token": token, "id": self._ids[token]} for role, token in self.special_tokens.items()
            },
            "vocabulary_file": VOCABULARY_FILE,
            "vocabulary_size": len(self.vocabulary),
            "outputs": list(self.input_names),
        }

    def _packed(self, normalizer, pre_tokenizer):
        tokenizer = Tokenizer(self._model)
        if normalizer is not None:
            tokenizer.normalizer = normalizer
        if pre_tokenizer is not None:
            tokenizer.pre_tokenizer = pre_tokenizer
        cls, sep = self.special_tokens["cls"], self.special_tokens["sep"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", special_tokens=[(cls, self.cls_id), (sep, self.sep_id)]
        )
        tokenizer.enable_truncation(max_length=self.sequence_length)
        tokenizer.enable_padding(length=self.sequence_length, pad_id=self.pad_id, pad_token=self.special_tokens["pad"])
        return tokenizer

    def _exact_path(self, text):
        if text.isascii():
            return False
        if any(not run.isascii() for run in _LONG_RUN.findall(text)):
            return True
        flags = (self.strip_accents, self.lowercase, self.split_on_cjk)
        return not all(_fast_path_character(character, *flags) for character in set(text) if not character.isascii())

    def _exact_words(self, text):
        # The hand-written path (module docstring, 1 and 2): the library splits, Python folds each word.
        text = _CUT_AT_NUL.normalize_str(text)
        if self.strip_accents:
            text = _strip_accents(text)
        words = [word for word, _ in self._pre_tokenizer.pre_tokenize_str(text)]
        if self.lowercase:
            words = [_casefold(word) for word in words]
        unknown = self.special_tokens["unknown"]
        # Case folding can empty a word (it deletes ignorable code points); keras-hub gives it no token.
        return [word if len(word.encode("utf-8")) <= _MAX_BYTES_PER_WORD else unknown for word in words if word]


def _text_list(texts):
    """Returns `texts` as a list of strings, or raises a TypeError/ValueError that names the bad one."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("encode_batch takes a list of texts, not a single string")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is a {type(text).__name__}, not a str")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise ValueError(f"text {index} is not valid Unicode: {error.reason} at character {error.start}") from None
    return texts


def write_tokenizer_files(folder, tokenizer):
    """Writes `vocab.txt` and `tokenizer.json` of `tokenizer` into `folder`; returns its config."""
    os.makedirs(folder, exist_ok=True)
    for token in tokenizer.vocabulary:
        if "\n" in token:
            raise ValueError(f"token {token!r} contains a newline; it cannot be stored one per line")
    with open(os.path.join(folder, VOCABULARY_FILE), "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(tokenizer.vocabulary) + "\n")
    extra_files = tokenizer.extra_files() if hasattr(tokenizer, "extra_files") else {}
    for name, lines in extra_files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join(lines) + "\n")
    config = tokenizer.config()
    with open(os.path.join(folder, TOKENIZER_FILE), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    return config


def load_tokenizer(folder):
    """Returns the tokenizer stored in `folder` (`tokenizer.json` + `vocab.txt`)."""
    with open(os.path.join(folder, TOKENIZER_FILE), encoding="utf-8") as handle:
        config = json.load(handle)
    with open(os.path.join(folder, config.get("vocabulary_file", VOCABULARY_FILE)), encoding="utf-8", newline="\n") as handle:
        # Split on "\n" only: str.splitlines() would also split on characters
        # such as U+2028 that can sit inside a token.
        vocabulary = handle.read().split("\n")
    if vocabulary and vocabulary[-1] == "":
        vocabulary = vocabulary[:-1]
    if len(vocabulary) != config["vocabulary_size"]:
        raise ValueError(f"{folder}: vocab.txt has {len(vocabulary)} tokens, tokenizer.json says {config['vocabulary_size']}")
    if config["type"] == TextVectorizationTokenizer.kind:
        return TextVectorizationTokenizer(
            vocabulary,
            sequence_length=config["sequence_length"],
            lowercase=config["lowercase"],
            strip_punctuation=config["strip_punctuation"],
        )
    if config["type"] == NgramCountTokenizer.kind:
        idf = None
        if config.get("idf_file"):
            idf = np.loadtxt(os.path.join(folder, config["idf_file"]), dtype=np.float32, ndmin=1)
        return NgramCountTokenizer(
            vocabulary, ngrams=config["ngrams"], idf=idf, lowercase=config["lowercase"], strip_punctuation=config["strip_punctuation"],
        )
    if config["type"] == WordPieceTokenizer.kind:
        special = config["special_tokens"]
        return WordPieceTokenizer(
            vocabulary,
            sequence_length=config["sequence_length"],
            lowercase=config["lowercase"],
            strip_accents=config["strip_accents"],
            split_on_cjk=config["split_on_cjk"],
            cls_token=special["cls"]["token"],
            sep_token=special["sep"]["token"],
            pad_token=special["pad"]["token"],
            unknown_token=special["unknown"]["token"],
            suffix_indicator=config["suffix_indicator"],
        )
    raise ValueError(f"{folder}: unknown tokenizer type {config['type']!r}")


def _text_vectorization_steps(lowercase, strip_punctuation):
    """`(normalizer, pre-tokenizer)` of TextVectorization's "lower_and_strip_punctuation" + "whitespace"."""
    steps = []
    if lowercase:
        # `tokenizers.normalizers.Lowercase` is Unicode-wide; tf.strings.lower maps A-Z only.
        steps += [normalizers.Replace(letter, letter.lower()) for letter in string.ascii_uppercase]
    if strip_punctuation:
        steps.append(normalizers.Replace(Regex(_KERAS_PUNCTUATION), ""))
    return normalizers.Sequence(steps), pre_tokenizers.Split(Regex(_ASCII_WHITESPACE), "removed")


def _text_vectorization_config(lowercase, strip_punctuation):
    """What `_text_vectorization_steps` does, as the tokenizer files' config states it."""
    return {"lowercase": lowercase, "lowercase_scope": "ascii", "strip_punctuation": strip_punctuation, "split": "ascii_whitespace"}


# keras-hub's graph splits with `tf_text.regex_split`, which ends a text at its first NUL.
_CUT_AT_NUL = normalizers.Replace(Regex(r"\x{0}[\s\S]*"), "")


@functools.lru_cache(maxsize=None)
def _bert_normalizer(strip_accents, lowercase):
    steps = [_CUT_AT_NUL]
    if strip_accents:
        # keras-hub strips accents with NFD, then deletes nonspacing marks (`StripAccents` also deletes Mc and Me).
        steps += [normalizers.NFD(), normalizers.Replace(Regex(r"\p{Mn}"), "")]
    if lowercase:
        # NFKC_Casefold on the whole text, as far as the library reaches: lowercase is
        # context-free except the final sigma, which case folding maps to σ too.
        steps += [normalizers.Replace(Regex(_onig_class(_IGNORABLE_RANGES)), ""), normalizers.NFKC(),
                  normalizers.Lowercase(), normalizers.Replace("ς", "σ"), normalizers.NFKC()]
    return normalizers.Sequence(steps)


@functools.lru_cache(maxsize=None)
def _bert_pre_tokenizer(split_on_cjk):
    isolated = _BERT_PUNCTUATION + ("|" + _onig_class(_CJK_RANGES) if split_on_cjk else "")
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_BERT_DELIMITERS), "removed"),
        pre_tokenizers.Split(Regex(isolated), "isolated"),
    ])


# Bounded: an edge server sees arbitrary text, and a miss costs only ~30 µs.
@functools.lru_cache(maxsize=65536)
def _fast_path_character(character, strip_accents, lowercase, split_on_cjk):
    """Whether whole-text normalization keeps `character`'s words as keras-hub's per-word folding makes them."""
    if character == _COMBINING_LONG_SOLIDUS:
        return False
    normalized = _bert_normalizer(strip_accents, lowercase).normalize_str(character)
    if len(normalized) > 1:
        return False  # expansions change the split or the word length
    split_class = functools.partial(_split_class, pre_tokenizer=_bert_pre_tokenizer(split_on_cjk))
    if split_class(character) == "delimiter":
        return normalized != "" and split_class(normalized) == "delimiter"
    if normalized and split_class(normalized) != split_class(character):
        return False
    # A combining mark is also probed beside marks of lower and higher combining
    # class: the library's NFKC predates some marks and does not reorder them.
    probes = (character, character + "\u0334", "\u0301" + character) if unicodedata.combining(character) else (character,)
    return all(_bert_normalizer(strip_accents, lowercase).normalize_str(probe) == _keras_fold(probe, strip_accents, lowercase)
               for probe in probes)


def _keras_fold(word, strip_accents, lowercase):
    stripped = _strip_accents(word) if strip_accents else word
    return _casefold(stripped) if lowercase else stripped


def _split_class(character, pre_tokenizer):
    # Between two letters: a delimiter leaves 2 words, an isolated character 3, a word character 1.
    return {1: "word", 2: "delimiter", 3: "isolated"}[len(pre_tokenizer.pre_tokenize_str(f"a{character}b"))]


def _strip_accents(text):
    # The library's \p{Mn} and NFD data are older than Python's and TF's for a few marks (e.g. U+1171E).
    return "".join(character for character in unicodedata.normalize("NFD", text) if unicodedata.category(character) != "Mn")


def _casefold(word):
    """ICU's NFKC_Casefold (`tf_text.case_fold_utf8`) of one word: each character folded, then composed."""
    return unicodedata.normalize("NFKC", "".join(_casefold_character(character) for character in word))


@functools.lru_cache(maxsize=65536)
def _casefold_character(character):
    if _IGNORABLE.match(character):
        return ""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", character).casefold())
