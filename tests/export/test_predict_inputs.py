"""`python -m export.predict` inputs: folders searched recursively, and UCR files with their label column."""

import json
import shutil

import numpy as np
import pytest

from export.inputs import folder_files
from export.predict import main


def _predict_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _probabilities(output):
    return np.array([[row["probabilities"][name] for name in output["class_names"]] for row in output["predictions"]])


def test_image_folder_with_class_subfolders_is_searched_recursively(cnn_export, tmp_path, capsys, helpers):
    _, _, paths, _ = helpers.cifar_images(4, per_class=1)
    val = tmp_path / "val"
    names = []
    for path in paths:
        (val / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, val / path.parent.name / path.name)
        names.append(f"val/{path.parent.name}/{path.name}")
    (val / ".hidden").mkdir()
    shutil.copy(paths[0], val / ".hidden" / "skipped.jpg")
    (val / paths[0].parent.name / "notes.txt").write_text("not an image")
    argv = [str(cnn_export.version_dir), "--format", "onnx"]
    output = _predict_json(capsys, argv + [str(val)])
    assert [row["input"] for row in output["predictions"]] == sorted(names)
    # The same answers as the files given one by one, in the same (sorted) order.
    by_file = _predict_json(capsys, argv + [str(val / name.split("/", 1)[1]) for name in sorted(names)])
    np.testing.assert_allclose(_probabilities(output), _probabilities(by_file), atol=1e-6)
    assert "true_label" not in output["predictions"][0] and "accuracy" not in output


def test_empty_folder_tree_says_subfolders(cnn_export, tmp_path, capsys):
    (tmp_path / "val" / "ants").mkdir(parents=True)
    assert main([str(cnn_export.version_dir), "--format", "onnx", str(tmp_path / "val")]) == 2
    assert capsys.readouterr().err.startswith("error: no image files (.jpg, .jpeg, .png, .bmp, .gif) in ")


def test_folder_files_names_and_order(tmp_path):
    for name in ("b/2.csv", "a/z/1.csv", "a/0.csv", "c.csv", "d.bin"):
        (tmp_path / "top" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "top" / name).write_text("1\n")
    assert [name for _, name in folder_files(tmp_path / "top", (".csv",))] == ["top/a/0.csv", "top/a/z/1.csv", "top/b/2.csv", "top/c.csv"]


@pytest.fixture(scope="module")
def ucr_series(lstm_run):
    """Six 2-feature series of the LSTM fixture's validation split, their class names, and their UCR lines."""
    with np.load(lstm_run / "data" / "validation.npz") as content:
        x, y = content["x"][:6], content["y"][:6]
    names = ["falling", "rising"]
    # Whitespace-separated as UCR's .txt files are: the label, then the series time-major.
    lines = [" ".join([names[label]] + [f"{value:.7e}" for value in row.reshape(-1)]) for row, label in zip(x, y)]
    values = np.array([[float(f"{value:.7e}") for value in row.reshape(-1)] for row in x], "float32").reshape(x.shape)
    return values, [names[label] for label in y], "\n".join(lines) + "\n"


def test_ucr_file_labels_are_the_true_labels(lstm_run, lstm_export, ucr_series, tmp_path, capsys, helpers):
    x, truths, text = ucr_series
    path = tmp_path / "Toy_TEST.txt"
    path.write_text(text)
    expected = helpers.keras_reference(lstm_run, x)
    output = _predict_json(capsys, [str(lstm_export.version_dir), "--format", "onnx", str(path)])
    np.testing.assert_allclose(_probabilities(output), expected, atol=1e-4)
    assert [row["true_label"] for row in output["predictions"]] == truths
    predicted = [["falling", "rising"][index] for index in expected.argmax(-1)]
    correct = sum(p == t for p, t in zip(predicted, truths))
    assert output["accuracy"] == {"accuracy": correct / 6, "correct": correct, "labelled": 6}
    assert main([str(lstm_export.version_dir), "--format", "onnx", str(path), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"Toy_TEST.txt:1: {predicted[0]} ({predicted[0]} {expected[0].max():.3f}) true {truths[0]}"
    assert lines[-1] == f"accuracy {correct / 6:.3f} ({correct} of 6 labelled inputs)"


def test_unnamed_series_file_asks_for_the_flag_and_the_flag_decides(lstm_run, lstm_export, ucr_series, tmp_path, capsys, helpers):
    x, truths, text = ucr_series
    path = tmp_path / "series.txt"
    path.write_text(text)
    argv = [str(lstm_export.version_dir), "--format", "onnx", str(path)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: cannot tell whether the first column is a class label (UCR layout) or a value; "
        "pass --label-column first or --label-column none\n"
    )
    labelled = _predict_json(capsys, argv + ["--label-column", "first"])
    assert [row["true_label"] for row in labelled["predictions"]] == truths
    # A plain whitespace series file (no labels) reads every column as a value.
    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(" ".join(line.split()[1:]) for line in text.splitlines()) + "\n")
    output = _predict_json(capsys, [str(lstm_export.version_dir), "--format", "onnx", str(plain), "--label-column", "none"])
    np.testing.assert_allclose(_probabilities(output), helpers.keras_reference(lstm_run, x), atol=1e-4)
    assert "accuracy" not in output and "true_label" not in output["predictions"][0]


def test_real_ucr_test_file_gives_the_ecg_labels():
    """ECG200_TEST.txt's labels as the loader reads them (-1/1): read whole, 100 true labels."""
    from export.inputs import read_labelled_inputs

    source = _ucr_file()
    examples, names, truths = read_labelled_inputs([str(source)], "sequence", (None, 1))
    assert len(examples) == 100 and examples[0].shape == (96, 1)
    assert names[0] == "ECG200_TEST.txt:1" and sorted(set(truths)) == ["-1", "1"]
    first = source.read_text().split()
    assert float(first[0]) == float(truths[0]) and examples[0][0, 0] == np.float32(first[1])


def _ucr_file():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ucr" / "ECG200_TEST.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared datasets are not mounted)")
    return path
