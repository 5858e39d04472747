"""Version labels (`--label [model:]label=version`), parsed once for TF Serving's config and the edge server.

TF Serving routes `/v1/models/<name>/labels/<label>` to the version a label
points at. `serving.deploy` writes the labels into `models.config` for the
models it found; the edge server applies labels given without a model to
every model it serves, including ones that appear later.
"""

# The key of labels that apply to every model, when no model list is given.
EVERY_MODEL = "*"


def parse_labels(values, models=None):
    """Parses `label=version` (every model) and `model:label=version` into `{model: {label: version}}`.

    Args:
        values: the `--label` values.
        models: the model names to check against and to spread unscoped labels over;
            None keeps unscoped labels under `EVERY_MODEL` ("*") and checks no names.

    Raises:
        ValueError: a value that is not `[model:]label=version`, or a model not in `models`.

    Example:
    >>> parse_labels(["cnn:stable=1", "canary=2"])
    {'cnn': {'stable': 1}, '*': {'canary': 2}}
    >>> parse_labels(["canary=2"], models=["cnn", "mlp"])
    {'cnn': {'canary': 2}, 'mlp': {'canary': 2}}
    """
    labels = {}
    for value in values or []:
        target, _, rest = value.rpartition(":") if ":" in value else (None, "", value)
        label, separator, version = rest.partition("=")
        if not separator or not label or not version.isdigit():
            raise ValueError(f"--label must look like [model:]label=version, got {value!r}")
        target = target or None
        if models is None:
            labels.setdefault(target or EVERY_MODEL, {})[label] = int(version)
            continue
        if target is not None and target not in models:
            raise ValueError(f"--label {value}: no model {target!r} under the export base path; models: {', '.join(models)}")
        for name in [target] if target is not None else models:
            labels.setdefault(name, {})[label] = int(version)
    return labels
