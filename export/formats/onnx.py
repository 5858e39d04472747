"""The ONNX model: raw input (token ids for text) in, softmax `probabilities` out; and its int8 twin.

Why not `model.export(path, format="onnx")` as is: Keras hands tf2onnx a
concrete function, and tf2onnx (1.17) lists *every* input of that function as
an ONNX graph input, captured eager tensors included. Any layer that captures a
constant tensor (the `Normalization` layer's mean and variance, a
`preprocess_input` Lambda) then turns into a bogus extra input that ONNX
Runtime demands at run time. So this module does what Keras does, plus one
step: it freezes the function first (variables and captured constants become
graph constants), then converts the frozen graph with tf2onnx, and finally
asserts that the inputs are exactly the contract's.

Recurrent models (numeric LSTM/GRU networks and the token-id part of the text
ones) are not converted by tf2onnx, which emits a slow `Loop` per layer, but
built as fused ONNX `LSTM`/`GRU` nodes from their weights
(`export.onnx_recurrent`); keras-hub BERT classifiers likewise become ONNX
Runtime's fused `Attention`/`SkipLayerNormalization`/`FastGelu` graph
(`export.onnx_bert`), which dynamic int8 turns into `QAttention`. A pattern
those builders do not read falls back to tf2onnx with the reason in the log and
the card (`onnx.converter`, `onnx.fused_fallback_reason`). Every graph gets the
same `metadata_props` and the same parity check against Keras.

int8 (`--quantize int8`) uses ONNX Runtime's quantization with the recipe the
model's entry names (`export.quantize`), calibrated on the run's training
examples, and is held to the accuracy gate.

It is a little over 300 lines on purpose: a format is one module, and the ONNX
format holds its converter choice (fused builders or tf2onnx), the int8 step
and the checks of the contract's inputs.
"""

import json

from export import formats
from export.errors import VerificationError
from kerasdl.contract import ONNX_OUTPUT, input_spec, onnx_input_names, tokenizer_kind

NAME = "onnx"
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
# ONNX Runtime has its own kernels and summation orders, so it drifts a little more than the SavedModel.
DEFAULT_TOLERANCE = 1e-4
TAKES_TOKEN_IDS = True
# The ONNX opset written unless --opset says otherwise (stated only here): it
# has every op the six models convert to, and the pinned ONNX Runtime runs it.
OPSET = 17
# What the card and `metadata_props["converter"]` say for a graph from `export.onnx_recurrent`.
FUSED_CONVERTER = "kerasdl fused LSTM/GRU (export/onnx_recurrent.py)"
FUSED_BERT_CONVERTER = "kerasdl fused BERT: Attention, SkipLayerNormalization, FastGelu (export/onnx_bert.py)"
# Calibration batch size for static int8: ONNX Runtime's calibrator collects
# activation ranges batch by batch.
CALIBRATION_BATCH = 16


def write(job):
    """Converts the model (the token-id part for text) to `model.onnx` in `job.folder`; returns the card section."""
    metadata = job.metadata
    path = job.folder / FILES["fp32"]
    opset = job.options.get("opset") or OPSET
    if metadata["modality"] == "text":
        from export.text import token_submodel

        model = token_submodel(job.source.model, metadata)
        preprocessing = {"tokenizer": "tokenizer/tokenizer.json", "helper": "kerasdl/tokenizer.py", **(job.tokenizer or {})}
    else:
        model, preprocessing = job.source.model, None
    info = export_onnx(model, metadata, path, opset=opset, preprocessing=preprocessing, log=job.log)
    job.log(f"wrote {path.name} (opset {opset}, inputs {', '.join(info['inputs'])}, {info['converter']})")
    return {"onnx": {"file": FILES["fp32"], **info}}


def verify(job):
    """Runs `model.onnx` with ONNX Runtime on the held-out raw examples; returns its parity row."""
    from export.verify import compare

    probabilities = load(job.folder / FILES["fp32"]).predict(job.source.examples)
    return [compare(NAME, "probabilities", probabilities, job.expected, job.tolerance(NAME))]


def load(path):
    """Returns the `kerasdl.runtime.onnx.OnnxRunner` of an `.onnx` file (TensorFlow-free)."""
    from kerasdl.runtime.onnx import OnnxRunner

    return OnnxRunner(path)


