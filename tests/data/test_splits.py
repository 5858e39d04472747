"""The stratified split (scikit-learn's) and the split-size check of every source that splits."""

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import train_test_split

from kerasdl.config import DataConfig
from kerasdl.data import load_data
from kerasdl.data.npz import load_npz
from kerasdl.data.source import DataError, splits_from_arrays, stratified_split
from kerasdl.data.tfds import holdout_mask

TOO_FEW = r"too few examples to split: with data.validation_fraction=0.1 and data.test_fraction=0.1 each class needs at least 10 examples"


def test_split_is_scikit_learns_two_stage_stratified_split():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, validation, test = stratified_split(labels, 0.1, 0.2, seed=7)
    rest, expected_test = train_test_split(np.arange(100), test_size=20, stratify=labels, random_state=7)
    expected_train, expected_validation = train_test_split(rest, test_size=10, stratify=labels[rest], random_state=7)
    np.testing.assert_array_equal(test, np.sort(expected_test))
    np.testing.assert_array_equal(validation, np.sort(expected_validation))
    np.testing.assert_array_equal(train, np.sort(expected_train))
    assert test.dtype == np.int64 and np.all(np.diff(train) > 0)
    # Stratified: each class keeps its share in every split.
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    assert np.bincount(labels[validation]).tolist() == [5, 3, 2]
    assert sorted(np.concatenate([train, validation, test]).tolist()) == list(range(100))
    again = stratified_split(labels, 0.1, 0.2, seed=7)
    other = stratified_split(labels, 0.1, 0.2, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test)))
    assert not np.array_equal(other[2], test)


def test_too_few_examples_per_class_are_refused_before_training():
    labels = np.repeat([0, 1, 2], [5, 40, 3])
    with pytest.raises(DataError) as raised:
        stratified_split(labels, 0.1, 0.1, seed=0, class_names=["cat", "dog", "eel"], source="pets.csv")
    message = str(raised.value)
    assert message.startswith("pets.csv: " + TOO_FEW.replace("\\", ""))
    assert "too few in 'cat' (5), 'eel' (3); add examples to those classes, or raise data.validation_fraction/data.test_fraction to 0.34" in message
    # The suggested fractions do split it.
    stratified_split(labels, 0.34, 0.34, seed=0)
    # Only the carved splits count: no test carve, so 5 per class is enough at 0.2.
    stratified_split(np.repeat([0, 1], 5), 0.2, 0.0, seed=0)
    with pytest.raises(DataError, match="each class needs at least 3 examples .*; too few in 0 \\(2\\), 1 \\(2\\); add examples to those classes$"):
        stratified_split(np.repeat([0, 1], 2), 0.5, 0.4, seed=0)


@pytest.mark.parametrize("validation, test, message", [(-0.1, 0.1, r"data.validation_fraction must be a number in \[0, 1\)"), (0.5, 0.5, "leave nothing to train on")])
def test_bad_fractions_are_refused(validation, test, message):
    with pytest.raises(DataError, match=message):
        stratified_split(np.repeat([0, 1], 50), validation, test, seed=0)


def test_a_stage_that_cannot_be_stratified_falls_back_to_a_seeded_random_split(capsys):
    from kerasdl.data.source import _carve

    labels = np.array([0, 0, 0, 1])
    rest, carved = _carve(np.arange(4), labels, 1, seed=0, source="tiny.csv", name="test")
    assert "note: tiny.csv: the test split cannot be stratified (The least populated class" in capsys.readouterr().out
    assert len(carved) == 1 and sorted(np.concatenate([rest, carved]).tolist()) == [0, 1, 2, 3]
    again = _carve(np.arange(4), labels, 1, seed=0, source="tiny.csv", name="test")
    np.testing.assert_array_equal(again[1], carved)


def _small_table(path, per_class):
    path.write_text("text,label\n" + "".join(f"text {index},{'ab'[index % 2]}\n" for index in range(2 * per_class)))
    return path


