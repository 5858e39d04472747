"""The client prints only class names the server answered, never an id dressed up as a name (issue 15 §3)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from serving.client import _class_names_by_id, _top

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _client(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "serving.client", *arguments], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT)
    )


def _named(line):
    """The class names a client output line shows: the predicted one and those of its top list."""
    _, best, top = line.split("\t")
    return best, [item.rsplit("=", 1)[0] for item in top.split(", ")]


def test_a_ten_class_image_model_over_rest_and_grpc_shows_only_its_class_names(edge, tmp_path, cifar_jpegs):
    image = tmp_path / "ship.jpg"
    image.write_bytes(cifar_jpegs[4][1])
    for where in (["--rest", edge.url], ["--grpc", edge.grpc_target]):
        result = _client("--model", "cnn", "--image", str(image), "--top-k", "10", *where)
        assert result.returncode == 0, result.stderr
        best, top = _named(result.stdout.strip())
        assert sorted(top) == sorted(CIFAR_CLASSES) and best == top[0]
        assert "note:" not in result.stderr


def test_a_two_class_text_model_shows_both_names(edge):
    for where in (["--rest", edge.url], ["--grpc", edge.grpc_target]):
        result = _client("--model", "text", "--text", "a good film", "--text", "awful", *where)
        assert result.returncode == 0, result.stderr
        for line in result.stdout.strip().splitlines():
            best, top = _named(line)
            assert sorted(top) == ["negative", "positive"] and best == top[0]


def test_ucr_labels_are_printed_as_they_are_and_no_id_is_invented():
    # The answer of a -1/1 model: class 1 is named "1" and class 0 is named "-1".
    with_classes = {"class_ids": np.array([1]), "class_names": np.array([b"1"], dtype=object),
                    "classes": np.array([[b"-1", b"1"]], dtype=object)}
    (names,) = _class_names_by_id(with_classes, 2)
    assert _top(np.array([0.1133, 0.8867]), names, 3) == "1=0.8867, -1=0.1133"
    # An answer from an older export names only the predicted class: the other id stays unnamed
    # (before, the client printed it as "0=0.1133", and 0 is not a class at all).
    without = {"class_ids": np.array([1]), "class_names": np.array([b"1"], dtype=object)}
    (names,) = _class_names_by_id(without, 2)
    assert names == [None, "1"]
    assert _top(np.array([0.1133, 0.8867]), names, 3) == "1=0.8867"
