"""Image folders (`root/<class>/*.jpg|png`), streamed from disk with tf.data.

Only JPEG and PNG files are read (recognised by their first bytes, not their names).
Every other file, and every JPEG/PNG that does not decode, is a *bad file*. Before
training, every file the splits use is decoded in full with the pipeline's own
`decode_image` (same decoder, channels and size), in one parallel tf.data pass, so any
corruption (a JPEG cut short after a valid header, which Pillow's `verify()` passes, a
truncated PNG, a CMYK JPEG read as grey) is found then and not mid-epoch. By default bad
files are skipped, counted and named in one warning before training starts; with
`on_bad_file="fail"` the first one stops the run with its path. Skipping is the default
because real folders carry strays: `hymenoptera/train/ants/imageNotFound.gif` is a
placeholder GIF, not a photo.

Layouts:
    root/<class>/*            one pool, split into train/validation/test (stratified, seeded);
    root/train/<class>/*  +  root/val|validation/<class>/*  [+ root/test/<class>/*]
                              official splits; with no test/, the official validation
                              folder is the test split and validation is carved from train.
"""

import os
import re

import numpy as np

from kerasdl.data.image_sizes import check_one_size, native_shape
from kerasdl.data.source import DataError, DataSplits, Split, stratified_split

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
# Files decoded per tf.data pass of the pre-check; with on_bad_file="fail" it stops after
# the first chunk that holds a bad file.
_CHECK_CHUNK = 4096


