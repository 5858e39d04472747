"""The run configuration: one dataclass per concern, every default with its reason, and its resolution.

Override order, lowest to highest priority:
    1. the dataclass defaults below (and each builder's keyword defaults for `model.*`);
    2. the model entry's `defaults` (e.g. BERT's linear schedule);
    3. `--config file.yaml` (nested: `train: {epochs: 5}`);
    4. `--set section.key=value`;
    5. the common flags (`--epochs`, `--batch-size`, `--learning-rate`, `--data`, `--seed`, ...);
then, with the built-in data only, the entry's `default_data` for the keys not set in 3-5.

The dataclass defaults are the only statement of a default: `--help`, the flags' help and
the signatures of `kerasdl.optim`, `kerasdl.callbacks` and `kerasdl.data.pipeline` read them.
Every value is checked on every path (file, `--set`, flags) against its type (`None` only where
the key may be None) and its rule (`RULES`); a mistake is a one-line `ConfigError` naming the key,
what it must be and an example. Nothing here imports TensorFlow or Keras, so `--help` and config
errors answer at once. The resolved config is saved in the run directory as `config.yaml`.

The module is longer than ~300 lines on purpose: every default and every rule is stated
here once, with its reason, next to the resolution that reads them (how values are read
and checked is `kerasdl.config_rules`).
"""

import dataclasses
import typing

from kerasdl.backend import CHOICES as BACKEND_CHOICES
from kerasdl.config_rules import ConfigError, Rule, check_value, coerce, validate_config
from kerasdl.distribute.strategy import STRATEGY_NAMES

__all__ = [
    "AugmentConfig", "Config", "ConfigError", "DataConfig", "FinetuneConfig", "ReportConfig", "Rule", "SECTIONS", "TrainConfig",
    "default_config", "resolve_config", "set_value", "apply_mapping", "valid_keys",
]


@dataclasses.dataclass
class DataConfig:
    # "default" means the model's built-in dataset: scikit-learn digits (real, offline) for
    # images, features and sequences, or the generated sentiment set for text.
    source: str = "default"
    # Where TFDS keeps its downloads; None uses TFDS's own default (~/tensorflow_datasets).
    data_dir: typing.Optional[str] = None
    # 10% validation and 10% test keep enough examples per class on a 1,797-example set.
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    # [height, width] for image folders; None keeps the images' own size when the training
    # images share one (CIFAR-10 JPEGs); photos of mixed sizes stop with a request for one.
    image_size: typing.Optional[list] = None
    # Image channels (1 grey, 3 RGB); None keeps the source's own.
    channels: typing.Optional[int] = None
    # Cap per split, to try a large set quickly; None uses everything.
    max_examples: typing.Optional[int] = None
    # Cache decoded examples after the first epoch when they fit in memory; streamed
    # folders are cached only when this is True and the estimate is under cache_limit_mb.
    cache: bool = True
    cache_limit_mb: int = 2048
    # A shuffle buffer of 10k covers the whole of every built-in set; streamed sets shuffle
    # file names first (all of them), so this buffer only mixes decoded examples further.
    shuffle_buffer: int = 10000
    # Unreadable files in an image folder: "skip" (count them and warn) or "fail".
    # Skipping is the default because real folders carry strays (hymenoptera has a .gif).
    on_bad_file: str = "skip"
    # Text tables: column names; None guesses from common names (text/sentence, label).
    text_column: typing.Optional[str] = None
    label_column: typing.Optional[str] = None
    # Text files' encoding (e.g. "latin-1"); None detects it: a byte-order mark, else UTF-8,
    # else cp1252 with a note, which covers the files spreadsheets write.
    encoding: typing.Optional[str] = None
    # Names for the classes, in class-id order (the sorted labels), e.g. [negative, positive]
    # for 0/1 labels; None keeps the labels themselves. Every artifact and answer uses these.
    class_names: typing.Optional[list] = None


