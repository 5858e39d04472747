import math

from kerasdl.report import diagnose


def test_overfitting_is_found_at_the_best_epoch():
    history = {"loss": [1.0, 0.6, 0.4, 0.3, 0.2], "val_loss": [1.0, 0.7, 0.8, 0.9, 1.0], "accuracy": [0.6, 0.8, 0.9, 0.93, 0.95]}
    findings = diagnose(history, num_classes=10)
    assert [finding["issue"] for finding in findings] == ["overfitting"]
    assert findings[0]["epoch"] == 2 and "dropout" in findings[0]["remedy"]


def test_underfitting_low_accuracy_and_plateau():
    low = diagnose({"loss": [2.3, 2.2, 2.2], "val_loss": [2.3, 2.2, 2.2], "accuracy": [0.1, 0.15, 0.2]}, num_classes=10)
    assert low[0]["issue"] == "underfitting" and low[0]["epoch"] == 3
    plateau = diagnose({"loss": [1.0, 0.8, 0.8, 0.8, 0.8], "val_loss": [1.0, 0.8, 0.8, 0.8, 0.8], "accuracy": [0.6, 0.7, 0.7, 0.7, 0.7]}, num_classes=2)
    assert plateau[0]["issue"] == "underfitting" and "plateaued" in plateau[0]["evidence"]


def test_unstable_training_names_the_nan_epoch():
    findings = diagnose({"loss": [1.0, 0.9, math.nan], "val_loss": [1.0, 0.9, math.nan], "accuracy": [0.5, 0.6, 0.1]}, num_classes=2)
    assert findings[0]["issue"] == "unstable" and findings[0]["epoch"] == 3 and "clipping" in findings[0]["remedy"]
    exploding = diagnose({"loss": [1.0, 5.0, 9.0], "val_loss": [1.0, 5.0, 9.0], "accuracy": [0.9, 0.9, 0.9]}, num_classes=2)
    assert exploding[0]["issue"] == "unstable" and exploding[0]["epoch"] == 2


def test_healthy_history_has_no_findings():
    assert diagnose({"loss": [1.0, 0.5, 0.3, 0.2], "val_loss": [1.0, 0.6, 0.4, 0.35], "accuracy": [0.7, 0.9, 0.95, 0.97]}, num_classes=10) == []
