"""The one ONNX Runtime runner: `export.verify`, `export.predict` and the edge server's ONNX backend use it.

A kerasdl ONNX model (`python -m export.run`) takes the contract's raw inputs
(token ids for text) and returns softmax `probabilities`; its `metadata_props`
hold the class names, modality and input spec (docs/CONTRACTS.md §5). The
runner also serves an ONNX file without that metadata (class ids as names,
the modality guessed from the input name), as the edge server does; callers
that need the metadata check `has_metadata`.

No TensorFlow here (see `kerasdl.runtime`).
"""

import json
import os

import numpy as np

from kerasdl.contract import INPUT_NAMES, ONNX_OUTPUT
from kerasdl.runtime import REEXPORT, ArtifactError, Runner

# ONNX Runtime's type strings as numpy dtype names ("string" for string tensors).
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
# The modality of an ONNX file without kerasdl metadata, from its first input's name.
_MODALITY_BY_INPUT = {name: modality for modality, name in INPUT_NAMES.items()} | {"token_ids": "text"}


class OnnxRunner(Runner):
    """One `.onnx` file in an ONNX Runtime session, CPU provider.

    Args:
        path: the `.onnx` file (`tokenizer/` beside it for text models).
        threads: intra-op threads; None lets ONNX Runtime use every core.
        inter_op_threads: inter-op threads; the edge server runs requests from
            several threads and gives each run one.

    Attributes:
        session: the `onnxruntime.InferenceSession`.
        inputs: `{name: (dtype, shape)}` of the graph inputs (unknown sizes as None).
        output_name: the probabilities output.
        num_classes: its last axis, when the graph states it.
        metadata: the `metadata_props` as a dict.
        has_metadata: whether they hold kerasdl's class names and modality.

    Example:
    >>> runner = OnnxRunner("exports/mlp/1/model.onnx")
    >>> runner.run(runner.feed(features)).shape
    (5, 3)
    """

    kind = "onnx"

    def __init__(self, path, threads=None, inter_op_threads=None):
        import onnxruntime

        path = os.fspath(path)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        if inter_op_threads:
            options.inter_op_num_threads = int(inter_op_threads)
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise ArtifactError(f"{path}: empty file (0 bytes), not an ONNX model; {REEXPORT}")
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own types for unreadable files.
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({detail}); {REEXPORT}") from None
        self.path = path
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.inputs = {item.name: (ORT_DTYPES.get(item.type, "float32"), _shape(item.shape)) for item in self.session.get_inputs()}
        output = next((item for item in self.session.get_outputs() if item.name == ONNX_OUTPUT), self.session.get_outputs()[0])
        self.output_name = output.name
        self.num_classes = _shape(output.shape)[-1] if output.shape else None
        self.has_metadata = "class_names" in self.metadata and "modality" in self.metadata
        class_names = _json(self.metadata.get("class_names"), None)
        if class_names is None and self.num_classes:
            class_names = [str(index) for index in range(self.num_classes)]
        first_input = next(iter(self.inputs))
        modality = self.metadata.get("modality") or _MODALITY_BY_INPUT.get(first_input, "features")
        input_spec = _json(self.metadata.get("input_spec"), None) or {
            "name": first_input, "dtype": self.inputs[first_input][0], "shape": list(self.inputs[first_input][1])
        }
        super().__init__(class_names, modality, input_spec, os.path.dirname(os.path.abspath(path)))
        if self.num_classes is None and self.class_names:
            self.num_classes = len(self.class_names)

    def cast(self, feed):
        """Casts each array of `feed` to the dtype the graph input of that name declares.

        Token ids come out of the tokenizers as int64; a graph may declare int32.
        """
        cast = {}
        for name, value in feed.items():
            dtype = (self.inputs.get(name) or (None,))[0]
            cast[name] = np.asarray(value, dtype=object if dtype == "string" else dtype)
        return cast

    def run(self, feed):
        """Runs the graph on one batch `{input name: array}`; returns float32 probabilities `[B, K]`."""
        (probabilities,) = self.session.run([self.output_name], self.cast(feed))
        return np.asarray(probabilities, dtype=np.float32)


def _shape(shape):
    return tuple(size if isinstance(size, int) and size >= 0 else None for size in shape)


def _json(text, default):
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