def load_image_folder(
    root,
    image_size=None,
    channels=None,
    validation_fraction=0.1,
    test_fraction=0.1,
    seed=42,
    on_bad_file="skip",
    max_examples=None,
):
    """Indexes an image folder and returns streamed splits of raw pixels (float32, 0-255).

    Only file names are held in memory; images are decoded in the tf.data pipeline, after
    a pre-check that decodes each used file once (see the module docstring).

    Args:
        root: the folder.
        image_size: `[height, width]` every image is resized to; None keeps the images'
            own size when the training images share one (CIFAR-10 JPEGs) and raises
            `DataError` when they differ.
        channels: 1 or 3; None takes the first image's channel count (grey stays grey).
        validation_fraction, test_fraction, seed: the split of a single pool.
        on_bad_file: "skip" (warn with a count) or "fail".
        max_examples: cap per split (after a seeded shuffle), for quick runs; only the
            kept files are decoded by the pre-check.

    Raises:
        DataError: no classes, a class without usable images, classes too small to
            split, or (with on_bad_file="fail") the first bad file.

    Example:
    >>> splits = load_image_folder("../shared/data/cifar10-test-jpg", max_examples=200)
    >>> splits.input_shape
    (32, 32, 3)
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder; pass a folder laid out as root/<class>/*.jpg")
    if on_bad_file not in ("skip", "fail"):
        raise DataError(f"data.on_bad_file must be 'skip' or 'fail', got {on_bad_file!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"data.channels must be 1 or 3, got {channels}")
    subfolders = {name.lower(): name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))}
    validation_name = subfolders.get("val") or subfolders.get("validation")
    bad = []
    if "train" in subfolders and validation_name:
        train_folder = os.path.join(root, subfolders["train"])
        train_files, train_labels, class_names = _index(train_folder, None, on_bad_file, bad)
        held_files, held_labels, _ = _index(os.path.join(root, validation_name), class_names, on_bad_file, bad)
        if "test" in subfolders:
            test_files, test_labels, _ = _index(os.path.join(root, subfolders["test"]), class_names, on_bad_file, bad)
            parts = {"train": (train_files, train_labels), "validation": (held_files, held_labels), "test": (test_files, test_labels)}
        else:
            train, validation, _ = stratified_split(train_labels, validation_fraction, 0.0, seed, class_names, train_folder)
            parts = {
                "train": (train_files[train], train_labels[train]),
                "validation": (train_files[validation], train_labels[validation]),
                "test": (held_files, held_labels),
            }
    else:
        files, labels, class_names = _index(root, None, on_bad_file, bad)
        train, validation, test = stratified_split(labels, validation_fraction, test_fraction, seed, class_names, root)
        parts = {name: (files[index], labels[index]) for name, index in zip(("train", "validation", "test"), (train, validation, test))}

    if max_examples:
        rng = np.random.default_rng(seed)
        for name, (files, labels) in parts.items():
            if len(files) > max_examples:
                keep = np.sort(rng.permutation(len(files))[:max_examples])
                parts[name] = (files[keep], labels[keep])

    native_height, native_width, native_channels = native_shape(parts["train"][0], root)
    if not image_size:
        check_one_size(np.concatenate([part_files for part_files, _ in parts.values()]), (native_height, native_width), root)
    height, width = image_size if image_size else (native_height, native_width)
    channels = channels or native_channels
    parts = _drop_undecodable(parts, (int(height), int(width)), channels, on_bad_file, bad, root)
    _check_classes_remain(parts, class_names, root)
    if bad:
        bad.sort()
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        print(f"warning: skipped {len(bad)} bad file(s) in {root}: {shown}")
    splits = {name: _streamed(files, labels, (height, width), channels) for name, (files, labels) in parts.items()}
    total = sum(split.size for split in splits.values())
    return DataSplits(
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        class_names=class_names,
        modality="image",
        input_shape=(int(height), int(width), int(channels)),
        description=f"image folder {root}: {total} images in {len(class_names)} classes, resized to {height}x{width}x{channels}",
    )


def decode_image(path, image_size, channels):
    """Reads and decodes one JPEG/PNG file into float32 pixels 0-255 of `image_size`.

    The resize to `image_size` is what lets the pipeline batch photos of many
    sizes; it is the bilinear, half-pixel `tf.image.resize` that the image
    models' own `Resizing` layer applies, so a model that gets the raw photo
    instead (every served path) computes the same pixels inside.
    """
    import tensorflow as tf

    image = decode_image_bytes(tf.io.read_file(path), channels)
    image = tf.image.resize(image, image_size, method="bilinear")
    image.set_shape((image_size[0], image_size[1], channels))
    return image


def decode_image_bytes(encoded, channels):
    """Decodes JPEG/PNG (BMP/GIF: first frame) bytes into uint8 `[H, W, channels]` in TensorFlow.

    The one TensorFlow image decoder of kerasdl (the training pipeline and the
    SavedModel's `image_bytes` signature): JPEG with libjpeg's accurate integer
    DCT, which Pillow also uses, so the TensorFlow-free paths
    (`kerasdl.runtime.images.decode_image`) see the same pixels; TensorFlow's
    default (fast) DCT differs from them by up to 20 levels.

    Example:
    >>> decode_image_bytes(tf.io.read_file("photo.jpg"), 3).shape
    TensorShape([375, 500, 3])
    """
    import tensorflow as tf

    def jpeg():
        return tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(encoded, channels=channels, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, channels])
    return image


def _streamed(files, labels, image_size, channels):
    import tensorflow as tf

    # The dataset holds only paths; the pipeline shuffles them (cheap) and then decodes
    # in parallel with `split.decode`, so images are never all in memory.
    dataset = tf.data.Dataset.from_tensor_slices((files, labels.astype(np.int64)))
    image_size = [int(image_size[0]), int(image_size[1])]
    split = Split(dataset, len(files), in_memory=False)
    split.decode = lambda path, label: (decode_image(path, image_size, channels), label)
    # Decoded float32 bytes; the pipeline caches only when this fits under data.cache_limit_mb.
    split.decoded_bytes = len(files) * image_size[0] * image_size[1] * channels * 4
    return split


def _index(folder, class_names, on_bad_file, bad):
    """Lists `folder/<class>/*`, checks each file's first bytes, and returns paths, labels and class names.

    Files that are not JPEG/PNG are appended to `bad` (or fail the run).
    """
    found = sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)) and not name.startswith("."))
    if class_names is None:
        class_names = found
        if not class_names:
            raise DataError(f"{folder}: no class folders found; lay images out as {folder}/<class>/<image>.jpg")
        if len(class_names) < 2:
            raise DataError(f"{folder}: only one class folder ({class_names[0]!r}); a classifier needs at least two")
    elif sorted(found) != sorted(class_names):
        raise DataError(f"{folder}: class folders {found} differ from the training classes {class_names}")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_folder = os.path.join(folder, name)
        files = sorted(entry for entry in os.listdir(class_folder) if not entry.startswith("."))
        good = 0
        for entry in files:
            path = os.path.join(class_folder, entry)
            problem = _check_header(path)
            if problem:
                _bad_file(path, problem, on_bad_file, bad)
                continue
            paths.append(path)
            labels.append(label)
            good += 1
        if good == 0:
            raise DataError(f"{class_folder}: no readable JPEG/PNG images in this class folder; add images or remove the folder")
    return np.asarray(paths), np.asarray(labels, dtype=np.int64), list(class_names)


def _bad_file(path, problem, on_bad_file, bad):
    if on_bad_file == "fail":
        raise DataError(f"{path}: {problem}; remove it, or set data.on_bad_file=skip to skip such files")
    bad.append(f"{path} ({problem})")


def _check_header(path):
    """Returns None when the file starts like a JPEG or PNG, else why it is bad (decoding comes later)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        return f"unreadable: {error.strerror}"
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(_JPEG) or head.startswith(_PNG):
        return None
    return "not a JPEG or PNG image"


def _drop_undecodable(parts, image_size, channels, on_bad_file, bad, root):
    """Decodes every file of `parts` as the pipeline will, and drops (or fails on) those that do not decode."""
    files = np.unique(np.concatenate([part_files for part_files, _ in parts.values()]))
    undecodable = set()
    for start in range(0, len(files), _CHECK_CHUNK):
        chunk = files[start : start + _CHECK_CHUNK]
        for index in _failing(chunk, image_size, channels):
            path = str(chunk[index])
            undecodable.add(path)
            _bad_file(path, f"corrupt image: {_decode_error(path, image_size, channels)}", on_bad_file, bad)
    if not undecodable:
        return parts
    kept = {}
    for name, (part_files, labels) in parts.items():
        keep = np.array([str(path) not in undecodable for path in part_files], dtype=bool)
        if len(part_files) and not keep.any():
            raise DataError(f"{root}: the {name} split has no decodable images left after skipping {len(bad)} bad file(s) ({bad[0]}); fix or replace them")
        kept[name] = (part_files[keep], labels[keep])
    return kept


def _failing(files, image_size, channels):
    """Indices of `files` that `decode_image` cannot decode: one parallel tf.data pass.

    Errors are dropped per element (`ignore_errors`) and the missing indices are the bad
    files. Each decoded image is reduced to a value that depends on its pixels, so the
    decode cannot be optimised away.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(files), dtype=np.int64), files))
    dataset = dataset.map(
        lambda index, path: (index, tf.reduce_max(decode_image(path, image_size, channels))),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    decoded = np.zeros(len(files), dtype=bool)
    for indices, _ in dataset.ignore_errors().batch(1024).as_numpy_iterator():
        decoded[indices] = True
    return np.flatnonzero(~decoded)


def _decode_error(path, image_size, channels):
    """TensorFlow's reason for a file that does not decode, on one line."""
    import tensorflow as tf

    try:
        decode_image(tf.constant(path), image_size, channels)
    except tf.errors.OpError as error:
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "", error.message)
        return " ".join(message.split())[:200] or type(error).__name__
    return "it did not decode in the pipeline"


def _check_classes_remain(parts, class_names, root):
    """Refuses a training split that skipping bad files left without some class."""
    present = set(parts["train"][1].tolist())
    missing = [class_names[label] for label in range(len(class_names)) if label not in present]
    if missing:
        raise DataError(f"{root}: no decodable training images of class {missing[0]!r} after skipping bad files; add images of it")
