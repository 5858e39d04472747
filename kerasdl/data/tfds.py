"""TensorFlow Datasets by name: `tfds:cifar10`, `tfds:mnist`, `tfds:imdb_reviews`, `tfds:glue/sst2`."""

import math
import socket

import numpy as np

from kerasdl.data.source import DataError, DataSplits, Split

# TFDS serves prepared copies of its datasets from this host (and most raw files too);
# probing it first turns an offline run's three-minute retry loop into a one-line error.
_TFDS_HOST = ("storage.googleapis.com", 443)

# Text and label feature names for text sets that have no supervised keys.
_TEXT_KEYS = ("text", "sentence", "review", "content")


def load_tfds(name, modality, data_dir=None, validation_fraction=0.1, seed=42, image_size=None, channels=None, max_examples=None):
    """Loads a TFDS dataset, downloading and preparing it once into `data_dir`.

    The official train split is split again into train and validation (seeded); the
    official test split (or validation, when there is no test) is the test split.

    Args:
        name: the TFDS name, e.g. "cifar10" or "glue/sst2".
        modality: "image" or "text" (what the model takes).
        data_dir: where TFDS keeps its files; None is TFDS's default.
        validation_fraction: share of the official train split held out for validation.
        seed: the seed of that hold-out.
        image_size: `[height, width]` to resize images to; None keeps the native size.
        channels: 3 to repeat grey images into RGB; None keeps them.
        max_examples: cap per split, for quick runs.

    Example:
    >>> splits = load_tfds("mnist", "image", data_dir="~/tensorflow_datasets")
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # TFDS raises DatasetNotFoundError and friends.
        raise DataError(f"tfds:{name}: unknown TFDS dataset ({str(error).splitlines()[0]}); see `tfds.list_builders()`") from None
    if not builder.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        if not _reachable(_TFDS_HOST):
            raise DataError(
                f"tfds:{name} is not in {where} and cannot be downloaded (no network): on a connected machine run "
                f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='DIR').download_and_prepare()\"`, "
                f"copy DIR here and pass --data-dir DIR"
            )
        try:
            builder.download_and_prepare()
        except Exception as error:
            raise DataError(f"tfds:{name}: download failed ({str(error).splitlines()[0][:200]}); check the network or pass --data-dir with a prepared copy") from None

    splits = builder.info.splits
    # GLUE's test splits are unlabelled (label -1), so their validation split is the test.
    test_name = "test" if "test" in splits and not name.startswith("glue/") else "validation"
    label_key = "label"
    features = builder.info.features
    if label_key not in features:
        raise DataError(f"tfds:{name}: no 'label' feature (features: {list(features)}); it is not a classification set")
    class_names = list(features[label_key].names)
    if modality == "text":
        text_key = next((key for key in _TEXT_KEYS if key in features), None)
        if text_key is None:
            raise DataError(f"tfds:{name}: no text feature among {list(features)}")
        take = lambda example: (example[text_key], tf.cast(example[label_key], tf.int64))  # noqa: E731
        input_shape = ()
    else:
        image_key = "image" if "image" in features else None
        if image_key is None:
            raise DataError(f"tfds:{name}: no 'image' feature (features: {list(features)}); use an image dataset for this model")
        native = features[image_key].shape
        height, width = image_size or native[:2]
        if height is None or width is None:
            raise DataError(f"tfds:{name}: images vary in size; set data.image_size, e.g. --set data.image_size=[224,224]")
        out_channels = channels or native[2]

        def take(example):
            image = tf.cast(example[image_key], tf.float32)
            if image_size:
                image = tf.image.resize(image, [height, width])
            if out_channels == 3 and native[2] == 1:
                image = tf.image.grayscale_to_rgb(image)
            return image, tf.cast(example[label_key], tf.int64)

        input_shape = (int(height), int(width), int(out_channels))

    held = holdout_mask(splits["train"].num_examples, validation_fraction, seed, f"tfds:{name}")
    if splits[test_name].num_examples == 0:
        raise DataError(f"tfds:{name}: its {test_name} split is empty; choose a dataset with a labelled test or validation split")
    held_table = tf.constant(held)

    def pick(keep_held):
        dataset = builder.as_dataset(split="train", shuffle_files=False)
        dataset = dataset.enumerate().filter(lambda index, _: tf.gather(held_table, index) == keep_held)
        return dataset.map(lambda _, example: take(example), num_parallel_calls=tf.data.AUTOTUNE)

    def cap(dataset, size):
        if max_examples and size > max_examples:
            return dataset.take(max_examples), max_examples
        return dataset, size

    train, train_size = cap(pick(False), int((~held).sum()))
    validation, validation_size = cap(pick(True), int(held.sum()))
    test, test_size = cap(
        builder.as_dataset(split=test_name, shuffle_files=False).map(take, num_parallel_calls=tf.data.AUTOTUNE),
        splits[test_name].num_examples,
    )
    in_memory = modality == "text" or train_size * int(np.prod(input_shape or (1,))) * 4 < 2**30
    return DataSplits(
        train=Split(train, train_size, in_memory),
        validation=Split(validation, validation_size, in_memory),
        test=Split(test, test_size, in_memory),
        class_names=class_names,
        modality=modality,
        input_shape=input_shape,
        description=f"TFDS {name}: {train_size} train, {validation_size} validation, {test_size} test ({test_name} split)",
    )


def holdout_mask(train_total, validation_fraction, seed, source):
    """Marks the examples of the official train split held out for validation (seeded).

    The labels are not read (that would be a pass over the whole set), so the hold-out is
    a seeded random sample, not a stratified one; its size is checked here, before training.

    Raises:
        DataError: a fraction outside [0, 1), or a train split too small to leave examples
            on both sides.

    Example:
    >>> holdout_mask(10, 0.2, seed=0, source="tfds:mnist").sum()
    2
    """
    if not isinstance(validation_fraction, (int, float)) or not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"data.validation_fraction must be a number in [0, 1), got {validation_fraction!r}")
    count = int(round(train_total * validation_fraction))
    if validation_fraction > 0 and not 0 < count < train_total:
        raise DataError(
            f"{source}: {train_total} training examples are too few to hold out data.validation_fraction="
            f"{validation_fraction} for validation (it would leave {count} validation and {train_total - count} train); "
            f"the train split needs at least {math.ceil(1.0 / validation_fraction - 1e-9)} examples, or raise data.validation_fraction"
        )
    held = np.zeros(train_total, dtype=bool)
    held[np.random.default_rng(seed).permutation(train_total)[:count]] = True
    return held


def _reachable(address, timeout_seconds=3.0):
    try:
        with socket.create_connection(address, timeout=timeout_seconds):
            return True
    except OSError:
        return False
