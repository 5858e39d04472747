"""The ONNX Runtime backend: serves `model.onnx` with the SavedModel's signatures, without TensorFlow.

The ONNX graph returns only `probabilities`; this backend adds `class_ids`
(argmax), `class_names`, `classes` and `scores` (from the model's
`metadata_props`) so that the answers have the same outputs as the
SavedModel's. Image models also get the `image_bytes` signature: JPEG/PNG
decoded as TensorFlow decodes them (`kerasdl.runtime.images`) and never
resized here, since the model resizes inside; images of several sizes in one
request run in groups of one size. Text models get a `text` input, tokenized
with the `tokenizer/` folder that lies beside the model.
Loading, tokenizing and running are `kerasdl.runtime.onnx.OnnxRunner`'s, the
runner that `export.verify` and `export.predict` use too.

This module must never import TensorFlow (a test checks it in a subprocess).
"""

import os

import numpy as np

from kerasdl.runtime import ArtifactError
from kerasdl.runtime.onnx import OnnxRunner
from serving.edge.backends import Signature, TensorSpec, classifier_outputs, classify
from serving.edge.errors import InvalidInput

MODEL_FILE = "model.onnx"
# The core key of a request whose images differ in size: `run` groups them by size.
RAGGED = "onnx-images-of-several-sizes"


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
        self.model_file = model_file  # Said in the metadata answer and the load log (--onnx-variant).
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
        """Turns validated signature inputs into ONNX inputs; returns `(core_key, onnx_inputs)`.

        Decoded images of one size are stacked (the batcher then joins requests of that
        size); a request with several sizes becomes one object array of images, which
        `run` splits by size (`RAGGED`).
        """
        if signature_name == "image_bytes":
            images = self._decode_images(inputs["image_bytes"])
            if len({image.shape for image in images}) == 1:
                return "onnx", {"images": np.stack(images)}
            ragged = np.empty(len(images), dtype=object)
            ragged[:] = images
            return RAGGED, {"images": ragged}
        if self.modality == "text":
            return "onnx", self.runner.cast(self.runner.feed(list(inputs[self.text_input])))
        return "onnx", inputs

    def run(self, core_key, inputs):
        """Runs the ONNX graph on a batch; returns every classifier output (`classify`)."""
        if core_key == RAGGED:
            return classify(self.runner.predict(list(inputs["images"])), self.class_names)
        return classify(self.runner.run(inputs), self.class_names)

    def _decode_images(self, items):
        try:
            images = self.runner.decode_images(items)
            self.runner.check_image_sizes(images)
        except ArtifactError as error:
            raise InvalidInput(f"input 'image_bytes' {error}") from None
        return images

