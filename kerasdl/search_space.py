"""The hyperparameter ranges a model declares beside its builder, for `python -m training.tune`.

A model file lists `{config key: range}` in its registry entry's `search_space`; each range
says what values are worth trying and why (`reason`). The keys are ordinary config keys
(`model.*` builder arguments, `train.*`, `augment.*`, ...), so every value a search tries
passes the same checks as `--set`, and the best trial's config is a plain config file.
`kerasdl.tuning` turns the ranges into KerasTuner hyperparameters.

TensorFlow-free, like the registry that holds the ranges.

Example:
>>> space = {"train.learning_rate": Float(1e-4, 1e-2, log=True, reason="Adam's useful range")}
>>> space["train.learning_rate"].values_to_check()
(0.0001, 0.01)
"""

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class Float:
    """A real number in `[low, high]`, spaced evenly or, with `log`, on a log scale; `step` rounds it.

    Attributes:
        low, high: the bounds (inclusive).
        log: sample on a log scale (learning rates, weight decay).
        step: a grid spacing, or None for any value.
        reason: why this range (a measurement, a paper, a rule of thumb).
        modalities: the data modalities it applies to; None for every modality.
    """

    low: float
    high: float
    log: bool = False
    step: typing.Optional[float] = None
    reason: str = ""
    modalities: typing.Optional[tuple] = None

    def values_to_check(self):
        return (self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer in `[low, high]` by `step`, optionally on a log scale (see `Float`)."""

    low: int
    high: int
    step: int = 1
    log: bool = False
    reason: str = ""
    modalities: typing.Optional[tuple] = None

    def values_to_check(self):
        return (self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `values` (numbers, strings, booleans or lists, e.g. CNN filter counts) (see `Float`)."""

    values: tuple
    reason: str = ""
    modalities: typing.Optional[tuple] = None

    def values_to_check(self):
        return tuple(self.values)


def applies(spec, modality):
    """Whether the range `spec` applies to data of `modality`.

    Example:
    >>> applies(Float(0.0, 0.5, modalities=("text",)), "sequence")
    False
    """
    return spec.modalities is None or modality in spec.modalities


def check_space(model_name, space):
    """Checks a declared space against the model's config: every key exists, every bound passes its checks.

    Raises:
        ValueError: an unknown key, a range without a reason, or a bound the config refuses.

    Example:
    >>> check_space("cnn", {"model.dropout_rate": Float(0.0, 0.6, reason="...")})
    """
    from kerasdl.config import default_config, set_value, valid_keys

    config = default_config(model_name)
    keys = set(valid_keys(config))
    for key, spec in space.items():
        if key not in keys:
            raise ValueError(f"{model_name}: search_space key {key!r} is not a config key of {model_name}")
        if not spec.reason.strip():
            raise ValueError(f"{model_name}: search_space {key!r} needs a reason")
        for value in spec.values_to_check():
            set_value(config, key, value)


# The training keys worth searching for every small model (each model file adds its own).
TRAINING_RANGES = {
    "train.learning_rate": Float(
        1e-4, 1e-2, log=True,
        reason="Adam(W) trains the small models within two decades around its 1e-3 default; a log scale gives each decade equal trials",
    ),
    "train.batch_size": Choice(
        (16, 32, 64, 128),
        reason="smaller batches add gradient noise that regularizes small sets and give more steps per epoch; larger ones train faster per example",
    ),
}
