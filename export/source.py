"""What an export starts from: the trained model, its metadata and a few held-out examples.

`load_source(path)` accepts a run directory (CONTRACTS.md §4) or a `.keras`
file written by `kerasdl.artifact.save_model`. From a run directory it also
reads `data/validation.npz|json` (parity checks and the TF Serving warmup),
`data/calibration.npz|json` (static int8 calibration), `config.yaml` and
`metrics.json` (the model card). A bare `.keras` file has none of these, so
parity and warmup use synthetic inputs that match the input spec, and the
model card says so.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from export.errors import ExportError
from export.keras_file import load_keras_model, read_keras_metadata

# How many held-out examples the parity checks and the warmup file use at most.
MAX_EXAMPLES = 64
# How many synthetic examples stand in for held-out ones with a bare `.keras`.
SYNTHETIC_EXAMPLES = 8
# How many calibration examples static int8 quantization reads at most.
MAX_CALIBRATION_EXAMPLES = 256
# Sentences for text models exported from a bare `.keras` file.
SYNTHETIC_SENTENCES = (
    "a gripping , funny and moving film .",
    "the plot is thin and the jokes fall flat .",
    "it 's not a bad movie , just an unremarkable one .",
    "one of the best performances of the year !",
    "dull , overlong and pointless .",
    "a charming little story with real heart .",
    "i wanted to like it more than i did .",
    "the cast is great ; the script is not .",
)


@dataclasses.dataclass
class ExportSource:
    """A trained model ready to export.

    Attributes:
        model_path: the `.keras` file.
        run_dir: the run directory, or None for a bare `.keras` file.
        model: the Keras model (outputs logits).
        metadata: its kerasdl metadata (CONTRACTS.md §3).
        examples: held-out raw inputs (numpy array; a list of strings for text).
        labels: their class ids, or None for synthetic examples.
        examples_origin: where the examples came from (a path or "synthetic").
        calibration_path: `data/calibration.npz|json`, or None.
        config: the parsed `config.yaml`, or None.
        metrics: the parsed `metrics.json`, or None.
        validation_path: `data/validation.npz|json` (every held-out example the run kept), or None.
    """

    model_path: Path
    run_dir: object
    model: object
    metadata: dict
    examples: object
    labels: object
    examples_origin: str
    calibration_path: object = None
    config: object = None
    metrics: object = None
    validation_path: object = None

    @property
    def name(self):
        return self.metadata.get("model") or self.model.name

    def held_out(self):
        """Returns `(examples, labels)`: every held-out example the run kept, for the int8 accuracy gate.

        `examples` holds only the first `MAX_EXAMPLES` (parity and warmup need
        no more); the gate needs all of them, since one flipped prediction in 64
        is already 1.6 points. Without a run directory these are the synthetic examples.
        """
        if self.validation_path is None:
            return self.examples, self.labels
        return _read_examples(self.validation_path, self.metadata, None)

    def calibration_examples(self):
        """Returns raw calibration inputs: `data/calibration.*` when present, else the held-out examples."""
        if self.calibration_path is None:
            return self.examples
        examples, _ = _read_examples(self.calibration_path, self.metadata, MAX_CALIBRATION_EXAMPLES)
        return examples


def load_source(path, max_examples=MAX_EXAMPLES):
    """Loads a run directory or a `.keras` file for export.

    Args:
        path: a run directory holding `model.keras`, or a `.keras` file.
        max_examples: how many held-out examples to keep for parity and warmup.

    Returns:
        An `ExportSource`.

    Raises:
        ExportError: the path is missing, not a kerasdl model, or its data files do not fit the model.

    Example:
    >>> source = load_source("runs/cnn/20261128-010203")
    >>> source.metadata["class_names"]
    ['0', '1', ...]
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file or directory; pass a run directory or a .keras file")
    if path.is_dir():
        model_path = path / "model.keras"
        if not model_path.is_file():
            raise ExportError(
                f"{path}: no model.keras in this folder; pass a run directory (runs/<model>/<timestamp>/) or a .keras file"
            )
        run_dir = path
    else:
        if path.suffix != ".keras":
            raise ExportError(f"{path}: not a .keras file; pass a run directory or a .keras file saved by kerasdl")
        model_path = path
        # `runs/<model>/<timestamp>/model.keras` given directly still belongs to its run.
        run_dir = path.parent if path.name == "model.keras" and (path.parent / "data").is_dir() else None

    metadata = read_keras_metadata(model_path)
    model = load_keras_model(model_path)
    assert_no_augmentation(model)

    examples, labels, origin = None, None, "synthetic"
    validation_path = calibration_path = config = metrics = None
    if run_dir is not None:
        validation_path = _data_file(run_dir, "validation", metadata)
        if validation_path is not None:
            examples, labels = _read_examples(validation_path, metadata, max_examples)
            origin = str(validation_path)
        calibration_path = _data_file(run_dir, "calibration", metadata)
        config = _read_optional(run_dir / "config.yaml", _parse_yaml)
        metrics = _read_optional(run_dir / "metrics.json", json.loads)
    if examples is None:
        examples = synthetic_examples(metadata, model)
    return ExportSource(
        model_path=model_path,
        run_dir=run_dir,
        model=model,
        metadata=metadata,
        examples=examples,
        labels=labels,
        examples_origin=origin,
        calibration_path=calibration_path,
        config=config,
        metrics=metrics,
        validation_path=validation_path if examples is not None and origin != "synthetic" else None,
    )


