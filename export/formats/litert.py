"""LiteRT (`model.tflite`): the model for phones and microcontrollers, run by the `ai-edge-litert` interpreter.

Written with Keras' own `model.export(path, format="litert")` on a thin wrapper
model: the contract's inputs (token ids for text, like ONNX; `tokenizer/`
travels beside it), a softmax, and one output named `probabilities`. The batch
axis stays dynamic. Two things Keras' defaults do not give:

- **Builtin ops only.** Keras asks the converter for TensorFlow ops as a
  fallback (`SELECT_TF_OPS`), which only runs with the Flex delegate, and the
  `ai-edge-litert` runtime has none. The conversion is restricted to LiteRT's
  builtin ops, so what is written runs on the plain interpreter; a model that
  needs a TensorFlow op fails the export instead of the user.
- **Recurrent layers are unrolled over a fixed time axis.** The converter
  cannot lower the loop of a Keras LSTM/GRU with a dynamic batch to builtin ops
  ("'tf.TensorListReserve' op requires element_shape to be static"), so the
  exported copy of the model (same weights) has `unroll=True` and a fixed
  number of steps: the tokenizer's sequence length for text, the model's
  input length for series (or, when that is variable, the longest held-out or
  calibration series). Shorter series are zero-padded, which the models mask;
  longer ones are refused by the runner with a message.

int8 (`--quantize int8`) is full-integer quantization (`TFLITE_BUILTINS_INT8`:
int8 weights and activations, float32 input and output so the feed is the
same as fp32), calibrated on the run's training examples
(`data/calibration.*`) and held to the accuracy gate. The softmax is int8
as well (the converter has no per-op opt-out), so int8 probabilities come in
steps of 1/256; the gate judges the predicted classes. When the converter
cannot make every op integer, it falls back to int8 with float kernels where
needed and the model card says so.

The kerasdl metadata (class names, modality, input spec) is stored inside the
`.tflite` file as a named metadata buffer, as ONNX keeps it in
`metadata_props`, so a copied `.tflite` still names its classes. This module
imports TensorFlow only inside `write` and `quantize`: `load` and the runner
are TensorFlow-free.

It is a little over 300 lines on purpose: a format is one module, so the
conversion, the int8 recipe and the TensorFlow-free runner of LiteRT all live
here (the ONNX runner lives in `kerasdl/runtime/` only because the edge
server, which must not import `export`, serves ONNX).
"""

import json
import os
import struct

import numpy as np

from kerasdl.contract import onnx_input_names
from kerasdl.runtime import REEXPORT, ArtifactError, Runner

NAME = "litert"
FILES = {"fp32": "model.tflite", "int8": "model.int8.tflite"}
# LiteRT's CPU kernels (XNNPACK) sum in their own order, like ONNX Runtime's.
DEFAULT_TOLERANCE = 1e-4
TAKES_TOKEN_IDS = True
# The name of the metadata buffer that holds kerasdl's metadata as JSON.
METADATA_NAME = "kerasdl"
# Calibration batch size: the converter's calibrator reads the representative dataset batch by batch.
CALIBRATION_BATCH = 16


def write(job):
    """Converts the model (the token-id part for text) to `model.tflite` in `job.folder`; returns the card section."""
    path = job.folder / FILES["fp32"]
    wrapper, signature, details = _conversion_model(job)
    _convert(wrapper, signature, path)
    _embed_metadata(path, _metadata(job, details))
    job.log(f"wrote {path.name} (builtin ops only, inputs {', '.join(details['inputs'])}"
            + (f", {details['time_steps']} steps unrolled" if details["unrolled"] else "") + ")")
    return {"litert": {"file": FILES["fp32"], **details}}


def verify(job):
    """Runs `model.tflite` with the LiteRT interpreter on the held-out raw examples; returns its parity row."""
    from export.verify import compare

    probabilities = load(job.folder / FILES["fp32"]).predict(job.source.examples)
    return [compare(NAME, "probabilities", probabilities, job.expected, job.tolerance(NAME))]


def load(path):
    """Returns the `LiteRTRunner` of a `.tflite` file written by this module (TensorFlow-free)."""
    return LiteRTRunner(path)


