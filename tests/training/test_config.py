"""Config resolution and checks (`kerasdl.config`): types on every path, rules, one home per default."""

import dataclasses
import inspect
import subprocess
import sys
import textwrap

import pytest
import yaml

from kerasdl.config import Config, ConfigError, DataConfig, TrainConfig, default_config, fill_modality_defaults, resolve_config
from training.run import build_parser, main


@pytest.mark.parametrize(
    "arguments, message",
    [
        # Each path: a flag, --set and a YAML file (below) refuse None where the default is not None.
        (["--epochs", "none"], "--epochs (train.epochs) must be int, got 'none'; e.g. --epochs 20"),
        (["--set", "train.epochs=none"], "train.epochs must be int, got 'none'; e.g. --set train.epochs=20"),
        (["--set", "train.learning_rate=fast"], "train.learning_rate must be float, got 'fast'; e.g. --set train.learning_rate=0.001"),
        (["--set", "data.cache=maybe"], "data.cache must be bool (true or false), got 'maybe'; e.g. --set data.cache=true"),
        (["--set", "data.image_size=64"], "data.image_size must be a list, got '64'; e.g. --set data.image_size=[64,64]"),
        (["--set", "model.hidden_units=wide"], "model.hidden_units must be int, got 'wide'; e.g. --set model.hidden_units=128"),
        (["--set", "train.epochs=0"], "train.epochs must be at least 1, got 0"),
        (["--set", "train.optimizer=sgd"], "train.optimizer must be one of 'adam', 'adamw', got 'sgd'"),
        (["--set", "train.lr_schedule=cosin"], "did you mean 'cosine'?"),
        (["--set", "data.validation_fraction=1.5"], "data.validation_fraction must be below 1.0, got 1.5"),
        (["--set", "train.learning_rate=nan"], "train.learning_rate must be a finite number, got nan"),
        (["--set", "train.batch_size"], "--set 'train.batch_size': expected key=value"),
        (["--set", "train.epoch=3"], "unknown config key 'train.epoch'; did you mean 'train.epochs'"),
        (["--set", "trian.epochs=3"], "did you mean 'train.epochs'"),
        (["--weights", "none"], "--weights does not apply to mlp: it sets model.weights, which only resnet50 has"),
    ],
)
def test_wrong_values_are_one_line_naming_key_type_and_example(arguments, message, capsys):
    assert main(["mlp", *arguments, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_a_yaml_file_is_checked_like_the_command_line(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  epochs: null\n")
    assert main(["mlp", "--config", str(config_file), "--print-config"]) == 2
    assert f"{config_file}: train.epochs must be int, got none; e.g. train: {{epochs: 20}}" in capsys.readouterr().err
    config_file.write_text("train:\n  epochs: 3\n  clipnorm: null\ndata:\n  max_examples: ~\n")
    config = resolve_config("mlp", str(config_file))
    # None is accepted where the key may be None (clipnorm None disables clipping).
    assert (config.train.epochs, config.train.clipnorm, config.data.max_examples) == (3, None, None)


def test_command_line_text_is_read_by_the_key_type():
    config = resolve_config("mlp", sets=["train.learning_rate=1e-4", "data.text_column=2", "data.max_examples=none", "train.clipnorm=none"], flags={"epochs": "3"})
    # YAML 1.1 reads 1e-4 as a string and 2 as an int; the key's type decides instead.
    assert config.train.learning_rate == 1e-4 and config.data.text_column == "2"
    assert config.data.max_examples is None and config.train.clipnorm is None and config.train.epochs == 3
    assert resolve_config("cnn", sets=["model.filters=[8,16]"]).model["filters"] == (8, 16)


def test_printed_config_resolves_to_itself(tmp_path, capsys):
    assert main(["cnn", "--epochs", "3", "--set", "augment.rotation=0.2", "--print-config"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    again = resolve_config("cnn", str(tmp_path / "printed.yaml"))
    assert again.to_dict() == yaml.safe_load(printed) and again.train.epochs == 3


def test_defaults_are_read_from_the_dataclasses_not_restated():
    """The flags' help, make_pipeline, make_optimizer and make_callbacks read the dataclass defaults."""
    from kerasdl.callbacks import make_callbacks
    from kerasdl.data.pipeline import make_pipeline
    from kerasdl.optim import make_optimizer

    helps = {action.dest: action.help for action in build_parser()._actions}
    assert f"default {TrainConfig.epochs!r}" in helps["epochs"] and f"default {TrainConfig.batch_size!r}" in helps["batch_size"]
    assert f"default {TrainConfig.learning_rate!r}" in helps["learning_rate"]
    pipeline = inspect.signature(make_pipeline).parameters
    assert (pipeline["cache_limit_mb"].default, pipeline["shuffle_buffer"].default, pipeline["cache"].default) == (
        DataConfig.cache_limit_mb, DataConfig.shuffle_buffer, DataConfig.cache)
    optimizer = inspect.signature(make_optimizer).parameters
    for name in ("optimizer", "learning_rate", "weight_decay", "clipnorm", "lr_schedule", "warmup_epochs", "epochs"):
        assert optimizer[name].default == getattr(TrainConfig, name), name
    callbacks = inspect.signature(make_callbacks).parameters
    for name in ("lr_schedule", "step_size", "step_gamma", "plateau_factor", "plateau_patience", "early_stopping_patience"):
        assert callbacks[name].default == getattr(TrainConfig, name), name


def test_each_recurrent_network_keeps_its_own_default():
    """The text LSTM/GRU are bidirectional, the numeric ones not (one shared key, two defaults)."""
    for model in ("lstm", "gru"):
        config = default_config(model)
        assert config.model["bidirectional"] is None
        assert fill_modality_defaults(default_config(model), "text").model["bidirectional"] is True
        assert fill_modality_defaults(default_config(model), "sequence").model["bidirectional"] is False
        # An explicit setting wins for both.
        assert fill_modality_defaults(resolve_config(model, sets=["model.bidirectional=false"]), "text").model["bidirectional"] is False


def test_text_lstm_built_with_resolved_config_is_bidirectional():
    import keras

    from kerasdl.models.registry import DataFacts, get_model_entry

    config = fill_modality_defaults(resolve_config("lstm"), "text")
    texts = ["a good film", "a bad film", "not good", "very bad"] * 4
    model = get_model_entry("lstm")(DataFacts("text", (), 2, train_texts=texts), **config.model)
    assert any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers)
    series = fill_modality_defaults(resolve_config("lstm"), "sequence")
    model = get_model_entry("lstm")(DataFacts("sequence", (None, 8), 10), **series.model)
    assert not any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers)


def test_resnet50_follows_the_data_image_size():
    """One image-size setting: data.image_size sizes the model unless model.image_size is set."""
    from kerasdl.models.registry import DataFacts, get_model_entry

    config = resolve_config("resnet50", sets=["data.image_size=[40,48]"], flags={"weights": "none"})
    assert config.model["image_size"] is None
    model = get_model_entry("resnet50")(DataFacts("image", (40, 48, 3), 2), **config.model)
    assert tuple(model.get_layer("resize").output.shape[1:3]) == (40, 48)
    assert tuple(model.get_layer("resnet50").input.shape[1:3]) == (40, 48)
    explicit = resolve_config("resnet50", sets=["data.image_size=[40,48]", "model.image_size=32"], flags={"weights": "none"})
    model = get_model_entry("resnet50")(DataFacts("image", (40, 48, 3), 2), **explicit.model)
    assert tuple(model.get_layer("resize").output.shape[1:3]) == (32, 32)


def test_help_and_config_errors_do_not_import_tensorflow(repo_root):
    """`--help` and a config error answer without loading TensorFlow or Keras (the slow part)."""
    script = textwrap.dedent(
        """
        import runpy, sys
        for argv in (["--help"], ["mlp", "--set", "train.epoch=3"], ["mlp", "--print-config"]):
            sys.argv = ["training.run", *argv]
            try:
                runpy.run_module("training.run", run_name="__main__", alter_sys=True)
            except SystemExit:
                pass
        print("LOADED", sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert "LOADED []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert "did you mean 'train.epochs'" in result.stderr


def test_every_key_of_the_config_has_a_type_the_checks_know():
    """No key slips past the checks: each dataclass field has a base type `coerce` handles."""
    from kerasdl.config import SECTIONS, _field_type

    for section in SECTIONS:
        for field in dataclasses.fields(getattr(Config(), section)):
            assert _field_type(field.type)[0] in (int, float, str, bool, list), f"{section}.{field.name}"


def test_unknown_model_suggests_the_closest(capsys):
    with pytest.raises(ConfigError, match="unknown model 'cnnn'; did you mean 'cnn'"):
        resolve_config("cnnn")
    assert main(["transformer"]) == 2
    assert "unknown model 'transformer'; choose one of: bert, cnn" in capsys.readouterr().err
