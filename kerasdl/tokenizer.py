"""Pure-Python tokenizers that give the same token ids as the models' in-graph tokenizers.

An ONNX text model takes token ids, not strings (ONNX has no string ops), so
the tokenizer travels beside it in `tokenizer/`: `vocab.txt` (one token per
line, line number = id) and `tokenizer.json` (the settings). This module turns
text into the ONNX inputs on a box that has only numpy and onnxruntime: it
imports no TensorFlow, Keras or `regex`, on purpose.

Two tokenizers, matching the two text models:

- `TextVectorizationTokenizer` reproduces `keras.layers.TextVectorization(
  standardize="lower_and_strip_punctuation", split="whitespace",
  output_mode="int")` of the text LSTM: ASCII lowercase (`tf.strings.lower`),
  delete ASCII punctuation (the Keras regex), split on ASCII whitespace, look
  each word up (0 = padding, 1 = out of vocabulary), cut or zero-pad to the
  sequence length. Output: `token_ids`.
- `WordPieceTokenizer` reproduces keras-hub's `BertTokenizer` plus the
  `BertTextClassifierPreprocessor` packing: strip accents (NFD, drop marks),
  split on whitespace/control characters, punctuation and CJK characters
  (punctuation and CJK kept as words), case-fold each word (NFKC_Casefold),
  greedy longest-match WordPiece with `##` suffixes (a word that cannot be
  split, or longer than 100 bytes, becomes `[UNK]`), then
  `[CLS] tokens [SEP]` cut to the sequence length and padded. Outputs:
  `token_ids`, `segment_ids` (all 0, one segment) and `padding_mask`
  (1 on real tokens).

Example:
>>> tokenizer = load_tokenizer("exports/text_lstm/1/tokenizer")
>>> tokenizer.encode_batch(["A good film."])["token_ids"].shape
(1, 64)
"""

import json
import os
import re
import unicodedata

import numpy as np

TOKENIZER_FILE = "tokenizer.json"
VOCABULARY_FILE = "vocab.txt"

# `keras.layers.TextVectorization`'s punctuation regex (ASCII only).
_KERAS_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
# `tf.strings.split` without a separator splits on ASCII whitespace only.
_ASCII_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
# `tf.strings.lower` without an encoding lowercases ASCII letters only.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# `tf_text.FastWordpieceTokenizer` maps words longer than this many bytes to [UNK].
_MAX_BYTES_PER_WORD = 100
# CJK ideograph blocks (from the original BERT tokenizer), split into single-character words.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Unicode Default_Ignorable_Code_Point ranges, which NFKC_Casefold removes.
_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