def quantize(job):
    """Writes `model.int8.tflite` (full-integer, calibrated on training examples) and measures it against fp32.

    Returns:
        `("litert_quantization", section)`: the recipe, the comparison and whether it passed the gate.
    """
    import tensorflow as tf

    from export.int8_gate import gate_int8

    fp32_path, int8_path = job.folder / FILES["fp32"], job.folder / FILES["int8"]
    fp32 = load(fp32_path)
    examples = job.source.calibration_examples()
    batches = [fp32.feed(examples[start : start + CALIBRATION_BATCH]) for start in range(0, len(examples), CALIBRATION_BATCH)]

    def representative_dataset():
        for batch in batches:
            yield {name: np.asarray(value, dtype=fp32.inputs[name][0]) for name, value in batch.items()}

    wrapper, signature, details = _conversion_model(job)
    options = {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative_dataset}
    try:
        _convert(wrapper, signature, int8_path, supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8], **options)
        method, float_fallback = "full integer", False
    except Exception as error:  # The converter raises ConverterError (and others) for ops without int8 kernels.
        job.log(f"full-integer LiteRT int8 failed ({str(error).strip().splitlines()[0][:200]}); int8 with float fallback")
        _convert(wrapper, signature, int8_path, supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS], **options)
        method, float_fallback = "integer with float fallback", True
    _embed_metadata(int8_path, {**_metadata(job, details), "quantization": method})
    gate = gate_int8(job, f"litert int8 ({method})", fp32, load(int8_path), fp32_path, int8_path)
    return "litert_quantization", {
        "file": FILES["int8"],
        "method": method,
        "weight_type": "int8",
        "activation_type": "int8",
        "float_fallback": float_fallback,
        "input_output_type": "float32",
        "calibration_batches": len(batches),
        "calibration_examples": int(len(examples)),
        **gate,
    }


class LiteRTRunner(Runner):
    """A `.tflite` file in the `ai-edge-litert` interpreter: raw examples in, probabilities out.

    The interpreter uses XNNPACK, LiteRT's default CPU delegate; some int8
    graphs (unrolled recurrent layers) make XNNPACK refuse to prepare, and then
    the runner uses the builtin kernels alone (`delegate` says which).

    Args:
        path: the `.tflite` file (`tokenizer/` beside it for text models).
        threads: interpreter threads; None lets LiteRT choose.

    Example:
    >>> runner = LiteRTRunner("exports/gru/1/model.tflite")
    >>> runner.predict(series).shape
    (8, 2)
    """

    kind = NAME

    def __init__(self, path, threads=None):
        self.path = os.fspath(path)
        self.threads = threads
        self.delegate = "xnnpack"
        # A file of another kind is named as such; then the interpreter verifies the
        # flatbuffer, so a damaged file is refused before read_metadata walks its tables.
        _check_file_kind(self.path)
        self._start(default_delegates=True)
        metadata = read_metadata(self.path)
        self.metadata = metadata
        details = self._signature.get_input_details()
        self.inputs = {name: (np.dtype(item["dtype"]).name, tuple(int(size) for size in item["shape_signature"])) for name, item in details.items()}
        sequence_length = None
        if metadata.get("modality") == "sequence":
            steps = next(iter(self.inputs.values()))[1][1]
            sequence_length = steps if steps > 0 else None
        super().__init__(metadata.get("class_names"), metadata.get("modality"), metadata.get("input_spec"),
                         os.path.dirname(os.path.abspath(self.path)), sequence_length)
        self.has_metadata = "class_names" in metadata and "modality" in metadata

    def _start(self, default_delegates):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if default_delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = Interpreter(model_path=self.path, num_threads=self.threads, experimental_op_resolver_type=resolver)
            self._signature = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(f"{self.path}: the LiteRT interpreter cannot load it ({detail}); {REEXPORT}") from None

    def run(self, feed):
        """Runs one batch `{input name: array}`; returns float32 probabilities `[B, K]`."""
        feed = {name: np.asarray(value, dtype=self.inputs[name][0]) for name, value in feed.items()}
        try:
            outputs = self._signature(**feed)
        except RuntimeError as error:
            if "XNNPACK" not in str(error) or self.delegate != "xnnpack":
                raise
            self.delegate = "builtin"
            self._start(default_delegates=False)
            outputs = self._signature(**feed)
        return np.asarray(outputs["probabilities"], dtype=np.float32)


def read_metadata(path):
    """Returns the kerasdl metadata stored in a `.tflite` file (`{}` when it has none).

    Raises:
        ArtifactError: the file is not a LiteRT flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = _check_file_kind(path)
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == METADATA_NAME.encode():
                metadata = json.loads(bytes(model.Buffers(entry.Buffer()).DataAsNumpy()).decode("utf-8"))
                if not isinstance(metadata, dict):
                    raise ValueError("the kerasdl metadata is not a JSON object")
                return metadata
    except (struct.error, IndexError, ValueError, TypeError, AttributeError) as error:
        # The flatbuffer reader trusts every offset: a cut-short file fails with struct.error.
        raise ArtifactError(f"{path}: damaged LiteRT file ({type(error).__name__}: {error}); {REEXPORT}") from None
    return {}


def _check_file_kind(path):
    """Returns the bytes of `path`, or raises ArtifactError unless they carry LiteRT's file identifier."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8 or data[4:8] != b"TFL3":
        kind = "an empty file" if not data else "not a LiteRT (.tflite) model file"
        raise ArtifactError(f"{path}: {kind}; export one with python -m export.run --format litert")
    return data


