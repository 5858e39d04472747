"""Fused ONNX `LSTM`/`GRU` graphs built straight from the weights of a kerasdl recurrent model.

Why hand-written: tf2onnx (and Keras' own `model.export(format="onnx")`, which
calls it) turns a Keras 3 LSTM or GRU into a `Loop` of small ops, not into
ONNX's fused `LSTM`/`GRU` op: the cell adds its bias with `AddV2` where the
rewriter expects `BiasAdd`, and the mask becomes `SelectV2`
(onnx/tensorflow-onnx#1871). ONNX Runtime then runs the same slow step loop as
TensorFlow. This module reads the layers and emits the fused ops itself, plus
the few ops around them, with the kerasdl ONNX contract: one input
(`sequences` float32 `[batch, time, features]`, or `token_ids` int64
`[batch, tokens]`, both axes dynamic) and one output, `probabilities`
(softmax of the logits, float32 `[batch, classes]`).

Supported: a single chain from the input to the logits, as
`kerasdl.models.recurrent` builds it:

    sequences -> [Masking] -> [Rescaling | SeriesStandardization] -> recurrent layers -> Dense (linear)
    token_ids -> Embedding -> recurrent layers -> Dense (linear)

where each recurrent layer is an LSTM or GRU (tanh/sigmoid, not stateful),
optionally in `Bidirectional(merge_mode="concat")`, all but the last returning
sequences, with any Dropout in between. Anything else raises
`UnsupportedRecurrentModel`, so that the caller can fall back to tf2onnx.

The mask becomes ONNX's `sequence_lens`: for each row, the position of its
last valid step plus one (a step is padding when all its features equal the
Masking value, or its token id is 0). That is exact for padding at the end,
which kerasdl guarantees; an all-padding step *inside* a sequence is skipped
by Keras but run by the fused op, so the answers then differ (the UCR series in
shared/data hold no exact 0.0 at all).

The module is one job, reading the layers and writing the graph, a little over 300 lines.
"""

import numpy as np

# The ONNX format's opset, stated once there; the fused graph needs at least 14 (LSTM's `layout`).
from export.formats.onnx import OPSET as DEFAULT_OPSET
from kerasdl.contract import INPUT_NAMES, ONNX_OUTPUT, TEXT_ONNX_INPUTS

MINIMUM_OPSET = 14
# Keras orders the LSTM gate blocks i, f, c, o; ONNX wants i, o, f, c.
KERAS_TO_ONNX_LSTM_GATES = (0, 3, 1, 2)


class UnsupportedRecurrentModel(ValueError):
    """The model is not a layer pattern this module can fuse; convert it with tf2onnx instead."""


