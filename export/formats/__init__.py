"""The export formats: one module per format, each with the same small interface.

Like keras' `src/export/` (one thin module per format), a format is a module
`export/formats/<name>.py` that defines:

- `NAME`: the `--format` value.
- `FILES`: `{variant: file name in the version folder}`; "fp32" always, plus
  "int8" when the format quantizes.
- `DEFAULT_TOLERANCE`: the parity tolerance (largest absolute difference in
  probabilities from the Keras model) unless the model's registry entry
  states its own (`ModelEntry.tolerances`, read through `tolerance`).
- `TAKES_TOKEN_IDS`: True when a text model's artifact takes token ids (then
  the exporter writes `tokenizer/` beside it once, see `export.text`).
- `write(job) -> dict`: writes the artifact into `job.folder`; returns model-card sections.
- `verify(job) -> [ParityResult]`: reloads what `write` wrote, runs it on the
  held-out raw examples (`job.source.examples`) and compares with Keras (`job.expected`).
- `load(path) -> runner`: the artifact ready to run on raw examples:
  `class_names`, `modality`, `input_shape`, `predict(examples) -> probabilities`
  (`kerasdl.runtime.Runner` for the TensorFlow-free formats).
- `quantize(job) -> (card key, section)`, only where `FILES` has "int8": writes
  the int8 file and measures it (`export.int8_gate.gate_int8`); the section
  says whether it passed the accuracy gate (`accepted`).

`export.orchestrator` loops over `NAMES`; a new format is its module here, a
name in `NAMES`, and its round-trip test. Format modules import TensorFlow
only inside their functions, so `export.predict` stays TensorFlow-free on the
runtime formats' paths.
"""

import dataclasses
import importlib
import typing

# Every format, in the order the exporter writes them and the parity table lists them.
NAMES = ("savedmodel", "onnx", "litert")
# What `python -m export.run` writes without --format: the TF Serving model and its edge twin.
DEFAULT_FORMATS = ("savedmodel", "onnx")


@dataclasses.dataclass
class ExportJob:
    """One export in progress: what a format's `write`, `verify` and `quantize` work on.

    Attributes:
        source: the `export.source.ExportSource` (model, metadata, held-out and calibration examples).
        folder: the staging version folder (`pathlib.Path`), renamed into place when all is verified.
        name: the served model name; version: its version number.
        expected: the Keras model's probabilities on `source.examples` (the parity reference).
        options: format options from the command line ("opset", "max_accuracy_drop").
        log: where progress lines go.
        tokenizer: for text models, the `tokenizer/tokenizer.json` content once
            written (the token-id formats describe it in their metadata).
    """

    source: typing.Any
    folder: typing.Any
    name: str
    version: int
    expected: typing.Any
    options: dict
    log: typing.Callable = print
    tokenizer: typing.Optional[dict] = None

    @property
    def metadata(self):
        return self.source.metadata

    def tolerance(self, format_name):
        """Returns the parity tolerance of `format_name` for this job's model (`tolerance`)."""
        return tolerance(self.source.metadata, format_name)


def get_format(name):
    """Returns the format module called `name`.

    Raises:
        KeyError: no such format; the message lists the valid names.

    Example:
    >>> get_format("onnx").FILES["int8"]
    'model.int8.onnx'
    """
    if name not in NAMES:
        raise KeyError(f"unknown format {name}; choose from: {', '.join(NAMES)}")
    return importlib.import_module(f"export.formats.{name}")


def quantizable_formats():
    """Returns the names of the formats that write an int8 variant, in `NAMES` order."""
    return [name for name in NAMES if "int8" in get_format(name).FILES]


def format_of_file(path):
    """Returns `(format name, variant)` of an artifact file by its name, e.g. ("onnx", "int8"), or None."""
    file_name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    for name in NAMES:
        for variant, candidate in get_format(name).FILES.items():
            if candidate == file_name:
                return name, variant
    for name in NAMES:
        suffix = "." + get_format(name).FILES["fp32"].rsplit(".", 1)[-1]
        if file_name.endswith(suffix) and "." in get_format(name).FILES["fp32"]:
            return name, "fp32"
    return None


def tolerance(metadata, format_name):
    """Returns the parity tolerance for `format_name`: the model entry's own, else the format's default.

    A model outside the registry, or an entry without a row for the format,
    gets the format's `DEFAULT_TOLERANCE` (never a KeyError).
    """
    default = get_format(format_name).DEFAULT_TOLERANCE
    entry = model_entry(metadata)
    return entry.tolerance(format_name, default) if entry is not None else default


def model_entry(metadata):
    """Returns the registry entry of the model that `metadata` names, or None for a model outside the registry."""
    from kerasdl.models.registry import get_model_entry

    try:
        return get_model_entry(metadata.get("model"))
    except KeyError:
        return None
