"""benchmarks/accuracy.py at toy size: the best default model against the baseline fitted in its own run."""

import json
from pathlib import Path

from benchmarks import accuracy, common


def test_targets_are_computed_from_the_runs_own_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "TOY", True)
    monkeypatch.setenv(common.RUNS_DIR_ENV, str(tmp_path))
    outcome = accuracy.run(quick=True)
    assert common.check_result(outcome) == []
    (row,) = outcome["rows"]
    (target,) = outcome["targets"]
    (metrics_path,) = Path(tmp_path).glob("runs/mlp/*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    baseline = metrics["baseline"]
    assert row["case"] == "digits: mlp" and row["baseline_case"] == "digits: logistic_regression"
    assert row["value"] == round(metrics["test_accuracy"], 4) and row["baseline"] == round(baseline["test_accuracy"], 4)
    assert target["id"] == "accuracy_digits_vs_baseline" and target["threshold"] == round(baseline["test_accuracy"], 4)
    assert target["met"] == (target["value"] >= target["threshold"])
    if not target["met"]:
        # The reason is measured: the chosen model, its budget, the baseline and the noise.
        assert "best default model mlp (validation accuracy mlp " in target["reason"] and "1 of 1 epochs" in target["reason"]
    assert outcome["notes"][0].startswith("digits: best default model mlp")