def fused_recurrent_onnx(model, opset=None):
    """Returns an `onnx.ModelProto` of a kerasdl recurrent model with fused `LSTM`/`GRU` nodes.

    The graph holds no metadata; the caller adds `metadata_props` and saves it.

    Args:
        model: a Keras model built by `kerasdl.models.recurrent.sequence_classifier`
            (float sequences in), or the token-id model of a text classifier
            (`kerasdl.models.recurrent.text_token_model(model)`); logits out.
        opset: the ONNX opset of the graph (14 or later); None takes `export.formats.onnx.OPSET`.

    Returns:
        The model, checked with `onnx.checker.check_model`.

    Raises:
        UnsupportedRecurrentModel: a layer, setting or call this module does not fuse.

    Example:
    >>> from kerasdl.models.lstm import lstm
    >>> proto = fused_recurrent_onnx(lstm(input_shape=(None, 1), num_classes=2, hidden_size=8))
    >>> [node.op_type for node in proto.graph.node if node.op_type in ("LSTM", "GRU")]
    ['LSTM']
    """
    import onnx

    if opset is None:
        from export.formats.onnx import OPSET

        opset = OPSET
    if opset < MINIMUM_OPSET:
        raise UnsupportedRecurrentModel(f"the fused recurrent graph needs opset {MINIMUM_OPSET} or later, got {opset}")
    builder = _GraphBuilder(opset)
    layers = _layer_chain(model)
    graph_input = _graph_input(layers[0], layers[1:])
    token_ids = graph_input.name == TEXT_ONNX_INPUTS["text_vectorization"][0]
    tensor = _emit_layers(builder, layers[1:], graph_input.name, token_ids)
    builder.node("Softmax", [tensor], [ONNX_OUTPUT], axis=-1)
    classes = int(model.outputs[0].shape[-1])
    output = onnx.helper.make_tensor_value_info(ONNX_OUTPUT, onnx.TensorProto.FLOAT, ["batch", classes])
    graph = onnx.helper.make_graph(builder.nodes, model.name, [graph_input], [output], builder.initializers)
    opset_id = onnx.helper.make_opsetid("", opset)
    proto = onnx.helper.make_model(
        graph, opset_imports=[opset_id], ir_version=onnx.helper.find_min_ir_version_for([opset_id]),
        producer_name="kerasdl", doc_string="fused recurrent graph from the Keras weights (export/onnx_recurrent.py)",
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def has_recurrent_layer(model):
    """Returns True when `model` (or a model nested in it) has an LSTM, GRU or other RNN layer.

    Example:
    >>> has_recurrent_layer(lstm(input_shape=(None, 1), num_classes=2))
    True
    """
    import keras

    for layer in getattr(model, "layers", ()):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) or has_recurrent_layer(layer):
            return True
    return False


def _layer_chain(model):
    """The model's layers from its input to its output, refusing anything but a single chain of one-input calls."""
    import keras

    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedRecurrentModel(f"{model.name!r} must be a built functional model with one input and one output")
    chain, tensor = [], outputs[0]
    while True:
        # The node of this model's own call: a layer shared with another model
        # (text_token_model shares the text model's layers) has several.
        operation, node_index, _ = tensor._keras_history
        if isinstance(operation, keras.layers.InputLayer):
            chain.append(operation)
            return chain[::-1]
        arguments = operation._inbound_nodes[node_index].arguments
        if not isinstance(operation, keras.layers.Layer) or len(arguments.args) != 1 or set(arguments.kwargs) - {"mask", "training"}:
            raise UnsupportedRecurrentModel(
                f"{operation.name!r} ({type(operation).__name__}) is not a one-input layer call; the fused export "
                "reads only a single chain of layers"
            )
        if getattr(operation, "quantization_mode", None):
            raise UnsupportedRecurrentModel(f"{operation.name!r} is quantized in Keras ({operation.quantization_mode})")
        chain.append(operation)
        tensor = arguments.args[0]


def _graph_input(input_layer, layers):
    """The graph input (`ValueInfoProto`): float sequences, or token ids when an Embedding follows."""
    import keras
    import onnx

    shape, dtype = tuple(input_layer.output.shape), str(input_layer.output.dtype)
    first = layers[0] if layers else None
    if dtype.startswith("int") and len(shape) == 2 and isinstance(first, keras.layers.Embedding):
        name = TEXT_ONNX_INPUTS["text_vectorization"][0]
        graph_input = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "tokens"])
        return graph_input
    if dtype == "float32" and len(shape) == 3 and shape[2] is not None:
        name = INPUT_NAMES["sequence"]
        graph_input = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", "time", int(shape[2])])
        return graph_input
    raise UnsupportedRecurrentModel(
        f"the input {input_layer.name!r} is {dtype} {shape}; the fused export takes float32 [batch, time, features] "
        "sequences, or int token ids [batch, tokens] followed by an Embedding (for a text model, pass "
        "kerasdl.models.recurrent.text_token_model(model))"
    )


