"""LiteRT round trip: `--format litert [--quantize int8]` for every tiny model, run back with ai-edge-litert.

ResNet50 is left out of the suite for its cost (about a minute and 2.6 GB to
convert even at 32x32); it goes through the same path (no recurrent layers).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import formats

REPOSITORY = Path(__file__).resolve().parents[2]
RUNS = ["mlp_run", "cnn_run", "lstm_run", "gru_run", "fcn_run", "text_lstm_run", "bert_run"]


@pytest.fixture(scope="session")
def litert_exports(tmp_path_factory):
    """`{run fixture: ExportResult}`: each run exported to LiteRT fp32 + int8, once."""
    return {}


def _export(request, run_fixture, litert_exports, tmp_path_factory):
    from export.orchestrator import export_model

    if run_fixture not in litert_exports:
        run_dir = request.getfixturevalue(run_fixture)
        lines = []
        result = export_model(run_dir, formats=["litert"], quantize="int8", max_accuracy_drop=100.0,
                              base=tmp_path_factory.mktemp("litert_exports"), log=lines.append)
        litert_exports[run_fixture] = (run_dir, result, lines)
    return litert_exports[run_fixture]


def _validation(run_dir):
    if (run_dir / "data" / "validation.json").is_file():
        content = json.loads((run_dir / "data" / "validation.json").read_text())
        return content["x"], np.asarray(content["y"])
    with np.load(run_dir / "data" / "validation.npz") as content:
        return content["x"], content["y"]


@pytest.mark.parametrize("run_fixture", RUNS)
def test_litert_round_trip_matches_keras_at_the_stated_tolerance(run_fixture, request, litert_exports, tmp_path_factory, helpers):
    from export.formats.litert import LiteRTRunner, read_metadata
    from kerasdl.artifact import load_metadata

    run_dir, result, lines = _export(request, run_fixture, litert_exports, tmp_path_factory)
    metadata = load_metadata(run_dir / "model.keras")
    version = result.version_dir
    assert (version / "model.tflite").is_file() and (version / "model.int8.tflite").is_file()
    assert (version / "tokenizer" / "tokenizer.json").is_file() == (metadata["modality"] == "text")
    tolerance = formats.tolerance(metadata, "litert")
    rows = {row.artifact: row for row in result.parity}
    assert rows["litert"].ok and rows["litert"].tolerance == tolerance and rows["litert"].max_abs_diff <= tolerance
    assert result.card["formats"] == ["litert"] and result.card["litert"]["file"] == "model.tflite"

    # The runner on raw examples (strings for text), at batch sizes the file was not converted for.
    x, _ = _validation(run_dir)
    expected = helpers.keras_reference(run_dir, x)
    runner = LiteRTRunner(version / "model.tflite")
    assert runner.class_names == [str(name) for name in metadata["class_names"]] and runner.modality == metadata["modality"]
    for batch_size in (1, 5, len(x)):
        np.testing.assert_allclose(runner.predict(x, batch_size=batch_size), expected, atol=tolerance)
    stored = read_metadata(version / "model.tflite")
    assert stored["class_names"] == runner.class_names and stored["input_spec"]["name"] == metadata_name(metadata)
    assert read_metadata(version / "model.int8.tflite")["quantization"] in ("full integer", "integer with float fallback")


def metadata_name(metadata):
    return {"features": "features", "image": "images", "sequence": "sequences", "text": "text"}[metadata["modality"]]


@pytest.mark.parametrize("run_fixture", RUNS)
def test_litert_int8_is_calibrated_on_training_examples_and_gated(run_fixture, request, litert_exports, tmp_path_factory):
    from export.formats.litert import LiteRTRunner

    run_dir, result, lines = _export(request, run_fixture, litert_exports, tmp_path_factory)
    section = result.card["litert_quantization"]
    calibration = run_dir / "data" / ("calibration.json" if (run_dir / "data" / "calibration.json").is_file() else "calibration.npz")
    count = len(json.loads(calibration.read_text())["x"]) if calibration.suffix == ".json" else len(np.load(calibration)["x"])
    assert section["calibration_examples"] == min(count, 256)
    assert section["method"] == "full integer" and section["float_fallback"] is False
    assert section["accepted"] and section["max_accuracy_drop_points"] == 100.0
    comparison = section["comparison"]
    assert comparison["examples"] == len(_validation(run_dir)[0]) and comparison["labels"] == "held-out labels"
    assert comparison["int8_bytes"] == os.path.getsize(result.version_dir / "model.int8.tflite")
    assert any(line.startswith("litert int8 (full integer): size ") for line in lines)
    # The int8 file runs on raw examples; its softmax is int8 too, so probabilities
    # come in steps of 1/256 and sum to 1 within one step per class.
    x, _ = _validation(run_dir)
    probabilities = LiteRTRunner(result.version_dir / "model.int8.tflite").predict(x[:4])
    steps = probabilities * 256
    assert probabilities.shape == (4, len(result.card["class_names"])) and np.allclose(steps, np.round(steps), atol=1e-3)
    assert np.allclose(probabilities.sum(axis=-1), 1.0, atol=probabilities.shape[1] / 256)


def test_a_series_longer_than_the_unrolled_steps_is_refused_by_name(request, litert_exports, tmp_path_factory, capsys):
    from export.predict import main

    _, result, _ = _export(request, "lstm_run", litert_exports, tmp_path_factory)
    steps = result.card["litert"]["time_steps"]
    assert steps == 12 and result.card["litert"]["unrolled"]
    path = tmp_path_factory.mktemp("series") / "long.csv"
    path.write_text(",".join(["2.0,1.0"] * (steps + 1)) + "\n" + ",".join(["2.0,1.0"] * 3) + "\n")
    assert main([str(result.version_dir), "--format", "litert", str(path)]) == 2
    error = capsys.readouterr().err
    assert error == f"error: a series has {steps + 1} time steps; this model takes at most {steps} (zero-padded)\n"


def test_predict_runs_tflite_files_without_tensorflow(request, litert_exports, tmp_path_factory):
    # The same guard as tests/export/test_predict.py: TensorFlow and Keras cannot be imported.
    from test_predict import NO_TENSORFLOW

    _, result, _ = _export(request, "text_lstm_run", litert_exports, tmp_path_factory)
    for argv in ([str(result.version_dir / "model.tflite")], [str(result.version_dir), "--format", "litert", "--int8"]):
        completed = subprocess.run(
            [sys.executable, "-c", NO_TENSORFLOW] + argv + ["a gripping , funny film", "dull", "--json"],
            cwd=REPOSITORY, capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPOSITORY)),
        )
        assert completed.returncode == 0, completed.stderr[-2000:]
        output = json.loads(completed.stdout)
        assert output["format"] == "litert" and output["class_names"] == ["negative", "positive"]
        assert [row["input"] for row in output["predictions"]] == ["a gripping , funny film", "dull"]


def test_a_file_that_is_not_litert_is_refused_in_one_line(tmp_path, capsys):
    from export.predict import main

    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer at all")
    assert main([str(tmp_path / "model.tflite"), "x"]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'model.tflite'}: not a LiteRT (.tflite) model file; export one with python -m export.run --format litert\n"
    )


def test_litert_int8_that_fails_the_gate_is_left_out_and_fp32_published(mlp_run, tmp_path):
    from export.orchestrator import export_model

    lines = []
    result = export_model(mlp_run, formats=["litert"], quantize="int8", max_accuracy_drop=-1.0,
                          base=tmp_path / "exports", log=lines.append)
    assert (result.version_dir / "model.tflite").is_file() and not (result.version_dir / "model.int8.tflite").exists()
    assert result.card["int8"]["litert"]["published"] is False
    assert result.card["litert_quantization"]["comparison"]["examples"] == len(_validation(mlp_run)[0])
    assert any(line.startswith("litert int8 left out: accuracy drop 0.00 points") for line in lines)
