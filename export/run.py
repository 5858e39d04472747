"""`python -m export.run`: a trained run (or `.keras` file) to verified, published serving artifacts.

    python -m export.run runs/cnn/20261128-010203 --format savedmodel onnx --quantize int8

writes `exports/<name>/<version>/` (CONTRACTS.md §5): the TF Serving SavedModel
with its warmup requests and model card, `model.onnx` (+ `model.int8.onnx`,
+ `tokenizer/` for text models). Every artifact is reloaded and compared with
the Keras model on held-out examples before the version folder is renamed into
place; a mismatch exits with status 1 and publishes nothing. Usage errors
(missing file, not a kerasdl model, an existing version without --force) exit
with status 2. Both print one line on stderr, no traceback.
"""

import dataclasses
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

from export.errors import ExportError, VerificationError
from kerasdl.contract import IMAGE_BYTES_INPUT, IMAGE_BYTES_SIGNATURE, onnx_input_names
from export.cli import OneLineParser, quiet_libraries

FORMATS = ("savedmodel", "onnx")
# Parity tolerances by format, unless the model's entry states its own: the
# largest absolute difference in probabilities from the Keras model. The
# SavedModel runs the same TensorFlow kernels, so it differs only by graph
# rewrites; ONNX Runtime has its own kernels and summation orders.
FORMAT_TOLERANCES = {"savedmodel": 1e-5, "onnx": 1e-4}
MODEL_CARD_FILE = os.path.join("assets.extra", "model_card.json")
# Warmup requests: one single example and one small batch per signature, so
# TF Serving initializes both the batch-1 and the batched paths.
WARMUP_BATCH = 8


@dataclasses.dataclass
class ExportResult:
    """What `export_model` published."""

    version_dir: Path
    version: int
    parity: list
    card: dict


