"""The README's training claims, checked against the code: flags, defaults, models, the files a run writes."""

import re
import shlex
from pathlib import Path

import pytest

from kerasdl.config import Config, DataConfig, TrainConfig, default_config, fill_modality_defaults, resolve_config
from training.run import build_parser, main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def section(title):
    """The README text from the heading `title` to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", README, re.MULTILINE)
    assert match, title
    level = len(match.group(1))
    end = re.search(rf"^#{{1,{level}}} ", README[match.end():], re.MULTILINE)
    return README[match.end(): match.end() + end.start() if end else len(README)]


TRAIN = section("Train")


def _baseline():
    from kerasdl import baseline

    return baseline


def _quality():
    from kerasdl import quality

    return quality


def test_every_flag_the_train_section_names_exists():
    options = {option for action in build_parser()._actions for option in action.option_strings}
    # Flags of the other tools it quotes (`tensorboard --logdir`) aside.
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", TRAIN)) - {"--logdir"}
    assert named and named <= options, named - options


def test_every_training_command_of_the_train_section_is_valid(capsys):
    commands = [line.split("#")[0].strip() for line in re.findall(r"^python -m training\.run .*$", TRAIN, re.MULTILINE)]
    checked = 0
    for command in commands:
        arguments = shlex.split(command)[3:]
        if "--config" in arguments or "--data" in arguments:
            continue  # They name the reader's own files.
        assert main([*arguments, "--print-config"]) == 0, (command, capsys.readouterr().err)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    "claim, actual",
    [
        (r"split 80/10/10", lambda: (DataConfig.validation_fraction, DataConfig.test_fraction) == (0.1, 0.1)),
        (r"`train.lr_schedule` is `cosine` \(with `train.warmup_epochs` of linear warmup, the default\)", lambda: TrainConfig.lr_schedule == "cosine" and TrainConfig.warmup_epochs > 0),
        (r"`train.optimizer` is `adamw` \(default", lambda: TrainConfig.optimizer == "adamw"),
        (r"`train.strategy_timeout_seconds` \(default 120\)", lambda: TrainConfig.strategy_timeout_seconds == 120),
        (r"`--strategy auto` \(the default\)", lambda: TrainConfig.strategy == "auto"),
        (r"`--backend auto` \(the default\)", lambda: TrainConfig.backend == "auto"),
        (r"`train.jit_compile` unset, Keras' `auto`", lambda: TrainConfig.jit_compile is None),
        (r"`--weights imagenet` \(the default\)", lambda: default_config("resnet50").model["weights"] == "imagenet"),
        (r"\(`model.use_cudnn=false`\)", lambda: default_config("lstm").model["use_cudnn"] is False),
        (r"`--set train.clipnorm=none`", lambda: resolve_config("mlp", sets=["train.clipnorm=none"]).train.clipnorm is None),
        (r"for text the n-gram MLP: TF-IDF of word 1-2 grams, Dropout, Dense\(64, relu\), Dropout, Dense", lambda: [fill_modality_defaults(default_config("mlp"), "text").model[key] for key in ("hidden_units", "dropout_rate", "ngrams", "num_hidden_layers")] == [64, 0.2, 2, 1]),
        (r"20,000 most frequent word 1-2 grams \(every one seen in the training texts", lambda: (default_config("mlp").model["max_features"], default_config("mlp").model["min_document_frequency"]) == (20000, 1)),
        (r"BiLSTM, Dense \(text\)", lambda: fill_modality_defaults(default_config("lstm"), "text").model["bidirectional"] is True),
        (r"LSTM stack, Dense \(numeric series\)", lambda: fill_modality_defaults(default_config("lstm"), "sequence").model["bidirectional"] is False),
        (r"BiGRU, Dense \(text\)", lambda: fill_modality_defaults(default_config("gru"), "text").model["bidirectional"] is True),
        (r"GRU stack, Dense \(series\)", lambda: fill_modality_defaults(default_config("gru"), "sequence").model["bidirectional"] is False),
        (r"Conv1D\(128, 8\), Conv1D\(256, 5\), Conv1D\(128, 3\), each BatchNorm \+ ReLU", lambda: (default_config("fcn").model["filters"], default_config("fcn").model["kernel_sizes"]) == ((128, 256, 128), (8, 5, 3))),
        (r"`train.learning_rate` 3e-4 and `train.min_steps`\n500", lambda: (resolve_config("fcn").train.learning_rate, resolve_config("fcn").train.min_steps) == (3e-4, 500)),
        (r"batch-norm momentum 0.9\n\(`model.batch_norm_momentum`", lambda: default_config("fcn").model["batch_norm_momentum"] == 0.9),
        (r"The model follows `data.image_size`", lambda: default_config("resnet50").model["image_size"] is None),
        (r"at most 50,000 training texts, 10,000 series or 5,000 images or\nfeature vectors", lambda: _baseline().MAX_TRAIN_EXAMPLES == {"text": 50_000, "sequence": 10_000, "image": 5_000, "features": 5_000}),
        (r"block-averaged to at\nmost 16x16 as they are read, 25 solver iterations", lambda: (_baseline().IMAGE_SIDE_CAP, _baseline().MAX_ITERATIONS) == (16, 25)),
        (r"`--set report.baseline=false` turns it off", lambda: resolve_config("mlp", sets=["report.baseline=false"]).report.baseline is False and Config().report.baseline is True),
        (r"`--set report.gradients=false` turns it off", lambda: resolve_config("mlp", sets=["report.gradients=false"]).report.gradients is False and Config().report.gradients is True),
        (r"the strengths\ntried only until two in a row score below the best", lambda: _baseline().C_PATIENCE == 2),
        (r"the sampled batches stay under 2 % of the training steps", lambda: _quality().GRADIENT_STEP_SHARE == 0.02),
        (r"`python -m training.run --help` documents every key with its default", lambda: all(
            f"{key} = " in build_parser().epilog for key in ("train.epochs", "data.image_size", "finetune.blocks"))),
    ],
)
def test_stated_defaults_hold(claim, actual):
    assert re.search(claim, README), f"the README no longer says {claim!r}"
    assert actual(), claim


def test_the_resnet50_recipe_sets_the_size_once():
    (command,) = re.findall(r"^python -m training\.run resnet50 --data .*$", README, re.MULTILINE)
    arguments = shlex.split(command)[3:]
    config = resolve_config(arguments[0], sets=[value for flag, value in zip(arguments, arguments[1:]) if flag == "--set"])
    assert config.data.image_size == [224, 224] and config.model["image_size"] is None  # The model follows the data.


def test_a_run_writes_what_the_readme_lists(tmp_path):
    listing = re.search(r"### What a run writes\n.*?```\n(.*?)```", README, re.DOTALL).group(1)
    named = {line.split()[0] for line in listing.splitlines() if line.strip() and not line[0].isspace()}
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path), "--set", "train.verbose=0"]) == 0
    (run_dir,) = (tmp_path / "mlp").iterdir()
    written = {path.name + ("/" if path.is_dir() else "") for path in run_dir.iterdir()}
    assert "checkpoints/" not in written  # removed once the run completes, unless train.keep_checkpoint=true
    assert named == written, (named ^ written)
