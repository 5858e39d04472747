"""`serving.labels.parse_labels`: the one parser of `--label` behind serving.deploy and the edge server."""

import pytest

from serving.labels import EVERY_MODEL, parse_labels


def test_without_models_unscoped_labels_apply_to_every_model():
    assert parse_labels(["cnn:stable=1", "canary=2", "cnn:canary=3"]) == {
        "cnn": {"stable": 1, "canary": 3}, EVERY_MODEL: {"canary": 2}}
    assert parse_labels(None) == {} and parse_labels([]) == {}


def test_with_models_unscoped_labels_are_spread_and_names_checked():
    assert parse_labels(["stable=1", "mlp:canary=2"], models=["cnn", "mlp"]) == {
        "cnn": {"stable": 1}, "mlp": {"stable": 1, "canary": 2}}
    with pytest.raises(ValueError, match=r"--label nope:stable=1: no model 'nope' under the export base path; models: cnn, mlp"):
        parse_labels(["nope:stable=1"], models=["cnn", "mlp"])


@pytest.mark.parametrize("value", ["stable", "stable=", "=1", "stable=one", "cnn:stable=-1"])
def test_malformed_values_name_the_expected_form(value):
    for models in (None, ["cnn"]):
        with pytest.raises(ValueError, match=r"--label must look like \[model:\]label=version, got"):
            parse_labels([value], models=models)


def test_both_command_lines_use_the_shared_parser():
    # One parser: neither module keeps a copy of its own.
    from serving import deploy
    from serving.edge import server

    assert deploy.parse_labels is parse_labels and server.parse_labels is parse_labels