@dataclasses.dataclass
class AugmentConfig:
    # None turns augmentation on for images and off for everything else.
    enabled: typing.Optional[bool] = None
    # "horizontal", "vertical", "horizontal_and_vertical" or "none". Sources that are not
    # mirror-symmetric (digits) switch flipping off themselves.
    flip: str = "horizontal"
    # Geometric options, None following the image size (kerasdl.data.augment.SIZE_DEFAULTS,
    # with the measurement): images of at most 64 px get a random shift of 1/8 of the side
    # (pad + random crop, the standard CIFAR recipe) and no rotation or zoom; larger images
    # get rotation 0.05 of a turn and zoom 0.1 and no shift. A number applies to every size.
    translation: typing.Optional[float] = None
    rotation: typing.Optional[float] = None
    zoom: typing.Optional[float] = None
    # Fractions of the value range; small values keep labels true.
    brightness: float = 0.1
    contrast: float = 0.1


@dataclasses.dataclass
class TrainConfig:
    # Early stopping ends most runs well before this.
    epochs: int = 20
    # The default budget is counted in optimizer steps: when `epochs` passes over a small
    # training split give fewer steps than this, each epoch repeats the split (several
    # passes per epoch) until the epochs hold this many steps; early stopping still ends
    # the run. (A CNN on 720 images stopped after ~225 steps still improving, issue 12.)
    # An explicit train.epochs (flag, --set or file) is taken literally: it sets this to 0
    # unless this key is given too. 0 counts epochs only. MEASURED_MIN_STEPS below says why.
    min_steps: int = 1000
    # 64 is small enough for the 1.4k-example default split to give ~23 steps an epoch.
    batch_size: int = 64
    # Adam's usual default; fine-tuning phases use finetune.learning_rate instead.
    learning_rate: float = 1e-3
    # "adam" or "adamw" (decoupled weight decay).
    optimizer: str = "adamw"
    # Mild decoupled decay; only used by adamw.
    weight_decay: float = 1e-4
    # Gradient clipping by norm; None disables it.
    clipnorm: typing.Optional[float] = 1.0
    # "cosine" (with warmup), "linear" (warmup then linear decay, BERT's), "step" (the seed's
    # StepLR), "plateau" (ReduceLROnPlateau) or "constant". Cosine suits the small models.
    lr_schedule: str = "cosine"
    # One warmup epoch avoids large early updates with adaptive optimizers.
    warmup_epochs: int = 1
    # StepLR: multiply the rate by step_gamma every step_size epochs (the seed's 7 and 0.1).
    step_size: int = 7
    step_gamma: float = 0.1
    # ReduceLROnPlateau: halve the rate after 2 epochs without improvement.
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    # Stop after 5 epochs without a better validation loss; the best weights are restored.
    early_stopping_patience: int = 5
    # checkpoints/best.keras serves a run that is interrupted; once the run completes,
    # model.keras holds the same best weights, so the checkpoint is removed (a ResNet50 run
    # directory held 94 MB of weights twice). True keeps it (the trained part, for text
    # models the token-id network, with its optimizer state).
    keep_checkpoint: bool = False
    # A validation split smaller than this cannot guide early stopping (one example of 10 is
    # 10 points of accuracy), so the epoch is chosen by k-fold cross-validation on
    # train+validation and the model then trains on both (kerasdl.selection). 0 turns it off.
    # MEASURED below (benchmarks/small_data.py).
    min_validation_examples: int = 50
    # Folds of that cross-validation: 3 keeps its cost at 3 extra fits of two thirds of the
    # pool (every pooled example still validates once).
    cross_validation_folds: int = 3
    # One seed drives splits, shuffling, augmentation and initialization.
    seed: int = 42
    # 16 steps per compiled call: 1.70x the MLP's, 1.30x the CNN's and 1.08x the LSTM's
    # training examples/s of 1 (benchmarks/RESULTS.md, levers). It is capped at the steps of
    # an epoch, and the progress bar counts real steps. Epoch-level callbacks are unaffected.
    # Multi-worker runs use 1 (the only value checked with the multi-worker fix).
    steps_per_execution: int = 16
    # None is Keras' jit_compile="auto": XLA on the JAX backend, which without it runs op by op
    # (the digits MLP: 61 ms a step against 13 ms compiled), and off on TensorFlow on a CPU, where
    # XLA ran the seed CNN at 0.61x plain Keras with a 2.6x longer first epoch (benchmarks/RESULTS.md).
    jit_compile: typing.Optional[bool] = None
    # "auto", "default", "mirrored" or "multi_worker" (see README, multi-worker training).
    strategy: str = "auto"
    # The Keras backend: "auto" takes the model's registry entry (the faster backend for it,
    # measured by benchmarks/backends.py), else "tensorflow" or "jax". tf.distribute strategies,
    # and profiling on Python 3.11, need TensorFlow (kerasdl.backend).
    backend: str = "auto"
    # Seconds a worker waits for its peers before failing with a clear message.
    strategy_timeout_seconds: int = 120
    # Write a TensorBoard profiler trace of a few steps (batches 5-10).
    profile: bool = False
    # Keras progress bars: 1 per batch (the default, for people), 2 one line per epoch (logs).
    verbose: int = 1


