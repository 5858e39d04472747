"""Text models for export: what the model's registry entry says about its tokenizer.

The Keras text models take strings (the tokenizer is inside), which the
SavedModel keeps. ONNX has no string ops, so `model.onnx` is the part of the
model after the tokenizer (token ids in), and `tokenizer/` holds what
`kerasdl.tokenizer` needs to turn text into those ids without TensorFlow.
Every answer here comes from the model's own entry (`ModelEntry.text`).
"""

import numpy as np

from export.errors import ExportError
from kerasdl.models.registry import get_model_entry


def text_support(metadata):
    """Returns the `TextSupport` of the text model that `metadata` describes.

    Raises:
        ExportError: the metadata names no registered text model.
    """
    name = metadata.get("model")
    try:
        entry = get_model_entry(name)
    except KeyError as error:
        raise ExportError(f"the text model's metadata names model {name!r}: {error.args[0]}") from None
    if entry.text is None:
        raise ExportError(f"model {name!r} does not take text, but the metadata says its modality is text")
    return entry.text


def raw_model_fn(model, metadata):
    """Returns `f(raw_inputs) -> logits`: the model on the contract's raw input (strings for text).

    Example:
    >>> raw_model_fn(model, metadata)(tf.constant(["a good film"])).shape
    TensorShape([1, 2])
    """
    if metadata.get("modality") == "text":
        support = text_support(metadata)
        if support.raw_call is not None:
            return support.raw_call(model)

    def call(inputs):
        return model(inputs, training=False)

    return call


def token_submodel(model, metadata):
    """Returns the Keras model from token ids to logits that shares `model`'s weights."""
    return text_support(metadata).token_model(model)


def write_tokenizer(model, metadata, folder):
    """Writes `tokenizer/vocab.txt` and `tokenizer/tokenizer.json`; returns the tokenizer config."""
    try:
        return text_support(metadata).write_tokenizer(model, folder)
    except ValueError as error:
        raise ExportError(f"cannot write the text model's tokenizer: {error}") from None


def tokenizer_parity(model, metadata, tokenizer, texts):
    """Compares the exported tokenizer's ids with the model's in-graph tokenizer on `texts`.

    Returns:
        `(share of texts with identical ids, number of differing ids)`.
    """
    expected = text_support(metadata).token_features(model, list(texts))
    actual = tokenizer.encode_batch(list(texts))
    same_rows = np.ones(len(texts), dtype=bool)
    differing = 0
    for name, values in expected.items():
        if actual[name].shape != values.shape:
            return 0.0, int(max(actual[name].size, values.size))
        same_rows &= np.all(actual[name] == values, axis=1)
        differing += int(np.sum(actual[name] != values))
    return float(same_rows.mean()), differing


def export_tokenizer(job):
    """Writes `tokenizer/` into the version folder and checks it against the in-graph tokenizer.

    The token-id formats (ONNX, LiteRT) share this folder; the exporter calls
    this once, before the first of them.

    Returns:
        `(tokenizer.json content, ParityResult)`: a separate parity row says which half is
        wrong when a token-id format's parity fails (the Python tokenizer must give the
        in-graph tokenizer's ids exactly).
    """
    from export.verify import ParityResult
    from kerasdl.contract import TOKENIZER_DIR
    from kerasdl.tokenizer import load_tokenizer

    source = job.source
    info = write_tokenizer(source.model, source.metadata, job.folder / TOKENIZER_DIR)
    agreement, differing = tokenizer_parity(source.model, source.metadata, load_tokenizer(job.folder / TOKENIZER_DIR), source.examples)
    # The signature column names what the tokenizer produces: token ids, or the n-gram MLP's counts.
    outputs = ",".join(info.get("outputs") or ["token_ids"])
    row = ParityResult("tokenizer", outputs, len(source.examples), float(differing), 0.0, agreement,
                       differing == 0, "" if differing == 0 else f"{differing} ids differ")
    return info, row
