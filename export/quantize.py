"""int8 ONNX models with ONNX Runtime quantization, and how much int8 costs in accuracy (any format).

Two ONNX recipes (the model's registry entry, `ModelEntry.quantization`, picks one):
- dynamic (`quantize_dynamic`): int8 weights, activation scales computed per
  batch at run time; for Dense, LSTM and attention models.
- static QDQ per-channel (`quantize_static`): int8 weights and activations with
  scales calibrated on raw training examples (`data/calibration.npz`); for
  convolutional networks.
"""

import json
import os
import tempfile

import numpy as np


def quantize_int8(fp32_path, int8_path, method, calibration_feeds=None):
    """Writes an int8 copy of the ONNX model at `fp32_path` to `int8_path`.

    Args:
        fp32_path: the float ONNX model.
        int8_path: where to write the int8 model.
        method: "dynamic" or "static".
        calibration_feeds: for "static", a list of `{input_name: array}` batches of raw inputs.

    Returns:
        `{"method", "format", "per_channel", "calibration_batches"}`, for the model card.

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
        source = _preprocessed(fp32_path, os.path.join(scratch, "preprocessed.onnx"))
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

            # QUInt8 activations with QInt8 per-channel weights in QDQ form is
            # ONNX Runtime's recommendation for x86 CPUs. The final softmax
            # stays float: uint8 probabilities (steps of 1/255) would turn
            # close calls into ties and flip predicted classes for nothing.
            softmax_nodes = [node.name for node in onnx.load(source).graph.node if node.op_type == "Softmax"]
            quantize_static(
                source,
                int8_path,
                Reader(calibration_feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=softmax_nodes,
            )
            details = {
                "method": "static",
                "format": "QDQ",
                "weight_type": "int8",
                "activation_type": "uint8",
                "per_channel": True,
                "float_nodes": softmax_nodes,
                "calibration_batches": len(calibration_feeds),
                "calibration_examples": int(sum(len(next(iter(feed.values()))) for feed in calibration_feeds)),
            }
        else:
            raise ValueError(f"unknown quantization method {method!r}; use 'dynamic' or 'static'")

    # Quantization drops nothing we rely on, but copy the metadata explicitly so
    # the edge predictor reads class names from the int8 model as well.
    fp32_model = onnx.load(fp32_path)
    int8_model = onnx.load(int8_path)
    del int8_model.metadata_props[:]
    for prop in fp32_model.metadata_props:
        int8_model.metadata_props.add(key=prop.key, value=prop.value)
    int8_model.metadata_props.add(key="quantization", value=json.dumps(details))
    onnx.save(int8_model, int8_path)
    return details


def int8_comparison(fp32_probabilities, int8_probabilities, labels, fp32_path, int8_path):
    """Measures an int8 model against its float twin on the same held-out examples (any format).

    Args:
        fp32_probabilities, int8_probabilities: the two models' probabilities `[N, K]`.
        labels: the examples' true class ids, or None (synthetic examples): then
            "accuracy" is measured against the float model's predictions.
        fp32_path, int8_path: the two files (for their sizes).

    Returns:
        `{"examples", "fp32_bytes", "int8_bytes", "size_ratio", "agreement", "fp32_accuracy",
        "int8_accuracy", "accuracy_drop_points", "labels"}`; `accuracy_drop_points` is in
        percentage points (fp32 minus int8).

    Example:
    >>> int8_comparison(fp32, int8, labels, "model.onnx", "model.int8.onnx")["agreement"]
    1.0
    """
    fp32 = np.asarray(fp32_probabilities).argmax(axis=-1)
    int8 = np.asarray(int8_probabilities).argmax(axis=-1)
    reference = np.asarray(labels) if labels is not None else fp32
    fp32_accuracy = float(np.mean(fp32 == reference))
    int8_accuracy = float(np.mean(int8 == reference))
    return {
        "examples": int(len(fp32)),
        "fp32_bytes": os.path.getsize(fp32_path),
        "int8_bytes": os.path.getsize(int8_path),
        "size_ratio": os.path.getsize(int8_path) / os.path.getsize(fp32_path),
        "agreement": float(np.mean(fp32 == int8)),
        "fp32_accuracy": fp32_accuracy,
        "int8_accuracy": int8_accuracy,
        "accuracy_drop_points": 100.0 * (fp32_accuracy - int8_accuracy),
        "labels": "held-out labels" if labels is not None else "fp32 predictions (no labels)",
    }


def int8_summary(label, comparison, max_accuracy_drop):
    """Returns the one progress line that reports an int8 comparison, e.g. "int8 (static): size 27.1 % of fp32, ..."."""
    return (
        f"{label}: size {100 * comparison['size_ratio']:.1f} % of fp32, agreement with fp32 "
        f"{100 * comparison['agreement']:.1f} %, accuracy {100 * comparison['fp32_accuracy']:.1f} % -> "
        f"{100 * comparison['int8_accuracy']:.1f} % (drop {comparison['accuracy_drop_points']:.2f} points, "
        f"limit {max_accuracy_drop}; vs {comparison['labels']})"
    )


def _preprocessed(source, target):
    # ONNX Runtime recommends its pre-processing (shape inference and graph
    # optimization, e.g. MatMul+Add -> Gemm) before quantization. Symbolic shape
    # inference needs sympy, which is not a dependency, so it is skipped (ONNX
    # shape inference still runs). It can fail on unusual graphs, and
    # quantization still works without it.
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(source, target, skip_symbolic_shape=True)
        return target
    except Exception:
        return source
