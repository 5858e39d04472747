"""The raw inputs of `python -m export.predict`, read from its command line.

- image: image files, or folders of them (JPEG/PNG/BMP/GIF), kept encoded
  (`ImageFile`) so a SavedModel gets the bytes and the other formats decoded
  pixels of the file's own size (decoded as TensorFlow decodes them; the model
  resizes inside, so nothing here resizes).
- text: the texts themselves, or `.txt` files with one text a line.
- features: CSV files, one example a row (a non-numeric first row is a header).
- sequence: CSV files, one series a row, time-major (`t0f0, t0f1, ..., t1f0, ...`).
"""

import csv
from pathlib import Path

import numpy as np

from export.errors import ExportError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


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
    """Turns command-line inputs into `(examples, labels)` for a predictor.

    Args:
        arguments: the input arguments (paths, texts).
        modality: "image" | "features" | "sequence" | "text".
        input_shape: the model's raw input shape (without batch).

    Returns:
        `(examples, labels)`: a list of raw examples and a printable label per example.
    """
    if not arguments:
        raise ExportError("no inputs given; pass image files/folders, texts, or a CSV file")
    if modality == "image":
        files = []
        for argument in arguments:
            path = Path(argument)
            if path.is_dir():
                files += sorted(item for item in path.iterdir() if item.suffix.lower() in IMAGE_EXTENSIONS)
            elif path.is_file():
                files.append(path)
            else:
                raise ExportError(f"{path}: no such image file or folder")
        if not files:
            raise ExportError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(arguments)}")
        examples = [ImageFile(path) for path in files]
        return examples, [str(item) for item in examples]
    if modality == "text":
        texts = []
        for argument in arguments:
            path = Path(argument)
            if path.suffix == ".txt" and path.is_file():
                texts += [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
            else:
                texts.append(argument)
        return texts, texts
    rows, labels = [], []
    for argument in arguments:
        path = Path(argument)
        if not path.is_file():
            raise ExportError(f"{path}: no such CSV file; {modality} inputs are read from CSV files")
        for number, row in enumerate(csv_rows(path)):
            rows.append(row)
            labels.append(f"{path.name}:{number + 1}")
    if not rows:
        raise ExportError(f"no rows of numbers in {', '.join(arguments)}")
    if modality == "features":
        width = int(input_shape[-1])
        bad = [label for label, row in zip(labels, rows) if len(row) != width]
        if bad:
            raise ExportError(f"{bad[0]}: expected {width} features per row")
        return [np.asarray(row, dtype="float32") for row in rows], labels
    features = int(input_shape[-1])
    bad = [label for label, row in zip(labels, rows) if len(row) % features]
    if bad:
        raise ExportError(f"{bad[0]}: a series row needs a multiple of {features} values (time-major)")
    return [np.asarray(row, dtype="float32").reshape(-1, features) for row in rows], labels


def csv_rows(path):
    """Yields the rows of numbers of a CSV file; a non-numeric first row is a header."""
    # utf-8-sig: a byte-order mark would hide the first number and drop the row as a header;
    # bytes that are not UTF-8 cannot be numbers, so replacing them leaves the row errors exact.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
        for number, row in enumerate(csv.reader(handle, delimiter=delimiter)):
            cells = [cell.strip() for cell in row if cell.strip()]
            if not cells:
                continue
            try:
                yield [float(cell) for cell in cells]
            except ValueError:
                if number == 0:
                    continue  # A header row.
                raise ExportError(f"{path}:{number + 1}: not a row of numbers") from None