def quantize(job):
    """Writes `model.int8.onnx` with the model's int8 recipe and measures it against fp32 on every held-out example.

    Returns:
        `("quantization", section)`: the recipe, the comparison and whether it passed the gate (`accepted`).
    """
    from export.int8_gate import gate_int8
    from export.quantize import quantize_int8

    entry = formats.model_entry(job.metadata)
    # A model outside the registry gets dynamic int8, which needs no calibration data.
    method = entry.quantization if entry is not None else "dynamic"
    if method == "none":
        reason = f"model {entry.name!r} has no ONNX int8 recipe that pays (its registry entry's quantization is 'none')"
        job.log(f"int8: {reason}; writing no {FILES['int8']}")
        return "quantization", {"file": FILES["int8"], "method": "none", "accepted": False, "left_out": reason}
    fp32_path, int8_path = job.folder / FILES["fp32"], job.folder / FILES["int8"]
    fp32 = load(fp32_path)
    calibration = None
    if method == "static":
        examples = job.source.calibration_examples()
        calibration = [
            fp32.cast(fp32.feed(examples[start : start + CALIBRATION_BATCH])) for start in range(0, len(examples), CALIBRATION_BATCH)
        ]
    details = quantize_int8(fp32_path, int8_path, method, calibration, log=job.log)
    gate = gate_int8(job, f"int8 ({method})", fp32, load(int8_path), fp32_path, int8_path)
    return "quantization", {"file": FILES["int8"], **details, **gate}


def export_onnx(model, metadata, path, opset=OPSET, preprocessing=None, log=print):
    """Converts `model` (logits) to ONNX with a softmax output named `probabilities`.

    For text models, pass the token-id sub-model (see `export.text`); its
    inputs must be named after `kerasdl.contract.TEXT_ONNX_INPUTS`.

    A model with LSTM/GRU layers is written as a fused graph built from its
    weights (`export.onnx_recurrent`: ONNX `LSTM`/`GRU` nodes, which ONNX
    Runtime runs many times faster than tf2onnx's `Loop` nodes, and which
    dynamic int8 turns into `DynamicQuantizeLSTM`); a layer pattern the fused
    builder does not read falls back to tf2onnx, and `log` says why.

    Args:
        model: a Keras model whose inputs match `onnx_input_names(metadata)`.
        metadata: the kerasdl metadata of the trained model.
        path: the `.onnx` file to write.
        opset: the ONNX opset.
        preprocessing: a JSON-serializable description of what happens inside
            the model (stored in `metadata_props["preprocessing"]`).
        log: where the line about a fallback to tf2onnx goes.

    Returns:
        `{"inputs": {name: {"dtype", "shape"}}, "outputs": {...}, "opset": opset, "converter": ...}`
        (plus `"fused_fallback_reason"` when a recurrent model fell back to tf2onnx).

    Raises:
        VerificationError: the converted graph does not have exactly the expected inputs.

    Example:
    >>> export_onnx(model, metadata, "exports/cnn/.tmp-1-x/model.onnx")["converter"]
    'tf2onnx'
    """
    import onnx

    expected_names = list(onnx_input_names(metadata))
    model_proto, converter, fallback = _fused_proto(model, metadata, opset, log)
    if model_proto is None:
        model_proto = _tf2onnx_proto(model, metadata, expected_names, opset)

    assert_inputs(model_proto, expected_names)
    _name_dynamic_axes(model_proto, metadata)
    properties = {
        "class_names": json.dumps([str(name) for name in metadata["class_names"]]),
        "modality": metadata["modality"],
        "model": str(metadata.get("model") or model.name),
        "input_spec": json.dumps(input_spec(metadata)),
        "onnx_inputs": json.dumps(expected_names),
        "preprocessing": json.dumps(preprocessing if preprocessing is not None else _preprocessing(metadata)),
        "converter": converter,
    }
    del model_proto.metadata_props[:]
    for key, value in properties.items():
        model_proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))
    info = {"inputs": describe_values(model_proto.graph.input), "outputs": describe_values(model_proto.graph.output),
            "opset": opset, "converter": converter}
    if fallback is not None:
        info["fused_fallback_reason"] = fallback
    return info


def _fused_proto(model, metadata, opset, log):
    """Returns `(proto or None, converter, fallback reason or None)` from the fused builder that fits `model`.

    Recurrent models go to `export.onnx_recurrent`, keras-hub BERT classifiers
    to `export.onnx_bert`; anything else (or a pattern the builder refuses,
    with the reason logged) to tf2onnx.
    """
    from export.onnx_recurrent import UnsupportedRecurrentModel, fused_recurrent_onnx, has_recurrent_layer

    if has_recurrent_layer(model):
        builder, unsupported, converter, what = fused_recurrent_onnx, UnsupportedRecurrentModel, FUSED_CONVERTER, "LSTM/GRU"
        slower = "Loop nodes, slower"
    elif metadata["modality"] == "text" and tokenizer_kind(metadata) == "bert":
        from export.onnx_bert import UnsupportedBertModel, fused_bert_onnx

        builder, unsupported, converter, what = fused_bert_onnx, UnsupportedBertModel, FUSED_BERT_CONVERTER, "BERT"
        slower = "no fused attention, and no QAttention in int8"
    else:
        return None, "tf2onnx", None
    try:
        return builder(model, opset), converter, None
    except unsupported as error:
        log(f"fused {what} graph not possible ({error}); converting with tf2onnx ({slower})")
        return None, "tf2onnx", str(error)