def _emit_layers(builder, layers, tensor, token_ids):
    """Emits every layer after the input (token ids or float sequences); returns the logits tensor."""
    import keras

    # phase: sequence -> state (after the last recurrent layer) -> logits (after Dense).
    time_major, phase, lengths, valid = False, "sequence", None, None
    for index, layer in enumerate(layers):
        if isinstance(layer, keras.layers.Dropout) and phase != "logits":
            continue  # The identity at inference.
        if isinstance(layer, keras.layers.Embedding) and index == 0 and token_ids:
            tensor, lengths, valid = _emit_mask_source(builder, layer, tensor)
        elif isinstance(layer, keras.layers.Masking) and not token_ids and phase == "sequence" and not time_major:
            if lengths is not None:
                raise UnsupportedRecurrentModel(f"{layer.name!r} is a second Masking layer; the fused export takes one")
            tensor, lengths, valid = _emit_mask_source(builder, layer, tensor)
        elif isinstance(layer, keras.layers.Rescaling) and phase != "logits":
            scale = np.asarray(layer.scale, dtype="float32")
            offset = np.asarray(layer.offset, dtype="float32")
            tensor = builder.node("Mul", [tensor, builder.constant("scale", scale)])
            tensor = builder.node("Add", [tensor, builder.constant("offset", offset)])
        elif type(layer).__name__ == "SeriesStandardization" and phase == "sequence" and not time_major and not token_ids:
            tensor = _emit_series_standardization(builder, layer, tensor, valid)
        elif _is_recurrent(layer) and phase == "sequence":
            if not time_major:
                # ORT's CPU kernels take only layout=0 (time first).
                tensor = builder.node("Transpose", [tensor], perm=[1, 0, 2])
                time_major = True
            tensor, returns_sequences = _emit_recurrent(builder, layer, tensor, lengths)
            phase = "sequence" if returns_sequences else "state"
        elif isinstance(layer, keras.layers.Dense) and phase == "state":
            if layer.get_config()["activation"] != "linear":
                raise UnsupportedRecurrentModel(
                    f"{layer.name!r} has activation {layer.get_config()['activation']!r}; the last Dense must give logits (linear)"
                )
            kernel = layer.kernel.numpy().astype("float32")
            bias = layer.bias.numpy().astype("float32") if layer.use_bias else np.zeros(kernel.shape[1], "float32")
            tensor = builder.node("Gemm", [tensor, builder.constant("kernel", kernel), builder.constant("bias", bias)])
            phase = "logits"
        else:
            raise UnsupportedRecurrentModel(
                f"{layer.name!r} ({type(layer).__name__}) is not supported here (after a {phase} output); the fused "
                "export reads [Masking] [Rescaling | SeriesStandardization] or Embedding, LSTM/GRU layers (the last returning "
                "its state), Dense logits"
            )
    if phase != "logits":
        raise UnsupportedRecurrentModel(f"the model ends with a {phase} output; the fused export needs a final Dense (logits)")
    return tensor


def _emit_mask_source(builder, layer, tensor):
    """A Masking or Embedding layer: its output, `sequence_lens` (last valid step + 1, int32 [batch]) and the
    valid steps (int32 [batch, time]; None for an Embedding without `mask_zero`)."""
    import onnx

    if hasattr(layer, "embeddings"):  # Embedding: ids [batch, tokens] -> vectors; id 0 is padding.
        ids = tensor
        output = builder.node("Gather", [builder.constant("embeddings", layer.embeddings.numpy().astype("float32")), ids])
        if not layer.mask_zero:
            return output, None, None
        padding = builder.node("Equal", [ids, builder.constant("padding_id", np.array(0, "int64"))])
        valid = builder.node("Cast", [builder.node("Not", [padding])], to=onnx.TensorProto.INT32)
    else:  # Masking: a step is padding when every feature equals mask_value.
        output = tensor
        padding = builder.node("Equal", [tensor, builder.constant("mask_value", np.array(layer.mask_value, "float32"))])
        valid_features = builder.node("Cast", [builder.node("Not", [padding])], to=onnx.TensorProto.INT32)
        valid = builder.reduce_max(valid_features, axis=2)
    steps = builder.node("Cast", [builder.node("Gather", [builder.node("Shape", [tensor]), builder.constant("time_axis", np.array(1, "int64"))])], to=onnx.TensorProto.INT32)
    one = builder.constant("one", np.array(1, "int32"))
    positions = builder.node("Range", [one, builder.node("Add", [steps, one]), one])
    lengths = builder.reduce_max(builder.node("Mul", [valid, positions]), axis=1)
    return output, lengths, valid


