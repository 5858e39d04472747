"""The SavedModel backend: runs any SavedModel's signatures with TensorFlow.

It reads the signatures from the SavedModel itself (`tf.saved_model.load(...)
.signatures`), so it serves kerasdl exports and any other SavedModel with a
`serving_default` signature alike. TensorFlow is imported only when a
SavedModel is loaded.
"""

import os

import numpy as np

from serving.edge.backends import Signature, TensorSpec

MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class SavedModelBackend:
    """One SavedModel version.

    Args:
        folder: the version folder holding `saved_model.pb`.
        threads: unused (TensorFlow sizes its own thread pools); kept for symmetry.

    Example:
    >>> backend = SavedModelBackend("exports/cnn/1")
    >>> sorted(backend.signatures)
    ['image_bytes', 'serving_default']
    """

    kind = "savedmodel"

    def __init__(self, folder, threads=None):
        import tensorflow as tf

        self._tf = tf
        self.folder = os.fspath(folder)
        import tensorflow_text  # noqa: F401  (TF Text's ops, which text SavedModels use and TF Serving links)

        self.loaded = tf.saved_model.load(self.folder)
        self.functions = dict(self.loaded.signatures)
        if not self.functions:
            raise ValueError(f"the SavedModel at {self.folder} has no signatures; export it with a serving_default signature")
        self.signatures = {}
        for name, function in self.functions.items():
            _, keyword_specs = function.structured_input_signature
            inputs = {key: _spec(key, spec) for key, spec in keyword_specs.items()}
            outputs = {key: _spec(key, spec) for key, spec in function.structured_outputs.items()}
            self.signatures[name] = Signature(name, inputs, outputs)

    def prepare(self, signature_name, inputs):
        return signature_name, inputs

    def run(self, core_key, inputs):
        tf = self._tf
        function = self.functions[core_key]
        specs = self.signatures[core_key].inputs
        feed = {name: tf.constant(value, dtype=tf.string if specs[name].dtype == "string" else specs[name].dtype) for name, value in inputs.items()}
        results = function(**feed)
        return {name: _to_numpy(tensor) for name, tensor in results.items()}


def _spec(name, spec):
    dtype = "string" if spec.dtype.name == "string" else spec.dtype.name
    shape = tuple(spec.shape.as_list()) if spec.shape.rank is not None else (None,)
    return TensorSpec(name, dtype, shape)


def _to_numpy(tensor):
    value = tensor.numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return value
    return np.asarray(value)
