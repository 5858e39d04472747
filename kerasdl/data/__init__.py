"""Data sources (one module each) and the tf.data pipeline.

`load_data` picks the source from `data.source`:
    "default"            the built-in set: scikit-learn digits, or the generated
                         sentiment set for text-only models;
    "tfds:NAME"          a TensorFlow Datasets set (`--data-dir` for its files);
    a folder             image classes (`root/<class>/*.jpg`), or a text table folder
                         (`train.tsv` + `dev.tsv`/`test.tsv`);
    a `.npz` file        arrays x and y;
    a `.csv/.tsv/.jsonl` a text table (text models), or a UCR-style numeric series file
                         (label first, then the series) for sequence models;
    a UCR prefix         `.../GunPoint` for `GunPoint_TRAIN.txt` + `GunPoint_TEST.txt`.

Text files are decoded and split as `kerasdl.data.textfile` says (encoding detected unless
`data.encoding` is set; `.tsv` tab, `.csv` comma). Every split is checked before training:
classes too small for the fractions, and empty splits, are a `DataError`.
"""

import os

from kerasdl.data.source import DataError, DataSplits, Split
from kerasdl.data.textfile import check_encoding, decode, first_line

__all__ = ["DataError", "DataSplits", "Split", "load_data"]

_TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")


def load_data(data_config, modalities, seed):
    """Loads the splits for a model that accepts `modalities` (its first is the default view).

    Args:
        data_config: a `kerasdl.config.DataConfig`.
        modalities: the modalities the model accepts, e.g. `("sequence", "text")`.
        seed: the split seed.

    Returns:
        `DataSplits` whose three splits all hold examples.

    Raises:
        DataError: bad data, named by file (and line), with what to do.
    """
    splits = _load(data_config, modalities, seed)
    _check_not_empty(splits, data_config)
    _name_classes(splits, data_config)
    return splits


def _name_classes(splits, data_config):
    """Applies `data.class_names` (names for the class ids, in order) to the loaded splits."""
    names = getattr(data_config, "class_names", None)
    if names is None:
        return
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, (str, int, float)) and str(name).strip() for name in names):
        raise DataError(f"data.class_names must be a list of names, e.g. [negative,positive]; got {names!r}")
    names = [str(name).strip() for name in names]
    current = list(splits.class_names)
    if len(names) != len(current):
        raise DataError(
            f"data.class_names names {len(names)} classes, but {data_config.source} has {len(current)} "
            f"(labels {', '.join(current)}, in this order); give one name per label"
        )
    if len(set(names)) != len(names):
        raise DataError(f"data.class_names must be distinct; got {names}")
    splits.class_names = names
    splits.description += f"; classes named {', '.join(f'{old}={new}' for old, new in zip(current, names))}"


def _load(data_config, modalities, seed):
    source = data_config.source
    encoding = data_config.encoding
    check_encoding(encoding)
    fractions = dict(validation_fraction=data_config.validation_fraction)
    if source == "default":
        if modalities[0] == "text":
            from kerasdl.data.synthetic_text import load_synthetic_sentiment

            return load_synthetic_sentiment(seed=seed, test_fraction=data_config.test_fraction, **fractions)
        from kerasdl.data.digits import load_digits

        return load_digits(
            modalities[0], test_fraction=data_config.test_fraction, seed=seed,
            image_size=data_config.image_size, channels=data_config.channels, **fractions,
        )
    if source.startswith("tfds:"):
        from kerasdl.data.tfds import load_tfds

        modality = "image" if "image" in modalities else "text"
        if modality not in modalities:
            raise DataError(f"{source}: this model takes {'/'.join(modalities)} data; TFDS sets here are image or text")
        return load_tfds(
            source[len("tfds:"):], modality, data_dir=data_config.data_dir, seed=seed,
            image_size=data_config.image_size, channels=data_config.channels,
            max_examples=data_config.max_examples, **fractions,
        )
    if os.path.isdir(source):
        if _is_text_folder(source):
            return _text_table(source, data_config, modalities, seed)
        if "image" not in modalities:
            raise DataError(f"{source}: an image folder, but this model takes {'/'.join(modalities)} data")
        from kerasdl.data.image_folder import load_image_folder

        return load_image_folder(
            source, image_size=data_config.image_size, channels=data_config.channels,
            test_fraction=data_config.test_fraction, seed=seed, on_bad_file=data_config.on_bad_file,
            max_examples=data_config.max_examples, **fractions,
        )
    if source.endswith(".npz"):
        from kerasdl.data.npz import load_npz

        numeric = [modality for modality in modalities if modality != "text"]
        if not numeric:
            raise DataError(f"{source}: .npz holds arrays, but this model takes text; use a CSV/TSV/JSONL table")
        return load_npz(source, numeric[0], test_fraction=data_config.test_fraction, seed=seed, **fractions)
    if "sequence" in modalities and (_is_ucr_prefix(source) or (os.path.isfile(source) and _is_numeric_table(source, encoding))):
        from kerasdl.data.ucr import load_ucr

        return load_ucr(source, seed=seed, test_fraction=data_config.test_fraction, encoding=encoding, **fractions)
    if os.path.isfile(source) and source.lower().endswith(_TABLE_SUFFIXES):
        return _text_table(source, data_config, modalities, seed)
    if not os.path.exists(source):
        raise DataError(f"{source}: no such file or folder; pass an image folder, a .npz, a CSV/TSV/JSONL table, a UCR prefix or tfds:NAME")
    raise DataError(f"{source}: unsupported data; pass an image folder, a .npz, a CSV/TSV/JSONL table, a UCR prefix or tfds:NAME")


def _text_table(source, data_config, modalities, seed):
    if "text" not in modalities:
        raise DataError(f"{source}: a text table, but this model takes {'/'.join(modalities)} data; train lstm or bert on text")
    from kerasdl.data.text_table import load_text_table

    return load_text_table(
        source, text_column=data_config.text_column, label_column=data_config.label_column,
        validation_fraction=data_config.validation_fraction, test_fraction=data_config.test_fraction,
        seed=seed, max_examples=data_config.max_examples, encoding=data_config.encoding,
    )


def _is_text_folder(folder):
    names = [name.lower() for name in os.listdir(folder)]
    return any(name.startswith("train.") and name.endswith(_TABLE_SUFFIXES) for name in names)


def _is_ucr_prefix(source):
    return os.path.isfile(source + "_TRAIN.txt") or os.path.isfile(source + "_TRAIN.tsv")


def _is_numeric_table(path, encoding=None):
    """True when the first line is all numbers (a UCR series file, not a text table).

    The line is split as the series loader splits it (`kerasdl.data.ucr`).
    """
    from kerasdl.data.ucr import series_delimiter, split_series_line

    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return False  # The loader that reads it names the problem.
    text, _ = decode(head, path, encoding, errors="replace")
    fields = split_series_line(first_line(text), series_delimiter(path, text))
    try:
        [float(value) for value in fields if value]
    except ValueError:
        return False
    return bool(fields)


def _check_not_empty(splits, data_config):
    """Refuses splits that would let a run train and then fail on an empty evaluation."""
    for name in ("train", "validation", "test"):
        if getattr(splits, name).size == 0:
            remedy = {"train": "add examples", "validation": "set data.validation_fraction above 0 (e.g. 0.1)",
                      "test": "set data.test_fraction above 0 (e.g. 0.1)"}[name]
            raise DataError(
                f"{data_config.source}: the {name} split is empty; training needs train, validation and test examples; {remedy}"
            )