@dataclasses.dataclass
class FinetuneConfig:
    # Second phase for transfer learning (resnet50): unfreeze the top N residual blocks;
    # 0 skips the phase, since the frozen-base head is the safe first result.
    blocks: int = 0
    epochs: int = 5
    # 10x-100x below the head's rate, so pretrained features are adjusted, not destroyed.
    learning_rate: float = 1e-5


@dataclasses.dataclass
class ReportConfig:
    # Fit a classical scikit-learn baseline (kerasdl.baseline) on the same train split and
    # score it on the same test split, so that report.md says whether the network earns its
    # cost ("kerasdl 0.812 vs baseline 0.795"); capped in size (README) to stay under 10 % of
    # a default run's time.
    baseline: bool = True
    # Log per-layer gradient norms of a few training batches (kerasdl.gradients, gradients.csv)
    # for the vanishing/exploding-gradient diagnosis; sampled sparsely to stay under 5 % of
    # the fit's time (benchmarks/quality_costs.py).
    gradients: bool = True


@dataclasses.dataclass
class Config:
    model_name: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)
    # Builder keyword arguments of the chosen model (checked against its builders' defaults).
    # A key whose default differs per modality (the LSTM's `bidirectional`) is None until
    # the data is known: `fill_modality_defaults` then sets that modality's default.
    model: dict = dataclasses.field(default_factory=dict)
    # Runs go to <output>/<model>/<timestamp>/.
    output: str = "runs"

    def to_dict(self):
        """A plain dict (tuples as lists), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


SECTIONS = ("data", "augment", "train", "finetune", "report")

# The common flags: `--name` sets the key; the help text is the description plus the key's default.
FLAGS = {
    "epochs": ("train.epochs", "epochs to train"),
    "batch_size": ("train.batch_size", "examples per step (per replica)"),
    "learning_rate": ("train.learning_rate", "the peak learning rate"),
    "data": ("data.source", "default (the built-in set), an image folder, a .npz, a CSV/TSV/JSONL, a UCR prefix, or tfds:NAME"),
    "data_dir": ("data.data_dir", "where TFDS keeps its files"),
    "seed": ("train.seed", "the seed of splits, shuffling, augmentation and initialization"),
    "output": ("output", "where run directories go"),
    "strategy": ("train.strategy", "auto, default, mirrored or multi_worker"),
    "backend": ("train.backend", "auto (the model's registry entry), tensorflow or jax"),
    "weights": ("model.weights", "imagenet, none, or a local .h5/.weights.h5 file"),
    "preset": ("model.preset", "a keras-hub preset name or a local preset directory"),
}


def valid_keys(config):
    """Every settable key of `config`: `section.name` of each dataclass field, `model.*`, `output`."""
    keys = [f"{section}.{field.name}" for section in SECTIONS for field in dataclasses.fields(getattr(config, section))]
    keys += [f"model.{name}" for name in config.model]
    return keys + ["output"]


def default_value(key, model_name=None):
    """The default of `key` (for `model.*` keys, of `model_name`'s builders), as `--help` shows it."""
    config = default_config(model_name) if model_name else Config()
    if key == "output":
        return config.output
    section, _, name = key.partition(".")
    return config.model.get(name) if section == "model" else getattr(getattr(config, section), name)


def default_config(model_name):
    """The defaults for `model_name`: the dataclass defaults plus its builders' keyword arguments.

    Example:
    >>> default_config("cnn").model["filters"]
    (32, 64)
    """
    config = Config(model_name=model_name)
    config.model.update(_model_entry(model_name).builder_arguments())
    config.model.update(dict.fromkeys(modality_defaults(model_name), None))
    return config


def modality_defaults(model_name):
    """`{key: {modality: default}}` for the `model.*` keys whose default differs per modality.

    Example:
    >>> modality_defaults("lstm")
    {'bidirectional': {'sequence': False, 'text': True}}
    """
    entry = _model_entry(model_name)
    per_modality = {modality: entry.builder_arguments(modality) for modality in entry.modality_builders}
    differing = {}
    for key in entry.builder_arguments():
        values = {modality: arguments[key] for modality, arguments in per_modality.items() if key in arguments}
        if len({repr(value) for value in values.values()}) > 1:
            differing[key] = values
    return differing


def fill_modality_defaults(config, modality):
    """Sets each per-modality `model.*` key still None to `modality`'s default (once the data is known)."""
    for key, values in modality_defaults(config.model_name).items():
        if config.model.get(key) is None and modality in values:
            config.model[key] = values[modality]
    return config


def resolve_config(model_name, config_file=None, sets=(), flags=None):
    """Applies the override order and returns the checked `Config`.

    Args:
        model_name: a registered model.
        config_file: a YAML file of overrides, or None.
        sets: `key=value` strings, as given to `--set`.
        flags: `{flag name: value}` for the `FLAGS` (None values are skipped); values may be
            the command line's strings or typed values.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or out of its range.

    Example:
    >>> resolve_config("mlp", sets=["train.epochs=3"], flags={"batch_size": "32"}).train.batch_size
    32
    """
    import yaml

    entry = _model_entry(model_name)
    config = default_config(model_name)
    for flag, value in (flags or {}).items():
        section, _, name = FLAGS[flag][0].partition(".")
        if value is not None and section == "model" and name not in config.model:
            owners = [other for other in _model_names() if name in _model_entry(other).builder_arguments()]
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to {model_name}: it sets model.{name}, which only {', '.join(owners)} has")
    for key, value in entry.defaults.items():
        set_value(config, key, value)
    explicit = set()
    if config_file:
        try:
            with open(config_file) as handle:
                mapping = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            raise ConfigError(f"{config_file}: no such config file") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{config_file}: not valid YAML ({str(error).splitlines()[0]})") from None
        explicit |= apply_mapping(config, mapping, config_file)
    for item in sets:
        key, separator, text = item.partition("=")
        if not separator:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
        set_value(config, key.strip(), text, origin="--set")
        explicit.add(key.strip())
    for flag, value in (flags or {}).items():
        if value is not None:
            key = FLAGS[flag][0]
            set_value(config, key, value, origin="--" + flag.replace("_", "-"))
            explicit.add(key)
    if "train.epochs" in explicit and "train.min_steps" not in explicit:
        # An epoch count the user gives is the budget (see TrainConfig.min_steps).
        config.train.min_steps = 0
    if config.data.source == "default":
        # The built-in data's own needs (e.g. ResNet50's 32x32x3 minimum), unless set explicitly.
        for key, value in entry.default_data.items():
            if key not in explicit:
                set_value(config, key, value)
    validate_config(config)
    return config


def apply_mapping(config, mapping, origin):
    """Applies a nested mapping (from a YAML file) on top of `config`; returns the keys it set."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections (data, augment, train, finetune, report, model, output), got {type(mapping).__name__}")
    keys = set()
    for section, values in mapping.items():
        if section == "model_name":
            continue  # A saved config.yaml names its model; the command line chooses it.
        if section == "output" or not isinstance(values, dict):
            if section != "output":
                raise ConfigError(f"{origin}: section {section!r} must be a mapping of keys, e.g. train: {{epochs: 5}}")
            set_value(config, "output", values, origin=origin)
            keys.add("output")
            continue
        for name, value in values.items():
            set_value(config, f"{section}.{name}", value, origin=origin)
            keys.add(f"{section}.{name}")
    return keys


def set_value(config, key, value, origin=None):
    """Sets `key` (`section.name`, `model.name` or `output`) to `value` after checking it.

    `value` is either typed (a YAML file, a caller) or the command line's text (`origin`
    "--set" or a flag), which is read according to the key's type: `--set train.epochs=3`
    gives 3, `--set data.text_column=2` the string "2", `none` None where None is allowed.
    """
    if not isinstance(key, str) or key.count(".") > 1:
        raise ConfigError(_unknown(config, key))
    section, _, name = key.partition(".")
    if key == "output":
        expected, allows_none, rule = str, False, RULES.get(key)
        config.output = coerce(key, value, expected, allows_none, origin, config.output, rule)
        check_value(key, config.output, rule, origin)
        return
    if section == "model":
        if name not in config.model:
            raise ConfigError(_unknown(config, key))
        expected, allows_none, example = _model_type(config.model_name, name)
        config.model[name] = coerce(key, value, expected, allows_none, origin, example, None)
        return
    if section not in SECTIONS or not name:
        raise ConfigError(_unknown(config, key))
    target = getattr(config, section)
    fields = {field.name: field for field in dataclasses.fields(target)}
    if name not in fields:
        raise ConfigError(_unknown(config, key))
    expected, allows_none = _field_type(fields[name].type)
    rule = RULES.get(key)
    example = rule.example if rule is not None and rule.example is not None else getattr(type(target)(), name)
    checked = coerce(key, value, expected, allows_none, origin, example, rule)
    check_value(key, checked, rule, origin)
    setattr(target, name, checked)


def _field_type(annotation):
    """`(base type, None allowed)` of a dataclass field's annotation."""
    arguments = typing.get_args(annotation)
    if arguments:
        return next(argument for argument in arguments if argument is not type(None)), type(None) in arguments
    return annotation, False


