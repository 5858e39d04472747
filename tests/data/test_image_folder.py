import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasdl.data.image_folder import load_image_folder
from kerasdl.data.source import DataError


def make_folder(root, classes=("cats", "dogs"), per_class=6, size=(12, 10)):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.{'png' if index % 2 else 'jpg'}")
    return root


def test_folder_is_streamed_from_file_names(tmp_path):
    splits = load_image_folder(make_folder(tmp_path / "images"), validation_fraction=0.2, test_fraction=0.2)
    assert splits.class_names == ["cats", "dogs"] and splits.input_shape == (10, 12, 3)
    # The dataset holds paths (strings), not pixels: decoding happens in the pipeline.
    assert splits.train.dataset.element_spec[0].dtype == tf.string
    assert splits.train.in_memory is False and splits.train.decode is not None
    image, label = splits.train.decode(*next(iter(splits.train.dataset)))
    assert image.shape == (10, 12, 3) and image.dtype == tf.float32 and float(tf.reduce_max(image)) <= 255.0
    assert splits.train.size + splits.validation.size + splits.test.size == 12


def test_bad_files_are_skipped_with_a_count_or_fail_with_the_path(tmp_path, capsys):
    root = make_folder(tmp_path / "images")
    (root / "cats" / "notes.txt").write_text("not an image")
    good = (root / "dogs" / "0.jpg").read_bytes()
    (root / "dogs" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    splits = load_image_folder(root, validation_fraction=0.2, test_fraction=0.2)
    assert splits.train.size + splits.validation.size + splits.test.size == 12
    out = capsys.readouterr().out
    assert "skipped 2 bad file(s)" in out and "notes.txt (not a JPEG or PNG image)" in out and "truncated.jpg (corrupt image" in out
    with pytest.raises(DataError, match=r"notes.txt: not a JPEG or PNG image; remove it, or set data.on_bad_file=skip"):
        load_image_folder(root, on_bad_file="fail")


def test_empty_folder_and_single_class_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders found"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(DataError, match=r"only one class folder \('cats'\)"):
        load_image_folder(make_folder(tmp_path / "one", classes=("cats",)))
    root = make_folder(tmp_path / "hollow")
    (root / "birds").mkdir()
    with pytest.raises(DataError, match="birds: no readable JPEG/PNG images"):
        load_image_folder(root)


def test_official_train_val_layout_uses_val_as_test(shared_data):
    splits = load_image_folder(shared_data / "hymenoptera", image_size=[32, 32], validation_fraction=0.1)
    # 245 training files less the placeholder GIF; the official val folder is the test split.
    assert splits.train.size + splits.validation.size == 244
    assert splits.test.size == 153 and splits.class_names == ["ants", "bees"]
