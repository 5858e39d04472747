"""`python -m export.predict` on each artifact type, and the ONNX path without TensorFlow."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from export.predict import main

REPOSITORY = Path(__file__).resolve().parents[2]


def _predict_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _probabilities(output):
    return np.array([[row["probabilities"][name] for name in output["class_names"]] for row in output["predictions"]])


@pytest.fixture(scope="module")
def features_csv(mlp_run, tmp_path_factory):
    with np.load(mlp_run / "data" / "validation.npz") as content:
        x = content["x"][:5]
    path = tmp_path_factory.mktemp("csv") / "features.csv"
    path.write_text("f0,f1,f2,f3,f4,f5\n" + "\n".join(",".join(f"{value:.6f}" for value in row) for row in x) + "\n")
    return path, np.array([[float(f"{value:.6f}") for value in row] for row in x], "float32")


def test_every_artifact_type_gives_the_keras_answer_on_a_csv(mlp_run, mlp_export, features_csv, capsys, helpers):
    path, x = features_csv
    expected = helpers.keras_reference(mlp_run, x)
    version = mlp_export.version_dir
    cases = [
        ([str(mlp_run / "model.keras")], "keras", 1e-6),
        ([str(version)], "savedmodel", 1e-5),
        ([str(version.parent)], "savedmodel", 1e-5),  # the model base path: newest version
        ([str(version), "--format", "onnx"], "onnx", 1e-5),
        ([str(version / "model.onnx")], "onnx", 1e-5),
        ([str(version), "--int8"], "onnx", 0.05),
    ]
    for artifact, kind, tolerance in cases:
        output = _predict_json(capsys, artifact + [str(path)])
        assert output["format"] == kind and output["modality"] == "features"
        assert output["class_names"] == ["alpha", "beta", "gamma"]
        assert [row["input"] for row in output["predictions"]] == [f"features.csv:{n}" for n in range(1, 6)]
        np.testing.assert_allclose(_probabilities(output), expected, atol=tolerance, err_msg=str(artifact))
        names = ["alpha", "beta", "gamma"]
        assert [row["class_name"] for row in output["predictions"]] == [names[i] for i in expected.argmax(-1)]


def test_text_output_names_the_best_class(mlp_export, features_csv, capsys):
    assert main([str(mlp_export.version_dir / "model.onnx"), str(features_csv[0]), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("features.csv:1: ") and lines[0].count(" 0.") == 2


def test_image_folder_through_savedmodel_bytes_and_onnx(cnn_export, tmp_path, capsys, helpers):
    import shutil

    _, _, paths, classes = helpers.cifar_images(10, per_class=1)
    for path in paths:
        shutil.copy(path, tmp_path / f"{path.parent.name}-{path.name}")
    (tmp_path / "notes.txt").write_text("not an image")  # ignored in a folder
    served = _predict_json(capsys, [str(cnn_export.version_dir), str(tmp_path)])
    edge = _predict_json(capsys, [str(cnn_export.version_dir), "--format", "onnx", str(tmp_path)])
    assert served["format"] == "savedmodel" and edge["format"] == "onnx"
    assert len(served["predictions"]) == len(edge["predictions"]) == 10
    assert served["class_names"] == classes
    # TF and Pillow decode JPEGs slightly differently (a few levels per pixel),
    # so the two paths agree closely but not bit for bit.
    np.testing.assert_allclose(_probabilities(served), _probabilities(edge), atol=0.05)
    single = _predict_json(capsys, [str(cnn_export.version_dir), str(paths[0])])
    assert single["predictions"][0]["input"] == str(paths[0])


def test_sequences_csv_of_different_lengths(lstm_run, lstm_export, tmp_path, capsys, helpers):
    rows = [[2.0, 1.0, 2.2, 1.0, 2.4, 1.0], [2.0, 1.0, 1.8, 1.0, 1.6, 1.0, 1.4, 1.0]]
    path = tmp_path / "series.csv"
    path.write_text("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    batch = np.zeros((2, 4, 2), "float32")
    batch[0, :3] = np.reshape(rows[0], (3, 2))
    batch[1, :4] = np.reshape(rows[1], (4, 2))
    expected = helpers.keras_reference(lstm_run, batch)
    for argv in ([str(lstm_export.version_dir)], [str(lstm_export.version_dir), "--format", "onnx"]):
        np.testing.assert_allclose(_probabilities(_predict_json(capsys, argv + [str(path)])), expected, atol=1e-4)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    assert main([str(lstm_export.version_dir), str(bad)]) == 2
    assert "needs a multiple of 2 values" in capsys.readouterr().err


@pytest.mark.parametrize("fixture, run_fixture", [("text_lstm_export", "text_lstm_run"), ("bert_export", "bert_run")])
def test_text_lines_through_every_artifact(fixture, run_fixture, request, capsys, helpers):
    result, run_dir = request.getfixturevalue(fixture), request.getfixturevalue(run_fixture)
    texts = ["A gripping, funny and moving film.", "Dull, overlong and pointless."]
    expected = helpers.keras_reference(run_dir, texts)
    for argv in ([str(run_dir / "model.keras")], [str(result.version_dir)], [str(result.version_dir), "--format", "onnx"]):
        output = _predict_json(capsys, argv + texts)
        assert [row["input"] for row in output["predictions"]] == texts
        np.testing.assert_allclose(_probabilities(output), expected, atol=1e-4, err_msg=str(argv))


def test_predict_errors_are_one_line(mlp_export, tmp_path, capsys):
    cases = [
        ([str(tmp_path / "missing.onnx"), "x.csv"], "no such file or directory"),
        ([str(mlp_export.version_dir), str(tmp_path / "missing.csv")], "no such CSV file"),
        ([str(tmp_path), "x"], "no exported model here"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error


# An import hook that makes TensorFlow (and Keras, which imports it) unimportable,
# as on an edge box with only onnxruntime, numpy and Pillow.
NO_TENSORFLOW = textwrap.dedent(
    """
    import sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "keras_hub", "tensorflow_text"):
                raise ImportError(f"import of {name} on the TensorFlow-free path")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    import kerasdl.tokenizer
    from export.predict import main

    code = main(sys.argv[1:])
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras"))
    assert not leaked, leaked
    sys.exit(code)
    """
)


@pytest.mark.parametrize("fixture, inputs, count", [
    ("mlp_export", "csv", 5),
    ("text_lstm_export", "text", 1),
    ("bert_export", "text", 1),
    ("cnn_export", "image", 1),
])
def test_onnx_path_imports_no_tensorflow(fixture, inputs, count, request, features_csv, helpers):
    result = request.getfixturevalue(fixture)
    argument = {
        "csv": str(features_csv[0]),
        "text": "a gripping , funny film",
        "image": str(helpers.cifar_images(10, per_class=1)[2][0]) if inputs == "image" else "",
    }[inputs]
    completed = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(result.version_dir), "--format", "onnx", argument, "--json"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPOSITORY)),
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["format"] == "onnx" and len(output["predictions"]) == count
    assert all(abs(sum(row["probabilities"].values()) - 1.0) < 1e-4 for row in output["predictions"])


def test_guard_really_blocks_tensorflow(mlp_export, features_csv):
    # The same guard on the SavedModel path must fail: proof that it bites.
    completed = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(mlp_export.version_dir), str(features_csv[0])],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPOSITORY)),
    )
    assert completed.returncode != 0
    assert "import of tensorflow on the TensorFlow-free path" in completed.stderr
