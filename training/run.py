"""`python -m training.run <model>`: train one of the registered classifiers.

Config override order (lowest first): defaults, the model's built-in-data defaults,
`--config file.yaml`, `--set section.key=value`, then the common flags below.
See `--help` for every key and its default.
"""

import argparse
import dataclasses
import os
import sys

# Quiet TensorFlow's C++ start-up chatter before it is imported; real errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerasdl.config import ConfigError, Config, apply_mapping, parse_value, set_value, valid_keys  # noqa: E402
from kerasdl.models.registry import get_model_entry, model_names  # noqa: E402

# Common flags and the config key each one sets.
FLAGS = {
    "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int),
    "learning_rate": ("train.learning_rate", float),
    "data": ("data.source", str),
    "data_dir": ("data.data_dir", str),
    "seed": ("train.seed", int),
    "output": ("output", str),
    "strategy": ("train.strategy", str),
    "weights": ("model.weights", str),
    "preset": ("model.preset", str),
}


def default_config(model_name):
    """The defaults for `model_name`: the dataclass defaults plus its builders' keyword arguments."""
    config = Config(model_name=model_name)
    config.model.update(get_model_entry(model_name).builder_arguments())
    return config


def resolve_config(model_name, config_file=None, sets=(), flags=None):
    """Applies the override order and returns the resolved `Config`."""
    import yaml

    entry = get_model_entry(model_name)
    config = default_config(model_name)
    for key, value in entry.defaults.items():
        set_value(config, key, value)
    layers = []
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"{config_file}: no such config file")
        with open(config_file) as handle:
            try:
                layers.append(("file", yaml.safe_load(handle) or {}))
            except yaml.YAMLError as error:
                raise ConfigError(f"{config_file}: not valid YAML ({str(error).splitlines()[0]})") from None
    for key, value in (flags or {}).items():
        if value is not None:
            target, kind = FLAGS[key]
            if target.startswith("model.") and target.split(".", 1)[1] not in config.model:
                raise ConfigError(f"--{key.replace('_', '-')} does not apply to {model_name}; valid keys: {', '.join(valid_keys(config))}")
    explicit = set()
    for origin, mapping in layers:
        apply_mapping(config, mapping, config_file)
        explicit |= {f"{section}.{key}" for section, values in mapping.items() if isinstance(values, dict) for key in values}
    for item in sets:
        key, separator, value = item.partition("=")
        if not separator:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
        set_value(config, key.strip(), parse_value(value))
        explicit.add(key.strip())
    for key, value in (flags or {}).items():
        if value is not None:
            set_value(config, FLAGS[key][0], parse_value(value) if FLAGS[key][1] is str and value.lower() == "none" else value)
            explicit.add(FLAGS[key][0])
    if config.data.source == "default":
        # The built-in data's own needs (e.g. ResNet50's 32x32x3 minimum), unless set explicitly.
        for key, value in entry.default_data.items():
            if key not in explicit:
                set_value(config, key, value)
    return config


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.run",
        description="Train a kerasdl classifier and write a run directory (config, best model, history, metrics, plots, report).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_keys_help(),
    )
    parser.add_argument("model", help=f"one of: {', '.join(model_names())}")
    parser.add_argument("--config", help="a YAML file of overrides (sections data, augment, train, finetune, model)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override one key, e.g. --set train.lr_schedule=step (repeatable)")
    parser.add_argument("--epochs", type=int, help="train.epochs (default 20)")
    parser.add_argument("--batch-size", type=int, help="train.batch_size (default 64)")
    parser.add_argument("--learning-rate", type=float, help="train.learning_rate (default 0.001)")
    parser.add_argument("--data", help="data.source: default, an image folder, a .npz, a CSV/TSV/JSONL, a UCR prefix, or tfds:NAME (default: the built-in set)")
    parser.add_argument("--data-dir", help="data.data_dir: where TFDS keeps its files")
    parser.add_argument("--seed", type=int, help="train.seed (default 42)")
    parser.add_argument("--output", help="where run directories go (default runs/)")
    parser.add_argument("--strategy", help="train.strategy: auto, default, mirrored or multi_worker (default auto)")
    parser.add_argument("--weights", help="model.weights (resnet50): imagenet, none, or a local .h5/.weights.h5 file")
    parser.add_argument("--preset", help="model.preset (bert): a keras-hub preset name or a local preset directory")
    parser.add_argument("--profile", action="store_true", help="write a TensorBoard profiler trace of batches 5-10")
    parser.add_argument("--fresh", action="store_true", help="start a new run even if an unfinished run of the same config can be resumed")
    return parser


def _keys_help():
    lines = ["config keys and defaults (set with --set KEY=VALUE or in --config):"]
    defaults = Config()
    for section in ("data", "augment", "train", "finetune"):
        for field in dataclasses.fields(getattr(defaults, section)):
            lines.append(f"  {section}.{field.name} = {getattr(getattr(defaults, section), field.name)!r}")
    lines.append("  output = 'runs'")
    for name in model_names():
        config = default_config(name)
        lines.append(f"  model.* for {name}: " + ", ".join(f"{key}={value!r}" for key, value in config.model.items()))
        entry = get_model_entry(name)
        if entry.defaults:
            lines.append(f"    {name} changes: " + ", ".join(f"{key}={value!r}" for key, value in entry.defaults.items()))
        if entry.default_data:
            lines.append(f"    {name} with the built-in data: " + ", ".join(f"{key}={value!r}" for key, value in entry.default_data.items()))
    return "\n".join(lines)


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.model not in model_names():
        parser.exit(2, f"error: unknown model {arguments.model!r}; choose one of: {', '.join(model_names())}\n")
    flags = {key: getattr(arguments, key) for key in FLAGS}
    from kerasdl.data.source import DataError

    try:
        config = resolve_config(arguments.model, arguments.config, arguments.sets, flags)
        if arguments.profile:
            config.train.profile = True
        from kerasdl import train

        summary = train.run(config, fresh=arguments.fresh)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as error:
        # User mistakes get one line; KERASDL_DEBUG=1 shows the traceback for bug reports.
        if os.environ.get("KERASDL_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last completed epoch", file=sys.stderr)
        return 130
    print(f"run directory: {summary['run_dir']}")
    print(f"test accuracy: {summary['test_accuracy']:.4f} (test loss {summary['test_loss']:.4f})")
    print(f"time: {summary['wall_time_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
