"""`python -m training.run <model>`: train one of the registered classifiers.

Flags only: the config (defaults, override order, checks) is `kerasdl.config`, the work is
`kerasdl.train.train_and_evaluate`, and errors are reported by `kerasdl.console.run_cli`.
TensorFlow is imported only once the config is valid, so `--help` and config errors answer
at once. See `--help` for every key and its default.
"""

import argparse
import dataclasses
import sys

from kerasdl.config import FLAGS, RULES, SECTIONS, Config, ConfigError, default_config, default_value, modality_defaults, resolve_config
from kerasdl.console import quiet_startup, run_cli
from kerasdl.models.registry import get_model_entry, model_names

PROGRAM = "python -m training.run"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one `error:` line (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser():
    """The command line: the model, `--config`, `--set`, the common flags of `kerasdl.config.FLAGS`."""
    parser = OneLineParser(
        prog=PROGRAM,
        description="Train a kerasdl classifier and write a run directory (config, best model, history, metrics, plots, report).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_keys_help(),
    )
    add_config_arguments(parser)
    parser.add_argument("--profile", action="store_true", help="write a TensorBoard profiler trace of batches 5-10 (train.profile)")
    parser.add_argument("--fresh", action="store_true", help="start a new run even if an unfinished run of the same config can be resumed")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit without training")
    return parser


def add_config_arguments(parser, skip=()):
    """The model and the config arguments every training command takes: `--config`, `--set`, the common flags but `skip`."""
    parser.add_argument("model", help=f"one of: {', '.join(model_names())}")
    parser.add_argument("--config", help="a YAML file of overrides (sections data, augment, train, finetune, report, model)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override one key, e.g. --set train.lr_schedule=step (repeatable)")
    for flag, (key, description) in FLAGS.items():
        if flag not in skip:
            parser.add_argument("--" + flag.replace("_", "-"), dest=flag, metavar=flag.upper(), help=f"{description} ({key}; {_default_text(key)})")


def config_from_arguments(arguments, extra_sets=(), skip=()):
    """The resolved config of parsed `add_config_arguments(parser, skip)` arguments (plus `extra_sets`)."""
    flags = {flag: getattr(arguments, flag) for flag in FLAGS if flag not in skip}
    return resolve_config(arguments.model, arguments.config, list(arguments.sets) + list(extra_sets), flags)


def main(argv=None):
    """Parses `argv`, trains, prints the run directory and the test accuracy; returns the exit status."""
    arguments = build_parser().parse_args(argv)
    return run_cli(lambda: _train(arguments), interrupted_hint="run the same command again to resume from the last completed epoch")


def _train(arguments):
    config = config_from_arguments(arguments, ["train.profile=true"] if arguments.profile else [])
    if arguments.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    from kerasdl.backend import select_backend_for

    # Before anything imports Keras (importing TensorFlow does too): Keras fixes its backend then.
    select_backend_for(config)
    from kerasdl.train import train_and_evaluate

    summary = train_and_evaluate(config, fresh=arguments.fresh)
    print(f"run directory: {summary['run_dir']}")
    print(f"test accuracy: {summary['test_accuracy']:.4f} (test loss {summary['test_loss']:.4f})")
    if summary.get("versus_baseline"):
        print(f"against the classical baseline: {summary['versus_baseline']} (report.md says more)")
    print(f"time: {summary['wall_time_s']:.1f} s")
    return 0


def _default_text(key):
    """`default 20`, or for a `model.*` key the models that have it and their defaults."""
    if not key.startswith("model."):
        return f"default {default_value(key)!r}"
    name = key.partition(".")[2]
    owners = [model for model in model_names() if name in default_config(model).model]
    return "; ".join(f"{model}: default {default_value(key, model)!r}" for model in owners) or "no model has it"


def _keys_help():
    lines = ["config keys and defaults (set with --set KEY=VALUE or in --config):"]
    defaults = Config()
    for section in SECTIONS:
        for field in dataclasses.fields(getattr(defaults, section)):
            key = f"{section}.{field.name}"
            rule = RULES.get(key)
            choices = f"  (one of: {', '.join(str(choice) for choice in rule.choices)})" if rule is not None and rule.choices else ""
            lines.append(f"  {key} = {getattr(getattr(defaults, section), field.name)!r}{choices}")
    lines.append(f"  output = {defaults.output!r}")
    for name in model_names():
        config = default_config(name)
        per_modality = modality_defaults(name)
        shown = [
            f"{key}={value!r}" + (" (" + ", ".join(f"{modality}: {default!r}" for modality, default in per_modality[key].items()) + ")" if key in per_modality else "")
            for key, value in config.model.items()
        ]
        lines.append(f"  model.* for {name}: " + ", ".join(shown))
        entry = get_model_entry(name)
        if entry.defaults:
            lines.append(f"    {name} changes: " + ", ".join(f"{key}={value!r}" for key, value in entry.defaults.items()))
        if entry.default_data:
            lines.append(f"    {name} with the built-in data: " + ", ".join(f"{key}={value!r}" for key, value in entry.default_data.items()))
    return "\n".join(lines)


__all__ = ["ConfigError", "add_config_arguments", "build_parser", "config_from_arguments", "main", "resolve_config"]

if __name__ == "__main__":
    quiet_startup()
    sys.exit(main())
