"""How a config value is read and checked: its type on every path, then its rule.

`kerasdl.config` declares the keys, their defaults and their `Rule`s; this module turns
what a user wrote into a value of the key's type (reading command-line text by that type)
and refuses anything else with a one-line `ConfigError` that names the key, what it must
be and an example. TensorFlow-free, like the config.
"""

import dataclasses
import math


class ConfigError(ValueError):
    """A bad configuration key or value (shown to the user in one line, without a traceback)."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type.

    Attributes:
        minimum, maximum: inclusive bounds of a number (or of each item of a list).
        above, below: exclusive bounds of a number.
        choices: the allowed values.
        length: the length of a list.
        nonempty: a string must not be empty.
        example: a valid value for the error message, where the default (None) is no example.

    Example:
    >>> check_value("train.epochs", 0, Rule(minimum=1), "--set")
    Traceback (most recent call last):
    kerasdl.config_rules.ConfigError: train.epochs must be at least 1, got 0
    """

    minimum: object = None
    maximum: object = None
    above: object = None
    below: object = None
    choices: tuple = None
    length: int = None
    nonempty: bool = False
    example: object = None


TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool (true or false)", list: "a list", tuple: "a list"}
NONE_WORDS = ("none", "null", "~")


def coerce(key, value, expected, allows_none, origin, example, rule=None):
    """Returns `value` as `expected` (None only when `allows_none`), or raises `ConfigError`.

    Args:
        key: the config key, for the message.
        value: a typed value (YAML, a caller), or the command line's text when `origin`
            is "--set" or a flag; text is read by the key's type.
        expected: int, float, str, bool, list or tuple.
        allows_none: whether None is a valid value.
        origin: "--set", "--flag-name", a config file path, or None (a default).
        example: a valid value, for the message.
        rule: the key's `Rule` (list items are checked against its bounds).

    Example:
    >>> coerce("train.learning_rate", "1e-3", float, False, "--set", 0.001)
    0.001
    """
    if isinstance(value, str) and origin is not None and origin.startswith("--"):
        value = _read_text(value, expected, allows_none)
    if value is None:
        if allows_none:
            return None
        raise ConfigError(_wrong_type(key, value, expected, origin, example))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # A column or folder named by a number, e.g. `text_column: 2`.
    elif expected in (list, tuple) and isinstance(value, (list, tuple)):
        if not _items_fit(value, example):
            raise ConfigError(_wrong_type(key, value, expected, origin, example))
        value = expected(value)
    if not isinstance(value, expected) or (expected in (int, float) and isinstance(value, bool)):
        raise ConfigError(_wrong_type(key, value, expected, origin, example))
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"{_where(key, origin)} must be a finite number, got {value!r}")
    return value


def check_value(key, value, rule, origin=None):
    """Raises `ConfigError` when `value` breaks `rule` (None always passes: its type allowed it)."""
    if rule is None or value is None:
        return
    where = _where(key, origin)
    choices = rule.choices
    if choices is not None and value not in choices:
        import difflib

        listed = ", ".join(repr(choice) for choice in choices)
        close = difflib.get_close_matches(str(value), [str(choice) for choice in choices], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where} must be one of {listed}, got {value!r}{hint}")
    if rule.nonempty and not str(value).strip():
        raise ConfigError(f"{where} must not be empty")
    items = value if isinstance(value, (list, tuple)) else [value]
    if rule.length is not None and len(items) != rule.length:
        raise ConfigError(f"{where} must be a list of {rule.length} values, e.g. {_example(key, rule.example, origin)}; got {value!r}")
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        for bound, broken, words in (
            (rule.minimum, lambda bound: item < bound, "at least"),
            (rule.maximum, lambda bound: item > bound, "at most"),
            (rule.above, lambda bound: item <= bound, "above"),
            (rule.below, lambda bound: item >= bound, "below"),
        ):
            if bound is not None and broken(bound):
                subject = f"every value of {where}" if isinstance(value, (list, tuple)) else where
                raise ConfigError(f"{subject} must be {words} {bound}, got {value!r}")


def validate_config(config):
    """The checks that involve several keys; raises `ConfigError`."""
    data = config.data
    if data.validation_fraction + data.test_fraction >= 1.0:
        raise ConfigError(
            f"data.validation_fraction + data.test_fraction must be below 1 so that training keeps examples, "
            f"got {data.validation_fraction} + {data.test_fraction}"
        )
    return config


def _read_text(text, expected, allows_none):
    """Reads command-line text by the key's type; returns the text itself when it does not fit."""
    import yaml

    stripped = text.strip()
    if allows_none and stripped.lower() in NONE_WORDS:
        return None
    if expected is str:
        quoted = len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\""
        return stripped[1:-1] if quoted else stripped
    if expected is float:
        try:
            return float(stripped)
        except ValueError:
            return stripped
    if expected is int:
        try:
            return int(stripped)
        except ValueError:
            pass
    try:
        parsed = yaml.safe_load(stripped)
    except yaml.YAMLError:
        return stripped
    if expected is int and isinstance(parsed, int) and not isinstance(parsed, bool):
        return parsed
    if expected is bool and isinstance(parsed, bool):
        return parsed
    if expected in (list, tuple) and isinstance(parsed, list):
        return parsed
    return stripped


def _items_fit(items, example):
    """Whether a list's items have the types of the example's items (ints for `[64, 64]`)."""
    if not isinstance(example, (list, tuple)) or not example:
        return all(isinstance(item, (int, float, str)) and not isinstance(item, bool) for item in items)
    kinds = {type(item) for item in example}
    return all(type(item) in kinds or (float in kinds and type(item) is int) for item in items)


def _where(key, origin):
    if origin and origin.startswith("--") and origin != "--set":
        return f"{origin} ({key})"
    if origin and not origin.startswith("--"):
        return f"{origin}: {key}"
    return key


def _wrong_type(key, value, expected, origin, example):
    shown = "none" if value is None else repr(value)
    return f"{_where(key, origin)} must be {TYPE_NAMES.get(expected, expected.__name__)}, got {shown}; e.g. {_example(key, example, origin)}"


def _example(key, example, origin):
    text = _format(example)
    if origin and origin.startswith("--") and origin != "--set":
        return f"{origin} {text}"
    if origin and not origin.startswith("--"):
        section, _, name = key.partition(".")
        return f"{section}: {{{name}: {text}}}" if name else f"{key}: {text}"
    return f"--set {key}={text}"


def _format(value):
    """A value as it is typed on the command line: true, 0.1, [64,64], sentence."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(item) for item in value) + "]"
    if value is None:
        return "none"
    return str(value)
