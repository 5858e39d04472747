"""The ONNX Runtime backend: serves `model.onnx` with the SavedModel's signatures, without TensorFlow.

The ONNX graph returns only `probabilities`; this backend adds `class_ids`
(argmax) and `class_names` (from the model's `metadata_props`) so that the
answers have the same outputs as the SavedModel's. Image models also get the
`image_bytes` signature (JPEG/PNG decoded with Pillow), and text models a
`text` input, tokenized with the `tokenizer/` folder that lies beside the model.
Loading, tokenizing and running are `kerasdl.runtime.onnx.OnnxRunner`'s, the
runner that `export.verify` and `export.predict` use too.

This module must never import TensorFlow (a test checks it in a subprocess).
"""

import io
import os

import numpy as np

from kerasdl.runtime.onnx import OnnxRunner
from serving.edge.backends import Signature, TensorSpec, classifier_outputs, classify
from serving.edge.errors import InvalidInput

MODEL_FILE = "model.onnx"
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
        self.folder = os.fspath(folder)
        # Requests run concurrently from several threads; one inter-op thread per run is enough.
        self.runner = OnnxRunner(os.path.join(self.folder, model_file), threads=threads, inter_op_threads=1)
        self.metadata = self.runner.metadata
        self.onnx_inputs = {name: TensorSpec(name, dtype, shape) for name, (dtype, shape) in self.runner.inputs.items()}
        self.class_names = self.runner.class_names or []
        self.modality = self.runner.modality
        self.input_spec = self.runner.input_spec
        outputs = classifier_outputs(self.runner.num_classes)
        self.signatures = {}
        if self.modality == "text":
            spec = self.input_spec
            self.text_input = spec.get("name", "text") if spec.get("dtype") == "string" else "text"
            self.signatures["serving_default"] = Signature(
                "serving_default", {self.text_input: TensorSpec(self.text_input, "string", (None,))}, outputs
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
        if self.modality == "text":
            return "onnx", self.runner.cast(self.runner.feed(list(inputs[self.text_input])))
        return "onnx", inputs

    def run(self, core_key, inputs):
        """Runs the ONNX graph on a batch; returns probabilities, class_ids and class_names."""
        return classify(self.runner.run(inputs), self.class_names)

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