def _model_type(model_name, name):
    """`(type, None allowed, example)` of a `model.*` key: its builder's annotation, else its default's type.

    A key whose default is None and that has no annotation takes a string (a name or a path).
    """
    entry = _model_entry(model_name)
    annotation = entry.builder_annotations().get(name)
    per_modality = modality_defaults(model_name).get(name)
    default = entry.builder_arguments().get(name)
    if annotation is not None:
        expected, allows_none = _field_type(annotation)
    elif per_modality:
        example = next(iter(per_modality.values()))
        return type(example), True, example
    elif default is None:
        return str, True, "NAME"
    else:
        expected, allows_none = type(default), False
    return expected, allows_none, default if default is not None else 1


def _model_names():
    from kerasdl.models.registry import model_names

    return model_names()


def _model_entry(model_name):
    from kerasdl.models.registry import get_model_entry, model_names

    try:
        return get_model_entry(model_name)
    except KeyError:
        raise ConfigError(_closest(f"unknown model {model_name!r}", model_name, model_names(), "choose one of: " + ", ".join(model_names()))) from None


def _unknown(config, key):
    keys = valid_keys(config)
    section = str(key).partition(".")[0]
    in_section = [valid.partition(".")[2] for valid in keys if valid.startswith(section + ".")]
    fallback = f"valid {section} keys: {', '.join(in_section)}" if in_section else "keys are " + ", ".join(f"{name}.NAME" for name in SECTIONS + ("model",)) + " or output"
    return _closest(f"unknown config key {key!r}", str(key), keys, fallback) + " (python -m training.run --help lists every key)"


