"""The raw inputs of `python -m export.predict`, read from its command line.

- image: image files, or folders of them (JPEG/PNG/BMP/GIF), kept encoded
  (`ImageFile`) so a SavedModel gets the bytes and the other formats decoded
  pixels of the file's own size (decoded as TensorFlow decodes them; the model
  resizes inside, so nothing here resizes).
- text: the texts themselves, or `.txt` files with one text a line.
- features: CSV files, one example a row (a non-numeric first row is a header).
- sequence: CSV files, one series a row, time-major (`t0f0, t0f1, ..., t1f0, ...`),
  or UCR files (`<Name>_TRAIN`/`_TEST`, the class label first), whose labels are
  kept as the true labels (`label_column`).

A folder argument stands for the files under it, searched recursively in sorted
order (`val/` finds `val/ants/*.jpg` and `val/bees/*.jpg`); each such input is
named by the folder's name and its path below it (`val/ants/x.jpg`).
"""

import csv
import os
from pathlib import Path

import numpy as np

from export.errors import ExportError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The files a folder argument stands for, by modality (text folders: files of one text a line).
TABLE_EXTENSIONS = (".csv", ".tsv", ".txt")
LABEL_COLUMNS = ("auto", "first", "none")


def folder_files(folder, extensions):
    """Returns `[(path, name)]` for the files under `folder` with `extensions`, recursively, sorted.

    Hidden files and folders (`.ipynb_checkpoints`, `.DS_Store`) are skipped; `name` is
    the folder's own name joined with the path below it, with `/` on every system.

    Example:
    >>> folder_files("data/hymenoptera/val", (".jpg",))[0][1]
    'val/ants/10308379_1b6c72e180.jpg'
    """
    folder = Path(folder)
    top = folder.resolve().name
    found = []
    for root, directories, files in os.walk(folder):
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        for name in files:
            path = Path(root) / name
            if not name.startswith(".") and path.suffix.lower() in extensions:
                found.append((path, "/".join((top,) + path.relative_to(folder).parts)))
    return sorted(found, key=lambda item: item[1])


def _expand(arguments, extensions, missing):
    """Returns `[(path, name)]`: files as given, folders as `folder_files`; `missing(path)` is the error for neither."""
    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files += folder_files(path, extensions)
        elif path.is_file():
            files.append((path, str(path)))
        else:
            raise ExportError(missing(path))
    return files


class ImageFile:
    """An image input: its path and encoded bytes (decoded on demand, never resized)."""

    def __init__(self, path):
        self.path = str(path)
        self.data = Path(path).read_bytes()

    def pixels(self, shape):
        """Returns float32 `[H, W, C]` pixels 0-255 of the file's own size, with the C channels of `shape`.

        Decoded by `kerasdl.runtime.images.decode_image`, which gives TensorFlow's
        pixels; the model resizes them inside (docs/CONTRACTS.md §1).
        """
        from kerasdl.runtime.images import ImageDecodeError, decode_image

        channels = int(shape[-1]) if shape and shape[-1] else 3
        try:
            return decode_image(self.data, channels)
        except ImageDecodeError as error:
            raise ExportError(f"{self.path}: cannot decode the image ({error})") from None

    def __str__(self):
        return self.path


def read_inputs(arguments, modality, input_shape):
    """Turns command-line inputs into `(examples, labels)` for a predictor (`read_labelled_inputs` without truths)."""
    examples, labels, _ = read_labelled_inputs(arguments, modality, input_shape)
    return examples, labels


