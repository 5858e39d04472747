"""The contract between training, export, serving and the client (no TensorFlow here).

Input and output names per modality, the files a published version holds
beside its models (model card, tokenizer), and the raw input spec. Training
writes it into the model's metadata, export writes it into the artifacts, and
the edge server and the client read it back; so this module must stay free of
TensorFlow and Keras: plain Python and the metadata dict only.

The metadata is the `kerasdl.json` entry of a `.keras` file (docs/CONTRACTS.md §3).
"""

import os

# The `serving_default` input of the SavedModel, and the ONNX input, per modality.
INPUT_NAMES = {"image": "images", "features": "features", "sequence": "sequences", "text": "text"}

# The outputs of every SavedModel signature (and of the edge server), in the order they are
# reported. `probabilities` [B, K], `class_ids` [B] (argmax) and `class_names` [B] (its name);
# `classes` [B, K] (every class name, in class-id order) with `scores` [B, K] (their
# probabilities), as TF's canned classifiers answered, so a client names every class
# without a side file (`kerasdl.runtime.classifier_outputs` builds them).
OUTPUT_NAMES = ("probabilities", "class_ids", "class_names", "classes", "scores")

# The second signature of image models: encoded JPEG/PNG bytes. TF Serving's
# REST API decodes `{"b64": ...}` values into the bytes of a string tensor, and
# by convention the input name ends in `_bytes` so that clients know to send b64.
IMAGE_BYTES_SIGNATURE = "image_bytes"
IMAGE_BYTES_INPUT = "image_bytes"

# The ONNX output: softmax probabilities.
ONNX_OUTPUT = "probabilities"

# ONNX inputs of text models by tokenizer kind: token ids instead of strings,
# because ONNX has no tokenizer ops; the tokenizer travels beside the model
# (`TOKENIZER_DIR`, read by `kerasdl.tokenizer`).
TEXT_ONNX_INPUTS = {
    "text_vectorization": ("token_ids",),
    "bert": ("token_ids", "segment_ids", "padding_mask"),
    # The n-gram MLP: int64 counts of each vocabulary word and word pair ([B, vocabulary]).
    "ngram_counts": ("token_counts",),
}

# Files of a published version folder, beside the models (docs/CONTRACTS.md §5).
MODEL_CARD_FILE = os.path.join("assets.extra", "model_card.json")
TOKENIZER_DIR = "tokenizer"


def serving_input_name(metadata):
    """Returns the `serving_default` input name of the model that `metadata` describes."""
    modality = metadata.get("modality")
    if modality not in INPUT_NAMES:
        raise ValueError(f"unknown modality {modality!r} in the model metadata; expected one of {sorted(INPUT_NAMES)}")
    return INPUT_NAMES[modality]


def tokenizer_kind(metadata):
    """Returns the tokenizer kind of a text model (a key of `TEXT_ONNX_INPUTS`, from `metadata["text"]`)."""
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


def image_size(metadata):
    """Returns `[height, width]` that an image model resizes its raw pixels to, or None.

    New models take any size (`input.shape` `[None, None, C]`) and name their
    own size in `input.image_size`; older ones took one fixed size, their shape.

    Example:
    >>> image_size({"modality": "image", "input": {"shape": [None, None, 3], "image_size": [32, 32]}})
    [32, 32]
    """
    spec = metadata.get("input") or {}
    if spec.get("image_size"):
        return [int(size) for size in spec["image_size"]]
    shape = list(spec.get("shape") or [])
    if len(shape) == 3 and shape[0] is not None and shape[1] is not None:
        return [int(shape[0]), int(shape[1])]
    return None


def image_channels(metadata):
    """Returns the channel count (1 or 3) of an image model's raw input, from its input shape."""
    shape = list((metadata.get("input") or {}).get("shape") or [])
    return int(shape[-1]) if len(shape) == 3 and shape[-1] else 3

