"""Every artifact loader refuses a damaged or wrong file with one line (issue 10 item 9).

`python -m export.predict`, `python -m export.run` and the TensorFlow-free
runners (`kerasdl.runtime`, the LiteRT runner) each get files that are not
what their name says: not a zip, cut short, empty, garbage, the wrong
extension, a folder with no model, a `.keras` file without kerasdl metadata.
Each must end in exit status 2 and one line naming the file, never a traceback.
"""

import json
import shutil
import zipfile

import pytest

from export.predict import main as predict_main
from export.run import main as run_main
from kerasdl.runtime import ArtifactError


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _keras_with_metadata(source, target, content):
    """A copy of `source` (.keras) whose kerasdl.json is replaced by `content` (bytes)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            copy.writestr(item, content if item.filename == "kerasdl.json" else original.read(item.filename))
    return target


def _version_copy(version_dir, target):
    shutil.copytree(version_dir, target)
    return target


def _plain_keras(path):
    import keras

    inputs = keras.Input(shape=(3,), name="inputs")
    keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs)).save(path)
    return path


# (name, how to make the artifact from (mlp_run, version folder, tmp_path), expected message)
PREDICT_CASES = [
    ("text as .keras", lambda run, version, tmp: _write(tmp / "notes.keras", b"not a zip"), "not a .keras file (not a zip archive)"),
    ("truncated .keras", lambda run, version, tmp: _cut(run / "model.keras", tmp / "cut.keras"), "not a .keras file (not a zip archive)"),
    ("damaged kerasdl.json", lambda run, version, tmp: _keras_with_metadata(run / "model.keras", tmp / "m.keras", b"{oops"),
     "kerasdl.json metadata is damaged"),
    ("kerasdl.json not an object", lambda run, version, tmp: _keras_with_metadata(run / "model.keras", tmp / "m.keras", b"[1, 2]"),
     "kerasdl.json metadata is not a JSON object"),
    ("plain keras model", lambda run, version, tmp: _plain_keras(tmp / "plain.keras"), "not a kerasdl model"),
    ("empty .onnx", lambda run, version, tmp: _write(tmp / "model.onnx", b""), "empty file (0 bytes), not an ONNX model"),
    ("truncated .onnx", lambda run, version, tmp: _cut(version / "model.onnx", tmp / "model.onnx"), "ONNX Runtime cannot load it"),
    ("garbage .onnx", lambda run, version, tmp: _write(tmp / "model.onnx", b"\x00garbage" * 40), "ONNX Runtime cannot load it"),
    ("empty .tflite", lambda run, version, tmp: _write(tmp / "model.tflite", b""), "an empty file; export one with"),
    ("onnx renamed .tflite", lambda run, version, tmp: _copy(version / "model.onnx", tmp / "model.tflite"), "not a LiteRT (.tflite) model file"),
    # A LiteRT header whose root offset points past the end: the flatbuffer reader used to die with struct.error.
    ("cut-short .tflite", lambda run, version, tmp: _write(tmp / "model.tflite", b"\x00\x10\x00\x00TFL3" + b"\x00" * 16),
     "cannot load it"),
    ("wrong extension", lambda run, version, tmp: _copy(version / "model.onnx", tmp / "model.txt"), "not a .keras file, an exported model file"),
    ("folder without a model", lambda run, version, tmp: _folder(tmp / "empty"), "no exported model here"),
    ("truncated saved_model.pb", lambda run, version, tmp: _cut(version / "saved_model.pb", _version_copy(version, tmp / "v") / "saved_model.pb") and tmp / "v",
     "TensorFlow cannot load this SavedModel"),
    ("SavedModel without variables", lambda run, version, tmp: _without(_version_copy(version, tmp / "v"), "variables"),
     "TensorFlow cannot load this SavedModel"),
    ("damaged model card", lambda run, version, tmp: _write(_version_copy(version, tmp / "v") / "assets.extra" / "model_card.json", b"{") and tmp / "v",
     "damaged model card"),
]


def _write(path, data):
    path.write_bytes(data)
    return path


def _copy(source, target):
    shutil.copy(source, target)
    return target


def _cut(source, target):
    shutil.copy(source, target)
    _truncate(target)
    return target


def _folder(path):
    path.mkdir()
    return path


def _without(folder, name):
    shutil.rmtree(folder / name)
    return folder


@pytest.mark.parametrize("name, make, message", PREDICT_CASES, ids=[case[0] for case in PREDICT_CASES])
def test_predict_refuses_a_bad_artifact_in_one_line(name, make, message, mlp_run, mlp_export, tmp_path, capsys):
    csv = tmp_path / "features.csv"
    csv.write_text("1,2,3,4,5,6\n")
    artifact = make(mlp_run, mlp_export.version_dir, tmp_path)
    assert predict_main([str(artifact), str(csv)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error, error
    assert error.count("\n") == 1 and "Traceback" not in error, error


def test_predict_int8_of_a_version_without_int8_says_how_to_get_it(mlp_run, tmp_path, capsys):
    from export.run import export_model

    result = export_model(mlp_run, formats=["onnx"], base=tmp_path / "exports", log=lambda line: None)
    (tmp_path / "x.csv").write_text("1,2,3,4,5,6\n")
    assert predict_main([str(result.version_dir), "--int8", str(tmp_path / "x.csv")]) == 2
    error = capsys.readouterr().err
    assert "no int8 model (model.int8.onnx, model.int8.tflite); export with --quantize int8" in error and error.count("\n") == 1


RUN_CASES = [
    ("truncated .keras", lambda run, tmp: _cut(run / "model.keras", tmp / "cut.keras"), "not a .keras file (not a zip archive)"),
    ("damaged kerasdl.json", lambda run, tmp: _keras_with_metadata(run / "model.keras", tmp / "m.keras", b"{oops"),
     "kerasdl.json metadata is damaged"),
    ("kerasdl.json not an object", lambda run, tmp: _keras_with_metadata(run / "model.keras", tmp / "m.keras", b'"text"'),
     "kerasdl.json metadata is not a JSON object"),
    ("weights missing", lambda run, tmp: _keras_without_weights(run / "model.keras", tmp / "m.keras"), "Keras cannot load this model"),
    ("onnx file given", lambda run, tmp: _write(tmp / "model.onnx", b"x"), "not a .keras file; pass a run directory"),
]


def _keras_without_weights(source, target):
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            if not item.filename.endswith(".h5"):
                copy.writestr(item, original.read(item.filename))
    return target


@pytest.mark.parametrize("name, make, message", RUN_CASES, ids=[case[0] for case in RUN_CASES])
def test_export_run_refuses_a_bad_keras_file_in_one_line(name, make, message, mlp_run, tmp_path, capsys):
    artifact = make(mlp_run, tmp_path)
    assert run_main([str(artifact), "--base", str(tmp_path / "exports")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error, error
    assert error.count("\n") == 1 and "Traceback" not in error, error
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "empty file (0 bytes)"),
    (b"\x08\x07garbage", "ONNX Runtime cannot load it"),
])
def test_the_onnx_runner_names_a_damaged_file(tmp_path, content, message):
    # The edge server's ONNX backend loads through the same runner.
    from kerasdl.runtime.onnx import OnnxRunner

    path = _write(tmp_path / "model.onnx", content)
    with pytest.raises(ArtifactError, match="export it again with python -m export.run") as raised:
        OnnxRunner(path)
    assert str(path) in str(raised.value) and message in str(raised.value) and "\n" not in str(raised.value)


def test_the_litert_runner_names_a_damaged_file(tmp_path):
    from export.formats.litert import LiteRTRunner, read_metadata

    path = _write(tmp_path / "model.tflite", b"\xff\xff\x00\x00TFL3" + b"\x01" * 32)
    with pytest.raises(ArtifactError, match="cannot load it"):
        LiteRTRunner(path)
    with pytest.raises(ArtifactError, match="damaged LiteRT file"):
        read_metadata(path)


def test_a_card_that_is_json_but_not_a_card_is_named(mlp_export, tmp_path):
    from export.formats.savedmodel import SavedModelRunner

    version = _version_copy(mlp_export.version_dir, tmp_path / "v")
    (version / "assets.extra" / "model_card.json").write_text(json.dumps({"name": "mlp"}))
    with pytest.raises(ArtifactError, match=r"damaged model card \(KeyError: 'input_spec'\)"):
        SavedModelRunner(version)