def _tf2onnx_proto(model, metadata, expected_names, opset):
    """The tf2onnx conversion of the frozen `softmax(model(inputs))` function (see the module docstring)."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # The numpy-2 compatibility patch that `model.export(format="onnx")` applies to tf2onnx.
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    patch_tf2onnx()
    specs = _tensor_specs(model, metadata, expected_names)

    if len(specs) == 1:

        def probabilities(inputs):
            return {ONNX_OUTPUT: tf.nn.softmax(model(inputs, training=False), axis=-1)}

    else:

        def probabilities(*inputs):
            feed = dict(zip(expected_names, inputs))
            return {ONNX_OUTPUT: tf.nn.softmax(model(feed, training=False), axis=-1)}

    concrete = tf.function(probabilities, input_signature=specs, autograph=False).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    graph_inputs = [tensor.name for tensor in frozen.inputs if tensor.dtype != tf.resource]
    graph_outputs = [tensor.name for tensor in frozen.outputs]
    if len(graph_outputs) != 1:
        raise VerificationError(f"the frozen model has {len(graph_outputs)} outputs; expected one (probabilities)")
    renames = {name: name.split(":")[0] for name in graph_inputs}
    renames[graph_outputs[0]] = ONNX_OUTPUT
    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        name=metadata.get("model") or model.name,
        input_names=graph_inputs,
        output_names=graph_outputs,
        opset=opset,
        tensors_to_rename=renames,
    )
    return model_proto


def assert_inputs(model_proto, expected_names):
    """Raises VerificationError unless the ONNX graph inputs are exactly `expected_names`.

    An extra input is almost always a constant that the conversion captured
    instead of folding (see the module docstring); serving it would fail at the
    first request, so the export fails now with the names.
    """
    initializers = {initializer.name for initializer in model_proto.graph.initializer}
    actual = [value.name for value in model_proto.graph.input if value.name not in initializers]
    if sorted(actual) != sorted(expected_names):
        extra = sorted(set(actual) - set(expected_names))
        missing = sorted(set(expected_names) - set(actual))
        raise VerificationError(
            f"the ONNX graph has inputs {actual}, expected exactly {list(expected_names)}"
            + (f"; unexpected {extra} (a captured constant? fold it into the model)" if extra else "")
            + (f"; missing {missing}" if missing else "")
        )


def describe_values(values):
    """Returns `{name: {"dtype", "shape"}}` for ONNX graph inputs or outputs (symbolic axes by name)."""
    import onnx

    described = {}
    for value in values:
        tensor_type = value.type.tensor_type
        shape = [dim.dim_param or (dim.dim_value if dim.HasField("dim_value") else None) for dim in tensor_type.shape.dim]
        described[value.name] = {"dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name, "shape": shape}
    return described


def _tensor_specs(model, metadata, names):
    import tensorflow as tf

    if metadata["modality"] == "text":
        # The token-id sub-model's own inputs give the dtypes and shapes; only the names are the contract's.
        model_inputs = {tensor.name.split(":")[0]: tensor for tensor in model.inputs}
        specs = []
        for name in names:
            tensor = model_inputs.get(name)
            if tensor is None:
                raise VerificationError(
                    f"the text sub-model has inputs {sorted(model_inputs)}, expected {names} for ONNX"
                )
            specs.append(tf.TensorSpec([None] + list(tensor.shape[1:]), tf.as_dtype(tensor.dtype), name=name))
        return specs
    spec = input_spec(metadata)
    return [tf.TensorSpec(spec["shape"], tf.float32, name=spec["name"])]


def _name_dynamic_axes(model_proto, metadata):
    # tf2onnx names unknown axes "unk__N"; clients read better names.
    for value in list(model_proto.graph.input) + list(model_proto.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                continue
            if axis == 0:
                dim.dim_param = "batch"
            elif axis == 1 and metadata["modality"] in ("sequence", "text") and value.name != ONNX_OUTPUT:
                dim.dim_param = "time" if metadata["modality"] == "sequence" else "tokens"


def _preprocessing(metadata):
    modality = metadata["modality"]
    if modality == "image":
        return {"inside_model": "per-channel normalization (and resize for resnet50)", "input": "raw pixels 0-255, HWC, float32"}
    if modality == "features":
        return {"inside_model": "per-feature normalization", "input": "raw features, float32"}
    if modality == "sequence":
        return {"inside_model": "masking of zero padding, normalization", "input": "float32 [batch, time, features], zero-padded after the end"}
    return {"inside_model": "embedding of token ids", "input": "token ids from tokenizer/ (kerasdl/tokenizer.py)"}
