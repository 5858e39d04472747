"""Text models for ONNX: the token-id sub-model and the tokenizer files beside it.

The Keras text models take strings (the tokenizer is inside), which the
SavedModel keeps. ONNX has no string ops, so `model.onnx` is the part of the
model after the tokenizer (token ids in), and `tokenizer/` holds what
`export/tokenizer.py` needs to turn text into those ids without TensorFlow.
"""

import numpy as np

from export.errors import ExportError
from export.spec import tokenizer_kind
from export.tokenizer import TextVectorizationTokenizer, WordPieceTokenizer, write_tokenizer_files


def raw_model_fn(model, metadata):
    """Returns `f(raw_inputs) -> logits`: the model on the contract's raw input (strings for text).

    The text LSTM takes strings itself. A keras-hub `BertTextClassifier` takes
    token features when called, and its attached preprocessor turns strings
    into them, so for BERT the function runs the preprocessor first.

    Example:
    >>> raw_model_fn(model, metadata)(tf.constant(["a good film"])).shape
    TensorShape([1, 2])
    """
    if metadata.get("modality") == "text" and tokenizer_kind(metadata) == "bert":
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None:
            raise ExportError("the BERT model has no preprocessor attached; it cannot take strings as the contract asks")

        def call_bert(texts):
            return model(preprocessor(texts), training=False)

        return call_bert

    def call(inputs):
        return model(inputs, training=False)

    return call


def token_submodel(model, metadata):
    """Returns the Keras model from token ids to logits that shares `model`'s weights.

    Example:
    >>> token_submodel(text_model, metadata).input.name
    'token_ids'
    """
    kind = tokenizer_kind(metadata)
    if kind == "text_vectorization":
        from kerasdl.models.text_lstm import text_lstm_token_model

        return text_lstm_token_model(model)
    try:
        from kerasdl.models.bert import bert_token_model
    except ImportError:
        raise ExportError(
            "this kerasdl has no kerasdl.models.bert.bert_token_model, so the BERT model cannot be "
            "exported to ONNX; export --format savedmodel only"
        ) from None
    return bert_token_model(model)


def python_tokenizer(model, metadata):
    """Returns the pure-Python tokenizer (`export.tokenizer`) equivalent to the model's own."""
    kind = tokenizer_kind(metadata)
    sequence_length = (metadata.get("text") or {}).get("sequence_length")
    if kind == "text_vectorization":
        layer = model.get_layer("text_vectorization")
        config = layer.get_config()
        if config.get("standardize") != "lower_and_strip_punctuation" or config.get("split") != "whitespace":
            raise ExportError(
                f"the text_vectorization layer uses standardize={config.get('standardize')!r}, "
                f"split={config.get('split')!r}; the exporter reproduces only lower_and_strip_punctuation + whitespace"
            )
        if config.get("output_mode") != "int" or config.get("ngrams"):
            raise ExportError("the text_vectorization layer must output int token ids without n-grams to export to ONNX")
        length = config.get("output_sequence_length") or sequence_length
        return TextVectorizationTokenizer(layer.get_vocabulary(), sequence_length=length)
    tokenizer, length = _bert_tokenizer_layer(model)
    special = {
        "cls_token": getattr(tokenizer, "cls_token", "[CLS]"),
        "sep_token": getattr(tokenizer, "sep_token", "[SEP]"),
        "pad_token": getattr(tokenizer, "pad_token", "[PAD]"),
        "unknown_token": getattr(tokenizer, "oov_token", None) or getattr(tokenizer, "unk_token", "[UNK]"),
    }
    return WordPieceTokenizer(
        tokenizer.get_vocabulary(),
        sequence_length=length or sequence_length,
        lowercase=bool(getattr(tokenizer, "lowercase", True)),
        strip_accents=bool(getattr(tokenizer, "strip_accents", False)),
        split_on_cjk=bool(getattr(tokenizer, "split_on_cjk", True)),
        suffix_indicator=getattr(tokenizer, "suffix_indicator", "##"),
        **special,
    )


def write_tokenizer(model, metadata, folder):
    """Writes `tokenizer/vocab.txt` and `tokenizer/tokenizer.json`; returns the tokenizer config."""
    return write_tokenizer_files(folder, python_tokenizer(model, metadata))


def tokenizer_parity(model, metadata, tokenizer, texts):
    """Compares the Python tokenizer's ids with the model's in-graph tokenizer on `texts`.

    Returns:
        `(share of texts with identical ids, number of differing ids)`.
    """
    import tensorflow as tf

    expected = _graph_features(model, metadata, tf.constant(list(texts)))
    actual = tokenizer.encode_batch(list(texts))
    same_rows = np.ones(len(texts), dtype=bool)
    differing = 0
    for name, values in expected.items():
        if actual[name].shape != values.shape:
            return 0.0, int(max(actual[name].size, values.size))
        same_rows &= np.all(actual[name] == values, axis=1)
        differing += int(np.sum(actual[name] != values))
    return float(same_rows.mean()), differing


def _graph_features(model, metadata, texts):
    if tokenizer_kind(metadata) == "text_vectorization":
        return {"token_ids": np.asarray(model.get_layer("text_vectorization")(texts)).astype("int64")}
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ExportError("the BERT model has no preprocessor to compare the tokenizer with")
    features = preprocessor(texts)
    return {name: np.asarray(features[name]).astype("int64") for name in ("token_ids", "segment_ids", "padding_mask")}


def _bert_tokenizer_layer(model):
    # keras-hub text classifiers carry their preprocessor (tokenizer + packer).
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        raise ExportError("the BERT model has no keras-hub preprocessor with a tokenizer; cannot write tokenizer/")
    return tokenizer, getattr(preprocessor, "sequence_length", None)
