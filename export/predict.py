"""`python -m export.predict`: one predictor over `.keras`, SavedModel and ONNX artifacts.

    python -m export.predict exports/cnn/3 photo.jpg                  # SavedModel (image_bytes signature)
    python -m export.predict exports/cnn/3 --format onnx photos/ --json
    python -m export.predict runs/text_lstm/x/model.keras "a gripping film"
    python -m export.predict exports/mlp/1/model.onnx features.csv

Inputs by modality:
- image: image files, or folders of them (JPEG/PNG/BMP/GIF).
- text: the texts themselves, or `.txt` files with one text a line.
- features: CSV files, one example a row (a non-numeric first row is a header).
- sequence: CSV files, one series a row, time-major (`t0f0, t0f1, ..., t1f0, ...`);
  shorter rows are zero-padded to the longest, as the models expect.

The ONNX path imports no TensorFlow (an edge box has onnxruntime, numpy and
Pillow only): this module imports TensorFlow only inside the `.keras` and
SavedModel predictors.
"""

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from export.errors import ExportError
from kerasdl.contract import IMAGE_BYTES_INPUT, IMAGE_BYTES_SIGNATURE
from export.cli import OneLineParser, quiet_libraries

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
MODEL_CARD = os.path.join("assets.extra", "model_card.json")


class Predictor:
    """The common interface: `class_names`, `modality`, `input_shape` and `predict`.

    `predict(examples)` takes a list of raw examples as `read_inputs` returns
    them and gives float32 probabilities `[batch, classes]`.
    """

    kind = ""

    def __init__(self, class_names, modality, input_shape):
        self.class_names = [str(name) for name in class_names]
        self.modality = modality
        self.input_shape = input_shape

    def predict(self, examples):
        raise NotImplementedError


class KerasPredictor(Predictor):
    """A `.keras` file saved by kerasdl: softmax of the model's logits."""

    kind = "keras"

    def __init__(self, path):
        from kerasdl.artifact import load_model, load_metadata

        metadata = load_metadata(path)
        if "class_names" not in metadata or "modality" not in metadata:
            raise ExportError(f"{path}: not a kerasdl model (no kerasdl metadata); save it with kerasdl.artifact.save_model")
        self.model, _ = load_model(path)
        self.metadata = metadata
        super().__init__(metadata["class_names"], metadata["modality"], (metadata.get("input") or {}).get("shape"))

    def predict(self, examples):
        from export.verify import keras_probabilities

        batch = [_text_of(item) for item in examples] if self.modality == "text" else _stack(self, examples)
        return keras_probabilities(self.model, batch, self.metadata)


class SavedModelPredictor(Predictor):
    """A kerasdl SavedModel (a version folder): `serving_default`, or `image_bytes` for image files."""

    kind = "savedmodel"

    def __init__(self, directory):
        import tensorflow as tf

        card_path = Path(directory) / MODEL_CARD
        if not card_path.is_file():
            raise ExportError(f"{directory}: no {MODEL_CARD}; not a SavedModel written by python -m export.run")
        card = json.loads(card_path.read_text())
        self.loaded = tf.saved_model.load(str(directory))
        self.input_name = card["input_spec"]["name"]
        super().__init__(card["class_names"], card["modality"], (card.get("input") or {}).get("shape"))

    def predict(self, examples):
        import tensorflow as tf

        if self.modality == "image" and all(isinstance(item, ImageFile) for item in examples):
            # The served path: TF Serving clients send encoded bytes.
            signature = self.loaded.signatures[IMAGE_BYTES_SIGNATURE]
            outputs = signature(**{IMAGE_BYTES_INPUT: tf.constant([item.data for item in examples])})
        elif self.modality == "text":
            outputs = self.loaded.signatures["serving_default"](**{self.input_name: tf.constant([_text_of(i) for i in examples])})
        else:
            outputs = self.loaded.signatures["serving_default"](**{self.input_name: tf.constant(_stack(self, examples))})
        return outputs["probabilities"].numpy()