def _embed_metadata(path, metadata):
    # LiteRT models carry named metadata buffers (the converter adds its own);
    # the interpreter ignores names it does not know.
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as handle:
        model = schema.ModelT.InitFromPackedBuf(bytearray(handle.read()), 0)
    if any(buffer.offset for buffer in model.buffers):
        raise ArtifactError(f"{path}: stores its weights outside the flatbuffer (a model over 2 GB); cannot add metadata")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with open(path, "wb") as handle:
        handle.write(builder.Output())


def _metadata(job, details):
    from kerasdl.contract import input_spec

    metadata = job.metadata
    return {
        "class_names": [str(name) for name in metadata["class_names"]],
        "modality": metadata["modality"],
        "model": str(metadata.get("model") or job.source.model.name),
        "input_spec": input_spec(metadata),
        "inputs": details["inputs"],
        "time_steps": details["time_steps"],
    }


def _conversion_model(job):
    """Returns `(wrapper model, input signature, card details)`: contract inputs, softmax, `probabilities` out."""
    import keras
    import tensorflow as tf

    from export.errors import ExportError

    metadata = job.metadata
    names = list(onnx_input_names(metadata))
    if metadata["modality"] == "text":
        from export.text import token_submodel

        model = token_submodel(job.source.model, metadata)
        length = (job.tokenizer or {}).get("sequence_length")
        if not length:
            raise ExportError("LiteRT needs a fixed number of tokens, and the text model's tokenizer pads to none")
        shapes = {name: ((None, int(length)), "int64") for name in names}
    else:
        model = job.source.model
        shape = [None] + list(metadata["input"]["shape"])
        if metadata["modality"] == "sequence" and shape[1] is None:
            # Every held-out series (the int8 gate runs them all) and every calibration one must fit.
            shape[1] = max(np.asarray(examples).shape[1] for examples in (job.source.held_out()[0], job.source.calibration_examples()))
        shapes = {names[0]: (tuple(shape), "float32")}
    steps = next(iter(shapes.values()))[0][1] if metadata["modality"] in ("text", "sequence") else None
    unrolled = _recurrent_layer_names(model)
    if unrolled:
        model = _unrolled(model, shapes)
    inputs = {name: keras.Input(batch_shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in shapes.items()}
    call_inputs = inputs if len(inputs) > 1 else inputs[names[0]]
    logits = model(call_inputs, training=False)
    probabilities = keras.layers.Softmax(name="probabilities")(keras.ops.cast(logits, "float32"))
    wrapper = keras.Model(call_inputs, {"probabilities": probabilities}, name=f"{model.name}_litert")
    specs = {name: tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in shapes.items()}
    signature = [specs] if len(specs) > 1 else [specs[names[0]]]
    described = {name: {"dtype": dtype, "shape": ["batch"] + list(shape[1:])} for name, (shape, dtype) in shapes.items()}
    return wrapper, signature, {"inputs": described, "time_steps": steps if unrolled else None, "unrolled": unrolled}


def _recurrent_layer_names(model):
    import keras

    names = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            names.append(layer.name)
        elif getattr(layer, "layers", None) and _recurrent_layer_names(layer):
            from export.errors import ExportError

            raise ExportError(f"the recurrent layers inside {layer.name!r} cannot be unrolled for LiteRT (nested model)")
    return names


def _unrolled(model, shapes):
    """A copy of `model` (same weights) whose recurrent layers run unrolled over the fixed time axis of `shapes`."""
    import keras

    def clone(layer):
        if not isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            return layer
        config = layer.get_config()
        for key in ("layer", "backward_layer") if isinstance(layer, keras.layers.Bidirectional) else ():
            if config.get(key):
                config[key]["config"]["unroll"] = True
        if not isinstance(layer, keras.layers.Bidirectional):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    tensors = [keras.Input(batch_shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in shapes.items()]
    copy = keras.models.clone_model(model, clone_function=clone, input_tensors=tensors if len(tensors) > 1 else tensors[0])
    copy.set_weights(model.get_weights())
    return copy


def _convert(wrapper, signature, path, supported_ops=None, **converter_options):
    import warnings

    import tensorflow as tf

    ops = supported_ops or [tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():
        # int8 calibration runs TensorFlow's own (deprecated) interpreter inside the
        # converter, which warns at length; the runner here uses ai-edge-litert's.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        wrapper.export(str(path), format="litert", input_signature=signature, verbose=False,
                       target_spec={"supported_ops": ops}, **converter_options)
