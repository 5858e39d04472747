"""The FCN (a convolutional series model) exports through tf2onnx, not the fused recurrent builder, and keeps its
padding invariance in SavedModel and ONNX; its int8 follows the entry's static recipe."""

import numpy as np
import pytest


def _onnx_ops(path):
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def fcn_export(fcn_run, tmp_path_factory):
    from export.run import export_model

    lines = []
    result = export_model(fcn_run, base=tmp_path_factory.mktemp("fcn_exports"), quantize="int8", max_accuracy_drop=100.0, log=lines.append)
    return result, lines


def _variable_lengths(seed=7):
    rng = np.random.default_rng(seed)
    series = np.zeros((12, 15, 1), "float32")
    for row, length in enumerate(range(4, 16)):
        series[row, :length, 0] = 2.0 + rng.normal(0, 0.5, length)
    return series


def test_fcn_goes_to_tf2onnx_as_convolutions_and_matches_keras(fcn_export, fcn_run, helpers):
    from export.formats import tolerance
    from kerasdl.artifact import load_metadata

    result, lines = fcn_export
    assert result.card["onnx"]["converter"] == "tf2onnx" and "fused_fallback_reason" not in result.card["onnx"]
    assert not any(line.startswith("fused LSTM/GRU graph not possible") for line in lines)
    operations = _onnx_ops(result.version_dir / "model.onnx")
    assert operations.count("Conv") == 3 and not {"LSTM", "GRU", "Loop", "Scan"} & set(operations)
    limit = tolerance(load_metadata(fcn_run / "model.keras"), "onnx")
    rows = {row.artifact: row for row in result.parity}
    assert rows["onnx"].ok and rows["onnx"].max_abs_diff <= limit
    assert rows["savedmodel"].ok


def test_onnx_answers_each_padded_series_as_keras_does_alone(fcn_export, fcn_run, helpers):
    from kerasdl.runtime.onnx import OnnxRunner

    result, _ = fcn_export
    series = _variable_lengths()
    runner = OnnxRunner(result.version_dir / "model.onnx")
    batch = runner.predict(series)
    alone = np.concatenate([helpers.keras_reference(fcn_run, one[None, : 4 + row]) for row, one in enumerate(series)])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(batch, helpers.keras_reference(fcn_run, series), atol=1e-5)
    # The longer padding of a wider batch changes nothing either.
    wider = np.concatenate([series, np.zeros((12, 20, 1), "float32")], axis=1)
    np.testing.assert_allclose(runner.predict(wider), batch, atol=1e-5)


def test_fcn_int8_is_static_with_the_three_convolutions_in_int8(fcn_export):
    result, _ = fcn_export
    assert (result.version_dir / "model.int8.onnx").is_file() and result.card["int8"]["onnx"]["published"] is True
    section = result.card["quantization"]
    assert (section["method"], section["format"], section["per_channel"]) == ("static", "QDQ", True)
    assert section["fused_int8_ops"]["QLinearConv"] == 3 and section["accepted"] is True
    # The padding mask, the normalization and the pooling stay float (they run before the first Conv, or are not quantizable).
    assert any("padding_mask" in node for node in section["float_nodes"])
