"""The names, shapes and tolerances every export format agrees on (no TensorFlow here).

This module is imported by the edge predictor too, so it must stay free of
TensorFlow and Keras: plain Python and the metadata dict only.

The metadata is the `kerasdl.json` entry of a `.keras` file (CONTRACTS.md §3).
"""

# The `serving_default` input of the SavedModel, and the ONNX input, per modality.
INPUT_NAMES = {"image": "images", "features": "features", "sequence": "sequences", "text": "text"}

# The outputs of every SavedModel signature, in the order they are reported.
OUTPUT_NAMES = ("probabilities", "class_ids", "class_names")

# The second signature of image models: encoded JPEG/PNG bytes. TF Serving's
# REST API decodes `{"b64": ...}` values into the bytes of a string tensor, and
# by convention the input name ends in `_bytes` so that clients know to send b64.
IMAGE_BYTES_SIGNATURE = "image_bytes"
IMAGE_BYTES_INPUT = "image_bytes"

# The ONNX output: softmax probabilities.
ONNX_OUTPUT = "probabilities"

# ONNX inputs of text models: token ids instead of strings, because ONNX has no
# tokenizer ops; the tokenizer travels beside the model (export/tokenizer.py).
TEXT_ONNX_INPUTS = {
    "text_vectorization": ("token_ids",),
    "bert": ("token_ids", "segment_ids", "padding_mask"),
}

# Parity tolerances: the largest absolute difference allowed between an exported
# artifact's probabilities and the Keras model's softmax(logits), per model and
# format. The SavedModel runs the same TensorFlow kernels as Keras, so it only
# differs by graph rewrites (fused ops); ONNX Runtime uses its own kernels and
# summation orders, which drift more in deep networks (ResNet50, BERT) and in
# long recurrent loops. Probabilities lie in [0, 1], so these are absolute.
TOLERANCES = {
    "mlp": {"savedmodel": 1e-5, "onnx": 1e-5},
    "cnn": {"savedmodel": 1e-5, "onnx": 1e-4},
    "lstm": {"savedmodel": 1e-5, "onnx": 1e-4},
    "text_lstm": {"savedmodel": 1e-5, "onnx": 1e-4},
    "resnet50": {"savedmodel": 1e-4, "onnx": 1e-3},
    "bert": {"savedmodel": 1e-4, "onnx": 1e-3},
}
# Models not in the table (a new registry entry) get these.
DEFAULT_TOLERANCES = {"savedmodel": 1e-4, "onnx": 1e-3}

# int8 quantization: static QDQ per-channel (calibrated on raw training examples)
# for convolutional networks, where activations dominate the error and static
# scales are accurate and fast; dynamic (weights int8, activation scales computed
# per batch at run time) for Dense/LSTM/attention models, where it is the
# standard ONNX Runtime recipe and needs no calibration data.
STATIC_QUANTIZATION_MODELS = ("cnn", "resnet50")


def tolerance(model_name, artifact_format):
    """Returns the parity tolerance of `model_name` for "savedmodel" or "onnx".

    Example:
    >>> tolerance("cnn", "onnx")
    0.0001
    """
    return TOLERANCES.get(model_name, DEFAULT_TOLERANCES)[artifact_format]


def quantization_method(model_name):
    """Returns "static" or "dynamic", the int8 recipe for `model_name`."""
    return "static" if model_name in STATIC_QUANTIZATION_MODELS else "dynamic"


def serving_input_name(metadata):
    """Returns the `serving_default` input name of the model that `metadata` describes."""
    modality = metadata.get("modality")
    if modality not in INPUT_NAMES:
        raise ValueError(f"unknown modality {modality!r} in the model metadata; expected one of {sorted(INPUT_NAMES)}")
    return INPUT_NAMES[modality]


def tokenizer_kind(metadata):
    """Returns "text_vectorization" or "bert" for a text model (from `metadata["text"]`)."""
    kind = (metadata.get("text") or {}).get("tokenizer")
    if kind not in TEXT_ONNX_INPUTS:
        raise ValueError(
            f"text model metadata must name its tokenizer in text.tokenizer "
            f"({' or '.join(TEXT_ONNX_INPUTS)}), got {kind!r}"
        )
    return kind


def onnx_input_names(metadata):
    """Returns the tuple of ONNX input names for the model that `metadata` describes."""
    if metadata.get("modality") == "text":
        return TEXT_ONNX_INPUTS[tokenizer_kind(metadata)]
    return (serving_input_name(metadata),)


def input_spec(metadata):
    """Returns the raw input spec: `{"name", "dtype", "shape"}` with the batch axis as None.

    Example:
    >>> input_spec({"modality": "image", "input": {"shape": [8, 8, 1], "dtype": "float32"}})
    {'name': 'images', 'dtype': 'float32', 'shape': [None, 8, 8, 1]}
    """
    name = serving_input_name(metadata)
    if metadata["modality"] == "text":
        return {"name": name, "dtype": "string", "shape": [None]}
    shape = list((metadata.get("input") or {}).get("shape") or [])
    return {"name": name, "dtype": "float32", "shape": [None] + shape}
