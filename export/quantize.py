"""int8 ONNX models with ONNX Runtime quantization (the accuracy gate is `export.int8_gate`).

Two ONNX recipes (the model's registry entry, `ModelEntry.quantization`, picks one;
"none" writes no int8 ONNX file):
- dynamic (`quantize_dynamic`): int8 weights, activation scales computed per
  batch at run time; for Dense, LSTM (`DynamicQuantizeLSTM`) and attention models.
- static QDQ per-channel (`quantize_static`), U8S8: uint8 activations, int8
  per-channel weights, scales calibrated on raw training examples
  (`data/calibration.npz`); for convolutional networks. Two parts stay float:
  the input preprocessing (the normalization or Caffe mean subtraction
  between the input and the first Conv/Gemm/MatMul), because ONNX Runtime's
  int8 element-wise kernels (QLinearMul/QLinearAdd) were slower than the float
  ones on the raw image (25 ms against 9 ms for a batch of 256 seed-CNN inputs,
  single thread), and the final Softmax (uint8 probabilities would turn close
  calls into ties). Measured on the seed CNN (32x32x3) and ResNet50 (224x224),
  one thread, `benchmarks/latency.py`: U8S8 QDQ ran 1.5-1.9x fp32 on the CNN and
  2.9-3.5x on ResNet50, S8S8 QDQ 1.2-1.7x and 1.3-1.7x (ONNX Runtime leaves 20
  of ResNet50's 53 convolutions float in S8S8); QOperator was within noise of QDQ.

`fused_int8_ops` counts the int8 kernels ONNX Runtime runs after its graph
optimization (QLinearConv, QGemm, QLinearMatMul, DynamicQuantizeLSTM, ...), so a
recipe that quantized nothing useful shows it.
"""

import json
import os
import tempfile


