"""The model registry: `python -m training.run <name>` is a lookup here.

Each entry is a thin function, keyed by its own name, that fills in the
arguments of a builder from what the data provides (`kerasdl.models.zoo`). The
modalities tell the training CLI which input pipeline feeds the model
("image", "features", "sequence" or "text").
"""

_ENTRIES = {}


def register(modalities, builders, defaults=None, default_data=None):
    """Registers the decorated entry under its function name.

    Args:
        modalities: the data the model takes; the first is used with the built-in data.
        builders: the builder functions whose keyword arguments become `model.*` config keys.
        defaults: config settings of this model, below the config file and `--set`.
        default_data: settings used only with the built-in dataset (e.g. its image size).
    """

    def decorator(function):
        function.modalities, function.builders = tuple(modalities), tuple(builders)
        function.defaults, function.default_data = dict(defaults or {}), dict(default_data or {})
        _ENTRIES[function.__name__] = function
        return function

    return decorator


def get_model_entry(name):
    """Returns the entry called `name`, or raises a KeyError naming the valid ones."""
    if name not in _ENTRIES:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return _ENTRIES[name]


def model_names():
    return sorted(_ENTRIES)