class TextVectorizationTokenizer:
    """The text LSTM's `TextVectorization` in plain Python.

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
        self.sequence_length = sequence_length
        self.lowercase = lowercase
        self.strip_punctuation = strip_punctuation
        self.padding_id = 0
        self.oov_id = 1
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}

    def tokenize(self, text):
        """Returns the words of `text` after standardization and splitting."""
        if self.lowercase:
            text = text.translate(_ASCII_LOWER)
        if self.strip_punctuation:
            text = _KERAS_PUNCTUATION.sub("", text)
        return [word for word in _ASCII_WHITESPACE.split(text) if word]

    def encode(self, text):
        """Returns the token ids of one text (cut/padded to `sequence_length` when set)."""
        ids = [self._ids.get(word, self.oov_id) for word in self.tokenize(text)]
        if self.sequence_length is not None:
            ids = ids[: self.sequence_length] + [self.padding_id] * max(0, self.sequence_length - len(ids))
        return ids

    def encode_batch(self, texts):
        """Returns `{"token_ids": int64 [batch, length]}` for a list of texts."""
        rows = [self.encode(text) for text in texts]
        length = self.sequence_length or max([len(row) for row in rows] + [1])
        token_ids = np.zeros((len(rows), length), dtype="int64")
        for index, row in enumerate(rows):
            token_ids[index, : len(row)] = row
        return {"token_ids": token_ids}

    def config(self):
        return {
            "type": self.kind,
            "lowercase": self.lowercase,
            "lowercase_scope": "ascii",
            "strip_punctuation": self.strip_punctuation,
            "split": "ascii_whitespace",
            "sequence_length": self.sequence_length,
            "special_tokens": {"padding": {"token": "", "id": 0}, "oov": {"token": "[UNK]", "id": 1}},
            "vocabulary_file": VOCABULARY_FILE,
            "vocabulary_size": len(self.vocabulary),
            "outputs": list(self.input_names),
        }


class WordPieceTokenizer:
    """keras-hub's BERT tokenizer and single-segment packer in plain Python.

    Args:
        vocabulary: all WordPiece tokens, index = id.
        sequence_length: ids per text, `[CLS]` and `[SEP]` included.
        lowercase: case-fold words (uncased BERT).
        strip_accents: remove accent marks (NFD, then drop combining marks).
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

    def words(self, text):
        """Returns the words of `text` before WordPiece (accents stripped, split, case-folded)."""
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        words, current = [], []
        for character in text:
            if _is_bert_whitespace(character):
                if current:
                    words.append("".join(current))
                    current = []
            elif _is_bert_punctuation(character) or (self.split_on_cjk and _is_cjk(character)):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(character)
            else:
                current.append(character)
        if current:
            words.append("".join(current))
        if self.lowercase:
            words = [_casefold(word) for word in words]
        # Case folding can empty a word (it drops ignorable code points).
        return [word for word in words if word]

    def tokenize(self, text):
        """Returns the WordPiece tokens of `text` (no special tokens)."""
        tokens = []
        for word in self.words(text):
            tokens.extend(self._word_pieces(word))
        return tokens

    def encode(self, text):
        """Returns `(token_ids, segment_ids, padding_mask)` lists for one text."""
        ids = [self._ids[token] for token in self.tokenize(text)]
        ids = [self.cls_id] + ids[: self.sequence_length - 2] + [self.sep_id]
        padding = self.sequence_length - len(ids)
        return (
            ids + [self.pad_id] * padding,
            [0] * self.sequence_length,
            [1] * len(ids) + [0] * padding,
        )

    def encode_batch(self, texts):
        """Returns `{"token_ids", "segment_ids", "padding_mask"}`, int64 `[batch, sequence_length]`."""
        encoded = [self.encode(text) for text in texts]
        return {
            name: np.asarray([row[index] for row in encoded], dtype="int64").reshape(len(encoded), self.sequence_length)
            for index, name in enumerate(self.input_names)
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

    def _word_pieces(self, word):
        if len(word.encode("utf-8")) > _MAX_BYTES_PER_WORD:
            return [self.special_tokens["unknown"]]
        pieces, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                candidate = word[start:end] if start == 0 else self.suffix_indicator + word[start:end]
                if candidate in self._ids:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [self.special_tokens["unknown"]]
            pieces.append(piece)
            start = end
        return pieces


def write_tokenizer_files(folder, tokenizer):
    """Writes `vocab.txt` and `tokenizer.json` of `tokenizer` into `folder`; returns its config."""
    os.makedirs(folder, exist_ok=True)
    for token in tokenizer.vocabulary:
        if "\n" in token:
            raise ValueError(f"token {token!r} contains a newline; it cannot be stored one per line")
    with open(os.path.join(folder, VOCABULARY_FILE), "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(tokenizer.vocabulary) + "\n")
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


def _is_bert_whitespace(character):
    # RE2's \s (ASCII whitespace) plus control and format characters, as keras-hub splits.
    return character in " \t\n\r\f" or unicodedata.category(character) in ("Cc", "Cf")


def _is_bert_punctuation(character):
    # All non-letter/number ASCII counts as punctuation (as in the original BERT), plus Unicode P*.
    code = ord(character)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(character).startswith("P")


def _is_cjk(character):
    code = ord(character)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _casefold(word):
    # NFKC_Casefold (what tf_text.case_fold_utf8 applies): NFKC, full case
    # folding, NFKC again, minus default-ignorable code points.
    word = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold())
    return "".join(c for c in word if not any(low <= ord(c) <= high for low, high in _DEFAULT_IGNORABLE_RANGES))
