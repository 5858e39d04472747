"""Generated config values for `python -m training.run` (Hypothesis).

Property: whatever the value, the command exits 0, or 2 with exactly one `error:` line, and
never prints a traceback. Most examples stop before training (`--print-config`, in process);
a few real runs in subprocesses train the MLP for one tiny epoch.
"""

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasdl.config import SECTIONS, Config, default_config, modality_defaults, valid_keys
from training.run import main

MODELS = ("mlp", "cnn", "lstm", "resnet50", "bert")
KEYS = sorted({(model, key) for model in MODELS for key in valid_keys(default_config(model))})

# What a user might type after `key=`: numbers of every size, words, YAML lists and maps, nothing.
TEXT_VALUES = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["none", "None", "null", "~", "", "true", "false", "yes", "[]", "[1]", "[64,64]", "[a,b]", "{a: 1}", "'quoted'", "1e-3", "0x10", "-0", "nan", "inf"]),
    st.text(max_size=20),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=4).map(lambda items: "[" + ",".join(map(str, items)) + "]"),
)
# Typed values as a YAML file holds them.
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=2),
    max_leaves=5,
)


def run_main(arguments):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(arguments)
        except SystemExit as exit:  # argparse's own exits (--help, usage errors).
            code = exit.code
    return code, out.getvalue(), err.getvalue()


def assert_types_hold(model, printed):
    """The oracle: every value of an accepted config has its declared type; None only where allowed."""
    defaults = Config()
    for section in SECTIONS:
        for field in dataclasses.fields(getattr(defaults, section)):
            value = printed[section][field.name]
            arguments = typing.get_args(field.type)
            expected = next((argument for argument in arguments if argument is not type(None)), field.type)
            if value is None:
                assert type(None) in arguments, (section, field.name)
            else:
                assert isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool)), (section, field.name, value)
    builder_defaults = default_config(model).model
    for name, value in printed["model"].items():
        default = builder_defaults[name]
        if value is None:
            assert default is None or name in modality_defaults(model), (name, value)
        elif default is not None:
            assert isinstance(value, list if isinstance(default, tuple) else type(default)), (name, value)
    assert isinstance(printed["output"], str) and printed["output"]


def assert_one_line_or_success(code, out, err):
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(error_lines) == 1 and len(err.splitlines()) == 1, err
    else:
        assert not error_lines, err
        printed = yaml.safe_load(out)
        assert_types_hold(printed["model_name"], printed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), TEXT_VALUES)
def test_set_any_value_for_any_key(tmp_path_factory, model_and_key, text):
    model, key = model_and_key
    code, out, err = run_main([model, "--set", f"{key}={text}", "--print-config"])
    assert_one_line_or_success(code, out, err)
    if code == 0:
        # What --set accepted passes the file path's checks too (a None or a wrong type let
        # through would fail here), and reads back to the same config.
        path = tmp_path_factory.mktemp("printed") / "config.yaml"
        path.write_text(out)
        again = run_main([model, "--config", str(path), "--print-config"])
        assert again[0] == 0 and again[1] == out, (key, text, again[2])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KEYS), YAML_VALUES)
def test_config_file_with_any_value(tmp_path_factory, model_and_key, value):
    model, key = model_and_key
    section, _, name = key.partition(".")
    mapping = {section: {name: value}} if name else {section: value}
    path = tmp_path_factory.mktemp("config") / "run.yaml"
    path.write_text(yaml.safe_dump(mapping))
    assert_one_line_or_success(*run_main([model, "--config", str(path), "--print-config"]))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["--epochs", "--batch-size", "--learning-rate", "--seed", "--strategy", "--output", "--data-dir"]), TEXT_VALUES)
def test_flags_with_any_value(flag, text):
    assert_one_line_or_success(*run_main(["mlp", f"{flag}={text}", "--print-config"]))


TRAINING_KEYS = {
    "train.batch_size": st.integers(min_value=-2, max_value=3000),
    "train.learning_rate": st.sampled_from([-1.0, 0.0, 1e-6, 0.5, 1e6]),
    "train.steps_per_execution": st.integers(min_value=-1, max_value=500),
    "train.lr_schedule": st.sampled_from(["cosine", "linear", "step", "plateau", "constant", "exponential"]),
    "train.warmup_epochs": st.integers(min_value=-1, max_value=5),
    "data.validation_fraction": st.sampled_from([0.0, 0.05, 0.5, 0.95]),
    "model.hidden_units": st.integers(min_value=-1, max_value=64),
    "model.dropout_rate": st.sampled_from([-0.5, 0.0, 0.5, 1.0, 2.0]),
}


@pytest.mark.parametrize("seed", [0])
@settings(max_examples=3, deadline=None, derandomize=True)
@given(data=st.data())
def test_real_runs_with_generated_values(tmp_path_factory, repo_root, seed, data):
    """A few real `python -m training.run mlp` processes: train for one tiny epoch, or refuse in one line."""
    keys = data.draw(st.lists(st.sampled_from(sorted(TRAINING_KEYS)), min_size=1, max_size=3, unique=True))
    sets = [f"{key}={data.draw(TRAINING_KEYS[key])}" for key in keys]
    output = tmp_path_factory.mktemp("runs")
    arguments = ["mlp", "--epochs", "1", "--output", str(output), "--set", "train.verbose=0", "--set", "model.num_hidden_layers=1"]
    for item in sets:
        arguments += ["--set", item]
    result = subprocess.run([sys.executable, "-m", "training.run", *arguments], cwd=repo_root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERASDL_DEBUG": ""})
    assert "Traceback" not in result.stderr, (sets, result.stderr[-3000:])
    assert result.returncode in (0, 2), (sets, result.stderr[-3000:])
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == (1 if result.returncode == 2 else 0), (sets, result.stderr[-3000:])