def read_labelled_inputs(arguments, modality, input_shape, label_column="auto"):
    """Turns command-line inputs into `(examples, labels, truths)` for a predictor.

    Args:
        arguments: the input arguments (paths, folders, texts).
        modality: "image" | "features" | "sequence" | "text".
        input_shape: the model's raw input shape (without batch).
        label_column: for series files, "first" (UCR layout: the first column is the class
            label), "none" (every column is a value), or "auto": UCR-named files
            (`<Name>_TRAIN`/`_TEST`) are "first", `.csv`/`.tsv` files "none", and other
            files an error naming the flag.

    Returns:
        `(examples, labels, truths)`: the raw examples, a printable name per example,
        and the true class label per example (None where the input has none).

    Example:
    >>> examples, names, truths = read_labelled_inputs(["ECG200_TEST.txt"], "sequence", (96, 1))
    >>> names[0], truths[0]
    ('ECG200_TEST.txt:1', '1')
    """
    if not arguments:
        raise ExportError("no inputs given; pass image files/folders, texts, or a CSV file")
    if label_column not in LABEL_COLUMNS:
        raise ExportError(f"--label-column must be one of {', '.join(LABEL_COLUMNS)}, got {label_column!r}")
    if modality == "image":
        files = _expand(arguments, IMAGE_EXTENSIONS, lambda path: f"{path}: no such image file or folder")
        if not files:
            raise ExportError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(arguments)} or its subfolders")
        return [ImageFile(path) for path, _ in files], [name for _, name in files], [None] * len(files)
    if modality == "text":
        texts = []
        for argument in arguments:
            path = Path(argument)
            if path.is_dir():
                files = [item for item, _ in folder_files(path, (".txt",))]
            else:
                files = [path] if path.suffix == ".txt" and path.is_file() else []
            if not files and not path.is_dir():
                texts.append(argument)
            for item in files:
                texts += [line for line in item.read_text(encoding="utf-8").split("\n") if line.strip()]
        return texts, texts, [None] * len(texts)
    rows, labels, truths = [], [], []
    files = _expand(arguments, TABLE_EXTENSIONS,
                    lambda path: f"{path}: no such CSV file or folder; {modality} inputs are read from CSV files")
    for path, name in files:
        shown = path.name if name == str(path) else name
        file_rows, file_truths = _file_rows(path, modality, label_column)
        for number, (row, truth) in enumerate(zip(file_rows, file_truths)):
            rows.append(row)
            labels.append(f"{shown}:{number + 1}")
            truths.append(truth)
    if not rows:
        raise ExportError(f"no rows of numbers in {', '.join(arguments)}")
    if modality == "features":
        width = int(input_shape[-1])
        bad = [label for label, row in zip(labels, rows) if len(row) != width]
        if bad:
            raise ExportError(f"{bad[0]}: expected {width} features per row")
        return [np.asarray(row, dtype="float32") for row in rows], labels, truths
    features = int(input_shape[-1])
    bad = [label for label, row in zip(labels, rows) if len(row) % features]
    if bad:
        raise ExportError(f"{bad[0]}: a series row needs a multiple of {features} values (time-major)")
    return [np.asarray(row, dtype="float32").reshape(-1, features) for row in rows], labels, truths


def has_label_column(path, label_column):
    """Whether the series file `path` starts each row with its class label (see `read_labelled_inputs`)."""
    from kerasdl.data.ucr import UCR_FILE_NAME

    if label_column != "auto":
        return label_column == "first"
    if UCR_FILE_NAME.match(Path(path).name):
        return True
    if Path(path).suffix.lower() in (".csv", ".tsv"):
        return False
    raise ExportError(f"{path}: cannot tell whether the first column is a class label (UCR layout) or a value; "
                      "pass --label-column first or --label-column none")


def _file_rows(path, modality, label_column):
    """Returns `(rows, truths)` of one file of numbers; a UCR-layout file gives its labels as truths."""
    if modality != "sequence" or not has_label_column(path, label_column):
        if modality == "sequence" and Path(path).suffix.lower() not in (".csv", ".tsv"):
            rows = list(_plain_series_rows(path))
        else:
            rows = list(csv_rows(path))
        return rows, [None] * len(rows)
    from kerasdl.data.source import DataError
    from kerasdl.data.ucr import read_ucr_file

    try:
        truths, series = read_ucr_file(path)  # The UCR loader's own parser, as training read it.
    except DataError as error:
        raise ExportError(str(error)) from None
    return [list(values) for values in series], truths


def _plain_series_rows(path):
    """Yields the rows of a series file without labels, split as the UCR loader splits lines (whitespace, tab, comma)."""
    from kerasdl.data.textfile import read_text
    from kerasdl.data.ucr import series_delimiter, split_series_line

    text, _ = read_text(path)
    delimiter = series_delimiter(path, text)
    yield from _number_rows(path, (split_series_line(line, delimiter) for line in text.splitlines()))


def csv_rows(path):
    """Yields the rows of numbers of a CSV file; a non-numeric first row is a header."""
    # utf-8-sig: a byte-order mark would hide the first number and drop the row as a header;
    # bytes that are not UTF-8 cannot be numbers, so replacing them leaves the row errors exact.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
        cells = ([cell.strip() for cell in row if cell.strip()] for row in csv.reader(handle, delimiter=delimiter))
        yield from _number_rows(path, cells)


def _number_rows(path, lines):
    """Yields each non-empty line's fields as floats; a non-numeric first line is a header, a later one an error."""
    for number, fields in enumerate(lines, start=1):
        if not fields:
            continue
        try:
            yield [float(field) for field in fields]
        except ValueError:
            if number == 1:
                continue  # A header row.
            raise ExportError(f"{path}:{number}: not a row of numbers") from None
