"""Version choice, atomic publishing, refusals, and the CLI's error lines and exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.errors import ExportError
from export.publish import choose_version, existing_versions, staged_version
from export.run import main

REPOSITORY = Path(__file__).resolve().parents[2]


def _entries(folder):
    return sorted(entry.name for entry in Path(folder).iterdir()) if Path(folder).exists() else []


def test_next_version_ignores_non_integer_folders(tmp_path):
    for name in ("1", "2", "10", "latest", ".tmp-11-abc"):
        (tmp_path / name).mkdir()
    assert existing_versions(tmp_path) == [1, 2, 10]
    assert choose_version(tmp_path) == 11
    assert choose_version(tmp_path / "missing") == 1
    assert choose_version(tmp_path, version=5) == 5
    with pytest.raises(ExportError, match=r"10 already exists; pass --force"):
        choose_version(tmp_path, version=10)
    assert choose_version(tmp_path, version=10, force=True) == 10
    with pytest.raises(ExportError, match="positive integer"):
        choose_version(tmp_path, version=0)


def test_staged_version_renames_only_on_success(tmp_path):
    with staged_version(tmp_path, 3) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".tmp-3-")
        (staging / "saved_model.pb").write_text("x")
        assert _entries(tmp_path) == [staging.name]  # not visible as a version yet
    assert _entries(tmp_path) == ["3"]
    assert (tmp_path / "3" / "saved_model.pb").read_text() == "x"

    with pytest.raises(RuntimeError, match="boom"):
        with staged_version(tmp_path, 4) as staging:
            (staging / "saved_model.pb").write_text("half")
            raise RuntimeError("boom")
    assert _entries(tmp_path) == ["3"]


def test_staged_version_replaces_only_with_force(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "old").write_text("old")
    with pytest.raises(ExportError, match="already exists"):
        with staged_version(tmp_path, 1) as staging:
            (staging / "new").write_text("new")
    assert _entries(tmp_path / "1") == ["old"] and _entries(tmp_path) == ["1"]
    with staged_version(tmp_path, 1, force=True) as staging:
        (staging / "new").write_text("new")
    assert _entries(tmp_path / "1") == ["new"] and _entries(tmp_path) == ["1"]


def test_refuses_to_overwrite_without_force_and_force_replaces(mlp_run, tmp_path, capsys):
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--format", "onnx", "--base", str(base)]) == 0
    card_path = base / "mlp" / "1" / "assets.extra" / "model_card.json"
    first = json.loads(card_path.read_text())
    (base / "mlp" / "1" / "marker").write_text("from the first export")
    capsys.readouterr()

    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--version", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already exists; pass --force" in error and "Traceback" not in error
    assert (base / "mlp" / "1" / "marker").exists()

    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--version", "1", "--force"]) == 0
    assert not (base / "mlp" / "1" / "marker").exists()
    assert json.loads(card_path.read_text())["formats"] == first["formats"] == ["onnx"]
    assert _entries(base / "mlp") == ["1"]

    # Without --version the next integer is chosen.
    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--name", "features-model"]) == 0
    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--name", "features-model"]) == 0
    assert _entries(base / "features-model") == ["1", "2"]


def test_parity_failure_publishes_nothing(mlp_run, tmp_path, capsys, monkeypatch):
    import export.formats

    # A negative tolerance makes every comparison fail, as a real mismatch would.
    monkeypatch.setattr(export.formats, "tolerance", lambda metadata, artifact_format: -1.0)
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--base", str(base)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out  # the parity table is printed
    assert captured.err.startswith("verification failed: parity failed for savedmodel/serving_default, onnx/probabilities")
    assert _entries(base / "mlp") == []  # no version folder, no temporary folder


def test_exception_during_export_publishes_nothing(mlp_run, tmp_path, capsys, monkeypatch):
    import export.formats.onnx

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed\nsecond line")

    monkeypatch.setattr(export.formats.onnx, "export_onnx", broken)
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--base", str(base)]) == 1
    error = capsys.readouterr().err
    assert error == "error: export failed (RuntimeError: converter crashed); nothing published\n"
    assert _entries(base / "mlp") == []


def test_int8_accuracy_drop_over_the_limit_refuses_to_publish(mlp_run, tmp_path, capsys):
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--format", "onnx", "--quantize", "int8", "--max-accuracy-drop", "-1", "--base", str(base)]) == 1
    captured = capsys.readouterr()
    assert "int8 (dynamic)" in captured.out and "agreement with fp32 100.0 %" in captured.out
    assert captured.err == (
        "verification failed: int8 accuracy drop 0.00 points exceeds --max-accuracy-drop -1.0; nothing published\n"
    )
    assert _entries(base / "mlp") == []


def test_usage_errors_are_one_line_with_exit_code_2(mlp_run, tmp_path, capsys):
    cases = [
        ([str(tmp_path / "missing")], "no such file or directory"),
        ([str(tmp_path)], "no model.keras in this folder"),
        ([str(mlp_run), "--format", "tflite"], "unknown format tflite"),
        ([str(mlp_run), "--format", "savedmodel", "--quantize", "int8"], "add onnx to --format"),
        ([str(mlp_run), "--quantize", "int4"], "invalid choice: 'int4'"),
    ]
    for argv, message in cases:
        try:
            code = main(argv + ["--base", str(tmp_path / "exports")])
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        assert code == 2, argv
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1 and "Traceback" not in error, (argv, error)
    assert not (tmp_path / "exports").exists()


def test_a_keras_file_without_metadata_is_not_a_kerasdl_model(tmp_path, capsys):
    import keras

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.save(tmp_path / "plain.keras")
    (tmp_path / "text.keras").write_text("not a zip")
    assert main([str(tmp_path / "plain.keras"), "--base", str(tmp_path / "exports")]) == 2
    assert "not a kerasdl model (its kerasdl.json metadata lacks modality, class_names, input)" in capsys.readouterr().err
    assert main([str(tmp_path / "text.keras"), "--base", str(tmp_path / "exports")]) == 2
    assert "not a .keras file (not a zip archive)" in capsys.readouterr().err


def test_augmentation_layers_are_refused(tmp_path, capsys, helpers):
    import keras
    import numpy as np

    inputs = keras.Input(shape=(8, 8, 1), name="inputs")
    x = keras.layers.RandomFlip(name="random_flip")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(x)))
    metadata = {"model": "cnn", "modality": "image", "class_names": ["a", "b"],
                "input": {"shape": [8, 8, 1], "dtype": "float32"}}
    data = (np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int64"))
    run_dir = helpers.write_run(tmp_path / "run", model, metadata, data, data)
    assert main([str(run_dir), "--base", str(tmp_path / "exports")]) == 2
    assert "augmentation layer 'random_flip' (RandomFlip)" in capsys.readouterr().err


def test_bare_keras_file_exports_with_synthetic_examples(mlp_run, tmp_path):
    import shutil

    from export.run import export_model

    bare = tmp_path / "elsewhere" / "mlp.keras"
    bare.parent.mkdir()
    shutil.copy(mlp_run / "model.keras", bare)
    result = export_model(bare, base=tmp_path / "exports", log=lambda line: None)
    assert result.card["parity"]["examples_origin"] == "synthetic"
    assert result.card["metrics"] is None and result.card["training_run"]["model_file"] == str(bare)
    assert all(row.ok and row.examples == 8 for row in result.parity)


def test_cli_subprocess_prints_no_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "export.run", str(tmp_path / "nothing.keras")],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nothing.keras'}: no such file or directory; pass a run directory or a .keras file"
    ]

