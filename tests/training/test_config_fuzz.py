"""Generated config values for `python -m training.run` (Hypothesis).

Property: whatever the value, the command exits 0, or 2 with exactly one `error:` line, and
never prints a traceback. Most examples stop before training (`--print-config`, in process);
a few real runs in subprocesses train the MLP for one tiny epoch. The strategies and the
checks are `benchmarks/robustness_config.py`'s, which `benchmarks.run --only robustness` runs
with 1,000 cases.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.robustness_config import (
    FLAGS,
    KEYS,
    TEXT_VALUES,
    TRAINING_KEYS,
    YAML_VALUES,
    assert_one_line_or_success,
    check_flag_value,
    check_real_run,
    check_set_value,
    check_yaml_value,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), TEXT_VALUES)
def test_set_any_value_for_any_key(tmp_path_factory, model_and_key, text):
    check_set_value(*model_and_key, text, tmp_path_factory.mktemp("printed"))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KEYS), YAML_VALUES)
def test_config_file_with_any_value(tmp_path_factory, model_and_key, value):
    check_yaml_value(*model_and_key, value, tmp_path_factory.mktemp("config"))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FLAGS), TEXT_VALUES)
def test_flags_with_any_value(flag, text):
    check_flag_value(flag, text)


def test_the_property_refuses_a_traceback_and_a_second_line():
    """The oracle fails on what it must catch (a property that cannot fail is a defect)."""
    with pytest.raises(AssertionError):
        assert_one_line_or_success(1, "", "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n")
    with pytest.raises(AssertionError):
        assert_one_line_or_success(2, "", "error: one\nerror: two\n")
    assert_one_line_or_success(2, "", "error: train.epochs must be int, got 'many'\n")


@pytest.mark.parametrize("seed", [0])
@settings(max_examples=3, deadline=None, derandomize=True)
@given(data=st.data())
def test_real_runs_with_generated_values(tmp_path_factory, seed, data):
    """A few real `python -m training.run mlp` processes: train for one tiny epoch, or refuse in one line."""
    keys = data.draw(st.lists(st.sampled_from(sorted(TRAINING_KEYS)), min_size=1, max_size=3, unique=True))
    check_real_run([f"{key}={data.draw(TRAINING_KEYS[key])}" for key in keys], tmp_path_factory.mktemp("runs"))
