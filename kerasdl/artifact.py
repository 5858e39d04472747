"""The trained-model artifact: a `.keras` file that carries its own metadata.

Keras writes `config.json`, `metadata.json` and `model.weights.h5` into the
`.keras` zip and reads only those back, so kerasdl adds one more entry,
`kerasdl.json`, with everything a later stage needs to serve the model: the
class names, the modality, the raw input spec and the preprocessing facts.
Nothing travels in a side file that the export stage would have to guess.

Metadata keys (all JSON):
    model:        registry name, e.g. "cnn".
    modality:     "image" | "features" | "sequence" | "text".
    class_names:  list of strings, index = class id.
    input:        {"shape": [...] without batch (None for a variable axis),
                   "dtype": "float32" | "string",
                   "value_range": [0, 255] for images}.
    output:       "logits" (every kerasdl model returns logits).
    extra keys are allowed (e.g. "text": {...}, "run_dir": ...).
"""

import json
import os
import tempfile
import zipfile

METADATA_ENTRY = "kerasdl.json"


def save_model(model, path, metadata):
    """Saves `model` with `metadata` to `path` atomically.

    The file is written under a temporary name in the same folder and renamed
    into place only when complete, so a reader never sees half a model.

    Args:
        model: a Keras model.
        path: the destination, ending in `.keras`.
        metadata: a JSON-serializable dict (see the module docstring).

    Example:
    >>> save_model(model, "runs/cnn/best.keras", {"class_names": ["a", "b"]})
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"model path must end in .keras, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".keras", prefix=".tmp-", dir=folder)
    os.close(handle)
    try:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(metadata, indent=2, default=_to_json))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def add_metadata(path, metadata):
    """Writes `metadata` into an existing `.keras` file (atomically), replacing any there."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".keras", prefix=".tmp-", dir=folder)
    os.close(handle)
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(temporary, "w") as target:
            for item in source.infolist():
                if item.filename != METADATA_ENTRY:
                    target.writestr(item, source.read(item.filename))
            target.writestr(METADATA_ENTRY, json.dumps(metadata, indent=2, default=_to_json))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_metadata(path):
    """Returns the kerasdl metadata of a `.keras` file, or `{}` when it has none."""
    with zipfile.ZipFile(os.fspath(path)) as archive:
        if METADATA_ENTRY not in archive.namelist():
            return {}
        return json.loads(archive.read(METADATA_ENTRY))


def load_model(path, compile=False):
    """Loads a `.keras` file saved by kerasdl; returns `(model, metadata)`.

    Importing kerasdl.models registers the custom layers the models use, and
    keras_hub is imported so that BERT tasks deserialize.
    """
    import keras

    import kerasdl.models.layers  # noqa: F401  (registers the custom layers)

    try:
        import keras_hub  # noqa: F401
    except ImportError:  # keras-hub is a dependency; tolerate its absence for non-BERT models.
        pass
    model = keras.saving.load_model(os.fspath(path), compile=compile)
    return model, load_metadata(path)


def _to_json(value):
    # NumPy scalars and arrays appear in metadata (e.g. shapes, statistics).
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
