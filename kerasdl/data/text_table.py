"""The labelled text table loader: CSV/TSV/JSONL files, or a folder of train/dev/test files."""

import csv
import glob
import io
import json
import os
import sys

import numpy as np

from kerasdl.data.source import DataError, check_arrays, splits_from_parts, stratified_split
from kerasdl.data.textfile import choose_delimiter, first_line, quoting_for, read_text

# Column names tried, in order, when none is given (compared case-insensitively).
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "comment", "body", "tweet")
LABEL_COLUMNS = ("label", "sentiment", "target", "class", "category", "polarity", "labels")

# File stems of the official splits in a dataset folder, in order of preference.
SPLIT_STEMS = {
    "train": ("train",),
    "validation": ("dev", "validation", "valid", "val"),
    "test": ("test",),
}
TABLE_EXTENSIONS = (".tsv", ".csv", ".jsonl", ".ndjson", ".txt")


def load_text_table(
    path,
    text_column=None,
    label_column=None,
    validation_fraction=0.1,
    test_fraction=0.1,
    seed=0,
    max_examples=None,
    encoding=None,
):
    """Loads labelled texts from a CSV/TSV/JSONL file, or from a folder of official splits.

    A file is read as JSON Lines when its extension is `.jsonl`/`.ndjson` or
    its first character is `{` (a `.json` file may also hold a list of objects);
    otherwise as a delimited table whose first row names the columns: `.tsv` is
    tab-separated (quotes are text, as in GLUE), `.csv` comma-separated, and other
    extensions are sniffed among the delimiters the header holds. The encoding is
    detected (UTF-8, a byte-order mark, else cp1252 with a note) unless given; see
    `kerasdl.data.textfile`. A single file is
    split into train/validation/test (stratified, seeded). A folder must hold
    `train.*`, and may hold `dev.*` (or `validation.*`) and `test.*`, which are
    then used as the validation and test splits (carved from train when absent);
    e.g. the GLUE SST-2 folder with `train.tsv`, `dev.tsv`, `test.tsv`.

    Labels are strings; class ids follow their sorted order (numerically when all
    are integers), and the class names are the label strings.

    Args:
        path: a table file or a folder of split files.
        text_column: the text column; guessed from common names (text, sentence, review, ...) when None.
        label_column: the label column; guessed from common names (label, sentiment, target, ...) when None.
        validation_fraction: share held out for validation when there is no validation file.
        test_fraction: share held out for test when there is no test file.
        seed: seed of the splits and of the `max_examples` sample.
        max_examples: keep at most this many examples per split (a seeded random
            sample, in file order), e.g. to keep tests fast; None keeps all.
        encoding: the files' encoding (e.g. "latin-1"); None detects it.

    Returns:
        `DataSplits` with modality "text", input_shape `()`, x an object array of str.

    Raises:
        DataError: a file that cannot be read as a table (named with its line), missing
            columns or labels, one class, or classes too small to split.

    Example:
    >>> splits = load_text_table("../shared/data/sst2", max_examples=300)
    >>> splits.class_names
    ['0', '1']
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        files = _split_files(path)
        if "train" not in files:
            raise DataError(
                f"{path}: no train.tsv/.csv/.jsonl file in this folder; pass a table file or a folder with train.* (+ dev.*, test.*)"
            )
    elif os.path.isfile(path):
        files = {"train": path}
    else:
        raise DataError(f"{path}: no such file or folder")

    tables = {}
    for split, file in files.items():
        rows, columns = _read_table(file, encoding)
        text_name = _choose_column(text_column, TEXT_COLUMNS, columns, file, "text")
        label_name = _choose_column(label_column, LABEL_COLUMNS, columns, file, "label")
        texts, labels = [], []
        for line_number, row in rows:
            label = row.get(label_name)
            if label is None or str(label).strip() == "":
                raise DataError(f"{file}:{line_number}: empty {label_name!r}; every example needs a label")
            text = row.get(text_name)
            texts.append("" if text is None else str(text))
            labels.append(str(label).strip())
        if not texts:
            raise DataError(f"{file}: no examples found (empty file?)")
        tables[split] = (file, np.array(texts, dtype=object), np.array(labels, dtype=object))

    train_file, train_texts, train_labels = tables["train"]
    class_names = _sorted_labels(set(train_labels))
    if len(class_names) < 2:
        raise DataError(f"{train_file}: only one class ({class_names[0]!r}) found; a classifier needs at least two")
    index = {name: position for position, name in enumerate(class_names)}
    ids = {}
    for split, (file, _, labels) in tables.items():
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DataError(f"{file}: labels {unknown[:5]} do not occur in {os.path.basename(train_file)}; check the files")
        ids[split] = np.array([index[label] for label in labels], dtype="int64")

    # Carve the splits that have no file of their own out of train.
    carve_validation = 0.0 if "validation" in tables else validation_fraction
    carve_test = 0.0 if "test" in tables else test_fraction
    train, validation, test = stratified_split(ids["train"], carve_validation, carve_test, seed, class_names, train_file)
    parts = {"train": (train_texts[train], ids["train"][train])}
    for split, carved in (("validation", validation), ("test", test)):
        if split in tables:
            parts[split] = (tables[split][1], ids[split])
        else:
            parts[split] = (train_texts[carved], ids["train"][carved])

    rng = np.random.default_rng(seed)
    for split, (texts, labels) in parts.items():
        if max_examples is not None and len(labels) > max_examples:
            keep = np.sort(rng.choice(len(labels), size=int(max_examples), replace=False))
            parts[split] = (texts[keep], labels[keep])
    check_arrays(*parts["train"], source=train_file)

    sizes = " / ".join(f"{len(labels)} {split}" for split, (_, labels) in parts.items())
    official = [split for split in ("validation", "test") if split in tables]
    description = (
        f"text table {path}: {sizes} examples, {len(class_names)} classes"
        + (f" (official {' and '.join(official)} files)" if official else "")
    )
    return splits_from_parts(parts, class_names, "text", (), description)


def _split_files(folder):
    files = {}
    for split, stems in SPLIT_STEMS.items():
        for stem in stems:
            found = [
                candidate
                for extension in TABLE_EXTENSIONS
                for candidate in glob.glob(os.path.join(folder, f"{stem}{extension}"))
            ]
            if found:
                files[split] = found[0]
                break
    return files


def _read_table(path, encoding=None):
    """Returns `(rows, columns)`: rows as `(line_number, dict)` and the column names.

    The encoding, delimiter and quoting follow `kerasdl.data.textfile`.
    """
    text, _ = read_text(path, encoding)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    lowered = path.lower()
    if lowered.endswith(".json") and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    if lowered.endswith((".jsonl", ".ndjson")) or text.lstrip().startswith("{"):
        return _read_json_lines(path, text)
    delimiter = choose_delimiter(path, text)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting_for(delimiter, first_line(text)))
    rows, columns = [], None
    try:
        while True:
            first = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not row or all(not field.strip() for field in row):
                continue
            if columns is None:
                columns = [name.strip() for name in row]
                continue
            if len(row) != len(columns):
                spans = f"a quoted field opened on line {first} runs to line {reader.line_num} (an unclosed quote?); " if reader.line_num > first else ""
                raise DataError(
                    f"{path}:{first}: {len(row)} fields but the header has {len(columns)} "
                    f"({_listing(columns)}); {spans}check the delimiter ({delimiter!r}) and quoting"
                )
            rows.append((first, dict(zip(columns, row))))
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not a readable {delimiter!r}-separated table ({error})") from None
    return rows, columns or []


def _read_json_lines(path, text):
    rows, columns = [], {}
    for line_number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if not line.strip():
            continue
        record = _json_value(line, f"{path}:{line_number}")
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_number}: each line must be a JSON object with named fields")
        columns.update(dict.fromkeys(record))
        rows.append((line_number, record))
    return rows, list(columns)


def _read_json_array(path, text):
    records = _json_value(text, path)
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise DataError(f"{path}: a .json table must be a list of objects with named fields (or JSON Lines in a .jsonl file)")
    columns = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    return [(number, record) for number, record in enumerate(records, start=1)], list(columns)


def _json_value(text, where):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
    except (ValueError, RecursionError) as error:  # Over-long integers, nesting deeper than Python's stack.
        raise DataError(f"{where}: JSON that cannot be read ({type(error).__name__}: {str(error)[:100]})") from None


def _choose_column(given, candidates, columns, path, role):
    if given is not None:
        if given in columns:
            return given
        raise DataError(f"{path}: no {role} column {given!r}; the columns are: {_listing(columns)}")
    by_lower = {str(name).lower(): name for name in columns}
    for candidate in candidates:
        if candidate in by_lower:
            return by_lower[candidate]
    flag = "--set data.text_column=NAME" if role == "text" else "--set data.label_column=NAME"
    raise DataError(
        f"{path}: cannot tell which column holds the {role}; the columns are: {_listing(columns)}; "
        f"set {role}_column ({flag}), or give the file a header line naming its columns"
    )


def _listing(columns, limit=200):
    """The column names for a one-line message: joined, control characters escaped, cut short."""
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in ", ".join(map(str, columns)))
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _sorted_labels(labels):
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)
