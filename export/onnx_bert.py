"""A fused ONNX graph of a keras-hub BERT classifier, built from its weights with ONNX Runtime's transformer ops.

Why hand-written: tf2onnx turns keras-hub's BERT into generic ops that ONNX
Runtime's transformer optimizer (`onnxruntime.transformers.optimizer.optimize_model`,
`model_type="bert"`) does not recognise: Keras' LayerNormalization arrives as
GlobalAveragePool/Sub/Mul/Sqrt/Reciprocal, the attention as MatMuls between
Einsum reshapes with a Less/Not mask, so 0 Attention, 0 LayerNormalization and
0 SkipLayerNormalization were fused on a 2-layer, 128-wide BERT. Without a
fused `Attention` node dynamic int8 cannot make `QAttention` either. This module
reads the layers and writes the graph ONNX Runtime's optimizer aims for:

    token_ids, segment_ids -> Gather (token, segment) + position rows -> LayerNormalization
    per encoder layer (post-norm, keras-hub's default):
        com.microsoft.Attention (packed QKV weights, padding_mask as the raw key mask)
        -> MatMul (output projection) -> com.microsoft.SkipLayerNormalization (+ residual, + bias)
        -> MatMul -> com.microsoft.FastGelu (+ bias) -> MatMul -> SkipLayerNormalization
    [CLS] row -> Gemm + Tanh (pooler) -> Gemm (logits) -> Softmax -> probabilities

with the kerasdl ONNX contract of BERT: int64 `token_ids`, `segment_ids`,
`padding_mask` `[batch, tokens]` in, float32 `probabilities` `[batch, classes]`
out. The `com.microsoft` ops run only on ONNX Runtime, which is the runtime of
kerasdl's ONNX files. A model outside this pattern raises `UnsupportedBertModel`
and the caller converts it with tf2onnx.

Example:
>>> proto = fused_bert_onnx(bert_token_model(classifier))
>>> sorted({node.op_type for node in proto.graph.node} & {"Attention", "SkipLayerNormalization"})
['Attention', 'SkipLayerNormalization']
"""

import numpy as np

from kerasdl.contract import ONNX_OUTPUT, TEXT_ONNX_INPUTS

# ONNX Runtime's contrib operator domain, and the opset version of it this graph uses.
MICROSOFT = "com.microsoft"
MICROSOFT_OPSET = 1


class UnsupportedBertModel(ValueError):
    """The model is not the keras-hub BERT pattern this module writes; convert it with tf2onnx instead."""


def fused_bert_onnx(model, opset=None):
    """Returns an `onnx.ModelProto` of a keras-hub BERT classifier with fused attention and layer norms.

    The graph holds no metadata; the caller adds `metadata_props` and saves it.

    Args:
        model: `kerasdl.models.bert.bert_token_model(classifier)` (or the classifier itself).
        opset: the ONNX opset (17 or later, for LayerNormalization); None takes `export.formats.onnx.OPSET`.

    Raises:
        UnsupportedBertModel: a layer or setting outside the pattern in the module docstring.
    """
    import onnx

    if opset is None:
        from export.formats.onnx import OPSET

        opset = OPSET
    if opset < 17:
        raise UnsupportedBertModel(f"the fused BERT graph uses LayerNormalization, which needs opset 17, got {opset}")
    classifier = _classifier(model)
    if classifier is None:
        raise UnsupportedBertModel(f"{model.name!r} holds no keras-hub BertTextClassifier")
    backbone = classifier.backbone
    graph = _Graph()
    names = TEXT_ONNX_INPUTS["bert"]
    inputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "tokens"]) for name in names]
    token_ids, segment_ids, padding_mask = names
    hidden = _embeddings(graph, backbone, token_ids, segment_ids)
    mask = graph.node("Cast", [padding_mask], to=onnx.TensorProto.INT32)
    for index in range(backbone.num_layers):
        hidden = _encoder(graph, backbone.get_layer(f"transformer_layer_{index}"), hidden, mask)
    first = graph.node("Gather", [hidden, graph.constant("cls_index", np.array(0, "int64"))], axis=1)
    pooled = graph.node("Tanh", [_dense(graph, backbone.get_layer("pooled_dense"), first, "tanh")])
    logits = _dense(graph, classifier.get_layer("logits"), pooled, "linear")
    graph.node("Softmax", [logits], [ONNX_OUTPUT], axis=-1)
    classes = int(classifier.get_layer("logits").units)
    output = onnx.helper.make_tensor_value_info(ONNX_OUTPUT, onnx.TensorProto.FLOAT, ["batch", classes])
    opsets = [onnx.helper.make_opsetid("", opset), onnx.helper.make_opsetid(MICROSOFT, MICROSOFT_OPSET)]
    # ONNX's shape inference knows no com.microsoft op; typing their outputs lets it (and the
    # quantizer, which needs a type for every MatMul input) see through them.
    width = int(backbone.hidden_dim)
    typed = [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, ["batch", "tokens", width])
             for node in graph.nodes if node.domain == MICROSOFT and node.op_type != "FastGelu"]
    typed += [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, ["batch", "tokens", None])
              for node in graph.nodes if node.op_type == "FastGelu"]
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, classifier.name, inputs, [output], graph.initializers, value_info=typed),
        opset_imports=opsets, ir_version=onnx.helper.find_min_ir_version_for(opsets[:1]),
        producer_name="kerasdl", doc_string="fused BERT graph from the Keras weights (export/onnx_bert.py)",
    )
    onnx.checker.check_model(proto)
    return proto


