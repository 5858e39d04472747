"""Generated config values for `python -m training.run` (Hypothesis): the strategies, the property, and its runner.

The property: whatever the value (a `--set key=value`, a YAML `--config` file, a flag), the
command exits 0 with a config whose every value has its declared type (None only where
the default is None), or exits 2 with exactly one `error:` line; never a traceback, never
another status. Most cases stop before training (`--print-config`, in this process); a few
real `python -m training.run mlp` processes train one tiny epoch with generated values.

`tests/training/test_config_fuzz.py` runs small budgets of the same strategies and checks;
`fuzz_training_config` runs any number for `benchmarks.run --only robustness`, recording
every broken case instead of stopping at the first:

    python -c "from benchmarks.robustness_config import fuzz_training_config; print(fuzz_training_config(1000))"
"""

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st

from kerasdl.config import SECTIONS, Config, default_config, modality_defaults, valid_keys

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mlp", "cnn", "lstm", "resnet50", "bert")
KEYS = sorted({(model, key) for model in MODELS for key in valid_keys(default_config(model))})
FLAGS = ["--epochs", "--batch-size", "--learning-rate", "--seed", "--strategy", "--output", "--data-dir"]

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
# Values for real (training) runs: mostly plausible, some out of range.
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


def run_main(arguments):
    """Runs `training.run`'s main in this process; returns `(exit status, stdout, stderr)`."""
    from training.run import main

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
    """The property for one `--print-config` run: 0 with a well-typed config, or 2 with one `error:` line."""
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(error_lines) == 1 and len(err.splitlines()) == 1, err
    else:
        assert not error_lines, err
        printed = yaml.safe_load(out)
        assert_types_hold(printed["model_name"], printed)


def check_set_value(model, key, text, folder):
    """`--set key=text`: the property, and an accepted config read back through `--config` gives the same config."""
    code, out, err = run_main([model, "--set", f"{key}={text}", "--print-config"])
    assert_one_line_or_success(code, out, err)
    if code == 0:
        # What --set accepted passes the file path's checks too (a None or a wrong type let
        # through would fail here), and reads back to the same config.
        path = Path(folder) / "config.yaml"
        path.write_text(out)
        again = run_main([model, "--config", str(path), "--print-config"])
        assert again[0] == 0 and again[1] == out, (key, text, again[2])
    return code


def check_yaml_value(model, key, value, folder):
    """A YAML `--config` file setting `key` to `value`: the property."""
    section, _, name = key.partition(".")
    path = Path(folder) / "run.yaml"
    path.write_text(yaml.safe_dump({section: {name: value}} if name else {section: value}))
    code, out, err = run_main([model, "--config", str(path), "--print-config"])
    assert_one_line_or_success(code, out, err)
    return code


def check_flag_value(flag, text):
    """`mlp --flag=text`: the property."""
    code, out, err = run_main(["mlp", f"{flag}={text}", "--print-config"])
    assert_one_line_or_success(code, out, err)
    return code


