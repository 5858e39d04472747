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


def _corrupt_files(folder):
    """Writes one file of each kind of damage a real folder holds; returns the names that must be skipped."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "whole.jpg")
    whole = (folder / "whole.jpg").read_bytes()
    # Cut short after a valid header: Pillow's verify() passes it (asserted below).
    (folder / "cut_short.jpg").write_bytes(whole[:-40])
    Image.fromarray(pixels).save(folder / "whole.png")
    png = (folder / "whole.png").read_bytes()
    (folder / "cut_short.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    Image.fromarray(pixels).save(folder / "renamed_gif.jpg", format="GIF")
    Image.fromarray(pixels).save(folder / "renamed_bmp.jpg", format="BMP")
    return {"cut_short.jpg", "cut_short.png", "empty.jpg", "garbage.jpg", "renamed_gif.jpg", "renamed_bmp.jpg"}


def _readable_modes(folder):
    """Files in unusual but valid modes, which must all load: CMYK JPEG, 16-bit PNG, alpha, palette."""
    pixels = np.random.default_rng(2).integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(folder / "grey16.png")
    Image.fromarray(np.dstack([pixels, pixels[..., :1]])).save(folder / "alpha.png")
    Image.fromarray(pixels).convert("P").save(folder / "palette.png")
    return {"cmyk.jpg", "grey16.png", "alpha.png", "palette.png"}


def _all_files(splits):
    return sorted(path.decode().rsplit("/", 1)[1] for split in (splits.train, splits.validation, splits.test) for path, _ in split.dataset.as_numpy_iterator())


def test_any_corruption_is_skipped_and_named_before_training(tmp_path, capsys):
    from PIL import Image as PillowImage

    root = make_folder(tmp_path / "images", per_class=10)
    skipped = _corrupt_files(root / "cats")
    readable = _readable_modes(root / "dogs")
    with PillowImage.open(root / "cats" / "cut_short.jpg") as image:
        image.verify()  # The old pre-check's test: it does not see the damage.
    splits = load_image_folder(root, validation_fraction=0.2, test_fraction=0.2)
    out = capsys.readouterr().out
    assert f"warning: skipped {len(skipped)} bad file(s) in {root}: " in out and out.count("\n") == 1
    # The first five by path, then a count.
    for name in ("cut_short.jpg", "cut_short.png", "empty.jpg", "garbage.jpg", "renamed_bmp.jpg"):
        assert f"cats/{name} (" in out
    assert out.rstrip().endswith("; and 1 more")
    assert "empty.jpg (an empty file (0 bytes))" in out and "renamed_bmp.jpg (not a JPEG or PNG image)" in out
    assert "cut_short.jpg (corrupt image: " in out and "garbage.jpg (corrupt image: " in out
    kept = _all_files(splits)
    assert not skipped & set(kept) and readable <= set(kept) and len(kept) == 20 + 2 + len(readable)
    # The promise: every kept file decodes in the training pipeline.
    for split in (splits.train, splits.validation, splits.test):
        for path, label in split.dataset.as_numpy_iterator():
            image, _ = split.decode(path, label)
            assert image.shape == (10, 12, 3)


def test_cmyk_jpeg_is_bad_for_grey_decoding_only(tmp_path, capsys):
    # The pre-check decodes with the pipeline's channels: TensorFlow cannot turn CMYK into grey.
    root = make_folder(tmp_path / "images", per_class=10)
    _readable_modes(root / "dogs")
    grey = load_image_folder(root, channels=1, validation_fraction=0.2, test_fraction=0.2)
    assert "dogs/cmyk.jpg (corrupt image: " in capsys.readouterr().out
    assert "cmyk.jpg" not in _all_files(grey) and grey.input_shape == (10, 12, 1)


def test_fail_mode_stops_at_a_bad_file_that_only_decoding_finds(tmp_path):
    root = make_folder(tmp_path / "images", per_class=10)
    whole = (root / "dogs" / "0.jpg").read_bytes()
    (root / "dogs" / "cut_short.jpg").write_bytes(whole[:-40])
    with pytest.raises(DataError, match=r"dogs/cut_short.jpg: corrupt image: .*; remove it, or set data.on_bad_file=skip"):
        load_image_folder(root, on_bad_file="fail", validation_fraction=0.2, test_fraction=0.2)


def test_first_image_bad_does_not_stop_the_size_probe(tmp_path, capsys):
    # Official splits keep every train file in train, so the damaged file is the first one probed.
    for split in ("train", "val", "test"):
        make_folder(tmp_path / "images" / split, per_class=3)
    whole = (tmp_path / "images" / "train" / "cats" / "0.jpg").read_bytes()
    (tmp_path / "images" / "train" / "cats" / "00_cut_short.jpg").write_bytes(whole[:-40])
    splits = load_image_folder(tmp_path / "images")
    assert splits.input_shape == (10, 12, 3) and splits.train.size == 6
    assert "00_cut_short.jpg (corrupt image" in capsys.readouterr().out


def test_mixed_sizes_without_an_image_size_ask_for_one(tmp_path, shared_data):
    # Without a size every image took the first one's: hymenoptera's 768x512 gave the CNN 805M parameters.
    with pytest.raises(DataError) as raised:
        load_image_folder(shared_data / "hymenoptera")
    message = str(raised.value)
    assert "the images differ in size (" in message and "--set data.image_size=[128,128]" in message
    assert "\n" not in message
    # One odd size among uniform images is found too; a size set by the user resizes them all.
    folder = make_folder(tmp_path / "images", per_class=10)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "dogs" / "odd.png")
    with pytest.raises(DataError, match=r"differ in size \(12x10, 30x20\)"):
        load_image_folder(folder, validation_fraction=0.1, test_fraction=0.1)
    splits = load_image_folder(folder, image_size=[8, 8], validation_fraction=0.1, test_fraction=0.1)
    assert splits.input_shape == (8, 8, 3) and splits.train.size + splits.validation.size + splits.test.size == 21
