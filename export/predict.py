"""`python -m export.predict`: one predictor over `.keras` files and every exported format.

    python -m export.predict exports/cnn/3 photo.jpg                  # SavedModel (image_bytes signature)
    python -m export.predict exports/cnn/3 --format onnx photos/ --json
    python -m export.predict runs/text_lstm/x/model.keras "a gripping film"
    python -m export.predict exports/mlp/1/model.onnx features.csv
    python -m export.predict exports/gru/1 --format litert --int8 series.csv

Inputs by modality:
- image: image files, or folders of them (JPEG/PNG/BMP/GIF), searched recursively.
- text: the texts themselves, or `.txt` files with one text a line.
- features: CSV files, one example a row (a non-numeric first row is a header).
- sequence: CSV files, one series a row, time-major (`t0f0, t0f1, ..., t1f0, ...`);
  shorter rows are zero-padded to the longest, as the models expect; or UCR files
  (`ECG200_TEST.txt`: the class label first), whose labels are printed beside the
  predictions with the accuracy (`--label-column`).
Folders stand for the files under them, recursively, in sorted order.

An exported artifact is loaded by its format module (`export.formats.<name>.load`).
The ONNX and LiteRT paths import no TensorFlow (an edge box has a runtime,
numpy and Pillow only): TensorFlow is imported only inside the `.keras`
predictor and the SavedModel format's runner.
"""

import json
import sys
from pathlib import Path

import numpy as np

from export import formats
from export.errors import ExportError
from export.inputs import LABEL_COLUMNS, ImageFile, read_labelled_inputs
from export.publish import existing_versions
from export.cli import OneLineParser, quiet_libraries
from kerasdl.runtime import ArtifactError, pad_sequences


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
        # export.run's own readers, so both commands refuse a bad .keras file with the same line.
        from export.keras_file import load_keras_model, read_keras_metadata

        metadata = read_keras_metadata(path)
        self.model = load_keras_model(path)
        self.metadata = metadata
        super().__init__(metadata["class_names"], metadata["modality"], (metadata.get("input") or {}).get("shape"))

    def predict(self, examples):
        from export.verify import keras_probabilities
        from kerasdl.runtime.images import check_image_sizes

        batch = [_text_of(item) for item in examples] if self.modality == "text" else _stack(self, examples)
        if self.modality == "image":
            try:
                check_image_sizes(batch, self.input_shape)
            except ArtifactError as error:
                raise ExportError(str(error)) from None
        return keras_probabilities(self.model, batch, self.metadata)


class FormatPredictor(Predictor):
    """An exported artifact loaded by its format (`export.formats`): SavedModel, ONNX, LiteRT.

    Image files go to a runner's `predict_image_bytes` when it has one (the
    SavedModel's `image_bytes` signature, the path TF Serving clients use);
    otherwise they are decoded (as TensorFlow decodes them, `kerasdl.runtime.images`)
    and the runner gets pixels of each file's own size.
    """

    def __init__(self, runner):
        if runner.class_names is None or not getattr(runner, "has_metadata", True):
            raise ExportError(f"{runner.path}: no kerasdl metadata_props (class_names, modality); export it with python -m export.run")
        self.runner = runner
        self.kind = runner.kind
        super().__init__(runner.class_names, runner.modality, runner.input_shape)

    def predict(self, examples):
        if self.modality == "image" and all(isinstance(item, ImageFile) for item in examples) and hasattr(self.runner, "predict_image_bytes"):
            return self.runner.predict_image_bytes([item.data for item in examples])
        if self.modality == "image":
            examples = [item.pixels(self.input_shape) if isinstance(item, ImageFile) else item for item in examples]
        elif self.modality == "text":
            examples = [_text_of(item) for item in examples]
        try:
            return self.runner.predict(examples)
        except ArtifactError as error:
            raise ExportError(str(error)) from None