def assert_no_augmentation(model):
    """Raises ExportError when a `Random*` (augmentation) layer sits inside `model`.

    Augmentation belongs in the tf.data pipeline (CONTRACTS.md §1); inside a
    served model it would either do nothing (inference mode) or, exported
    carelessly, perturb every request.
    """
    for layer in _all_layers(model):
        if type(layer).__name__.startswith("Random"):
            raise ExportError(
                f"the model contains the augmentation layer {layer.name!r} ({type(layer).__name__}); "
                "augmentation belongs in the input pipeline: rebuild the model without it and retrain"
            )


def synthetic_examples(metadata, model=None, count=SYNTHETIC_EXAMPLES, seed=0):
    """Returns `count` raw inputs that match the input spec, for a `.keras` file without a run.

    Images are integer pixels in 0-255; features are drawn around the model's
    own standardization statistics when it has them (so they look like data);
    sequences are zero-padded after a random length; text is a fixed set of
    sentences.
    """
    rng = np.random.default_rng(seed)
    modality = metadata["modality"]
    if modality == "text":
        return [SYNTHETIC_SENTENCES[index % len(SYNTHETIC_SENTENCES)] for index in range(count)]
    shape = [16 if size is None else int(size) for size in metadata["input"]["shape"]]
    if modality == "image":
        return rng.integers(0, 256, size=[count] + shape).astype("float32")
    mean, deviation = _normalization_statistics(model, shape[-1])
    values = (mean + deviation * rng.standard_normal([count] + shape)).astype("float32")
    if modality == "sequence":
        # Every other series ends early: the model must treat the zero padding as absent.
        for index in range(0, count, 2):
            length = int(rng.integers(1, shape[0] + 1))
            values[index, length:] = 0.0
    return values


def _data_file(run_dir, stem, metadata):
    extension = ".json" if metadata["modality"] == "text" else ".npz"
    candidate = Path(run_dir) / "data" / f"{stem}{extension}"
    return candidate if candidate.is_file() else None


def _read_examples(path, metadata, limit):
    if path.suffix == ".json":
        try:
            content = json.loads(path.read_text())
            examples = [str(text) for text in content["x"]][:limit]
            labels = content.get("y")
        except (ValueError, KeyError, TypeError) as error:
            raise ExportError(f"{path}: expected JSON {{\"x\": [strings], \"y\": [ints]}} ({error})") from None
    else:
        try:
            with np.load(path) as content:
                examples = np.asarray(content["x"], dtype="float32")[:limit]
                labels = content["y"] if "y" in content.files else None
        except (ValueError, KeyError, OSError) as error:
            raise ExportError(f"{path}: expected an .npz with arrays x and y ({error})") from None
        expected = metadata["input"]["shape"]
        actual = list(examples.shape[1:])
        if len(actual) != len(expected) or any(e is not None and e != a for e, a in zip(expected, actual)):
            raise ExportError(f"{path}: examples have shape {actual}, but the model takes {expected}")
    if labels is not None:
        labels = np.asarray(labels, dtype="int64")[: len(examples)]
    if len(examples) == 0:
        raise ExportError(f"{path}: holds no examples; the export needs a few to verify the artifacts")
    return examples, labels


def _read_optional(path, parse):
    if not path.is_file():
        return None
    try:
        return parse(path.read_text())
    except Exception as error:  # A broken side file must not block the export; the card says so.
        return {"error": f"cannot parse {path.name}: {error}"}


def _parse_yaml(text):
    import yaml

    return yaml.safe_load(text)


def _normalization_statistics(model, features):
    # The standardization layer holds the training split's mean and deviation;
    # sampling around them makes synthetic features land where the model was trained.
    from kerasdl.models.layers import standardization_statistics

    for layer in _all_layers(model) if model is not None else ():
        statistics = standardization_statistics(layer) if layer.name == "normalization" else None
        if statistics is not None and statistics[0].size == features:
            return statistics
    return np.zeros(features, "float32"), np.ones(features, "float32")


def _all_layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        if getattr(layer, "layers", None):
            yield from _all_layers(layer)
