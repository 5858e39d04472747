"""The export base path's layout, as TF Serving reads it: `<base>/<model name>/<integer version>/`.

Read by `serving.deploy` (SavedModel versions for TF Serving) and `serving.triton` (ONNX
versions for Triton), so that both count the same folders as versions.
"""

import os


def discover_models(base_path, model_file="saved_model.pb", none_found=None):
    """Returns `{name: [versions]}` for the models under the export base path (integer version folders).

    Args:
        base_path: the export base path (`exports/`).
        model_file: the file a version folder must hold to count (`model.onnx` for Triton).
        none_found: the error when no version holds it (default: the SavedModel one).

    Example:
    >>> discover_models("exports/")
    {'cnn': [1, 2], 'lstm': [1]}
    """
    base_path = os.fspath(base_path)
    if not os.path.isdir(base_path):
        raise ValueError(f"export base path {base_path} is not a folder; export a model first (python -m export.run)")
    models = {}
    for name in sorted(os.listdir(base_path)):
        folder = os.path.join(base_path, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        versions = sorted(
            int(entry)
            for entry in os.listdir(folder)
            if entry.isdigit() and os.path.isfile(os.path.join(folder, entry, model_file))
        )
        if versions:
            models[name] = versions
    if not models:
        raise ValueError(none_found or f"no SavedModel versions under {base_path} (expected <name>/<version>/saved_model.pb)")
    return models
