"""The UCR time-series archive loader: `<Name>_TRAIN` / `<Name>_TEST` files, or one table."""

import io
import os
import re

import numpy as np

from kerasdl.data.source import DataError, check_arrays, splits_from_parts, stratified_split
from kerasdl.data.textfile import EXTENSION_DELIMITERS, first_line, read_text

# UCR files: `.txt` (the 2015 archive, whitespace) or `.tsv` (2018, tabs); `.csv` by courtesy.
EXTENSIONS = (".txt", ".tsv", ".csv", "")
_SEPARATORS = re.compile(r"[,\s]+")
_DELIMITER_NAMES = {"\t": "tabs", ",": "commas", None: "whitespace"}


def load_ucr(path, validation_fraction=0.2, seed=0, test_fraction=0.2, encoding=None):
    """Loads a UCR-format series classification set as zero-padded `[N, T, 1]` float32 splits.

    Each line is one series: the class label first, then the values, separated
    by tabs (`.tsv`), commas (`.csv`), or, in other files (UCR's `.txt`), by
    whitespace or by the tab or comma the first line holds; an empty field is a
    missing value. The encoding is detected (see `kerasdl.data.textfile`). `path` is either a dataset prefix
    (`.../GunPoint`) or one of its `_TRAIN`/`_TEST` files, and then the official
    test file is the test split; or any other single file, which is then split
    into train/validation/test (stratified, seeded). The validation split is
    always carved from the training series (stratified, seeded).

    Series shorter than the longest (including those that UCR variable-length
    sets pad with trailing NaN) are padded with 0.0 after their end, which the
    sequence models mask; note that a series whose own last values are exactly
    0.0 loses them to the mask too. Numeric labels are written compactly
    ("2.0000000e+00" becomes "2"); class ids follow the sorted labels
    (numerically when all are numbers) and the class names are the labels.

    Args:
        path: dataset prefix, a `_TRAIN`/`_TEST` file, or a single labelled file.
        validation_fraction: share of the training series held out for validation.
        seed: seed of the splits.
        test_fraction: share held out for test when `path` is a single file.
        encoding: the files' encoding; None detects it.

    Returns:
        `DataSplits` with modality "sequence" and input_shape `(T, 1)`
        (`(None, 1)` when the series lengths vary).

    Example:
    >>> splits = load_ucr("../shared/data/ucr/GunPoint")
    >>> splits.input_shape, splits.class_names
    ((150, 1), ['1', '2'])
    """
    path = os.fspath(path)
    train_file, test_file = _find_files(path)
    if test_file is None:
        labels, series = _read(train_file, encoding)
        x, lengths = _pad(series)
        y, class_names = _class_ids(labels, train_file)
        check_arrays(x, y, source=train_file)
        train, validation, test = stratified_split(y, validation_fraction, test_fraction, seed, class_names, train_file)
        parts = {"train": (x[train], y[train]), "validation": (x[validation], y[validation]), "test": (x[test], y[test])}
        origin = train_file
    else:
        train_labels, train_series = _read(train_file, encoding)
        test_labels, test_series = _read(test_file, encoding)
        x, lengths = _pad(train_series + test_series)
        y, class_names = _class_ids(train_labels + test_labels, train_file)
        unseen = sorted(set(test_labels) - set(train_labels), key=str)
        if unseen:
            raise DataError(f"{test_file}: labels {unseen} do not occur in {os.path.basename(train_file)}; check the files")
        x_train, y_train = x[: len(train_labels)], y[: len(train_labels)]
        check_arrays(x_train, y_train, source=train_file)
        check_arrays(x[len(train_labels) :], y[len(train_labels) :], source=test_file)
        train, validation, _ = stratified_split(y_train, validation_fraction, 0.0, seed, class_names, train_file)
        parts = {
            "train": (x_train[train], y_train[train]),
            "validation": (x_train[validation], y_train[validation]),
            "test": (x[len(train_labels) :], y[len(train_labels) :]),
        }
        origin = re.sub(r"_TRAIN(\.[A-Za-z]+)?$", "", train_file)
    variable = len(set(lengths)) > 1
    steps = x.shape[1]
    name = os.path.basename(origin)
    description = (
        f"UCR {name}: {len(parts['train'][1])} train / {len(parts['validation'][1])} validation / "
        f"{len(parts['test'][1])} test series, "
        + (f"lengths {min(lengths)}-{steps} zero-padded" if variable else f"length {steps}")
        + f", {len(class_names)} classes ({origin})"
    )
    return splits_from_parts(parts, class_names, "sequence", (None if variable else steps, 1), description)


def _find_files(path):
    """Returns `(train_file, test_file)`; `test_file` is None for a single table."""
    match = re.match(r"^(.*)_(TRAIN|TEST)(\.[A-Za-z]+)?$", path)
    prefix = match.group(1) if match else path
    if match or not os.path.isfile(path):
        pairs = [(f"{prefix}_TRAIN{extension}", f"{prefix}_TEST{extension}") for extension in EXTENSIONS]
        for train_file, test_file in pairs:
            if os.path.isfile(train_file) and os.path.isfile(test_file):
                return train_file, test_file
        if os.path.isfile(path):
            return path, None  # a lone _TRAIN file: split it like any single table
        raise DataError(
            f"{path}: no such file, and no {os.path.basename(prefix)}_TRAIN.txt/_TEST.txt (or .tsv) beside it; "
            "pass a UCR dataset prefix such as data/ucr/GunPoint or a labelled series file"
        )
    return path, None