def export_model(
    path,
    formats=FORMATS,
    name=None,
    base="exports",
    version=None,
    force=False,
    opset=17,
    quantize=None,
    max_accuracy_drop=1.0,
    log=print,
):
    """Exports, verifies and publishes a trained model; the Python API behind the CLI.

    Args:
        path: a run directory or a `.keras` file written by `kerasdl.artifact.save_model`.
        formats: any of "savedmodel", "onnx".
        name: the served model name (folder under `base`); defaults to the metadata's model name.
        base: the folder holding the TF Serving model base paths.
        version: the version to write; defaults to the next integer.
        force: replace an existing version.
        opset: the ONNX opset.
        quantize: None or "int8" (needs "onnx" in `formats`).
        max_accuracy_drop: the largest int8 accuracy loss, in percentage points, that still publishes.
        log: where progress lines go.

    Returns:
        An `ExportResult`.

    Raises:
        ExportError: a usage problem (nothing written).
        VerificationError: an artifact disagrees with Keras or int8 lost too much (nothing published).

    Example:
    >>> result = export_model("runs/mlp/20261128-010203", formats=["savedmodel", "onnx"], base="exports")
    >>> result.version_dir
    PosixPath('exports/mlp/1')
    """
    from export.publish import choose_version, staged_version
    from export.source import load_source
    from export.verify import format_table, keras_probabilities

    formats = list(dict.fromkeys(formats))
    unknown = [item for item in formats if item not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format {', '.join(unknown) or '(none)'}; choose from: {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantization {quantize!r}; the only one is int8")
    if quantize and "onnx" not in formats:
        raise ExportError("--quantize int8 quantizes the ONNX model; add onnx to --format")

    source = load_source(path)
    name = name or source.name
    if not name or "/" in name or name.startswith(".") or name.isdigit():
        raise ExportError(f"bad model name {name!r}: use letters, digits, '-' and '_' (it becomes a folder name)")
    model_base = Path(base) / name
    version = choose_version(model_base, version, force)
    log(f"exporting {source.model_path} ({source.metadata['modality']}, {len(source.metadata['class_names'])} classes) "
        f"as {name} version {version}; parity on {len(source.examples)} examples from {source.examples_origin}")

    expected = keras_probabilities(source.model, source.examples, source.metadata)
    parity, card_sections = [], {}
    with staged_version(model_base, version, force) as staging:
        if "savedmodel" in formats:
            card_sections.update(_export_savedmodel(source, name, staging, expected, parity, log))
        if "onnx" in formats:
            card_sections.update(_export_onnx(source, staging, expected, opset, parity, log))
            if quantize == "int8":
                card_sections.update(_export_int8(source, staging, max_accuracy_drop, log))
        card = _model_card(source, name, version, formats, parity, card_sections)
        card_path = staging / MODEL_CARD_FILE
        card_path.parent.mkdir(parents=True, exist_ok=True)
        card_path.write_text(json.dumps(card, indent=2, default=_to_json))
        log(format_table(parity))
        failed = [f"{row.artifact}/{row.signature}" for row in parity if not row.ok]
        if failed:
            raise VerificationError(f"parity failed for {', '.join(failed)}; nothing published")
        quantization = card_sections.get("quantization")
        if quantization and not quantization["accepted"]:
            raise VerificationError(
                f"int8 accuracy drop {quantization['comparison']['accuracy_drop_points']:.2f} points exceeds "
                f"--max-accuracy-drop {max_accuracy_drop}; nothing published"
            )
    version_dir = model_base / str(version)
    log(f"published {version_dir}")
    return ExportResult(version_dir=version_dir, version=version, parity=parity, card=card)


def _export_savedmodel(source, name, staging, expected, parity, log):
    from export.savedmodel import export_savedmodel
    from export.verify import ServingSession, check_serving_outputs, compare
    from export.warmup import write_warmup

    metadata = source.metadata
    signatures = export_savedmodel(source.model, metadata, staging)
    log(f"wrote SavedModel with signatures {', '.join(signatures)}")
    feeds = {"serving_default": ({next(iter(signatures["serving_default"]["inputs"])): _serving_array(source.examples)}, expected)}
    if IMAGE_BYTES_SIGNATURE in signatures:
        # PNG is lossless, so the decoded pixels equal the (rounded) raw ones and
        # the Keras reference on those pixels is exact.
        pixels = np.clip(np.round(source.examples), 0, 255).astype("uint8")
        from export.verify import keras_probabilities

        feeds[IMAGE_BYTES_SIGNATURE] = (
            {IMAGE_BYTES_INPUT: np.array([encode_png(image) for image in pixels], dtype=object)},
            keras_probabilities(source.model, pixels.astype("float32"), metadata),
        )
    limit = _tolerance(metadata, "savedmodel")
    with ServingSession(staging) as session:
        missing = sorted(set(signatures) - set(session.signatures))
        if missing:
            raise VerificationError(f"the reloaded SavedModel lacks signatures {missing}")
        for signature, (feed, reference) in feeds.items():
            outputs = session.run(signature, feed)
            problem = check_serving_outputs(outputs, metadata["class_names"])
            result = compare("savedmodel", signature, outputs["probabilities"], reference, limit, problem)
            result.ok = result.ok and not problem
            parity.append(result)

    requests = []
    for signature, (feed, _) in feeds.items():
        for count in (1, WARMUP_BATCH):
            requests.append((signature, {key: value[:count] for key, value in feed.items()}))
    write_warmup(staging, name, requests)
    return {"signatures": signatures, "warmup": {"file": "assets.extra/tf_serving_warmup_requests", "requests": len(requests)}}


def _export_onnx(source, staging, expected, opset, parity, log):
    from export.onnx import export_onnx
    from export.verify import compare, onnx_probabilities

    metadata = source.metadata
    path = staging / "model.onnx"
    section = {}
    if metadata["modality"] == "text":
        from export.text import token_submodel, write_tokenizer

        tokenizer_info = write_tokenizer(source.model, metadata, staging / "tokenizer")
        onnx_model = token_submodel(source.model, metadata)
        section["tokenizer"] = tokenizer_info
        preprocessing = {"tokenizer": "tokenizer/tokenizer.json", "helper": "export/tokenizer.py", **tokenizer_info}
    else:
        onnx_model, preprocessing = source.model, None
    info = export_onnx(onnx_model, metadata, path, opset=opset, preprocessing=preprocessing)
    log(f"wrote {path.name} (opset {opset}, inputs {', '.join(info['inputs'])})")
    feed = onnx_feed(source, staging)
    if metadata["modality"] == "text":
        # The Python tokenizer must give the in-graph tokenizer's ids exactly;
        # a separate row says which half is wrong when ONNX parity fails.
        from export.text import tokenizer_parity
        from kerasdl.tokenizer import load_tokenizer
        from export.verify import ParityResult

        agreement, differing = tokenizer_parity(source.model, metadata, load_tokenizer(staging / "tokenizer"), source.examples)
        parity.append(ParityResult("tokenizer", "token_ids", len(source.examples), float(differing), 0.0, agreement,
                                   differing == 0, "" if differing == 0 else f"{differing} ids differ"))
    parity.append(compare("onnx", "probabilities", onnx_probabilities(path, feed), expected, _tolerance(metadata, "onnx")))
    section["onnx"] = {"file": "model.onnx", **info}
    return section


def _export_int8(source, staging, max_accuracy_drop, log):
    from export.quantize import compare_int8, quantize_int8

    metadata = source.metadata
    entry = model_entry(metadata)
    # A model outside the registry gets dynamic int8, which needs no calibration data.
    method = entry.quantization if entry is not None else "dynamic"
    calibration = None
    if method == "static":
        examples = source.calibration_examples()
        calibration = [onnx_feed_for(metadata, examples[start : start + 16], staging) for start in range(0, len(examples), 16)]
    fp32_path, int8_path = staging / "model.onnx", staging / "model.int8.onnx"
    details = quantize_int8(fp32_path, int8_path, method, calibration)
    comparison = compare_int8(fp32_path, int8_path, onnx_feed(source, staging), source.labels)
    accepted = comparison["accuracy_drop_points"] <= max_accuracy_drop
    log(
        f"int8 ({method}): size {100 * comparison['size_ratio']:.1f} % of fp32, agreement with fp32 "
        f"{100 * comparison['agreement']:.1f} %, accuracy {100 * comparison['fp32_accuracy']:.1f} % -> "
        f"{100 * comparison['int8_accuracy']:.1f} % (drop {comparison['accuracy_drop_points']:.2f} points, "
        f"limit {max_accuracy_drop}; vs {comparison['labels']})"
    )
    return {
        "quantization": {
            "file": "model.int8.onnx",
            **details,
            "comparison": comparison,
            "max_accuracy_drop_points": max_accuracy_drop,
            "accepted": accepted,
        }
    }


def model_entry(metadata):
    """Returns the registry entry of the model that `metadata` names, or None for a model outside the registry."""
    from kerasdl.models.registry import get_model_entry

    try:
        return get_model_entry(metadata.get("model"))
    except KeyError:
        return None


def _tolerance(metadata, artifact_format):
    entry = model_entry(metadata)
    default = FORMAT_TOLERANCES[artifact_format]
    return entry.tolerance(artifact_format, default) if entry is not None else default


def onnx_feed(source, version_dir):
    """Returns the ONNX input feed for the held-out examples of `source`."""
    return onnx_feed_for(source.metadata, source.examples, version_dir)


def onnx_feed_for(metadata, examples, version_dir):
    if metadata["modality"] == "text":
        from kerasdl.tokenizer import load_tokenizer

        return load_tokenizer(Path(version_dir) / "tokenizer").encode_batch(list(examples))
    return {onnx_input_names(metadata)[0]: np.asarray(examples, dtype="float32")}


def encode_png(pixels):
    """Returns PNG bytes of a uint8 `[H, W, C]` image (C = 1 or 3)."""
    import io

    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _serving_array(examples):
    if isinstance(examples, list):
        return np.array([text.encode("utf-8") for text in examples], dtype=object)
    return np.asarray(examples, dtype="float32")


def _model_card(source, name, version, formats, parity, sections):
    import keras
    import tensorflow as tf

    metadata = source.metadata
    from kerasdl.contract import input_spec

    card = {
        "name": name,
        "version": version,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": metadata.get("model"),
        "modality": metadata["modality"],
        "class_names": [str(item) for item in metadata["class_names"]],
        "input": metadata.get("input"),
        "input_spec": input_spec(metadata),
        "text": metadata.get("text"),
        "formats": formats,
        "training_run": {
            "run_dir": str(source.run_dir) if source.run_dir is not None else metadata.get("run_dir"),
            "model_file": str(source.model_path),
            "config": source.config,
        },
        "metrics": source.metrics,
        "parity": {
            "examples_origin": source.examples_origin,
            "reference": "softmax of the Keras model's logits",
            "results": [row.as_dict() for row in parity],
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    card.update(sections)
    return card


def _to_json(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def build_parser():
    parser = OneLineParser(
        prog="python -m export.run",
        description="Export a trained kerasdl model to TF Serving SavedModel and ONNX, verify parity, publish atomically.",
    )
    parser.add_argument("path", help="a run directory (runs/<model>/<timestamp>/) or a .keras file saved by kerasdl")
    parser.add_argument("--format", nargs="+", default=list(FORMATS), dest="formats", metavar="FORMAT",
                        help="savedmodel and/or onnx (default: both)")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="also write model.int8.onnx")
    parser.add_argument("--name", default=None, help="served model name (default: the model's registry name)")
    parser.add_argument("--base", default="exports", help="folder of TF Serving model base paths (default: exports)")
    parser.add_argument("--version", type=int, default=None, help="version number (default: the next one)")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0,
                        help="refuse to publish when int8 loses more accuracy than this, in points (default: 1.0)")
    return parser


def main(argv=None):
    """Runs the CLI; returns the exit status (0 published, 1 verification failed, 2 usage error)."""
    arguments = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        export_model(
            arguments.path,
            formats=arguments.formats,
            name=arguments.name,
            base=arguments.base,
            version=arguments.version,
            force=arguments.force,
            opset=arguments.opset,
            quantize=arguments.quantize,
            max_accuracy_drop=arguments.max_accuracy_drop,
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except VerificationError as error:
        print(f"verification failed: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # A conversion crash is still one line, and nothing was published.
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"error: export failed ({type(error).__name__}: {detail}); nothing published", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())
