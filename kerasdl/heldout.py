"""The raw examples a run keeps for export and for checking every served path (docs/CONTRACTS.md §4).

Every path from a user's input to an answer (the `.keras` file, the SavedModel
in TF Serving, ONNX, LiteRT, the edge server, `export.predict`) starts from
*raw* input and does its own preprocessing inside the artifact. So a run keeps
raw held-out examples, not prepared arrays, and verification starts where a
user starts:

- `data/heldout.json` + `data/heldout/`: up to `HELDOUT_EXAMPLES` examples of the
  **test** split, as the user had them: image files copied byte for byte (or,
  for in-memory image sets, lossless PNGs of the pixels rounded to 8 bits),
  the strings of a text set, series without their padding, feature rows. The
  manifest also holds each example's label, the class the run's own evaluation
  predicted for it, and their accuracy; `complete` says whether it is the whole
  test split, whose accuracy `metrics.json` reports.
- `data/calibration.npz` (`.json` for text): up to `CALIBRATION_EXAMPLES`
  training examples for static int8 calibration, as the pipeline feeds the
  model: images at the training size as uint8 (a quarter of float32: 38 MB
  instead of 154 MB for 256 images of 224x224), series padded, texts as strings.

`save_run_examples` writes them (TensorFlow: it reads the splits);
`read_heldout` reads them back without TensorFlow, decoding image files as
TensorFlow does (`kerasdl.runtime.images`).

Example:
>>> heldout = read_heldout("runs/cnn/20261128-010203")
>>> len(heldout.examples), heldout.encoded is not None, heldout.accuracy
(64, True, 0.71875)
"""

import dataclasses
import json
import os
import shutil

import numpy as np

HELDOUT_FILE = "heldout.json"
HELDOUT_DIR = "heldout"
# Enough for parity and a per-path accuracy check, small enough to copy: 256 photos
# of a few hundred KB are tens of MB; CIFAR-size JPEGs are 1 KB each.
HELDOUT_EXAMPLES = 256
# Static int8 calibration reads at most this many training examples (export.source).
CALIBRATION_EXAMPLES = 256


@dataclasses.dataclass
class HeldOut:
    """A run's raw held-out examples, read back.

    Attributes:
        examples: raw inputs: decoded float32 pixels `[H, W, C]` of any size per image,
            strings, series `[T_i, F]` without padding, or feature rows `[F]` (a list).
        labels: int64 class ids.
        encoded: for images, the files' bytes (what `image_bytes` and the edge server
            get); None otherwise.
        names: what each example is (a file name, or its index).
        predicted: the class the run's own evaluation gave each example (None if unknown).
        accuracy: the run's accuracy on these examples (None if unknown).
        complete: True when these are the whole test split.
        origin: the manifest's path.
    """

    examples: list
    labels: np.ndarray
    encoded: object
    names: list
    predicted: object
    accuracy: object
    complete: bool
    origin: str