def check_real_run(sets, folder):
    """`python -m training.run mlp` for one tiny epoch with `sets` (`key=value` strings): trains, or refuses in one line."""
    arguments = ["mlp", "--epochs", "1", "--output", str(folder), "--set", "train.verbose=0", "--set", "model.num_hidden_layers=1"]
    for item in sets:
        arguments += ["--set", item]
    result = subprocess.run([sys.executable, "-m", "training.run", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KERASDL_DEBUG": "", "PYTHONPATH": str(REPO_ROOT)})
    assert "Traceback" not in result.stderr, (sets, result.stderr[-3000:])
    assert result.returncode in (0, 2), (sets, result.stderr[-3000:])
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == (1 if result.returncode == 2 else 0), (sets, result.stderr[-3000:])
    return result.returncode


def fuzz_training_config(examples=1000, real_runs=5, seed=0):
    """Runs the property over `examples` generated values (half `--set`, a third YAML, the rest flags) and `real_runs` trainings.

    Every broken case is recorded (none stops the run).

    Returns:
        `{"cases", "accepted", "refused", "failures", "by_path": {path: cases}, "real_runs",
        "real_trained", "real_refused", "examples_of_failures", "seconds"}`.

    Example:
    >>> fuzz_training_config(100, real_runs=1)["failures"]
    0
    """
    started = time.time()
    counts = {"accepted": 0, "refused": 0}
    by_path, failures = {}, []

    def record(path, check, *arguments):
        by_path[path] = by_path.get(path, 0) + 1
        try:
            code = check(*arguments)
        except Exception as error:  # AssertionError: the property broke; anything else: the check itself crashed.
            failures.append(f"{path} {arguments[:3]!r}: {type(error).__name__}: {str(error)[:300]}")
            return
        counts["accepted" if code == 0 else "refused"] += 1

    configured = settings(deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    with tempfile.TemporaryDirectory() as folder:
        @with_seed(seed)
        @settings(configured, max_examples=examples // 2)
        @given(st.sampled_from(KEYS), TEXT_VALUES)
        def set_values(model_and_key, text):
            record("--set", check_set_value, *model_and_key, text, folder)

        @with_seed(seed + 1)
        @settings(configured, max_examples=examples // 3)
        @given(st.sampled_from(KEYS), YAML_VALUES)
        def yaml_values(model_and_key, value):
            record("--config", check_yaml_value, *model_and_key, value, folder)

        @with_seed(seed + 2)
        @settings(configured, max_examples=examples - examples // 2 - examples // 3)
        @given(st.sampled_from(FLAGS), TEXT_VALUES)
        def flag_values(flag, text):
            record("flags", check_flag_value, flag, text)

        @with_seed(seed + 3)
        @settings(configured, max_examples=max(real_runs, 1))
        @given(st.data())
        def real_values(data):
            keys = data.draw(st.lists(st.sampled_from(sorted(TRAINING_KEYS)), min_size=1, max_size=3, unique=True))
            sets = [f"{key}={data.draw(TRAINING_KEYS[key])}" for key in keys]
            record("real runs", check_real_run, sets, tempfile.mkdtemp(dir=folder))

        set_values()
        yaml_values()
        flag_values()
        real_counts = dict(counts)
        if real_runs:
            real_values()
    real = by_path.get("real runs", 0)
    return {
        "cases": sum(by_path.values()), "accepted": counts["accepted"], "refused": counts["refused"], "failures": len(failures),
        "by_path": by_path, "real_runs": real, "real_trained": counts["accepted"] - real_counts["accepted"],
        "real_refused": counts["refused"] - real_counts["refused"], "examples_of_failures": failures[:5],
        "seconds": round(time.time() - started, 1),
    }


def run(quick):
    """The benchmark entry (`benchmarks.run` shape): 1,000 generated values and 5 real runs (200 and 2 with --quick)."""
    from benchmarks import common

    started = time.time()
    summary = fuzz_training_config(200 if quick else 1000, real_runs=2 if quick else 5)
    rows = [common.row("training.run config values, generated", "cases per second", summary["cases"] / max(summary["seconds"], 1e-9), "1/s", None, None)]
    reason = "; ".join(summary["examples_of_failures"]) or None
    targets = [
        common.target("config-fuzz", "generated training.run config values: exits other than 0, or 2 with one error line (tracebacks included)",
                      summary["failures"], 0, "<=", reason=reason),
        common.target("config-fuzz-cases", "generated training.run config values tried", summary["cases"], 200 if quick else 1000, ">=",
                      reason=f"{summary['by_path']}"),
    ]
    notes = [
        f"{summary['cases']} cases ({', '.join(f'{path}: {count}' for path, count in summary['by_path'].items())}): "
        f"{summary['accepted']} accepted, {summary['refused']} refused in one line, {summary['failures']} broke the property",
        f"real training runs: {summary['real_runs']} ({summary['real_trained']} trained, {summary['real_refused']} refused)",
    ]
    result = common.result("robustness_config", started, rows, targets, notes)
    result["raw"] = summary
    return result
