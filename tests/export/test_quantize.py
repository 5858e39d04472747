"""int8 quantization: pre-processing failures are reported, and the int8 gate's statistics (TensorFlow-free)."""

import numpy as np
import pytest

from export.int8_gate import int8_comparison, paired_accuracy_drop_interval
from export.quantize import quantize_int8


def _tiny_onnx(path, features=4, classes=3, seed=0):
    """A float `features -> MatMul -> Add -> Softmax` ONNX model, big enough for dynamic quantization."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(size=(features, classes)).astype("float32"), "weights")
    bias = numpy_helper.from_array(rng.normal(size=(classes,)).astype("float32"), "bias")
    nodes = [
        helper.make_node("MatMul", ["features", "weights"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="class_names", value='["a", "b", "c"]')
    onnx.save(model, str(path))
    return path


def test_pre_processing_is_recorded_when_it_runs(tmp_path):
    lines = []
    details = quantize_int8(_tiny_onnx(tmp_path / "model.onnx"), tmp_path / "model.int8.onnx", "dynamic", log=lines.append)
    assert details["pre_processing"]["applied"] is True and lines == []
    assert (tmp_path / "model.int8.onnx").stat().st_size > 0


def test_a_failing_pre_processing_step_is_reported_by_name_then_skipped(tmp_path, monkeypatch):
    import onnxruntime.quantization.shape_inference as shape_inference

    def broken(*args, **kwargs):
        raise RuntimeError("shape inference exploded\nwith a second line")

    monkeypatch.setattr(shape_inference, "quant_pre_process", broken)
    lines = []
    details = quantize_int8(_tiny_onnx(tmp_path / "model.onnx"), tmp_path / "model.int8.onnx", "dynamic", log=lines.append)
    assert lines == ["warning: int8 pre-processing (onnxruntime quant_pre_process) failed (RuntimeError: shape inference "
                     "exploded); quantizing the graph without it"]
    assert details["pre_processing"] == {"applied": False, "error": "RuntimeError: shape inference exploded"}
    # The fallback still quantized: the int8 file runs.
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"features": np.ones((2, 4), "float32")})[0].shape == (2, 3)


def _probabilities(classes):
    return np.eye(3, dtype="float32")[np.asarray(classes)]


def test_the_comparison_counts_the_discordant_pairs_and_gives_an_interval(tmp_path):
    # 1000 examples: fp32 right on 900; int8 loses 12 of those and fixes 2 others -> drop 1.0 point.
    labels = np.zeros(1000, "int64")
    fp32 = np.where(np.arange(1000) < 900, 0, 1)
    int8 = fp32.copy()
    int8[:12] = 1
    int8[900:902] = 0
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "b").write_bytes(b"x" * 30)
    comparison = int8_comparison(_probabilities(fp32), _probabilities(int8), labels, tmp_path / "a", tmp_path / "b")
    assert comparison["examples"] == 1000 and comparison["size_ratio"] == pytest.approx(0.3)
    assert comparison["fp32_only_correct"] == 12 and comparison["int8_only_correct"] == 2
    assert comparison["accuracy_drop_points"] == pytest.approx(1.0)
    low, high = comparison["accuracy_drop_interval_points"]
    assert low < 1.0 < high and 0.0 < low and high < 2.0  # ten more losses than gains: significantly above 0
    assert comparison["interval"] == "95 % Newcombe paired score interval (Wilson), fp32 minus int8"


def test_the_paired_interval_agrees_with_wald_on_a_large_split():
    # With 100,000 examples the normal (Wald) interval of McNemar's difference is accurate.
    both, first_only, second_only = 90_000, 3_000, 1_000
    neither = 100_000 - both - first_only - second_only
    low, high = paired_accuracy_drop_interval(both, first_only, second_only, neither)
    half_width = 1.959964 * np.sqrt((first_only + second_only) - (first_only - second_only) ** 2 / 100_000) / 100_000
    assert low == pytest.approx(0.02 - half_width, abs=2e-5) and high == pytest.approx(0.02 + half_width, abs=2e-5)


def test_the_paired_interval_covers_the_true_drop_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    probabilities = (0.85, 0.03, 0.01, 0.11)  # both right, fp32 only, int8 only, neither: true drop 2 points
    draws = 400
    covered = sum(low <= 0.02 <= high for low, high in (
        paired_accuracy_drop_interval(*rng.multinomial(200, probabilities)) for _ in range(draws)))
    assert 0.93 <= covered / draws <= 0.995, covered / draws


def test_no_discordant_pair_still_has_a_width_that_shrinks_with_the_split():
    small = paired_accuracy_drop_interval(both=60, first_only=0, second_only=0, neither=4)
    large = paired_accuracy_drop_interval(both=9000, first_only=0, second_only=0, neither=600)
    assert small[0] < 0 < small[1] and large[0] < 0 < large[1]
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5