def load_predictor(artifact, artifact_format=None, int8=False):
    """Returns the predictor for `artifact`.

    Args:
        artifact: a `.keras` file, an exported model file (`model.onnx`, ...), a
            version folder, or a model base path (`exports/<name>`, whose newest version is used).
        artifact_format: a name of `export.formats.NAMES` to choose inside a version
            folder; None takes the SavedModel when present, else the first format found.
        int8: use the format's int8 file (`model.int8.onnx`, ...) of a version folder.

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
        found = formats.format_of_file(path)
        if found is None:
            raise ExportError(f"{path}: not a .keras file, an exported model file ({', '.join(_file_names('fp32'))}), nor a version folder")
        return _format_predictor(found[0], path)
    variant = "int8" if int8 else "fp32"
    if not any((path / name).exists() for name in _file_names("fp32")):
        versions = existing_versions(path)
        if versions:
            path = path / str(versions[-1])
    if artifact_format is None:
        # The SavedModel is what TF Serving answers with; int8 exists only for the runtime formats.
        candidates = [name for name in formats.NAMES if variant in formats.get_format(name).FILES]
        present = [name for name in candidates if (path / formats.get_format(name).FILES[variant]).is_file()]
        if not present:
            raise ExportError(_no_artifact_message(path, variant))
        artifact_format = present[0]
    elif artifact_format not in formats.NAMES:
        raise ExportError(f"unknown format {artifact_format!r}; use one of {', '.join(formats.NAMES)}")
    files = formats.get_format(artifact_format).FILES
    if variant not in files:
        raise ExportError(f"the {artifact_format} format has no int8 variant; use --format {' or '.join(formats.quantizable_formats())}")
    if not (path / files[variant]).is_file():
        raise ExportError(f"{path}: no {files[variant]}; export with --format {artifact_format}{' --quantize int8' if int8 else ''}")
    return _format_predictor(artifact_format, path / files[variant])


def _no_artifact_message(path, variant):
    names = ", ".join(_file_names(variant))
    if variant == "int8" and any((path / name).is_file() for name in _file_names("fp32")):
        return f"{path}: no int8 model ({names}); export with --quantize int8, or drop --int8"
    return (f"{path}: no exported model here (none of {names}, no integer version folder); "
            "pass a version folder written by python -m export.run, a model file, or a .keras file")


def _format_predictor(format_name, path):
    try:
        return FormatPredictor(formats.get_format(format_name).load(path))
    except ArtifactError as error:
        raise ExportError(str(error)) from None


def _file_names(variant):
    return [module.FILES[variant] for module in map(formats.get_format, formats.NAMES) if variant in module.FILES]


def format_predictions(labels, probabilities, class_names, top_k=3, truths=None):
    """Returns one line per example: the best class and the top probabilities (and the true label, when known).

    Example:
    >>> format_predictions(["a.csv:1"], np.array([[0.2, 0.8]]), ["-1", "1"], truths=["-1"])
    'a.csv:1: 1 (1 0.800, -1 0.200) true -1\naccuracy 0.000 (0 of 1 labelled inputs)'
    """
    lines = []
    truths = truths or [None] * len(labels)
    for label, row, truth in zip(labels, probabilities, truths):
        order = np.argsort(-row)[:top_k]
        best = ", ".join(f"{class_names[index]} {row[index]:.3f}" for index in order)
        lines.append(f"{label}: {class_names[order[0]]} ({best})" + ("" if truth is None else f" true {truth}"))
    score = accuracy(probabilities, class_names, truths)
    if score is not None:
        lines.append(f"accuracy {score['accuracy']:.3f} ({score['correct']} of {score['labelled']} labelled inputs)")
    return "\n".join(lines)


def accuracy(probabilities, class_names, truths):
    """`{"accuracy", "correct", "labelled"}` over the examples with a true label; None when none has one."""
    pairs = [(class_names[int(np.argmax(row))], str(truth)) for row, truth in zip(probabilities, truths or []) if truth is not None]
    if not pairs:
        return None
    correct = sum(predicted == truth for predicted, truth in pairs)
    return {"accuracy": correct / len(pairs), "correct": correct, "labelled": len(pairs)}


def predictions_json(predictor, artifact, labels, probabilities, truths=None):
    """Returns the JSON-ready dict that `--json` prints (`true_label` and `accuracy` where inputs carry labels)."""
    truths = truths or [None] * len(labels)
    answer = {
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
                **({} if truth is None else {"true_label": truth}),
            }
            for label, row, truth in zip(labels, probabilities, truths)
        ],
    }
    score = accuracy(probabilities, predictor.class_names, truths)
    if score is not None:
        answer["accuracy"] = score
    return answer


def _stack(predictor, examples):
    if predictor.modality == "image":
        # Pixels of each file's own size: the model resizes inside, in batches of one size.
        return [item.pixels(predictor.input_shape) if isinstance(item, ImageFile) else np.asarray(item, "float32") for item in examples]
    if predictor.modality == "sequence":
        return pad_sequences(examples)
    return np.stack(examples).astype("float32")


def _text_of(item):
    return item if isinstance(item, str) else str(item)


def build_parser():
    parser = OneLineParser(prog="python -m export.predict", description="Classify inputs with a .keras file or an exported artifact (SavedModel, ONNX, ...).")
    parser.add_argument("artifact", help="a .keras file, an .onnx file, a version folder (exports/<name>/<N>) or exports/<name>")
    parser.add_argument("inputs", nargs="+", help="image files, texts (or .txt files), CSV or UCR files, or folders of them (searched recursively)")
    parser.add_argument("--format", choices=list(formats.NAMES), default=None, dest="artifact_format",
                        help="which artifact of a version folder (default: the SavedModel when present)")
    parser.add_argument("--int8", action="store_true", help="use the int8 variant (model.int8.onnx, ...) of a version folder")
    parser.add_argument("--label-column", choices=LABEL_COLUMNS, default="auto",
                        help="series files: 'first' reads the first column as the class label (UCR layout) and prints it "
                             "beside each prediction, with the accuracy, rather than dropping it, since a labelled file "
                             "is a test set; 'none' reads every column as a value; 'auto' (default) takes UCR-named "
                             "files (<Name>_TRAIN/_TEST) as 'first', .csv/.tsv as 'none', and asks for the flag otherwise")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--top-k", type=int, default=3, help="classes shown per input in text output (serving.client takes the same flag)")
    return parser


def main(argv=None):
    """Runs the CLI; returns the exit status (0, or 2 for a usage error)."""
    arguments = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        predictor = load_predictor(arguments.artifact, arguments.artifact_format, arguments.int8)
        examples, labels, truths = read_labelled_inputs(arguments.inputs, predictor.modality, predictor.input_shape,
                                                        arguments.label_column)
        probabilities = predictor.predict(examples)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.json:
        print(json.dumps(predictions_json(predictor, arguments.artifact, labels, probabilities, truths), indent=2))
    else:
        print(format_predictions(labels, probabilities, predictor.class_names, arguments.top_k, truths))
    return 0


if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())
