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

# The outputs of every SavedModel signature, in the order they are reported.
OUTPUT_NAMES = ("probabilities", "class_ids", "class_names")

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
