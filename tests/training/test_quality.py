"""A run's quality measures, wired into training.run: the classical baseline and the gradient log (kerasdl/quality.py)."""

import csv
import json
import re
from pathlib import Path

import pytest

from training.run import main


def only_run_dir(output, model):
    (run_dir,) = sorted((Path(output) / model).iterdir())
    return run_dir


def test_a_default_run_compares_with_the_baseline_and_logs_gradients(tmp_path, capsys):
    assert main(["mlp", "--epochs", "2", "--output", str(tmp_path), "--set", "train.verbose=0"]) == 0
    out = capsys.readouterr().out
    run_dir = only_run_dir(tmp_path, "mlp")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    baseline, versus = metrics["baseline"], metrics["versus_baseline"]
    assert baseline["name"] == "logistic_regression" and baseline["test_examples"] == metrics["test_examples"] == 180
    assert baseline["train_examples"] == metrics["train_examples"] == 1437 and 0.9 < baseline["test_accuracy"] <= 1.0
    line = f"kerasdl {metrics['test_accuracy']:.3f} vs baseline {baseline['test_accuracy']:.3f} ({100 * (metrics['test_accuracy'] - baseline['test_accuracy']):+.1f} points)"
    assert versus["line"] == line and versus["verdict"] in ("better", "tie", "worse")
    # Its cost, measured in the run: the baseline's share of the wall time.
    assert 0 < baseline["share_of_run"] < 1 and baseline["total_seconds"] > baseline["seconds"]
    assert f"against the classical baseline: {line}" in out and "classical baseline: logistic regression" in out
    assert out.count(line) == 1  # said once, at the end
    report = (run_dir / "report.md").read_text()
    assert f"- Against a classical baseline: {line}" in report and "## Against a classical baseline" in report
    # Gradients: before training, the first epoch, and the last; every 5th epoch in between (23 steps an epoch).
    with open(run_dir / "gradients.csv", newline="") as handle:
        epochs = sorted({int(row["epoch"]) for row in csv.DictReader(handle)})
    assert epochs == [-1, 0, 1]
    log = metrics["gradient_log"]
    assert log["measured_epochs"] == [-1, 0, 1] and log["every_epochs"] == [5] and log["batches"] == 2
    assert 0 < log["share_of_fit"] < 1
    # The default MLP is not flagged (tests/test_gradients.py flags deliberately bad models).
    assert not [finding for finding in metrics["diagnosis"] if "gradients" in finding["issue"]]
    assert "`gradients.csv`" in report


def test_report_switches_turn_both_off(tmp_path, capsys):
    arguments = ["mlp", "--epochs", "1", "--output", str(tmp_path), "--set", "train.verbose=0"]
    assert main(arguments + ["--set", "report.baseline=false", "--set", "report.gradients=false"]) == 0
    out = capsys.readouterr().out
    run_dir = only_run_dir(tmp_path, "mlp")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not {"baseline", "versus_baseline", "gradient_log"} & set(metrics)
    assert not (run_dir / "gradients.csv").exists()
    assert "baseline" not in (run_dir / "report.md").read_text() and "baseline" not in out


def test_a_model_that_loses_is_told_so_with_what_to_try(tmp_path):
    # One epoch at a learning rate far too small: the MLP stays near chance, far below the baseline.
    assert main(["mlp", "--epochs", "1", "--learning-rate", "1e-6", "--output", str(tmp_path), "--set", "train.verbose=0", "--set", "report.gradients=false"]) == 0
    run_dir = only_run_dir(tmp_path, "mlp")
    versus = json.loads((run_dir / "metrics.json").read_text())["versus_baseline"]
    assert versus["verdict"] == "worse" and versus["difference_points"] < -30
    report = (run_dir / "report.md").read_text()
    assert re.search(r"The model is \d+\.\d points below a classical baseline \(logistic_regression\)", report)
    assert "- What to try:" in report and "the run made only 23 optimizer steps" in report


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_report_switches_are_booleans(value, cli, tmp_path):
    result = cli("training.run", "mlp", "--set", f"report.baseline={value}", "--output", str(tmp_path))
    assert result.returncode == 2 and "report.baseline must be bool" in result.stderr and "Traceback" not in result.stderr
