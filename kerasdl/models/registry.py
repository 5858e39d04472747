"""The model registry: `python -m training.run <name>` is a lookup here.

Every model file registers its entry beside its builder with `@register_model`
(timm's pattern). The entry is the one place that says what the rest of
kerasdl must know about a model: the data it takes, its builders (whose
keyword arguments are the `model.*` config keys), its config defaults, how a
text model tokenizes, its parity tolerances per export format, its int8
recipe, its fine-tuning hook and the Keras backend it trains fastest on.
No other table in kerasdl is keyed by model name.

This module imports no Keras or TensorFlow, so that `--help` and config
errors answer at once; the model files import Keras inside their builders
for the same reason.
"""

import dataclasses
import importlib
import inspect
import pkgutil
import typing

# Builder arguments that the data provides; they are never config keys.
DATA_ARGUMENTS = frozenset(
    {"input_shape", "num_classes", "normalization_mean", "normalization_variance", "vocabulary", "texts", "name"}
)

# The modules of kerasdl/models that are not model files. Every other module
# there is a model file, imported on first lookup so that it registers itself:
# adding a model is adding its file.
SHARED_MODULES = frozenset({"registry", "layers", "recurrent"})

_ENTRIES = {}

# The values of `ModelEntry.quantization` (export/quantize.py implements them).
QUANTIZATION_RECIPES = ("static", "dynamic", "none")


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """What the training data tells a builder.

    Attributes:
        modality: "image" | "features" | "sequence" | "text".
        input_shape: one raw example's shape (None for a variable axis).
        num_classes: the number of classes.
        normalization_mean, normalization_variance: per-feature statistics of the
            training split (None for text).
        train_texts: the training texts (text only), for vocabularies.
    """

    modality: str
    input_shape: tuple
    num_classes: int
    normalization_mean: object = None
    normalization_variance: object = None
    train_texts: object = None


