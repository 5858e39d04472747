"""Tests of the UCR loader on the real GunPoint files and on small written files."""

from pathlib import Path

import numpy as np
import pytest

from kerasdl.data.source import DataError
from kerasdl.data.ucr import load_ucr

UCR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ucr"


def _arrays(split):
    xs, ys = zip(*split.dataset.as_numpy_iterator())
    return np.stack(xs), np.array(ys)


@pytest.mark.skipif(not (UCR / "GunPoint_TRAIN.txt").exists(), reason="../shared/data/ucr is absent")
@pytest.mark.parametrize("name", ["GunPoint", "GunPoint_TRAIN.txt", "GunPoint_TEST.txt"])
def test_gunpoint_official_splits(name):
    splits = load_ucr(UCR / name, validation_fraction=0.0, seed=0)
    assert splits.modality == "sequence"
    assert splits.class_names == ["1", "2"]
    assert splits.input_shape == (150, 1)
    x_train, y_train = _arrays(splits.train)
    x_test, y_test = _arrays(splits.test)
    assert x_train.shape == (50, 150, 1) and x_train.dtype == np.float32
    assert x_test.shape == (150, 150, 1)
    assert splits.validation.size == 0
    assert set(y_train) == {0, 1} and set(y_test) == {0, 1}
    # The first training line starts "2.0000000e+00 -6.4788540e-01 ...".
    first = np.loadtxt(UCR / "GunPoint_TRAIN.txt", max_rows=1)
    match = np.flatnonzero(np.all(np.isclose(x_train[:, :, 0], first[1:]), axis=1))
    assert len(match) == 1 and y_train[match[0]] == 1  # label "2" is class id 1
    assert "GunPoint" in splits.description


@pytest.mark.skipif(not (UCR / "GunPoint_TRAIN.txt").exists(), reason="../shared/data/ucr is absent")
def test_validation_is_carved_from_train_stratified_and_seeded():
    first = load_ucr(UCR / "GunPoint", validation_fraction=0.2, seed=3)
    again = load_ucr(UCR / "GunPoint", validation_fraction=0.2, seed=3)
    assert (first.train.size, first.validation.size, first.test.size) == (40, 10, 150)
    x_validation, y_validation = _arrays(first.validation)
    np.testing.assert_array_equal(x_validation, _arrays(again.validation)[0])
    assert 4 <= int(np.sum(y_validation == 0)) <= 6


def test_variable_length_series_and_separators_are_zero_padded(tmp_path):
    (tmp_path / "Toy_TRAIN.tsv").write_text(
        "a\t1.0\t2.0\t3.0\nb\t4.0\t5.0\tNaN\na,6.0,7.0,8.0\nb 9.0 NaN NaN\na\t1.5\t2.5\t3.5\nb\t4.5\t5.5\t6.5\n"
    )
    (tmp_path / "Toy_TEST.tsv").write_text("a\t1.0\nb\t2.0\t3.0\n")
    splits = load_ucr(tmp_path / "Toy", validation_fraction=0.0, seed=0)
    assert splits.class_names == ["a", "b"]
    assert splits.input_shape == (None, 1)
    x_train, y_train = _arrays(splits.train)
    assert x_train.shape == (6, 3, 1)
    np.testing.assert_array_equal(x_train[:4, :, 0], [[1, 2, 3], [4, 5, 0], [6, 7, 8], [9, 0, 0]])
    np.testing.assert_array_equal(y_train, [0, 1, 0, 1, 0, 1])
    x_test, _ = _arrays(splits.test)
    np.testing.assert_array_equal(x_test[:, :, 0], [[1, 0, 0], [2, 3, 0]])


def test_single_file_is_split_three_ways(tmp_path):
    rows = [f"{label} {' '.join(str(value) for value in range(1, 6))}" for label in (-1, 1) * 20]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    splits = load_ucr(tmp_path / "table.csv", validation_fraction=0.25, test_fraction=0.25, seed=0)
    assert splits.class_names == ["-1", "1"]
    assert (splits.train.size, splits.validation.size, splits.test.size) == (20, 10, 10)
    assert splits.input_shape == (5, 1)


def test_bad_inputs_fail_with_clear_messages(tmp_path):
    with pytest.raises(DataError, match="no such file, and no Missing_TRAIN.txt"):
        load_ucr(tmp_path / "Missing")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no series found"):
        load_ucr(tmp_path / "empty.txt")
    (tmp_path / "one.txt").write_text("1 0.5 0.6\n1 0.7 0.8\n1 0.1 0.2\n")
    with pytest.raises(DataError, match="only one class"):
        load_ucr(tmp_path / "one.txt")
    (tmp_path / "hole.txt").write_text("1 0.5 NaN 0.6\n2 0.7 0.8 0.9\n")
    with pytest.raises(DataError, match=r"hole.txt:1: missing values \(NaN\) inside"):
        load_ucr(tmp_path / "hole.txt")
    (tmp_path / "text.txt").write_text("1 0.5 0.6\n2 abc 0.8\n")
    with pytest.raises(DataError, match="text.txt:2: expected a label then numbers"):
        load_ucr(tmp_path / "text.txt")
