"""The ONNX Runtime backend: serves `model.onnx` with the SavedModel's signatures, without TensorFlow.

The ONNX graph returns only `probabilities`; this backend adds `class_ids`
(argmax) and `class_names` (from the model's `metadata_props`) so that the
answers have the same outputs as the SavedModel's. Image models also get the
`image_bytes` signature (JPEG/PNG decoded with Pillow), and text models a
`text` input, tokenized with the `tokenizer/` folder that lies beside the model.

This module must never import TensorFlow (a test checks it in a subprocess).
"""

import io
import json
import os

import numpy as np

from serving.edge.backends import Signature, TensorSpec, classifier_outputs, classify
from serving.edge.errors import InvalidInput

MODEL_FILE = "model.onnx"
_ORT_DTYPES = {
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
_INPUT_MODALITY = {"images": "image", "features": "features", "sequences": "sequence", "token_ids": "text"}
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class OnnxBackend:
    """One model version served by ONNX Runtime.

    Args:
        folder: the version folder, holding `model.onnx` (and `tokenizer/` for text).
        threads: ONNX Runtime intra-op threads; None lets it use every core.
        model_file: the file name inside `folder` (e.g. "model.int8.onnx").

    Example:
    >>> backend = OnnxBackend("exports/cnn/1")
    >>> key, inputs = backend.prepare("serving_default", {"images": images})
    >>> backend.run(key, inputs)["class_names"]
    """

    kind = "onnx"

    def __init__(self, folder, threads=None, model_file=MODEL_FILE):
        import onnxruntime

        self.folder = os.fspath(folder)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        # Requests run concurrently from several threads; one inter-op thread per run is enough.
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            os.path.join(self.folder, model_file), options, providers=["CPUExecutionProvider"]
        )
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = metadata
        self.onnx_inputs = {
            item.name: TensorSpec(item.name, _ORT_DTYPES.get(item.type, "float32"), _shape(item.shape))
            for item in self.session.get_inputs()
        }
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        num_classes = _shape(output.shape)[-1] if output.shape else None
        self.class_names = _json(metadata.get("class_names"), None) or [str(index) for index in range(num_classes or 0)]
        if num_classes is None:
            num_classes = len(self.class_names) or None
        first_input = next(iter(self.onnx_inputs))
        self.modality = metadata.get("modality") or _INPUT_MODALITY.get(first_input, "features")
        self.input_spec = _json(metadata.get("input_spec"), {})
        outputs = classifier_outputs(num_classes)
        self.signatures = {}
        self.tokenizer = None
        if self.modality == "text":
            from serving.edge.text import load_tokenizer

            self.tokenizer = load_tokenizer(os.path.join(self.folder, "tokenizer"))
            text_input = self.input_spec.get("name", "text") if self.input_spec.get("dtype") == "string" else "text"
            self.text_input = text_input
            self.signatures["serving_default"] = Signature(
                "serving_default", {text_input: TensorSpec(text_input, "string", (None,))}, outputs
            )
        else:
            self.signatures["serving_default"] = Signature("serving_default", dict(self.onnx_inputs), outputs)
        if self.modality == "image" and "images" in self.onnx_inputs:
            self.signatures["image_bytes"] = Signature(
                "image_bytes", {"image_bytes": TensorSpec("image_bytes", "string", (None,))}, outputs
            )

    def prepare(self, signature_name, inputs):
        """Turns validated signature inputs into ONNX inputs; returns `(core_key, onnx_inputs)`."""
        if signature_name == "image_bytes":
            return "onnx", {"images": self._decode_images(inputs["image_bytes"])}
        if self.tokenizer is not None:
            texts = [item.decode("utf-8", errors="replace") for item in inputs[self.text_input]]
            encoded = self.tokenizer.encode(texts)
            return "onnx", {name: np.asarray(encoded[name], dtype=self.onnx_inputs[name].dtype) for name in self.onnx_inputs}
        return "onnx", inputs

    def run(self, core_key, inputs):
        """Runs the ONNX graph on a batch; returns probabilities, class_ids and class_names."""
        (probabilities,) = self.session.run([self.output_name], inputs)
        return classify(probabilities, self.class_names)

    def _decode_images(self, items):
        from PIL import Image, UnidentifiedImageError

        spec = self.onnx_inputs["images"]
        height, width, channels = (list(spec.shape[1:]) + [None, None, None])[:3]
        channels = channels or 3
        if channels not in _PIL_MODES:
            raise InvalidInput(f"cannot decode images into {channels} channels")
        arrays = []
        for index, item in enumerate(items):
            try:
                with Image.open(io.BytesIO(item)) as image:
                    image = image.convert(_PIL_MODES[channels])
                    if height and width and image.size != (width, height):
                        image = image.resize((width, height), Image.BILINEAR)
                    array = np.asarray(image, dtype=np.float32)
            except UnidentifiedImageError:
                raise InvalidInput(f"input 'image_bytes' item {index} is not a decodable JPEG/PNG image") from None
            except (OSError, ValueError) as error:
                raise InvalidInput(f"input 'image_bytes' item {index} is a broken image: {error}") from None
            if array.ndim == 2:
                array = array[..., None]
            arrays.append(array)
        if len({array.shape for array in arrays}) > 1:
            raise InvalidInput("images of one request must share a size when the model accepts any size")
        return np.stack(arrays)


def _shape(shape):
    return tuple(size if isinstance(size, int) and size >= 0 else None for size in shape)


def _json(text, default):
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