@dataclasses.dataclass(frozen=True)
class TextSupport:
    """How a text model turns strings into token features, for training, export and serving.

    Attributes:
        tokenizer: the tokenizer kind recorded in the model's metadata and in
            `tokenizer/tokenizer.json` ("text_vectorization" or "bert").
        token_model: `model -> keras.Model` from int64 token features to logits,
            sharing the model's weights: what ONNX and LiteRT convert.
        token_features: `(model, texts) -> {input name: int64 [B, T]}`, the
            in-graph tokenizer's output, against which the exported tokenizer is checked.
        write_tokenizer: `(model, folder) -> dict`, writes the TensorFlow-free
            tokenizer files (`kerasdl.tokenizer`) and returns `tokenizer.json`'s content.
        raw_call: `model -> f(strings) -> logits` where calling the model on
            strings is not enough (BERT runs its attached preprocessor); None calls the model.
        pipeline_split: `model -> (token_model, tokenizer_layer)` to tokenize in
            the tf.data pipeline and train the token-id part; None trains on strings.
    """

    tokenizer: str
    token_model: typing.Callable
    token_features: typing.Callable
    write_tokenizer: typing.Callable
    raw_call: typing.Optional[typing.Callable] = None
    pipeline_split: typing.Optional[typing.Callable] = None


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: the registry name (`python -m training.run <name>`).
        build: `(facts: DataFacts, **options) -> keras.Model` (logits out).
        modalities: the data the model takes; the first is used with the built-in data.
        builders: functions whose keyword arguments (minus `DATA_ARGUMENTS`)
            are the `model.*` config keys.
        modality_builders: `{modality: builders}` for an entry that builds a
            different network per modality (the numeric and the text LSTM), so
            that each network's own defaults apply to its modality; empty when
            every builder serves every modality.
        defaults: config settings of this model, above the dataclass defaults.
        default_data: settings used only with the built-in dataset.
        text: how the model tokenizes, for models that take text; None otherwise.
        tolerances: `{format: max abs difference}` where the model needs a
            tolerance other than the format's default (`export.formats`).
        quantization: the ONNX int8 recipe (`QUANTIZATION_RECIPES`): "static"
            (activations calibrated on training examples), "dynamic" (int8
            weights, activation scales per batch), or "none" where ONNX Runtime
            has no int8 recipe that pays for the model (then `--quantize int8`
            leaves the ONNX int8 file out and says so).
        set_trainable_blocks: the fine-tuning hook, `(model, num_blocks) -> [block names]`,
            or None when the model has no second phase.
        backend: the Keras backend it trains fastest on ("tensorflow" or "jax").
        save_extras: `(model, run_dir) -> None`, extra files a run keeps (a BERT
            preset folder), or None.
    """

    name: str
    build: typing.Callable
    modalities: tuple
    builders: tuple
    modality_builders: dict = dataclasses.field(default_factory=dict)
    defaults: dict = dataclasses.field(default_factory=dict)
    default_data: dict = dataclasses.field(default_factory=dict)
    text: typing.Optional[TextSupport] = None
    tolerances: dict = dataclasses.field(default_factory=dict)
    quantization: str = "dynamic"
    set_trainable_blocks: typing.Optional[typing.Callable] = None
    backend: str = "tensorflow"
    save_extras: typing.Optional[typing.Callable] = None

    def __call__(self, facts, **options):
        return self.build(facts, **options)

    def tolerance(self, artifact_format, default):
        """Returns this model's parity tolerance for `artifact_format`, or the format's `default`."""
        return self.tolerances.get(artifact_format, default)

    def builder_arguments(self, modality=None):
        """Returns `{name: default}` of the user-settable builder keyword arguments (the `model.*` keys).

        Args:
            modality: only the builders of this modality (`modality_builders`);
                None: all builders, the first builder's default winning for a
                key that several builders share.

        Example:
        >>> get_model_entry("mlp").builder_arguments()["hidden_units"]
        128
        >>> get_model_entry("lstm").builder_arguments("text")["bidirectional"]
        True
        """
        arguments = {}
        for builder in self.modality_builders.get(modality, self.builders):
            for name, parameter in inspect.signature(builder).parameters.items():
                if name in DATA_ARGUMENTS:
                    continue
                if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                    continue
                default = None if parameter.default is inspect.Parameter.empty else parameter.default
                arguments.setdefault(name, default)
        return arguments


    def builder_annotations(self):
        """Returns `{name: annotation}` of the `model.*` keys whose builder annotates them (e.g. `int | None`).

        The config checks a key's value against its annotation when there is one, and
        against its default's type otherwise.

        Example:
        >>> get_model_entry("resnet50").builder_annotations()["image_size"]
        int | None
        """
        annotations = {}
        for builder in self.builders:
            for name, parameter in inspect.signature(builder).parameters.items():
                if name not in DATA_ARGUMENTS and parameter.annotation is not inspect.Parameter.empty:
                    annotations.setdefault(name, parameter.annotation)
        return annotations


def register_model(name, modalities, builders, **fields):
    """Registers the decorated build function as the entry `name`; returns the function unchanged.

    Args:
        name: the registry name (`python -m training.run <name>`).
        modalities: the data the model takes; the first is used with the built-in data.
        builders: the builder functions whose keyword arguments become `model.*` config keys.
        **fields: the other `ModelEntry` attributes (defaults, text, tolerances, ...).

    Example:
    >>> @register_model("my_mlp", modalities=("features",), builders=(mlp,))
    ... def build_from_data(facts, **options):
    ...     return call_builder(mlp, options, input_shape=facts.input_shape, num_classes=facts.num_classes)
    """

    recipe = fields.get("quantization", "dynamic")
    if recipe not in QUANTIZATION_RECIPES:
        raise ValueError(f"model {name!r}: quantization={recipe!r}; choose one of {', '.join(QUANTIZATION_RECIPES)}")

    def decorator(function):
        previous = _ENTRIES.get(name)
        if previous is not None and previous.build.__module__ != function.__module__:
            raise ValueError(f"model {name!r} is registered twice ({previous.build.__module__}, {function.__module__})")
        _ENTRIES[name] = ModelEntry(name=name, build=function, modalities=tuple(modalities), builders=tuple(builders), **fields)
        return function

    return decorator


def get_model_entry(name):
    """Returns the entry called `name`, or raises a KeyError naming the valid ones."""
    _import_models()
    if name not in _ENTRIES:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return _ENTRIES[name]


def model_names():
    """Returns the registered model names, sorted."""
    _import_models()
    return sorted(_ENTRIES)


def call_builder(builder, options, **data_arguments):
    """Calls `builder` with the data's arguments and those `options` it accepts.

    A model's options are the union of its builders' keyword arguments, so each
    builder takes only its own.
    """
    parameters = inspect.signature(builder).parameters
    accepted = {key: value for key, value in options.items() if key in parameters and key not in data_arguments}
    return builder(**data_arguments, **accepted)


def _import_models():
    import kerasdl.models

    for module in pkgutil.iter_modules(kerasdl.models.__path__):
        if module.name not in SHARED_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"kerasdl.models.{module.name}")
