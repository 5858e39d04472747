"""Text to token ids for ONNX text models, from the `tokenizer/` folder beside `model.onnx`.

The export stage owns the tokenizer format and its pure-Python implementation
(`export/tokenizer.py`: `vocab.txt` + `tokenizer.json`, no TensorFlow), so
the edge server reuses it rather than re-implementing the standardization
rules. `load_tokenizer` returns an object with one method,
`encode(texts) -> {onnx_input_name: int64 array [B, T]}`.
"""

import os

import numpy as np


def load_tokenizer(folder):
    """Returns a tokenizer for the `tokenizer/` folder `folder`.

    Raises:
        ValueError: the folder is missing or holds no readable tokenizer.

    Example:
    >>> tokenizer = load_tokenizer("exports/text_lstm/1/tokenizer")
    >>> tokenizer.encode(["a fine film"])["token_ids"].shape
    (1, 64)
    """
    from kerasdl.tokenizer import load_tokenizer as load_export_tokenizer

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"text model has no tokenizer folder at {folder}; re-export it with python -m export.run")
    try:
        return _Tokenizer(load_export_tokenizer(folder))
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"cannot read the tokenizer in {folder}: {error}; re-export the model") from None


class _Tokenizer:
    """Adapts `export.tokenizer`'s tokenizers to `encode(texts) -> {name: int64 array}`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.input_names = tuple(tokenizer.input_names)

    def encode(self, texts):
        encoded = self.tokenizer.encode_batch(list(texts))
        return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}
