"""Arrays from a `.npz` file: `x` and `y` (or `x_train`/`y_train` + `x_test`/`y_test`)."""

import os

import numpy as np

from kerasdl.data.source import DataError, check_arrays, splits_from_arrays, splits_from_parts, stratified_split


def load_npz(path, modality, validation_fraction=0.1, test_fraction=0.1, seed=42):
    """Loads labelled arrays from a `.npz` file and splits them.

    The file holds `x` and `y`, or `x_train`, `y_train`, `x_test`, `y_test` (the test split
    is then kept and validation is carved from train). An optional `class_names` array
    names the classes; otherwise they are the sorted label values. String labels are mapped
    to ids. For images, `x` is `[N, H, W]` or `[N, H, W, C]` with raw pixel values.

    Args:
        path: the `.npz` file.
        modality: what the model takes: "image", "features" or "sequence".
        validation_fraction, test_fraction, seed: the split.

    Example:
    >>> np.savez("data.npz", x=np.random.rand(100, 4), y=np.arange(100) % 2)
    >>> load_npz("data.npz", "features").input_shape
    (4,)
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; pass an existing .npz with arrays x and y")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # numpy raises several types for non-npz files.
        raise DataError(f"{path}: not a readable .npz file ({error}); save one with numpy.savez(path, x=..., y=...)") from None
    keys = set(archive.files)
    if {"x", "y"} <= keys:
        x, y = _array(archive, "x", path), _array(archive, "y", path)
        pools = None
    elif {"x_train", "y_train", "x_test", "y_test"} <= keys:
        x_train, y_train = _array(archive, "x_train", path), _array(archive, "y_train", path)
        x_test, y_test = _array(archive, "x_test", path), _array(archive, "y_test", path)
        check_arrays(x_train, y_train, f"{path} (x_train/y_train)")
        check_arrays(x_test, y_test, f"{path} (x_test/y_test)")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(f"{path}: x_train examples have shape {x_train.shape[1:]} but x_test examples {x_test.shape[1:]}")
        x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
        pools = len(y_train)
    else:
        raise DataError(f"{path}: expected arrays x and y (or x_train, y_train, x_test, y_test), found {sorted(keys)}")
    if y.ndim != 1:
        raise DataError(f"{path}: y must hold one label per example (shape [N]), got shape {y.shape}; pass class ids, not one-hot rows")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    check_arrays(x, y, path)
    x = _shape_for(x, modality, path)
    values = np.unique(y)
    labels = np.searchsorted(values, y).astype(np.int64)
    class_names = [str(name) for name in archive["class_names"]] if "class_names" in keys else [str(value) for value in values]
    if len(class_names) != len(values):
        raise DataError(f"{path}: class_names has {len(class_names)} entries but y has {len(values)} distinct labels")
    description = f"{os.path.basename(path)}: {len(y)} examples from a .npz file"
    if pools is None:
        splits = splits_from_arrays(x, labels, class_names, modality, description, validation_fraction, test_fraction, seed, source=path)
    else:
        train_pool = np.arange(pools)
        train, validation, _ = stratified_split(labels[train_pool], validation_fraction, 0.0, seed, class_names, path)
        test = np.arange(pools, len(labels))
        parts = {
            "train": (x[train], labels[train]),
            "validation": (x[validation], labels[validation]),
            "test": (x[test], labels[test]),
        }
        splits = splits_from_parts(parts, class_names, modality, x.shape[1:], description)
    return splits


def _array(archive, key, path):
    """Reads one array, refusing pickled objects (unsafe) and damaged members by name."""
    try:
        return archive[key]
    except ValueError as error:  # numpy refuses object arrays when allow_pickle=False.
        raise DataError(f"{path}: array {key!r} cannot be read without pickle ({error}); save numeric arrays") from None
    except Exception as error:  # zipfile and numpy raise several types for damaged members.
        raise DataError(f"{path}: array {key!r} is damaged ({type(error).__name__}: {error})") from None


def _shape_for(x, modality, path):
    if modality == "image":
        if x.ndim == 3:
            return x[..., None]
        if x.ndim != 4:
            raise DataError(f"{path}: images must be [N, H, W] or [N, H, W, C], got shape {x.shape}")
    elif modality == "features":
        if x.ndim < 2:
            raise DataError(f"{path}: features must be [N, F], got shape {x.shape}")
    elif modality == "sequence":
        if x.ndim == 2:
            return x[..., None]
        if x.ndim != 3:
            raise DataError(f"{path}: sequences must be [N, T] or [N, T, F] (zero-padded), got shape {x.shape}")
    return x