class OnnxPredictor(Predictor):
    """An ONNX model written by `python -m export.run` (ONNX Runtime; no TensorFlow)."""

    kind = "onnx"

    def __init__(self, path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        properties = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in properties or "modality" not in properties:
            raise ExportError(f"{path}: no kerasdl metadata_props (class_names, modality); export it with python -m export.run")
        spec = json.loads(properties["input_spec"])
        super().__init__(json.loads(properties["class_names"]), properties["modality"], spec["shape"][1:])
        self.input_name = spec["name"]
        self.tokenizer = None
        if self.modality == "text":
            from kerasdl.tokenizer import load_tokenizer

            folder = Path(path).parent / "tokenizer"
            if not (folder / "tokenizer.json").is_file():
                raise ExportError(f"{folder}: missing; the text model's tokenizer travels beside {Path(path).name}")
            self.tokenizer = load_tokenizer(folder)

    def predict(self, examples):
        from export.verify import cast_feed

        if self.modality == "text":
            feed = self.tokenizer.encode_batch([_text_of(item) for item in examples])
        else:
            feed = {self.input_name: _stack(self, examples)}
        return self.session.run(["probabilities"], cast_feed(self.session, feed))[0]


def load_predictor(artifact, artifact_format=None, int8=False):
    """Returns the predictor for `artifact`.

    Args:
        artifact: a `.keras` file, an `.onnx` file, a SavedModel/version folder,
            or a model base path (`exports/<name>`, whose newest version is used).
        artifact_format: "savedmodel" or "onnx" to choose inside a version folder.
        int8: use `model.int8.onnx` of a version folder.

    Example:
    >>> predictor = load_predictor("exports/cnn/3", "onnx")
    >>> predictor.class_names[:2]
    ['airplane', 'automobile']
    """
    path = Path(artifact)
    if not path.exists():
        raise ExportError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix == ".keras":
            return KerasPredictor(path)
        if path.suffix == ".onnx":
            return OnnxPredictor(path)
        raise ExportError(f"{path}: not a .keras or .onnx file, nor a SavedModel folder")
    versions = sorted(int(entry.name) for entry in path.iterdir() if entry.is_dir() and entry.name.isdigit())
    if versions and not (path / "saved_model.pb").exists() and not (path / "model.onnx").exists():
        path = path / str(versions[-1])
    onnx_file = path / ("model.int8.onnx" if int8 else "model.onnx")
    if artifact_format == "onnx" or int8 or (artifact_format is None and not (path / "saved_model.pb").exists()):
        if not onnx_file.is_file():
            raise ExportError(f"{path}: no {onnx_file.name}; export with --format onnx{' --quantize int8' if int8 else ''}")
        return OnnxPredictor(onnx_file)
    if artifact_format not in (None, "savedmodel"):
        raise ExportError(f"unknown format {artifact_format!r}; use savedmodel or onnx")
    if not (path / "saved_model.pb").is_file():
        raise ExportError(f"{path}: no saved_model.pb; export with --format savedmodel")
    return SavedModelPredictor(path)


class ImageFile:
    """An image input: its path and encoded bytes (decoded on demand with Pillow)."""

    def __init__(self, path):
        self.path = str(path)
        self.data = Path(path).read_bytes()

    def pixels(self, shape):
        """Returns float32 `[H, W, C]` pixels 0-255, converted to C channels and resized to H x W."""
        import io

        from PIL import Image

        height, width, channels = shape
        try:
            image = Image.open(io.BytesIO(self.data))
            image.seek(0)
            image = image.convert("L" if channels == 1 else "RGB")
        except Exception as error:  # Pillow raises several types for bad files.
            raise ExportError(f"{self.path}: cannot decode the image ({error})") from None
        if height is not None and width is not None and image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype="float32")
        return pixels[..., None] if channels == 1 else pixels

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
        for number, row in enumerate(_csv_rows(path)):
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


def format_predictions(labels, probabilities, class_names, top=3):
    """Returns one line per example: the best class and the top probabilities."""
    lines = []
    for label, row in zip(labels, probabilities):
        order = np.argsort(-row)[:top]
        best = ", ".join(f"{class_names[index]} {row[index]:.3f}" for index in order)
        lines.append(f"{label}: {class_names[order[0]]} ({best})")
    return "\n".join(lines)


def predictions_json(predictor, artifact, labels, probabilities):
    """Returns the JSON-ready dict that `--json` prints."""
    return {
        "artifact": str(artifact),
        "format": predictor.kind,
        "modality": predictor.modality,
        "class_names": predictor.class_names,
        "predictions": [
            {
                "input": label,
                "class_id": int(np.argmax(row)),
                "class_name": predictor.class_names[int(np.argmax(row))],
                "probabilities": {name: float(value) for name, value in zip(predictor.class_names, row)},
            }
            for label, row in zip(labels, probabilities)
        ],
    }


def _stack(predictor, examples):
    if predictor.modality == "image":
        return np.stack([item.pixels(predictor.input_shape) if isinstance(item, ImageFile) else item for item in examples]).astype("float32")
    if predictor.modality == "sequence":
        length = max(len(item) for item in examples)
        batch = np.zeros((len(examples), length, examples[0].shape[-1]), "float32")
        for index, item in enumerate(examples):
            batch[index, : len(item)] = item
        return batch
    return np.stack(examples).astype("float32")


def _text_of(item):
    return item if isinstance(item, str) else str(item)


def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle)):
            cells = [cell.strip() for cell in row if cell.strip()]
            if not cells:
                continue
            try:
                yield [float(cell) for cell in cells]
            except ValueError:
                if number == 0:
                    continue  # A header row.
                raise ExportError(f"{path}:{number + 1}: not a row of numbers") from None


def build_parser():
    parser = OneLineParser(prog="python -m export.predict", description="Classify inputs with a .keras, SavedModel or ONNX artifact.")
    parser.add_argument("artifact", help="a .keras file, an .onnx file, a version folder (exports/<name>/<N>) or exports/<name>")
    parser.add_argument("inputs", nargs="+", help="image files/folders, texts (or .txt files), or CSV files")
    parser.add_argument("--format", choices=["savedmodel", "onnx"], default=None, dest="artifact_format",
                        help="which artifact of a version folder (default: the SavedModel when present)")
    parser.add_argument("--int8", action="store_true", help="use model.int8.onnx of a version folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--top", type=int, default=3, help="classes shown per input in text output")
    return parser


def main(argv=None):
    """Runs the CLI; returns the exit status (0, or 2 for a usage error)."""
    arguments = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        predictor = load_predictor(arguments.artifact, arguments.artifact_format, arguments.int8)
        examples, labels = read_inputs(arguments.inputs, predictor.modality, predictor.input_shape)
        probabilities = predictor.predict(examples)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.json:
        print(json.dumps(predictions_json(predictor, arguments.artifact, labels, probabilities), indent=2))
    else:
        print(format_predictions(labels, probabilities, predictor.class_names, arguments.top))
    return 0


if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())
