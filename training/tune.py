"""`python -m training.tune <model>`: search the model's hyperparameters with KerasTuner.

    python -m training.tune cnn --max-trials 4 --max-minutes 5
    python -m training.tune lstm --data ../shared/data/ucr/GunPoint --strategy hyperband --max-minutes 30

Takes the same model, `--config`, `--set` and flags as `training.run` (the base config the
search starts from). What is searched is declared beside each model (its registry entry's
`search_space`); how is `kerasdl.tuning`. Each trial is a run directory under
`<tune dir>/trials/`; the best config is written to `<tune dir>/best.yaml` for
`python -m training.run <model> --config`. Ctrl-C, then the same command, resumes.
"""

import argparse
import sys
import time

from kerasdl.console import quiet_startup, run_cli
from training.run import OneLineParser, add_config_arguments, config_from_arguments

PROGRAM = "python -m training.tune"
STRATEGIES = ("bayesian", "hyperband")  # kerasdl.tuning.STRATEGIES, restated so --help loads no TensorFlow.
# --strategy is the search's here; the distribution strategy is --set train.strategy=NAME.
SKIPPED_FLAGS = ("strategy",)


def build_parser():
    """The command line: `training.run`'s config arguments plus the search budget and strategy."""
    parser = OneLineParser(
        prog=PROGRAM,
        description="Search a kerasdl model's declared hyperparameters with KerasTuner; each trial is a training.run run directory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys and defaults: python -m training.run --help. The searched ranges and their reasons: search_space in each model file.",
    )
    add_config_arguments(parser, skip=SKIPPED_FLAGS)
    parser.add_argument("--max-trials", type=_positive(int), default=10, help="the most trials, over every session of this search (default 10)")
    parser.add_argument("--max-minutes", type=_positive(float), default=30.0, help="the most minutes of searching, over every session (default 30)")
    parser.add_argument("--strategy", dest="search_strategy", choices=STRATEGIES, default="bayesian", help="the search strategy: bayesian (default; the first trial is the config as given) or hyperband (the distribution strategy is --set train.strategy=NAME)")
    parser.add_argument("--tune-dir", help="where the search lives (default <output>/<model>/tune-<strategy>-<config fingerprint>, so the same command resumes)")
    return parser


def main(argv=None):
    """Parses `argv`, searches, prints the best trial and its config file; returns the exit status."""
    arguments = build_parser().parse_args(argv)
    return run_cli(lambda: _tune(arguments), interrupted_hint="run the same command again to resume the search")


def _tune(arguments):
    started = time.time()  # --max-minutes counts loading TensorFlow and the data too.
    config = config_from_arguments(arguments, skip=SKIPPED_FLAGS)
    from kerasdl.backend import select_backend_for

    # Before kerasdl.tuning imports KerasTuner (and so Keras): every trial trains in this process.
    select_backend_for(config)
    from kerasdl.tuning import search

    summary = search(config, arguments.max_trials, arguments.max_minutes, arguments.search_strategy, arguments.tune_dir, started=started)
    return 0 if summary["best"] is not None else 1


def _positive(kind):
    def read(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return read


if __name__ == "__main__":
    quiet_startup()
    sys.exit(main())
