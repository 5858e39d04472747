"""The run configuration: one dataclass per concern, every default with its reason.

Override order, lowest to highest priority:
    1. the defaults below;
    2. the model's registry defaults (e.g. a smaller learning rate for resnet50);
    3. `--config file.yaml` (nested: `train: {epochs: 5}`);
    4. `--set section.key=value` (values parsed as YAML: `--set data.image_size=[64,64]`);
    5. the common flags (`--epochs`, `--batch-size`, `--learning-rate`, `--data`, `--seed`, ...).
An unknown key or a value of the wrong type is a `ConfigError` that lists the valid keys.
The resolved config is saved in the run directory as `config.yaml`.
"""

import dataclasses
import typing

import yaml


class ConfigError(ValueError):
    """A bad configuration key or value (shown to the user without a traceback)."""


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
    # [height, width] for image folders; None keeps the first image's size, which suits
    # uniformly-sized sets (CIFAR-10 JPEGs); mixed-size photos need an explicit size.
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
    # Fractions of a full turn / of the size / of the value range; small values keep labels true.
    rotation: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1


@dataclasses.dataclass
class TrainConfig:
    # Early stopping ends most runs well before this.
    epochs: int = 20
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
    # One seed drives splits, shuffling, augmentation and initialization.
    seed: int = 42
    # 16 steps per compiled call: 1.70x the MLP's, 1.30x the CNN's and 1.08x the LSTM's
    # training examples/s of 1 (benchmarks/RESULTS.md, levers); progress bars and batch-level
    # callbacks then update every 16 steps. Epoch-level callbacks are unaffected. Multi-worker
    # runs use 1 (the only value checked with the multi-worker fix).
    steps_per_execution: int = 16
    # XLA ran the seed CNN at 0.61x plain Keras on this CPU, with a 2.6x longer first epoch
    # (benchmarks/RESULTS.md), so it is off by default.
    jit_compile: bool = False
    # "auto", "default", "mirrored" or "multi_worker" (see README, multi-worker training).
    strategy: str = "auto"
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
class Config:
    model_name: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    # Builder keyword arguments of the chosen model (validated against its signature).
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


SECTIONS = ("data", "augment", "train", "finetune")


def valid_keys(config):
    keys = [f"{section}.{field.name}" for section in SECTIONS for field in dataclasses.fields(getattr(config, section))]
    keys += [f"model.{name}" for name in config.model]
    return keys + ["output"]


def parse_value(text):
    """Parses a `--set` value as YAML, so `3`, `0.1`, `true`, `[64, 64]` get their types."""
    if text.strip().lower() == "none":
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_value(config, key, value):
    """Sets `section.name` to `value`, checking that the key exists and the type fits."""
    if key == "output":
        config.output = _checked(key, value, str, config.output)
        return
    section, _, name = key.partition(".")
    if section == "model":
        if name not in config.model:
            raise ConfigError(_unknown(config, key))
        default = config.model[name]
        config.model[name] = _checked(key, value, type(default) if default is not None else None, default)
        return
    if section not in SECTIONS or not name:
        raise ConfigError(_unknown(config, key))
    target = getattr(config, section)
    fields = {field.name: field for field in dataclasses.fields(target)}
    if name not in fields:
        raise ConfigError(_unknown(config, key))
    setattr(target, name, _checked(key, value, _base_type(fields[name].type), getattr(target, name)))


def apply_mapping(config, mapping, origin):
    """Applies a nested mapping (from a YAML file) on top of `config`."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections (data, train, ...), got {type(mapping).__name__}")
    for section, values in mapping.items():
        if section in ("output", "model_name") and not isinstance(values, dict):
            if section == "output":
                set_value(config, "output", values)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping; valid keys: {', '.join(valid_keys(config))}")
        for name, value in values.items():
            set_value(config, f"{section}.{name}", value)


def _base_type(annotation):
    if annotation in (int, float, str, bool, list, dict):
        return annotation
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    return arguments[0] if arguments else None


def _checked(key, value, expected, default):
    if value is None or expected is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list and isinstance(value, tuple):
        return list(value)
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{key} must be {expected.__name__}, got {value!r} ({type(value).__name__}); default is {default!r}")
    return value


def _unknown(config, key):
    return f"unknown config key {key!r}; valid keys: {', '.join(valid_keys(config))}"