def _emit_series_standardization(builder, layer, tensor, valid):
    """`kerasdl.models.layers.SeriesStandardization`: each series z-normalized over its valid steps (the layer's ops)."""
    import onnx

    if valid is None:
        raise UnsupportedRecurrentModel(f"{layer.name!r} (SeriesStandardization) needs a Masking layer before it in the fused export")
    weights = builder.node("Unsqueeze", [builder.node("Cast", [valid], to=onnx.TensorProto.FLOAT), builder.constant("feature_axis", np.array([2], "int64"))])
    time_axis = builder.constant("time_axis", np.array([1], "int64"))

    def sum_over_time(value):
        return builder.node("ReduceSum", [value, time_axis], keepdims=1)

    count = builder.node("Max", [sum_over_time(weights), builder.constant("one", np.array(1.0, "float32"))])
    mean = builder.node("Div", [sum_over_time(builder.node("Mul", [tensor, weights])), count])
    centred = builder.node("Mul", [builder.node("Sub", [tensor, mean]), weights])
    deviation = builder.node("Sqrt", [builder.node("Div", [sum_over_time(builder.node("Mul", [centred, centred])), count])])
    # Where the deviation is below epsilon the series is only centred (divided by 1), as in the layer.
    small = builder.node("Less", [deviation, builder.constant("epsilon", np.array(layer.epsilon, "float32"))])
    divisor = builder.node("Where", [small, builder.constant("one", np.array(1.0, "float32")), deviation])
    return builder.node("Div", [centred, divisor])


def _is_recurrent(layer):
    import keras

    inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    return isinstance(inner, (keras.layers.LSTM, keras.layers.GRU))


def _emit_recurrent(builder, layer, tensor, lengths):
    """One (bidirectional) LSTM/GRU on time-major input; returns (output, whether it returns sequences)."""
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode != "concat":
            raise UnsupportedRecurrentModel(f"{layer.name!r} merges with {layer.merge_mode!r}; the fused export takes 'concat'")
        directions = [(layer.forward_layer, False), (layer.backward_layer, True)]
    else:
        directions = [(layer, False)]
    cells = {type(inner) for inner, _ in directions}
    if len(cells) != 1 or len({inner.return_sequences for inner, _ in directions}) != 1:
        raise UnsupportedRecurrentModel(f"{layer.name!r} has differing forward and backward layers")
    weights = [_direction_weights(inner, backwards, layer.name) for inner, backwards in directions]
    units = directions[0][0].units
    returns_sequences = bool(directions[0][0].return_sequences)
    op_type = "LSTM" if isinstance(directions[0][0], keras.layers.LSTM) else "GRU"
    attributes = {"hidden_size": units, "direction": "bidirectional" if len(directions) == 2 else "forward", "layout": 0}
    if op_type == "GRU":
        reset_after = {inner.cell.reset_after for inner, _ in directions}
        # Keras' reset_after=True applies the reset gate after the recurrent matmul, as ONNX's linear_before_reset=1.
        attributes["linear_before_reset"] = int(reset_after.pop())
    w, r, b = (np.stack([weight[index] for weight in weights]) for index in range(3))
    inputs = [tensor, builder.constant("W", w), builder.constant("R", r), builder.constant("B", b), lengths or ""]
    sequence_output, final_state = builder.node(op_type, inputs, outputs=2, **attributes)
    if returns_sequences:  # Y [time, directions, batch, units] -> [time, batch, directions * units], forward first.
        transposed = builder.node("Transpose", [sequence_output], perm=[0, 2, 1, 3])
        return builder.node("Reshape", [transposed, builder.constant("shape", np.array([0, 0, -1], "int64"))]), True
    # Y_h [directions, batch, units] holds each row's state after its last valid step (the backward
    # direction's after the first step, as Keras' backward layer) -> [batch, directions * units].
    transposed = builder.node("Transpose", [final_state], perm=[1, 0, 2])
    return builder.node("Reshape", [transposed, builder.constant("shape", np.array([0, -1], "int64"))]), False


