"""Image folders (`root/<class>/*.jpg|png`), streamed from disk with tf.data.

Only JPEG and PNG files are read (recognised by their first bytes, not their names).
Every other file, and every JPEG/PNG that does not decode, is a *bad file*. By default
bad files are skipped, counted and named in one warning before training starts; with
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

import numpy as np

from kerasdl.data.source import DataError, DataSplits, Split, stratified_split

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"


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

    Only file names are held in memory; images are decoded in the tf.data pipeline.

    Args:
        root: the folder.
        image_size: `[height, width]` every image is resized to; None takes the first
            image's size (fine for uniformly-sized sets such as CIFAR-10 JPEGs).
        channels: 1 or 3; None takes the first image's channel count (grey stays grey).
        validation_fraction, test_fraction, seed: the split of a single pool.
        on_bad_file: "skip" (warn with a count) or "fail".
        max_examples: cap per split (after a seeded shuffle), for quick runs.

    Example:
    >>> splits = load_image_folder("../shared/data/cifar10-test-jpg", max_examples=200)
    >>> splits.input_shape
    (32, 32, 3)
    """
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder; pass a folder laid out as root/<class>/*.jpg")
    if on_bad_file not in ("skip", "fail"):
        raise DataError(f"data.on_bad_file must be 'skip' or 'fail', got {on_bad_file!r}")
    subfolders = {name.lower(): name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))}
    validation_name = subfolders.get("val") or subfolders.get("validation")
    if "train" in subfolders and validation_name:
        train_files, train_labels, class_names = _index(os.path.join(root, subfolders["train"]), None, on_bad_file)
        held_files, held_labels, _ = _index(os.path.join(root, validation_name), class_names, on_bad_file)
        train, validation, _ = stratified_split(train_labels, validation_fraction, 0.0, seed)
        parts = {
            "train": (train_files[train], train_labels[train]),
            "validation": (train_files[validation], train_labels[validation]),
        }
        if "test" in subfolders:
            test_files, test_labels, _ = _index(os.path.join(root, subfolders["test"]), class_names, on_bad_file)
            parts["validation"] = (held_files, held_labels)
            parts["train"] = (train_files, train_labels)
            parts["test"] = (test_files, test_labels)
        else:
            parts["test"] = (held_files, held_labels)
    else:
        files, labels, class_names = _index(root, None, on_bad_file)
        train, validation, test = stratified_split(labels, validation_fraction, test_fraction, seed)
        parts = {name: (files[index], labels[index]) for name, index in zip(("train", "validation", "test"), (train, validation, test))}

    if max_examples:
        rng = np.random.default_rng(seed)
        for name, (files, labels) in parts.items():
            if len(files) > max_examples:
                keep = np.sort(rng.permutation(len(files))[:max_examples])
                parts[name] = (files[keep], labels[keep])

    first = parts["train"][0][0]
    native_height, native_width, native_channels = _peek(first)
    height, width = image_size if image_size else (native_height, native_width)
    channels = channels or native_channels
    if channels not in (1, 3):
        raise DataError(f"data.channels must be 1 or 3, got {channels}")
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
    """Reads and decodes one JPEG/PNG file into float32 pixels 0-255 of `image_size`."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image = tf.image.resize(image, image_size, method="bilinear")
    image.set_shape((image_size[0], image_size[1], channels))
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


def _index(folder, class_names, on_bad_file):
    """Lists `folder/<class>/*`, checks every file, and returns paths, labels and class names."""
    found = sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)) and not name.startswith("."))
    if class_names is None:
        class_names = found
        if not class_names:
            raise DataError(f"{folder}: no class folders found; lay images out as {folder}/<class>/<image>.jpg")
        if len(class_names) < 2:
            raise DataError(f"{folder}: only one class folder ({class_names[0]!r}); a classifier needs at least two")
    elif sorted(found) != sorted(class_names):
        raise DataError(f"{folder}: class folders {found} differ from the training classes {class_names}")
    paths, labels, bad = [], [], []
    for label, name in enumerate(class_names):
        class_folder = os.path.join(folder, name)
        files = sorted(entry for entry in os.listdir(class_folder) if not entry.startswith("."))
        good = 0
        for entry in files:
            path = os.path.join(class_folder, entry)
            problem = _check_file(path)
            if problem:
                if on_bad_file == "fail":
                    raise DataError(f"{path}: {problem}; remove it, or set data.on_bad_file=skip to skip such files")
                bad.append(f"{path} ({problem})")
                continue
            paths.append(path)
            labels.append(label)
            good += 1
        if good == 0:
            raise DataError(f"{class_folder}: no readable JPEG/PNG images in this class folder; add images or remove the folder")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        print(f"warning: skipped {len(bad)} bad file(s) in {folder}: {shown}")
    return np.asarray(paths), np.asarray(labels, dtype=np.int64), list(class_names)


def _check_file(path):
    """Returns None for a decodable JPEG/PNG, else why the file is bad.

    Pillow's `verify()` walks the whole file without keeping the pixels, so a truncated
    or corrupt image is caught here, before training, rather than mid-epoch.
    """
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        return f"unreadable: {error.strerror}"
    if not (head.startswith(_JPEG) or head.startswith(_PNG)):
        return "not a JPEG or PNG image"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # Pillow raises many types for corrupt files.
        return f"corrupt image: {error}"
    return None


def _peek(path):
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        channels = 1 if image.mode in ("L", "I", "I;16", "1") else 3
    return height, width, channels