def quantize_int8(fp32_path, int8_path, method, calibration_feeds=None, log=print):
    """Writes an int8 copy of the ONNX model at `fp32_path` to `int8_path`.

    Args:
        fp32_path: the float ONNX model.
        int8_path: where to write the int8 model.
        method: "dynamic" or "static".
        calibration_feeds: for "static", a list of `{input_name: array}` batches of raw inputs.
        log: where the line about failed pre-processing goes.

    Returns:
        `{"method", "format", "per_channel", "pre_processing", ...}`, for the model card.

    Example:
    >>> quantize_int8("model.onnx", "model.int8.onnx", "dynamic")
    {'method': 'dynamic', 'format': 'QOperator', ...}
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    fp32_path, int8_path = os.fspath(fp32_path), os.fspath(int8_path)
    folder = os.path.dirname(os.path.abspath(int8_path))
    with tempfile.TemporaryDirectory(dir=folder, prefix=".quantize-") as scratch:
        source, pre_processing = _preprocessed(fp32_path, os.path.join(scratch, "preprocessed.onnx"), log)
        if method == "dynamic":
            quantize_dynamic(source, int8_path, weight_type=QuantType.QInt8)
            details = {"method": "dynamic", "format": "QOperator", "weight_type": "int8", "per_channel": False}
        elif method == "static":
            if not calibration_feeds:
                raise ValueError("static int8 quantization needs calibration examples (data/calibration.npz)")

            class Reader(CalibrationDataReader):
                def __init__(self, feeds):
                    self._feeds = iter(feeds)

                def get_next(self):
                    return next(self._feeds, None)

            # QUInt8 activations with QInt8 per-channel weights in QDQ form (U8S8): see the module docstring.
            graph = onnx.load(source).graph
            softmax_nodes = [node.name for node in graph.node if node.op_type == "Softmax"]
            float_nodes = softmax_nodes + input_preprocessing_nodes(graph)
            quantize_static(
                source,
                int8_path,
                Reader(calibration_feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=float_nodes,
            )
            details = {
                "method": "static",
                "format": "QDQ",
                "weight_type": "int8",
                "activation_type": "uint8",
                "per_channel": True,
                "float_nodes": float_nodes,
                "calibration_batches": len(calibration_feeds),
                "calibration_examples": int(sum(len(next(iter(feed.values()))) for feed in calibration_feeds)),
            }
        else:
            raise ValueError(f"unknown quantization method {method!r}; use 'dynamic' or 'static'")
        details["pre_processing"] = pre_processing

    # Quantization drops nothing we rely on, but copy the metadata explicitly so
    # the edge predictor reads class names from the int8 model as well.
    fp32_model = onnx.load(fp32_path)
    int8_model = onnx.load(int8_path)
    del int8_model.metadata_props[:]
    for prop in fp32_model.metadata_props:
        int8_model.metadata_props.add(key=prop.key, value=prop.value)
    int8_model.metadata_props.add(key="quantization", value=json.dumps(details))
    onnx.save(int8_model, int8_path)
    details["fused_int8_ops"] = fused_int8_ops(int8_path)
    return details


# The operator types that run integer arithmetic in ONNX Runtime's CPU kernels.
INT8_KERNELS = ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
                "QLinearAveragePool", "QAttention", "MatMulInteger", "MatMulIntegerToFloat", "ConvInteger",
                "DynamicQuantizeLSTM", "DynamicQuantizeMatMul")


def fused_int8_ops(path):
    """Returns `{op type: count}` of the int8 kernels in the graph ONNX Runtime actually runs for `path`.

    QDQ files hold float ops between QuantizeLinear/DequantizeLinear pairs;
    ONNX Runtime fuses them into integer kernels when the session starts.
    This reads the graph after that optimization (`ORT_ENABLE_EXTENDED`, the
    level whose output carries no machine-specific layouts), plus the
    QuantizeLinear/DequantizeLinear left over (each is a conversion the model pays for).

    Example:
    >>> fused_int8_ops("exports/cnn/1/model.int8.onnx")
    {'QLinearConv': 2, 'QGemm': 2, 'QuantizeLinear': 1, 'DequantizeLinear': 2}
    """
    import collections

    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix=".fused-ops-") as scratch:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = os.path.join(scratch, "optimized.onnx")
        onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        counts = collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    return {op: counts[op] for op in (*INT8_KERNELS, "QuantizeLinear", "DequantizeLinear") if counts[op]}


def input_preprocessing_nodes(graph):
    """Returns the names of the nodes between the graph inputs and the first Conv/Gemm/MatMul on each path.

    In a kerasdl image model these are the model's own preprocessing (the
    standardization's Mul/Add, ResNet50's channel flip, mean subtraction and
    resize, the layout Transpose): element-wise work on the raw input.
    """
    heavy = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier, found = [value.name for value in graph.input], []
    while frontier:
        for node in consumers.get(frontier.pop(), ()):
            if node.op_type in heavy or node.name in found:
                continue
            found.append(node.name)
            frontier.extend(node.output)
    return found


def _preprocessed(source, target, log):
    """Returns `(model path to quantize, card note)`: ONNX Runtime's pre-processing of `source`, or `source`.

    ONNX Runtime recommends `quant_pre_process` (shape inference and graph
    optimization, e.g. MatMul+Add -> Gemm) before quantization. Symbolic shape
    inference needs sympy, which is not a dependency, so it is skipped (ONNX
    shape inference still runs). When the pre-processing fails, quantization
    still works on the unprocessed graph, possibly with fewer fused int8 ops:
    the failure is logged by name and recorded in the model card, never swallowed.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(source, target, skip_symbolic_shape=True)
    except Exception as error:  # ONNX's and ORT's optimizers raise many types on unusual graphs.
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        reason = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        log(f"warning: int8 pre-processing (onnxruntime quant_pre_process) failed ({reason}); "
            "quantizing the graph without it")
        return source, {"applied": False, "error": reason}
    return target, {"applied": True, "steps": "onnx shape inference, onnxruntime graph optimization (no symbolic shapes)"}