def _classifier(model):
    from keras_hub.models import BertTextClassifier

    if isinstance(model, BertTextClassifier):
        return model
    return next((layer for layer in getattr(model, "layers", ()) if isinstance(layer, BertTextClassifier)), None)


def _embeddings(graph, backbone, token_ids, segment_ids):
    """Token + position + segment embeddings, then LayerNormalization -> [batch, tokens, hidden]."""
    word = graph.node("Gather", [graph.weight("token_embeddings", backbone.get_layer("token_embedding").embeddings), token_ids])
    segment = graph.node("Gather", [graph.weight("segment_embeddings", backbone.get_layer("segment_embedding").embeddings), segment_ids])
    # The first `tokens` rows of the position table ([tokens, hidden], broadcast over the batch).
    tokens = graph.node("Gather", [graph.node("Shape", [token_ids]), graph.constant("time_axis", np.array([1], "int64"))])
    positions = graph.node("Slice", [graph.weight("position_embeddings", backbone.get_layer("position_embedding").position_embeddings),
                                     graph.constant("start", np.array([0], "int64")), tokens, graph.constant("axis", np.array([0], "int64"))])
    summed = graph.node("Add", [graph.node("Add", [word, positions]), segment])
    norm = backbone.get_layer("embeddings_layer_norm")
    _check_layer_norm(norm)
    return graph.node("LayerNormalization", [summed, graph.weight("gamma", norm.gamma), graph.weight("beta", norm.beta)],
                      axis=-1, epsilon=float(norm.epsilon))


def _encoder(graph, layer, hidden, mask):
    """One keras-hub TransformerEncoder (post-norm) as Attention, SkipLayerNormalization and FastGelu."""
    from keras_hub.src.utils.keras_utils import gelu_approximate

    if layer.normalize_first:
        raise UnsupportedBertModel(f"{layer.name!r} normalizes first (pre-norm); the fused graph writes BERT's post-norm")
    if layer.activation is not gelu_approximate:
        raise UnsupportedBertModel(f"{layer.name!r} uses activation {getattr(layer.activation, '__name__', layer.activation)!r}; "
                                   "the fused graph writes FastGelu (keras-hub's gelu_approximate)")
    attention = layer._self_attention_layer
    parts = [attention._query_dense, attention._key_dense, attention._value_dense]
    if not all(part.bias is not None for part in parts + [attention._output_dense]):
        raise UnsupportedBertModel(f"{layer.name!r}: attention without biases")
    heads, head_size = int(attention._num_heads), int(attention._key_dim)
    width = heads * head_size
    # EinsumDense kernels are [hidden, heads, head_size]; Attention takes [hidden, 3 * heads * head_size], Q|K|V, head-major.
    kernel = np.concatenate([_array(part.kernel).reshape(-1, width) for part in parts], axis=1)
    bias = np.concatenate([_array(part.bias).reshape(width) for part in parts])
    attended = graph.node("Attention", [hidden, graph.weight("qkv_kernel", kernel), graph.weight("qkv_bias", bias), mask],
                          domain=MICROSOFT, num_heads=heads)
    projected = graph.node("MatMul", [attended, graph.weight("output_kernel", _array(attention._output_dense.kernel).reshape(width, -1))])
    hidden = _skip_layer_norm(graph, layer._self_attention_layer_norm, projected, hidden, attention._output_dense.bias)
    intermediate = layer._feedforward_intermediate_dense
    expanded = graph.node("MatMul", [hidden, graph.weight("intermediate_kernel", intermediate.kernel)])
    activated = graph.node("FastGelu", [expanded, graph.weight("intermediate_bias", intermediate.bias)], domain=MICROSOFT)
    output = layer._feedforward_output_dense
    contracted = graph.node("MatMul", [activated, graph.weight("ffn_output_kernel", output.kernel)])
    return _skip_layer_norm(graph, layer._feedforward_layer_norm, contracted, hidden, output.bias)


def _skip_layer_norm(graph, norm, value, residual, bias):
    _check_layer_norm(norm)
    inputs = [value, residual, graph.weight("gamma", norm.gamma), graph.weight("beta", norm.beta), graph.weight("bias", bias)]
    return graph.node("SkipLayerNormalization", inputs, domain=MICROSOFT, epsilon=float(norm.epsilon))


def _dense(graph, layer, tensor, activation):
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name != activation:
        raise UnsupportedBertModel(f"{layer.name!r} has activation {name!r}, expected {activation!r}")
    return graph.node("Gemm", [tensor, graph.weight("kernel", layer.kernel), graph.weight("bias", layer.bias)])


def _check_layer_norm(norm):
    if not (norm.center and norm.scale) or list(np.atleast_1d(norm.axis)) not in ([-1], [2]):
        raise UnsupportedBertModel(f"{norm.name!r} is not a last-axis LayerNormalization with scale and center")


def _array(variable):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float32")


class _Graph:
    """Collects nodes and float32 initializers under unique names."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def _name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint, array):
        import onnx

        name = self._name(hint)
        self.initializers.append(onnx.numpy_helper.from_array(np.array(array, order="C"), name))  # 0-d stays 0-d
        return name

    def weight(self, hint, variable):
        return self.constant(hint, _array(variable))

    def node(self, op_type, inputs, outputs=None, domain="", **attributes):
        import onnx

        names = outputs or [self._name(op_type.lower())]
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), names, name=self._name(op_type), domain=domain, **attributes))
        return names[0]
