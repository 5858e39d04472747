"""Reading a kerasdl `.keras` file, with one clear line for every way it can be wrong.

`python -m export.run` (through `export.source`) and `python -m export.predict`
both open `.keras` files here, so a file that is not a zip archive, is cut
short, has damaged kerasdl metadata, lacks it, or that Keras cannot load is
refused with the same `ExportError` line by both commands.
"""

import zipfile

from export.errors import ExportError
from kerasdl.artifact import load_metadata


def read_keras_metadata(model_path):
    """Returns the kerasdl metadata of a `.keras` file, refusing files kerasdl cannot serve.

    Raises:
        ExportError: one line for a file that is not a zip archive (or is
            truncated), unreadable, has damaged `kerasdl.json`, or lacks the
            metadata keys (modality, class_names, input) that make it a kerasdl model.

    Example:
    >>> read_keras_metadata("runs/mlp/20261128-010203/model.keras")["modality"]
    'features'
    """
    try:
        metadata = load_metadata(model_path)
    except zipfile.BadZipFile:
        raise ExportError(f"{model_path}: not a .keras file (not a zip archive); a truncated copy reads "
                          "like this too: pass a complete .keras file saved by kerasdl") from None
    except OSError as error:
        raise ExportError(f"{model_path}: cannot read it ({error.strerror or error})") from None
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        raise ExportError(f"{model_path}: its kerasdl.json metadata is damaged ({error}); save the model again "
                          "with kerasdl.artifact.save_model") from None
    if not isinstance(metadata, dict):
        raise ExportError(f"{model_path}: its kerasdl.json metadata is not a JSON object; save the model again "
                          "with kerasdl.artifact.save_model")
    missing = [key for key in ("modality", "class_names") if key not in metadata]
    if metadata.get("modality") != "text" and "input" not in metadata:
        missing.append("input")
    if missing:
        raise ExportError(
            f"{model_path}: not a kerasdl model (its kerasdl.json metadata lacks {', '.join(missing)}); "
            "save it with kerasdl.artifact.save_model or train it with python -m training.run"
        )
    return metadata


def load_keras_model(model_path):
    """Returns the Keras model of a `.keras` file; any failure of Keras to load it is one ExportError line."""
    import keras

    from kerasdl.artifact import load_model

    try:
        model, _ = load_model(model_path)
    except Exception as error:  # Keras raises many types; the user needs one line.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{model_path}: Keras cannot load this model ({first_line}); "
                          "save it again with kerasdl.artifact.save_model") from None
    if not isinstance(model, keras.Model):
        raise ExportError(f"{model_path}: does not hold a Keras model")
    return model
