"""The export itself: a trained model to verified, published artifacts in every requested format.

`export_model` loads the run, computes the Keras reference on its held-out
examples, then for each format of the registry (`export.formats`) in order:
writes the artifact into a staging version folder, reloads and verifies it,
and with `quantize="int8"` writes and gates its int8 variant on every held-out
example. The model card goes beside them (`export.model_card`). The folder is
renamed into place (`export.publish`) only when every parity row is OK;
otherwise nothing is published. An int8 variant that fails its accuracy gate
(or that the model's recipe leaves out) is removed and the verified fp32
artifacts are published without it, which the log and the card say, unless
`require_int8` asks for int8 or nothing.
"""

import dataclasses
from pathlib import Path

from export import formats as registry
from export.errors import ExportError, VerificationError


@dataclasses.dataclass
class ExportResult:
    """What `export_model` published."""

    version_dir: Path
    version: int
    parity: list
    card: dict


def export_model(
    path,
    formats=None,
    name=None,
    base="exports",
    version=None,
    force=False,
    opset=None,
    quantize=None,
    max_accuracy_drop=1.0,
    require_int8=False,
    log=print,
):
    """Exports, verifies and publishes a trained model; the Python API behind `python -m export.run`.

    Args:
        path: a run directory or a `.keras` file written by `kerasdl.artifact.save_model`.
        formats: names from `export.formats.NAMES` (default `DEFAULT_FORMATS`: savedmodel, onnx).
        name: the served model name (folder under `base`); defaults to the metadata's model name.
        base: the folder holding the TF Serving model base paths.
        version: the version to write; defaults to the next integer.
        force: replace an existing version.
        opset: the ONNX opset; None uses `export.formats.onnx.OPSET`.
        quantize: None or "int8" (for every requested format that has an int8 variant).
        max_accuracy_drop: the largest int8 accuracy loss, in percentage points, that still publishes int8.
        require_int8: fail (publish nothing) when an int8 variant is left out, instead of
            publishing fp32 without it; implies `quantize="int8"`.
        log: where progress lines go.

    Returns:
        An `ExportResult`.

    Raises:
        ExportError: a usage problem (nothing written).
        VerificationError: an artifact disagrees with Keras, or int8 was left out under
            `require_int8` (nothing published).

    Example:
    >>> result = export_model("runs/mlp/20261128-010203", formats=["savedmodel", "onnx"], base="exports")
    >>> result.version_dir
    PosixPath('exports/mlp/1')
    """
    from export.model_card import build_model_card, write_model_card
    from export.publish import choose_version, staged_version
    from export.source import load_source
    from export.text import export_tokenizer
    from export.verify import format_table, keras_probabilities

    quantize = "int8" if require_int8 else quantize
    selected = _check_request(formats, quantize)
    source = load_source(path)
    name = name or source.name
    if not name or "/" in name or name.startswith(".") or name.isdigit():
        raise ExportError(f"bad model name {name!r}: use letters, digits, '-' and '_' (it becomes a folder name)")
    model_base = Path(base) / name
    version = choose_version(model_base, version, force)
    log(f"exporting {source.model_path} ({source.metadata['modality']}, {len(source.metadata['class_names'])} classes) "
        f"as {name} version {version}; parity on {len(source.examples)} examples from {source.examples_origin}")

    expected = keras_probabilities(source.model, source.examples, source.metadata)
    parity, sections, gates = [], {}, {}
    options = {"opset": opset, "max_accuracy_drop": max_accuracy_drop}
    with staged_version(model_base, version, force, log=log) as staging:
        job = registry.ExportJob(source=source, folder=staging, name=name, version=version, expected=expected, options=options, log=log)
        for format_name in selected:
            module = registry.get_format(format_name)
            if module.TAKES_TOKEN_IDS and source.metadata["modality"] == "text" and job.tokenizer is None:
                job.tokenizer, row = export_tokenizer(job)
                sections["tokenizer"] = job.tokenizer
                parity.append(row)
            sections.update(module.write(job))
            parity.extend(module.verify(job))
            if quantize == "int8" and "int8" in module.FILES:
                key, section = module.quantize(job)
                sections[key] = section
                gates[format_name] = section
        left_out = _settle_int8(gates, staging, max_accuracy_drop, remove=not require_int8)
        if gates:
            sections["int8"] = {name: {"file": section["file"], "published": section["published"], "reason": section.get("left_out")}
                                for name, section in gates.items()}
        card = build_model_card(source, name, version, selected, parity, sections)
        write_model_card(staging, card)
        log(format_table(parity))
        failed = [f"{row.artifact}/{row.signature}" for row in parity if not row.ok]
        if failed:
            raise VerificationError(f"parity failed for {', '.join(failed)}; nothing published")
        if left_out and require_int8:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in left_out.items())
            raise VerificationError(f"int8 left out ({reasons}) and --require-int8 was given; nothing published")
        for format_name, reason in left_out.items():
            log(f"{format_name} int8 left out: {reason}; publishing the verified fp32 artifacts without "
                f"{gates[format_name]['file']} (--require-int8 makes this an error)")
    version_dir = model_base / str(version)
    log(f"published {version_dir}")
    return ExportResult(version_dir=version_dir, version=version, parity=parity, card=card)


def _check_request(requested, quantize):
    requested = list(dict.fromkeys(requested if requested is not None else registry.DEFAULT_FORMATS))
    unknown = [item for item in requested if item not in registry.NAMES]
    if unknown or not requested:
        raise ExportError(f"unknown format {', '.join(unknown) or '(none)'}; choose from: {', '.join(registry.NAMES)}")
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantization {quantize!r}; the only one is int8")
    quantizable = registry.quantizable_formats()
    if quantize and not set(requested) & set(quantizable):
        others = f" (or {', '.join(quantizable[1:])})" if len(quantizable) > 1 else ""
        raise ExportError(f"--quantize int8 quantizes the {' and '.join(quantizable)} models; add {quantizable[0]} to --format{others}")
    # The registry's order, whatever the command line's: the parity table and the card list formats the same way.
    return [name for name in registry.NAMES if name in requested]


def _settle_int8(gates, staging, max_accuracy_drop, remove):
    """Marks each int8 section published or left out; returns `{format: reason}` of those left out.

    A variant is left out when its recipe wrote none (the section's own
    `left_out`) or it failed the accuracy gate; with `remove` its file is
    deleted from the staging folder so that only verified fp32 is published.
    """
    from export.int8_gate import CONFIDENCE

    left_out = {}
    for format_name, section in gates.items():
        if section.get("accepted"):
            section["published"] = True
            continue
        if not section.get("left_out"):
            comparison = section["comparison"]
            low, high = comparison["accuracy_drop_interval_points"]
            section["left_out"] = (
                f"accuracy drop {comparison['accuracy_drop_points']:.2f} points ({100 * CONFIDENCE:.0f} % interval [{low:.2f}, {high:.2f}]) "
                f"on {comparison['examples']} held-out examples exceeds --max-accuracy-drop {max_accuracy_drop}"
            )
        section["published"] = False
        left_out[format_name] = section["left_out"]
        if remove:
            (staging / section["file"]).unlink(missing_ok=True)
    return left_out