def _closest(message, word, choices, fallback):
    """`message; did you mean X?` when difflib finds a close choice, else `message; fallback`."""
    import difflib

    matches = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    if matches:
        return f"{message}; did you mean {' or '.join(repr(match) for match in matches)}?"
    return f"{message}; {fallback}"


# What each value must be beyond its type. Keys without a rule take any value of their type.
RULES = {
    "data.source": Rule(nonempty=True),
    "data.validation_fraction": Rule(above=0.0, below=1.0),
    "data.test_fraction": Rule(minimum=0.0, below=1.0),
    "data.image_size": Rule(length=2, minimum=1, example=[64, 64]),
    "data.channels": Rule(choices=(1, 3), example=3),
    "data.max_examples": Rule(minimum=1, example=1000),
    "data.data_dir": Rule(example="~/tensorflow_datasets"),
    "data.cache_limit_mb": Rule(minimum=0),
    "data.shuffle_buffer": Rule(minimum=1),
    "data.on_bad_file": Rule(choices=("skip", "fail")),
    "data.text_column": Rule(example="sentence"),
    "data.label_column": Rule(example="label"),
    # Whether the codec exists is checked by the data loaders (kerasdl.data.textfile).
    "data.encoding": Rule(example="latin-1"),
    "data.class_names": Rule(example=["negative", "positive"]),
    "augment.enabled": Rule(example=True),
    "augment.flip": Rule(choices=("horizontal", "vertical", "horizontal_and_vertical", "none")),
    "augment.translation": Rule(minimum=0.0, below=1.0, example=0.125),
    "augment.rotation": Rule(minimum=0.0, maximum=1.0, example=0.05),
    "augment.zoom": Rule(minimum=0.0, below=1.0, example=0.1),
    "augment.brightness": Rule(minimum=0.0, maximum=1.0),
    "augment.contrast": Rule(minimum=0.0, maximum=1.0),
    "train.epochs": Rule(minimum=1),
    "train.min_steps": Rule(minimum=0),
    "train.batch_size": Rule(minimum=1),
    "train.learning_rate": Rule(above=0.0),
    "train.optimizer": Rule(choices=("adam", "adamw")),
    "train.weight_decay": Rule(minimum=0.0),
    "train.clipnorm": Rule(above=0.0),
    "train.lr_schedule": Rule(choices=("cosine", "linear", "step", "plateau", "constant")),
    "train.warmup_epochs": Rule(minimum=0),
    "train.step_size": Rule(minimum=1),
    "train.step_gamma": Rule(above=0.0),
    "train.plateau_factor": Rule(above=0.0, below=1.0),
    "train.plateau_patience": Rule(minimum=0),
    "train.early_stopping_patience": Rule(minimum=0),
    "train.min_validation_examples": Rule(minimum=0),
    "train.cross_validation_folds": Rule(minimum=2),
    # NumPy seeds are 32-bit.
    "train.seed": Rule(minimum=0, maximum=2**32 - 1),
    "train.steps_per_execution": Rule(minimum=1),
    "train.strategy": Rule(choices=STRATEGY_NAMES),
    "train.backend": Rule(choices=BACKEND_CHOICES),
    "train.strategy_timeout_seconds": Rule(minimum=1),
    "train.verbose": Rule(choices=(0, 1, 2)),
    "finetune.blocks": Rule(minimum=0),
    "finetune.epochs": Rule(minimum=0),
    "finetune.learning_rate": Rule(above=0.0),
    "report.baseline": Rule(example=False),
    "report.gradients": Rule(example=False),
    "output": Rule(nonempty=True),
}