def _direction_weights(layer, backwards, name):
    """ONNX `(W, R, B)` of one direction: `[gates * units, input]`, `[gates * units, units]`, `[2 * gates * units]`."""
    import keras

    config = layer.get_config()
    problems = []
    if config.get("activation") != "tanh" or config.get("recurrent_activation") != "sigmoid":
        problems.append(f"activations {config.get('activation')!r}/{config.get('recurrent_activation')!r} (only tanh/sigmoid)")
    if config.get("stateful") or config.get("return_state"):
        problems.append("stateful or return_state")
    if bool(config.get("go_backwards")) != backwards:
        problems.append(f"go_backwards={config.get('go_backwards')} outside a Bidirectional's backward layer")
    if problems:
        raise UnsupportedRecurrentModel(f"{name!r} ({layer.name}): " + "; ".join(problems))
    cell, units = layer.cell, layer.units
    kernel = cell.kernel.numpy().astype("float32")
    recurrent_kernel = cell.recurrent_kernel.numpy().astype("float32")
    gates = kernel.shape[1] // units
    if isinstance(layer, keras.layers.LSTM):
        bias = cell.bias.numpy().astype("float32") if cell.use_bias else np.zeros(gates * units, "float32")

        def reorder(matrix):
            blocks = np.split(matrix, gates, axis=-1)
            return np.concatenate([blocks[index] for index in KERAS_TO_ONNX_LSTM_GATES], axis=-1)

        kernel, recurrent_kernel = reorder(kernel), reorder(recurrent_kernel)
        # Keras has one bias per gate; ONNX adds an input and a recurrent one.
        bias = np.concatenate([reorder(bias), np.zeros(gates * units, "float32")])
    else:
        # Keras' GRU gates z, r, h are ONNX's order already. With reset_after its
        # bias is (2, 3 * units): the input bias, then the recurrent one.
        if not cell.use_bias:
            bias = np.zeros(2 * gates * units, "float32")
        elif cell.reset_after:
            bias = cell.bias.numpy().astype("float32").reshape(-1)
        else:
            bias = np.concatenate([cell.bias.numpy().astype("float32"), np.zeros(gates * units, "float32")])
    return kernel.T, recurrent_kernel.T, bias


class _GraphBuilder:
    """Collects nodes and initializers under unique names."""

    def __init__(self, opset):
        self.opset, self.nodes, self.initializers, self._count = opset, [], [], 0

    def _name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint, array):
        import onnx

        name = self._name(hint)
        self.initializers.append(onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type, inputs, outputs=None, **attributes):
        """Adds a node; returns its output name, or the list of names when `outputs` is a count or a list."""
        import onnx

        names = outputs if isinstance(outputs, list) else [self._name(op_type.lower()) for _ in range(outputs or 1)]
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), names, name=self._name(op_type), **attributes))
        return names[0] if outputs is None else names

    def reduce_max(self, tensor, axis):
        # ReduceMax takes its axes as an input from opset 18, as an attribute before.
        if self.opset >= 18:
            return self.node("ReduceMax", [tensor, self.constant("axes", np.array([axis], "int64"))], keepdims=0)
        return self.node("ReduceMax", [tensor], axes=[axis], keepdims=0)
