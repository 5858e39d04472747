"""What every data source returns: raw, unbatched train/validation/test splits."""

import dataclasses

import numpy as np


class DataError(ValueError):
    """Bad input data; the message names the file and the remedy (shown without a traceback)."""


@dataclasses.dataclass
class Split:
    """One split: a `tf.data.Dataset` of unbatched `(x, y)` raw examples.

    Attributes:
        dataset: yields `(x, y)`, x raw (pixels 0-255, features, zero-padded
            series, or a string), y an int class id.
        size: number of examples.
        in_memory: True when the examples already sit in memory, so `cache()`
            costs nothing new; False for streamed sources (image folders).
    """

    dataset: object
    size: int
    in_memory: bool = True
    # For streamed sources the dataset yields cheap references (file paths) and `decode`
    # turns one `(reference, y)` into `(x, y)`; the pipeline shuffles before decoding.
    decode: object = None
    # Estimated bytes of the decoded split, for the cache decision (None: in memory).
    decoded_bytes: object = None

    @classmethod
    def from_arrays(cls, x, y):
        import tensorflow as tf

        return cls(tf.data.Dataset.from_tensor_slices((x, np.asarray(y, dtype=np.int64))), len(y), True)


@dataclasses.dataclass
class DataSplits:
    """The three splits plus what the model and the export stage need to know.

    Attributes:
        train, validation, test: `Split`s.
        class_names: list of strings, index = class id.
        modality: "image" | "features" | "sequence" | "text".
        input_shape: shape of one raw example (None for a variable axis); `()` for text.
        description: one line saying what the data is (shown in the run output).
    """

    train: Split
    validation: Split
    test: Split
    class_names: list
    modality: str
    input_shape: tuple
    description: str
    # False for sets whose mirror image is another class (digits): flipping is then off.
    mirror_symmetric: bool = True


def stratified_split(labels, validation_fraction, test_fraction, seed):
    """Returns index arrays `(train, validation, test)`, stratified by label and seeded.

    Example:
    >>> train, validation, test = stratified_split([0, 1] * 50, 0.1, 0.1, seed=0)
    >>> len(train), len(validation), len(test)
    (80, 10, 10)
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, validation, test = [], [], []
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        rng.shuffle(indices)
        n_test = int(round(len(indices) * test_fraction))
        n_validation = int(round(len(indices) * validation_fraction))
        test.extend(indices[:n_test])
        validation.extend(indices[n_test : n_test + n_validation])
        train.extend(indices[n_test + n_validation :])
    return tuple(np.sort(np.asarray(part, dtype=np.int64)) for part in (train, validation, test))


def splits_from_arrays(x, y, class_names, modality, description, validation_fraction, test_fraction, seed):
    """Checks `x`/`y`, splits them (stratified, seeded) and wraps them as `DataSplits`.

    Raises:
        DataError: mismatched lengths, NaN features, or fewer than two classes.
    """
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    y = np.asarray(y)
    check_arrays(x, y, source=description)
    train, validation, test = stratified_split(y, validation_fraction, test_fraction, seed)
    parts = {"train": (x[train], y[train]), "validation": (x[validation], y[validation]), "test": (x[test], y[test])}
    return splits_from_parts(parts, class_names, modality, x.shape[1:], description)


def splits_from_parts(parts, class_names, modality, input_shape, description):
    """Wraps in-memory `{"train": (x, y), "validation": (x, y), "test": (x, y)}` as `DataSplits`."""
    return DataSplits(
        train=Split.from_arrays(*parts["train"]),
        validation=Split.from_arrays(*parts["validation"]),
        test=Split.from_arrays(*parts["test"]),
        class_names=list(class_names),
        modality=modality,
        input_shape=tuple(input_shape),
        description=description,
    )


def check_arrays(x, y, source):
    """Fails with a `DataError` naming `source` on the usual mistakes in array data."""
    if len(x) != len(y):
        raise DataError(f"{source}: x has {len(x)} examples but y has {len(y)}; they must be the same length")
    if len(y) == 0:
        raise DataError(f"{source}: no examples found")
    if x.dtype.kind == "f" and np.isnan(x).any():
        bad = int(np.argwhere(np.isnan(x.reshape(len(x), -1)).any(axis=1))[0][0])
        raise DataError(f"{source}: features contain NaN (first at example {bad}); clean or impute them first")
    if len(np.unique(y)) < 2:
        raise DataError(f"{source}: only one class ({np.unique(y)[0]!r}) found; a classifier needs at least two")