def read_heldout(run_dir, metadata=None, limit=None):
    """Reads `data/heldout.json` of a run directory; returns a `HeldOut`, or None when the run has none.

    Args:
        run_dir: the run directory.
        metadata: the model's kerasdl metadata; images are decoded with its channel
            count (default: the manifest's).
        limit: read at most this many examples, evenly spaced over the stored ones.

    Raises:
        ValueError: the manifest or a file it names is unreadable (the message names it).
    """
    from kerasdl.runtime.images import ImageDecodeError, decode_image

    folder = os.path.join(os.fspath(run_dir), "data")
    path = os.path.join(folder, HELDOUT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        modality, items, labels = manifest["modality"], manifest["x"], manifest["y"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a held-out manifest ({error})") from None
    total = len(items)
    count = total if limit is None else min(total, int(limit))
    # Fewer than all: evenly spaced, so that a split stored class by class gives every class.
    chosen = np.unique(np.linspace(0, total - 1, count).round().astype(int)) if count else np.zeros(0, int)
    items, labels = [items[index] for index in chosen], np.asarray(labels, dtype=np.int64)[chosen]
    predicted = manifest.get("predicted")
    predicted = np.asarray(predicted, dtype=np.int64)[chosen] if predicted is not None else None
    accuracy = float(np.mean(predicted == labels)) if predicted is not None and count else manifest.get("accuracy")
    encoded, names = None, [str(index) for index in range(count)]
    if modality == "image":
        channels = int(((metadata or {}).get("input") or {}).get("shape", [0, 0, manifest.get("channels", 3)])[-1] or 3)
        encoded, examples, names = [], [], list(items)
        for name in items:
            file_path = os.path.join(folder, HELDOUT_DIR, name)
            try:
                with open(file_path, "rb") as handle:
                    data = handle.read()
                examples.append(decode_image(data, channels))
            except (OSError, ImageDecodeError) as error:
                raise ValueError(f"{file_path}: cannot read the held-out image ({error})") from None
            encoded.append(data)
    elif modality == "text":
        examples = [str(item) for item in items]
        names = examples
    elif modality == "sequence":
        examples = [np.asarray(item, dtype=np.float32).reshape(len(item), -1) for item in items]
    else:
        examples = [np.asarray(item, dtype=np.float32) for item in items]
    return HeldOut(examples, labels, encoded, names, predicted, accuracy, bool(manifest.get("complete")) and count == total, path)


def save_run_examples(run_dir, splits, test_predictions, heldout_examples=HELDOUT_EXAMPLES, calibration_examples=CALIBRATION_EXAMPLES):
    """Writes `data/heldout.json` (+ `data/heldout/`) and `data/calibration.*` into a run directory.

    Args:
        run_dir: the run directory.
        splits: the run's `kerasdl.data.DataSplits`.
        test_predictions: the class ids the run's evaluation predicted for the test
            split, in the split's order (the first `heldout_examples` are used).
        heldout_examples: how many test examples to keep.
        calibration_examples: how many training examples to keep for int8 calibration.

    Returns:
        The manifest written (without the examples).
    """
    from kerasdl.data.pipeline import take_examples

    folder = os.path.join(os.fspath(run_dir), "data")
    os.makedirs(folder, exist_ok=True)
    modality = splits.modality
    count = min(int(heldout_examples), splits.test.size)
    if modality == "image":
        items, labels = _save_images(folder, splits.test, count, splits.input_shape[-1])
    else:
        raw, labels = take_examples(splits.test, count)
        if modality == "text":
            items = list(raw)
        elif modality == "sequence":
            items = [_strip_padding(series).tolist() for series in np.asarray(raw, dtype=np.float32)]
        else:
            items = np.asarray(raw, dtype=np.float32).tolist()
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(test_predictions, dtype=np.int64)[: len(labels)]
    manifest = {
        "split": "test",
        "modality": modality,
        "count": int(len(labels)),
        "complete": int(len(labels)) == splits.test.size,
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else None,
        "class_names": list(splits.class_names),
    }
    if modality == "image":
        manifest["channels"] = int(splits.input_shape[-1])
    _write_json(os.path.join(folder, HELDOUT_FILE), {**manifest, "x": items, "y": labels.tolist(), "predicted": predicted.tolist()})

    x, y = take_examples(splits.train, int(calibration_examples))
    if modality == "text":
        _write_json(os.path.join(folder, "calibration.json"), {"x": list(x), "y": np.asarray(y).tolist()})
    else:
        x = np.asarray(x)
        if modality == "image":
            # The pipeline's pixels (0-255, resized) to the nearest 8-bit value: calibration
            # measures activation ranges, which a rounding of half a level does not move.
            x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        np.savez(os.path.join(folder, "calibration.npz"), x=x, y=np.asarray(y, dtype=np.int64))
    return manifest


def _save_images(folder, split, count, channels):
    """Copies the first `count` image files of a split (or writes PNGs of in-memory pixels); returns names and labels."""
    from kerasdl.data.pipeline import take_examples

    target = os.path.join(folder, HELDOUT_DIR)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    names, labels = [], []
    if split.decode is not None:
        # A streamed split yields (file path, label): keep the user's file, byte for byte.
        for index, (path, label) in enumerate(split.dataset.take(count).as_numpy_iterator()):
            path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
            name = f"{index:04d}-{os.path.basename(path)}"
            shutil.copyfile(path, os.path.join(target, name))
            names.append(name)
            labels.append(int(label))
        return names, labels
    pixels, labels = take_examples(split, count)
    for index, image in enumerate(np.asarray(pixels)):
        name = f"{index:04d}.png"
        with open(os.path.join(target, name), "wb") as handle:
            handle.write(encode_png(image))
        names.append(name)
    return names, [int(label) for label in labels]


def encode_png(pixels):
    """Returns PNG bytes of `[H, W, 1 or 3]` pixels 0-255 (rounded to 8 bits; PNG is lossless).

    Example:
    >>> encode_png(np.zeros((2, 2, 3)))[:4]
    b'\\x89PNG'
    """
    import io

    from PIL import Image

    pixels = np.clip(np.round(np.asarray(pixels, dtype=np.float64)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _strip_padding(series):
    """A series without its trailing all-zero time steps (the padding the models mask), at least one step."""
    steps = np.flatnonzero(np.any(series.reshape(len(series), -1) != 0.0, axis=-1))
    return series[: (steps[-1] + 1) if len(steps) else 1]


def _write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    os.replace(temporary, path)
