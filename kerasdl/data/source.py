"""What every data source returns: raw, unbatched train/validation/test splits."""

import dataclasses
import math

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


def stratified_split(labels, validation_fraction, test_fraction, seed, class_names=None, source="the data"):
    """Returns sorted index arrays `(train, validation, test)`, stratified by label and seeded.

    scikit-learn's `train_test_split(stratify=labels, random_state=seed)` runs twice: the
    test split is carved from everything, then the validation split from the rest. Each
    carved split holds `round(fraction * len(labels))` examples. Before splitting,
    `check_split_sizes` refuses sets too small for the fractions (a `DataError` that says
    how many examples each class needs), so no split comes out empty. Where scikit-learn
    still cannot stratify (a class too rare for one stage), that stage is split at random
    (seeded) and a note says so.

    Args:
        labels: one class id (or label) per example.
        validation_fraction: share of all examples held out for validation (0 for none).
        test_fraction: share of all examples held out for test (0 for none).
        seed: the `random_state` of both stages.
        class_names: names of the class ids, for messages; None names them by value.
        source: what the labels come from (a file or folder), for messages.

    Raises:
        DataError: bad fractions, or a class with too few examples for them.

    Example:
    >>> train, validation, test = stratified_split([0, 1] * 50, 0.1, 0.1, seed=0)
    >>> len(train), len(validation), len(test)
    (80, 10, 10)
    """
    labels = np.asarray(labels)
    check_split_sizes(labels, validation_fraction, test_fraction, class_names, source)
    indices = np.arange(len(labels))
    count = len(labels)
    rest, test = _carve(indices, labels, int(round(test_fraction * count)), seed, source, "test")
    train, validation = _carve(rest, labels[rest], int(round(validation_fraction * count)), seed, source, "validation")
    return tuple(np.sort(np.asarray(part, dtype=np.int64)) for part in (train, validation, test))


def check_split_sizes(labels, validation_fraction, test_fraction, class_names=None, source="the data"):
    """Refuses, before any training, a split that would leave a class out of a split.

    Each class needs one example in every carved split (a share of `fraction`, so at least
    `ceil(1 / fraction)` examples) and one to train on.

    Raises:
        DataError: a fraction outside [0, 1), fractions that leave nothing to train on, or
            classes with too few examples; the message names them and the remedy.

    Example:
    >>> check_split_sizes([0] * 4 + [1] * 20, 0.1, 0.1, source="toy.csv")
    Traceback (most recent call last):
    DataError: toy.csv: too few examples to split: ... needs at least 10 examples ...
    """
    fractions = {"validation": validation_fraction, "test": test_fraction}
    for name, fraction in fractions.items():
        if not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
            raise DataError(f"data.{name}_fraction must be a number in [0, 1), got {fraction!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise DataError(
            f"data.validation_fraction ({validation_fraction}) + data.test_fraction ({test_fraction}) leave nothing "
            "to train on; keep their sum below 1 (e.g. 0.1 each)"
        )
    carved = {name: fraction for name, fraction in fractions.items() if fraction > 0}
    if not carved:
        return
    # One example for training plus one per carved split, and a share big enough to round to one.
    need = max(1 + len(carved), *(math.ceil(1.0 / fraction - 1e-9) for fraction in carved.values()))
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    short = [(value, int(number)) for value, number in zip(values, counts) if number < need]
    if not short:
        return
    named = lambda value: repr(class_names[int(value)]) if class_names is not None else repr(value.item())  # noqa: E731
    shown = ", ".join(f"{named(value)} ({number})" for value, number in short[:10])
    if len(short) > 10:
        shown += f" and {len(short) - 10} more"
    settings = " and ".join(f"data.{name}_fraction={fraction}" for name, fraction in carved.items())
    fewest = min(number for _, number in short)
    remedy = "add examples to those classes"
    if fewest >= 1 + len(carved):
        # The smallest fraction that still gives the rarest class one example per carved split.
        fraction = math.ceil(100.0 / fewest) / 100.0
        if fraction * len(carved) < 1.0:
            keys = "/".join(f"data.{name}_fraction" for name in carved)
            remedy += f", or raise {keys} to {fraction}"
    raise DataError(
        f"{source}: too few examples to split: with {settings} each class needs at least {need} examples "
        f"(one for each of {' and '.join(carved)}, the rest to train); too few in {shown}; {remedy}"
    )


def _carve(indices, labels, size, seed, source, name):
    """Splits `size` examples off `indices` (stratified by `labels`); returns `(rest, carved)`."""
    from sklearn.model_selection import train_test_split

    if size <= 0:
        return indices, indices[:0]
    try:
        rest, carved = train_test_split(indices, test_size=size, stratify=labels, random_state=seed)
    except ValueError as error:  # scikit-learn refuses classes too rare to stratify.
        print(f"note: {source}: the {name} split cannot be stratified ({error}); it is drawn at random (seed {seed})")
        rest, carved = train_test_split(indices, test_size=size, stratify=None, random_state=seed)
    return rest, carved


def splits_from_arrays(x, y, class_names, modality, description, validation_fraction, test_fraction, seed, source=None):
    """Checks `x`/`y`, splits them (stratified, seeded) and wraps them as `DataSplits`.

    `source` (a file name) heads error messages; None uses `description`.

    Raises:
        DataError: mismatched lengths, NaN or infinite features, fewer than two classes,
            or classes too small for the split fractions.
    """
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    y = np.asarray(y)
    source = source or description
    check_arrays(x, y, source=source)
    train, validation, test = stratified_split(y, validation_fraction, test_fraction, seed, class_names, source)
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
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        bad = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if np.isnan(x[bad]).any() else "infinite values"
        raise DataError(f"{source}: features contain {kind} (first at example {bad}); clean or impute them first")
    if len(np.unique(y)) < 2:
        raise DataError(f"{source}: only one class ({np.unique(y)[0]!r}) found; a classifier needs at least two")
