"""The SavedModel backend: serves any SavedModel TF Serving serves, with TensorFlow.

Signatures come from the SavedModel's "serve" MetaGraph, as TF Serving reads
them: names, dtypes, shapes and method names (predict, classify, regress);
the metadata API returns those SignatureDefs unchanged.

Loading:
- A TF2 SavedModel (it has an object graph) loads with `tf.saved_model.load`
  and its signature functions run eagerly; their input shapes are checked.
- A TF1 SavedModel, and any SavedModel `tf.saved_model.load` refuses (TF
  Serving's `half_plus_three` test model: `ParseExample` on a string input of
  unknown rank fails there with a rank error), loads as TF Serving loads every
  SavedModel: the "serve" MetaGraph in a fresh graph and session. Its
  signatures run through a session callable, which feeds the request's tensors
  as they are (TF Serving's semantics: the graph, not the server, judges their
  shapes), so their input shapes are not checked here.

TensorFlow is imported only when a SavedModel is loaded, without its start-up
noise (see `serving.edge.quiet`).
"""

import os

from serving import protos
from serving.edge.backends import PREDICT_METHOD, Signature, TensorSpec
from serving.edge.errors import InvalidInput
from serving.edge.quiet import import_tensorflow

MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
SERVE_TAG = "serve"


class SavedModelBackend:
    """One SavedModel version.

    Args:
        folder: the version folder holding `saved_model.pb` (or `.pbtxt`).
        threads: unused (TensorFlow sizes its own thread pools); kept for symmetry.

    Attributes:
        signature_defs: the MetaGraph's SignatureDef protos by name (for metadata).
        loader: "tf2" (`tf.saved_model.load`) or "tf1" (graph and session).

    Example:
    >>> backend = SavedModelBackend("exports/cnn/1")
    >>> sorted(backend.signatures)
    ['image_bytes', 'serving_default']
    """

    kind = "savedmodel"

    def __init__(self, folder, threads=None):
        tf = import_tensorflow()
        self.folder = os.fspath(folder)
        import tensorflow_text  # noqa: F401  (TF Text's ops, which text SavedModels use and TF Serving links)

        meta_graph = read_meta_graph(self.folder)
        self.signature_defs = dict(meta_graph.signature_def)
        self.runner = None
        if len(meta_graph.object_graph_def.nodes):
            try:
                self.runner = _FunctionRunner(tf, self.folder)
            except Exception:  # Not every SavedModel loads this way (see the module docstring).
                self.runner = None
        if self.runner is None:
            self.runner = _SessionRunner(tf, self.folder, self.signature_defs)
        self.loader = self.runner.loader
        self.signatures = {}
        for name, definition in self.signature_defs.items():
            signature = _signature(name, definition, strict=self.loader == "tf2")
            if signature is not None and (self.loader == "tf1" or name in self.runner.functions):
                self.signatures[name] = signature
        if not self.signatures:
            raise ValueError(f"the SavedModel at {self.folder} has no servable signatures; export it with a serving_default signature")

    def prepare(self, signature_name, inputs):
        return signature_name, inputs

    def run(self, core_key, inputs):
        try:
            return self.runner.run(core_key, self.signature_defs[core_key], inputs)
        except UnicodeDecodeError:
            # TensorFlow quotes the offending input in its error message; when those bytes are
            # not UTF-8, its Python binding fails to decode the message and raises this instead.
            raise InvalidInput(
                f"signature {core_key!r} refused the input (TensorFlow's error message quotes bytes that are not UTF-8)"
            ) from None


def read_meta_graph(folder, tag=SERVE_TAG):
    """Returns the MetaGraphDef tagged `tag` from `folder`'s saved_model.pb (or .pbtxt), without loading it.

    Raises:
        ValueError: no SavedModel file, an unreadable one, or no MetaGraph with the tag.
    """
    from google.protobuf import message, text_format

    saved_model = protos.load().saved_model_pb2.SavedModel()
    binary, text = (os.path.join(folder, name) for name in MODEL_FILES)
    try:
        if os.path.isfile(binary):
            with open(binary, "rb") as stream:
                saved_model.ParseFromString(stream.read())
        else:
            with open(text, encoding="utf-8") as stream:
                text_format.Parse(stream.read(), saved_model)
    except (OSError, message.DecodeError, text_format.ParseError) as error:
        raise ValueError(f"cannot read the SavedModel in {folder}: {error}") from None
    for meta_graph in saved_model.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"the SavedModel in {folder} has no MetaGraph tagged {tag!r}")


def _signature(name, definition, strict):
    """The `Signature` of a SignatureDef, or None when this server cannot feed it (unsupported dtypes, sparse tensors)."""
    if name.startswith("__"):  # `__saved_model_init_op` and the like: not callable signatures.
        return None
    try:
        inputs = {key: _spec(key, info) for key, info in definition.inputs.items()}
        outputs = {key: _spec(key, info) for key, info in definition.outputs.items()}
    except ValueError:
        return None
    if not outputs:
        return None
    return Signature(name, inputs, outputs, method=definition.method_name or PREDICT_METHOD, strict=strict)


def _spec(key, info):
    if info.WhichOneof("encoding") != "name":
        raise ValueError(f"{key} is a composite tensor")
    dtype = protos.dtype_name(info.dtype)
    if info.tensor_shape.unknown_rank:
        return TensorSpec(key, dtype, None)
    return TensorSpec(key, dtype, tuple(None if dim.size < 0 else int(dim.size) for dim in info.tensor_shape.dim))


class _FunctionRunner:
    """A TF2 SavedModel's signature functions, run eagerly."""

    loader = "tf2"

    def __init__(self, tf, folder):
        self._tf = tf
        self.loaded = tf.saved_model.load(folder)
        self.functions = dict(self.loaded.signatures)

    def run(self, name, definition, inputs):
        tf = self._tf
        feed = {
            key: tf.constant(value, dtype=tf.dtypes.as_dtype(definition.inputs[key].dtype))
            for key, value in inputs.items()
        }
        return {key: tensor.numpy() for key, tensor in self.functions[name](**feed).items()}


class _SessionRunner:
    """A SavedModel loaded as TF Serving loads it: the "serve" MetaGraph in a fresh graph and session.

    Signatures run through session callables (`Session::MakeCallable`), one
    per signature and set of fed inputs; unlike `Session.run`, a callable does
    not refuse a feed whose shape differs from the tensor's static shape,
    which matches TF Serving's C++ session. Callables are thread-safe.
    """

    loader = "tf1"

    def __init__(self, tf, folder, signature_defs):
        from tensorflow.core.protobuf import config_pb2

        self._options = config_pb2.CallableOptions
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            tf.compat.v1.saved_model.loader.load(self.session, [SERVE_TAG], folder)
        self.functions = dict(signature_defs)
        self._callables = {}

    def run(self, name, definition, inputs):
        feed_keys = tuple(sorted(inputs))
        fetch_keys = tuple(sorted(definition.outputs))
        key = (name, feed_keys)
        function = self._callables.get(key)
        if function is None:
            options = self._options(
                feed=[definition.inputs[item].name for item in feed_keys],
                fetch=[definition.outputs[item].name for item in fetch_keys],
            )
            # A private but long-standing TensorFlow API (Keras 2 ran on it); see the class docstring.
            function = self._callables[key] = self.session._make_callable_from_options(options)
        values = function(*[inputs[item] for item in feed_keys])
        return dict(zip(fetch_keys, values))