def test_every_splitting_source_refuses_too_small_sets(tmp_path):
    """Arrays, npz, text tables, UCR, image folders and TFDS: a DataError before training."""
    with pytest.raises(DataError, match="toy: " + TOO_FEW):
        splits_from_arrays(np.zeros((8, 2)), np.arange(8) % 2, ["a", "b"], "features", "toy", 0.1, 0.1, seed=0)
    np.savez(tmp_path / "small.npz", x=np.random.rand(8, 3), y=np.arange(8) % 2)
    with pytest.raises(DataError, match="small.npz: " + TOO_FEW + r".* too few in '0' \(4\), '1' \(4\)"):
        load_npz(str(tmp_path / "small.npz"), "features")
    np.savez(tmp_path / "pools.npz", x_train=np.random.rand(6, 3), y_train=np.arange(6) % 2, x_test=np.random.rand(4, 3), y_test=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"pools.npz: too few examples to split: with data.validation_fraction=0.1 each class needs at least 10"):
        load_npz(str(tmp_path / "pools.npz"), "features")
    with pytest.raises(DataError, match=r"small.csv: " + TOO_FEW + r".* too few in 'a' \(5\), 'b' \(5\).*raise data.validation_fraction/data.test_fraction to 0.2$"):
        load_data(DataConfig(source=str(_small_table(tmp_path / "small.csv", 5))), ("text",), seed=0)
    (tmp_path / "series.txt").write_text("".join(f"{index % 2} 0.5 {index}.0\n" for index in range(8)))
    with pytest.raises(DataError, match="series.txt: " + TOO_FEW):
        load_data(DataConfig(source=str(tmp_path / "series.txt")), ("sequence",), seed=0)
    for name in ("cats", "dogs"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(4):
            Image.fromarray(np.full((6, 6, 3), index * 40, dtype=np.uint8)).save(tmp_path / "images" / name / f"{index}.png")
    with pytest.raises(DataError, match=r"images: " + TOO_FEW + r".* too few in 'cats' \(4\), 'dogs' \(4\)"):
        load_data(DataConfig(source=str(tmp_path / "images")), ("image",), seed=0)
    with pytest.raises(DataError, match=r"tfds:tiny: 4 training examples are too few to hold out data.validation_fraction=0.1"):
        holdout_mask(4, 0.1, seed=0, source="tfds:tiny")
    assert holdout_mask(100, 0.1, seed=0, source="tfds:x").sum() == 10


def test_enough_examples_split_into_three_non_empty_stratified_splits(tmp_path):
    splits = load_data(DataConfig(source=str(_small_table(tmp_path / "ten.csv", 10))), ("text",), seed=0)
    sizes = (splits.train.size, splits.validation.size, splits.test.size)
    assert sizes == (16, 2, 2)
    for split in (splits.validation, splits.test):
        assert sorted(int(y) for _, y in split.dataset.as_numpy_iterator()) == [0, 1]


def test_load_data_refuses_an_empty_split_that_training_would_fail_on(tmp_path):
    # Before: the run trained to the end and failed with "need at least one array to concatenate".
    source = str(_small_table(tmp_path / "table.csv", 10))
    with pytest.raises(DataError, match=r"table.csv: the test split is empty; training needs train, validation and test examples; set data.test_fraction above 0"):
        load_data(DataConfig(source=source, test_fraction=0.0), ("text",), seed=0)
    with pytest.raises(DataError, match=r"the validation split is empty; .*set data.validation_fraction above 0"):
        load_data(DataConfig(source=source, validation_fraction=0.0), ("text",), seed=0)


def test_infinite_features_are_refused(tmp_path):
    x = np.random.rand(40, 3)
    x[7, 1] = np.inf
    np.savez(tmp_path / "inf.npz", x=x, y=np.arange(40) % 2)
    with pytest.raises(DataError, match=r"inf.npz: features contain infinite values \(first at example 7\)"):
        load_npz(str(tmp_path / "inf.npz"), "features")


def test_unreadable_npz_members_are_named(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=np.arange(20) % 2)
    with pytest.raises(DataError, match=r"objects.npz: array 'x' cannot be read without pickle"):
        load_npz(str(tmp_path / "objects.npz"), "features")
    np.savez(tmp_path / "onehot.npz", x=np.random.rand(20, 3), y=np.eye(2)[np.arange(20) % 2])
    with pytest.raises(DataError, match=r"onehot.npz: y must hold one label per example \(shape \[N\]\), got shape \(20, 2\)"):
        load_npz(str(tmp_path / "onehot.npz"), "features")