# A UCR archive file by its name: `<Name>_TRAIN` or `<Name>_TEST`, with or without an extension.
UCR_FILE_NAME = re.compile(r"^.+_(TRAIN|TEST)(\.[A-Za-z]+)?$")


def read_ucr_file(path, encoding=None):
    """Reads one UCR-layout file (class label first, then the values) as `(labels, series)`.

    The loader's own parser, for other readers of labelled series (`export.predict`):
    labels are written compactly ("-1.0000000e+00" becomes "-1", as class names are),
    series are 1-D float32 arrays with UCR's trailing NaN padding dropped.

    Example:
    >>> labels, series = read_ucr_file("../shared/data/ucr/ECG200_TEST.txt")
    >>> labels[0], series[0].shape
    ('1', (96,))
    """
    return _read(os.fspath(path), encoding)


def _read(path, encoding=None):
    """Returns `(labels, series)`: label strings and 1-D float32 arrays, trailing NaN dropped."""
    text, _ = read_text(path, encoding)
    delimiter = series_delimiter(path, text)
    labels, series = [], []
    for line_number, line in enumerate(io.StringIO(text, newline=""), start=1):
        fields = split_series_line(line, delimiter)
        if not fields:
            continue
        try:
            # An empty field between two delimiters is a missing value.
            values = np.array([float(field) if field else np.nan for field in fields[1:]], dtype="float32")
        except ValueError:
            if not labels and line_number == 1:
                continue  # a header row
            raise DataError(
                f"{path}:{line_number}: expected a label then numbers separated by {_DELIMITER_NAMES[delimiter]}, "
                f"got {line.strip()[:60]!r}"
            ) from None
        missing = np.isnan(values)
        if missing.any():
            # UCR pads variable-length series with NaN after their end;
            # NaN inside a series is missing data the loader cannot guess.
            last = len(values) - int(np.argmax(~missing[::-1])) if (~missing).any() else 0
            if missing[:last].any():
                raise DataError(
                    f"{path}:{line_number}: missing values (NaN) inside the series; impute them first"
                )
            values = values[:last]
        if not fields[0]:
            raise DataError(f"{path}:{line_number}: an empty label; every series starts with its class label")
        if len(values) == 0:
            raise DataError(f"{path}:{line_number}: a label without any series values")
        labels.append(_compact_label(fields[0]))
        series.append(values)
    if not labels:
        raise DataError(f"{path}: no series found (empty file?)")
    return labels, series


def series_delimiter(path, text):
    """The field delimiter of a series file: tab for `.tsv`, comma for `.csv`, else from the first line.

    Other extensions (UCR's `.txt`) take tab or comma when the first line holds one, and
    otherwise runs of whitespace (None).

    Example:
    >>> series_delimiter("GunPoint_TRAIN.txt", "2.0 -0.64 -0.64\n")
    """
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension in EXTENSION_DELIMITERS:
        return EXTENSION_DELIMITERS[extension]
    header = first_line(text)
    return next((candidate for candidate in "\t," if candidate in header), None)


def split_series_line(line, delimiter):
    """Splits one line of numbers into stripped fields ([] for a blank line).

    With a tab or comma delimiter every field counts, so `1,,2` has an empty (missing)
    middle value and a decimal comma inside a tab-separated line fails to parse rather
    than splitting a number in two. A line without the file's delimiter (hand-made
    files mix them) and whitespace-separated files split on runs of whitespace or commas.

    Example:
    >>> split_series_line("1\t0.5\t\t0.7\n", "\t")
    ['1', '0.5', '', '0.7']
    """
    line = line.strip()
    if not line:
        return []
    if delimiter is not None and delimiter in line:
        return [field.strip() for field in line.split(delimiter)]
    return [field for field in _SEPARATORS.split(line) if field]


def _pad(series):
    """Stacks the series into `[N, T, 1]`, zero-padded after each end; also returns the lengths."""
    lengths = [len(values) for values in series]
    x = np.zeros((len(series), max(lengths), 1), dtype="float32")
    for index, values in enumerate(series):
        x[index, : len(values), 0] = values
    return x, lengths


def _compact_label(label):
    try:
        number = float(label)
    except ValueError:
        return label
    return str(int(number)) if number.is_integer() else repr(number)


def _class_ids(labels, source):
    """Maps label strings to ids in sorted order (numeric when all labels are numbers)."""
    unique = set(labels)
    try:
        class_names = sorted(unique, key=float)
    except ValueError:
        class_names = sorted(unique)
    if len(class_names) < 2:
        raise DataError(f"{source}: only one class ({class_names[0]!r}) found; a classifier needs at least two")
    index = {name: position for position, name in enumerate(class_names)}
    return np.array([index[label] for label in labels], dtype="int64"), class_names
