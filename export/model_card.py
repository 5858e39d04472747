"""The model card: `assets.extra/model_card.json` in every published version folder.

It says what was exported and how far to trust it: the class names and input
spec (what `export.predict` and the SavedModel/LiteRT runners read), the
training run with its config and metrics, the parity table, each format's own
section (signatures, ONNX inputs, tokenizer, int8 comparisons) and the library
versions.
"""

import datetime
import json

from kerasdl.contract import MODEL_CARD_FILE, input_spec


def build_model_card(source, name, version, formats, parity, sections):
    """Returns the model card as a dict.

    Args:
        source: the `export.source.ExportSource` exported.
        name, version: the served model name and version.
        formats: the format names written.
        parity: the `ParityResult` rows.
        sections: the formats' card sections (`{"signatures": ..., "onnx": ..., ...}`), merged in last.

    Example:
    >>> build_model_card(source, "mlp", 1, ["onnx"], parity, {})["class_names"]
    ['alpha', 'beta', 'gamma']
    """
    import keras
    import tensorflow as tf

    metadata = source.metadata
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
        "formats": list(formats),
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


def write_model_card(version_dir, card):
    """Writes `card` to `<version_dir>/assets.extra/model_card.json`; returns the path."""
    path = version_dir / MODEL_CARD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2, default=_to_json))
    return path


def _to_json(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
