"""`data.class_names`: names for integer labels, applied where a run decides its class names."""

import pytest

from kerasdl.config import Config, set_value
from kerasdl.data import DataError, load_data


def _config(source, names=None):
    config = Config(model_name="lstm")
    set_value(config, "data.source", str(source))
    if names is not None:
        set_value(config, "data.class_names", names)
    return config.data


def test_ucr_labels_minus_one_and_one_get_the_names_given(shared_data):
    source = shared_data / "ucr" / "ECG200"
    assert load_data(_config(source), ("sequence",), seed=0).class_names == ["-1", "1"]
    splits = load_data(_config(source, ["abnormal", "normal"]), ("sequence",), seed=0)
    assert splits.class_names == ["abnormal", "normal"]
    assert "classes named -1=abnormal, 1=normal" in splits.description


@pytest.mark.parametrize(
    "names, message",
    [
        (["only"], "names 1 classes, but .* has 2 \\(labels -1, 1, in this order\\)"),
        (["same", "same"], "must be distinct"),
        (["ok", ""], "must be a list of names"),
    ],
)
def test_bad_names_are_one_clear_line(shared_data, names, message):
    with pytest.raises(DataError, match=message):
        load_data(_config(shared_data / "ucr" / "ECG200", names), ("sequence",), seed=0)


def test_the_setting_parses_from_the_command_line_form():
    from kerasdl.config import ConfigError, resolve_config

    assert resolve_config("lstm", sets=["data.class_names=[negative,positive]"]).data.class_names == ["negative", "positive"]
    with pytest.raises(ConfigError, match="data.class_names must be a list"):
        resolve_config("lstm", sets=["data.class_names=3"])
