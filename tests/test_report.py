import json
import math
import numpy

import pytest

from kerasdl.report import (
    ALL_LAYERS,
    baseline_metrics,
    diagnose,
    diagnose_gradients,
    read_gradients,
    read_history,
    validation_loss_noise,
    write_report,
)


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


# Noise-aware overfitting (issue 12, section 3).
NOISY_RISE = {"loss": [1.0, 0.7, 0.5, 0.4, 0.3, 0.25], "val_loss": [0.9, 0.7, 0.6, 0.554, 0.56, 0.573], "accuracy": [0.6, 0.7, 0.8, 0.85, 0.9, 0.92]}


def test_small_rise_on_a_small_validation_split_is_not_enough_evidence():
    # The run that was called "overfitting": 0.554 -> 0.573 on 80 validation examples.
    findings = diagnose(NOISY_RISE, num_classes=2, validation_examples=80)
    assert [finding["issue"] for finding in findings] == ["inconclusive"]
    assert findings[0]["epoch"] == 4
    assert findings[0]["evidence"].startswith("not enough evidence of overfitting")
    assert "±0.0619 from 80 validation examples" in findings[0]["evidence"]
    assert "validation_fraction" in findings[0]["remedy"]


def test_a_rise_beyond_the_noise_is_still_overfitting():
    history = {"loss": [1.0, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2], "val_loss": [0.9, 0.7, 0.6, 0.554, 0.65, 0.75, 0.85], "accuracy": [0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95]}
    findings = diagnose(history, num_classes=2, validation_examples=5000)
    assert [finding["issue"] for finding in findings] == ["overfitting"]
    assert "exceeds 2x its noise" in findings[0]["evidence"]
    # The same curve on 80 examples: 0.296 is still above 2 x 0.062.
    assert diagnose(history, num_classes=2, validation_examples=80)[0]["issue"] == "overfitting"


def test_validation_loss_noise_takes_the_larger_of_sampling_and_spread():
    noise = validation_loss_noise(NOISY_RISE["val_loss"], 80)
    assert noise["sampling"] == pytest.approx(0.554 / math.sqrt(80))
    # Second differences 0.1, 0.054, 0.052, 0.007: median 0.053, over 0.6745 * sqrt(6).
    assert noise["spread"] == pytest.approx(0.053 / (0.6745 * math.sqrt(6)), rel=1e-6)
    assert noise["noise"] == noise["sampling"]
    # A straight-line rise has no spread; the verdict then rests on the sampling noise alone.
    assert validation_loss_noise([0.5, 0.6, 0.7, 0.8])["noise"] == pytest.approx(0.0, abs=1e-12)
    # Jumping up and down is spread.
    assert validation_loss_noise([0.5, 0.7, 0.5, 0.7, 0.5])["spread"] > 0.2


def test_a_first_epoch_that_diverged_is_unstable():
    findings = diagnose({"loss": [3.5e32, 2.3, 2.3], "val_loss": [2.3, 2.3, 2.3], "accuracy": [0.1, 0.1, 0.1]}, num_classes=10)
    assert findings[0]["issue"] == "unstable" and findings[0]["epoch"] == 1 and "chance level" in findings[0]["evidence"]
    # Unnormalized pixels start high but not 100x chance: not flagged.
    assert not any(finding["issue"] == "unstable" for finding in diagnose({"loss": [44.0, 2.0, 1.0], "val_loss": [3.0, 2.0, 1.0], "accuracy": [0.5, 0.8, 0.9]}, num_classes=10))


def test_read_history_reads_csvlogger_na_cells_as_nan(tmp_path):
    # CSVLogger writes NA for columns an epoch lacks; reading them used to raise ValueError.
    path = tmp_path / "history.csv"
    path.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.0,NA,NA\n1,0.6,0.9,0.55,0.95\n")
    history = read_history(str(path))
    assert history["loss"] == [1.0, 0.9] and math.isnan(history["val_loss"][0]) and history["val_loss"][1] == 0.95


# Gradient diagnosis on hand-written gradients.csv columns (the trained cases are in test_gradients.py).
def _gradients(norms_by_layer, weights_by_layer=None, clipped=None, epochs=None):
    epochs = epochs or list(range(-1, len(next(iter(norms_by_layer.values()))) - 1))
    columns = {}
    for layer, norms in norms_by_layer.items():
        weights = (weights_by_layer or {}).get(layer, [1.0] * len(norms))
        columns[layer] = {"epoch": epochs, "gradient_norm": norms, "gradient_norm_max": norms, "weight_norm": weights, "clipped_fraction": [None] * len(norms)}
    total = [math.sqrt(sum(values[index] ** 2 for values in norms_by_layer.values())) for index in range(len(epochs))]
    total_weights = [math.sqrt(sum(column["weight_norm"][index] ** 2 for column in columns.values())) for index in range(len(epochs))]
    columns[ALL_LAYERS] = {"epoch": epochs, "gradient_norm": total, "gradient_norm_max": total, "weight_norm": total_weights, "clipped_fraction": clipped or [None] * len(epochs)}
    return columns


def test_vanishing_names_the_input_side_layers_and_the_first_epoch():
    gradients = _gradients({"dense_0": [0.1, 1e-6, 1e-6, 1e-6], "dense_1": [0.1, 1e-2, 1e-2, 1e-2], "logits": [0.5, 0.5, 0.5, 0.5]})
    findings = diagnose_gradients(gradients, {"loss": [2.3, 2.3, 2.3], "accuracy": [0.1, 0.1, 0.1]})
    assert [finding["issue"] for finding in findings] == ["vanishing gradients"]
    assert findings[0]["layers"] == ["dense_0"] and findings[0]["epoch"] == 1
    assert "dense_0: 1e-06 against logits: 0.5 at epoch 3" in findings[0]["evidence"]


def test_small_middle_layers_behind_healthy_early_ones_are_not_vanishing():
    # A transformer from scratch (kerasdl's bert, measured): the query/key projections start
    # near 2e-6 of the logits' norm because uniform attention barely depends on them, while
    # the embeddings before them get healthy gradients.
    gradients = _gradients({
        "token_embedding": [0.044, 0.037, 0.034], "self_attention/query": [2e-6, 2e-6, 3e-6],
        "self_attention/key": [2e-6, 2e-6, 3e-6], "pooled_dense": [0.086, 0.08, 0.081], "logits": [0.14, 0.14, 0.14],
    })
    assert diagnose_gradients(gradients, {"loss": [0.7, 0.69], "accuracy": [0.5, 0.52]}) == []


def test_zero_gradients_are_called_dead_units():
    gradients = _gradients({"hidden": [1.0, 0.0, 0.0], "logits": [1.0, 0.2, 0.2]})
    finding = diagnose_gradients(gradients, {"loss": [2.3, 2.3], "accuracy": [0.1, 0.1]})[0]
    assert finding["issue"] == "vanishing gradients" and "dead units" in finding["evidence"]


def test_exploding_by_nan_growth_and_clipping():
    nan = diagnose_gradients(_gradients({"hidden": [1.0, 2.0, math.nan], "logits": [1.0, 2.0, math.nan]}), {"loss": [2.0, 5.0]})
    assert nan[0]["issue"] == "exploding gradients" and nan[0]["epoch"] == 2 and "hidden, logits" in nan[0]["evidence"]
    grown = diagnose_gradients(_gradients({"hidden": [1.0, 3.0, 30.0], "logits": [1.0, 1.0, 1.0]}), {"loss": [2.0, 2.5]})
    assert grown[0]["issue"] == "exploding gradients" and grown[0]["epoch"] == 2 and grown[0]["layers"] == ["hidden"]
    # The same growth while the loss falls is a model learning to be confident, not an explosion.
    assert diagnose_gradients(_gradients({"hidden": [1.0, 3.0, 30.0], "logits": [1.0, 1.0, 1.0]}), {"loss": [2.0, 0.5]}) == []
    weights = diagnose_gradients(_gradients({"hidden": [1.0, 1.0], "logits": [1.0, 1.0]}, {"hidden": [1.0, 50.0], "logits": [1.0, 1.0]}), {"loss": [2.0]})
    assert weights[0]["issue"] == "exploding gradients" and "weights' global norm grew" in weights[0]["evidence"]
    clipping = _gradients({"hidden": [1.0, 1.0, 1.0], "logits": [1.0, 1.0, 1.0]}, clipped=[1.0, 1.0, 0.0])
    assert diagnose_gradients(clipping, {"loss": [1.0, 3.0]})[0]["evidence"].startswith("gradient clipping was active on most sampled batches in 2 of 3")
    assert diagnose_gradients(clipping, {"loss": [1.0, 0.5]}) == []
    assert "lower learning rate" in nan[0]["remedy"] and "clipping" in nan[0]["remedy"]


def test_a_fine_tuning_phase_is_judged_on_its_own(tmp_path):
    # Phase 1 trains the head only (epochs -1 to 1); phase 2 (epochs 2-3) unfreezes a block
    # before it, whose rows come first in its epochs but after the head's in the file.
    lines = ["epoch,layer,gradient_norm,gradient_norm_max,weight_norm,clipped_fraction"]
    for epoch, head, total in ((-1, 0.5, 0.5), (0, 0.4, 0.4), (1, 0.3, 0.3)):
        lines += [f"{epoch},logits,{head},{head},1.0,", f"{epoch},{ALL_LAYERS},{total},{total},1.0,"]
    for epoch in (2, 3):
        lines += [f"{epoch},block,1e-05,1e-05,1.0,", f"{epoch},logits,0.3,0.3,1.0,", f"{epoch},{ALL_LAYERS},8.0,8.0,1.4,"]
    (tmp_path / "gradients.csv").write_text("\n".join(lines) + "\n")
    gradients = read_gradients(str(tmp_path / "gradients.csv"))
    assert list(gradients) == ["block", "logits", ALL_LAYERS]
    history = {"loss": [1.0, 0.8, 0.7, 0.7], "accuracy": [0.5, 0.6, 0.7, 0.7]}
    findings = diagnose_gradients(gradients, history)
    # The jump of the global norm when the block joins is no explosion; the block's own gradients vanish.
    assert [(finding["issue"], finding["epoch"], finding["layers"]) for finding in findings] == [("vanishing gradients", 3, ["block"])]


def test_healthy_gradients_and_no_file_have_no_findings():
    assert diagnose_gradients(_gradients({"conv": [0.5, 0.6, 0.5], "dense": [0.6, 0.9, 0.7], "logits": [0.5, 0.9, 0.8]}), {"loss": [2.2, 1.4], "accuracy": [0.5, 0.8]}) == []
    assert diagnose_gradients({}, {}) == []


# The baseline in report.md and metrics.json.
BASELINE = {
    "name": "logistic_regression", "description": "logistic regression on the standardized raw pixels", "test_accuracy": 0.795,
    "train_examples": 12000, "train_examples_used": 5000, "test_examples": 1000, "seconds": 2.5, "converged": False, "C": 0.01, "validation_accuracy": 0.78,
}
METRICS = {"test_accuracy": 0.7, "test_loss": 0.9, "wall_time_s": 50.0, "examples_per_s": 900.0, "per_class": {"a": {"precision": 0.7, "recall": 0.7, "support": 10}}}


def test_report_shows_the_baseline_comparison_and_what_to_try(tmp_path):
    from kerasdl.baseline import compare, text_statistics

    comparison = compare(0.70, BASELINE, "image", optimizer_steps=225, stopped_early=False)
    statistics = text_statistics(["a b c"] * 10)
    write_report(str(tmp_path), "cnn", "some images", METRICS, {"loss": [1.0]}, [], baseline=BASELINE, comparison=comparison, text_stats=statistics)
    report = (tmp_path / "report.md").read_text()
    assert "- Against a classical baseline: kerasdl 0.700 vs baseline 0.795 (-9.5 points)" in report
    assert "## Against a classical baseline" in report and "The model is 9.5 points below a classical baseline" in report
    assert "fitted on 5,000 of 12,000 training examples and scored on the same 1,000 test examples in 2.5 s, stopped at its iteration cap" in report
    assert "  - more training: the run made only 225 optimizer steps" in report
    assert "10 samples / 3 words per sample = 3" in report and "Recommended by the guide: **n-gram MLP**" in report
    # No gradients.csv in the run directory: the file list does not claim one.
    assert "gradients.csv" not in report
    (tmp_path / "gradients.csv").write_text("epoch,layer\n")
    write_report(str(tmp_path), "cnn", "some images", METRICS, {"loss": [1.0]}, [])
    plain = (tmp_path / "report.md").read_text()
    assert "baseline" not in plain and "`gradients.csv`" in plain
    assert "- No overfitting, underfitting or unstable training detected in the history or vanishing/exploding gradients in gradients.csv." in plain


def test_metrics_keys_for_the_baseline():
    from kerasdl.baseline import compare

    comparison = compare(0.812, dict(BASELINE, text_statistics={"ratio": 1}), "image")
    keys = baseline_metrics(dict(BASELINE, text_statistics={"ratio": 1}), comparison, {"ratio": 1})
    assert set(keys) == {"baseline", "versus_baseline", "text_statistics"}
    assert "text_statistics" not in keys["baseline"] and keys["baseline"]["test_accuracy"] == 0.795
    assert keys["versus_baseline"]["line"] == "kerasdl 0.812 vs baseline 0.795 (+1.7 points)"
    assert baseline_metrics() == {}
    json.dumps(keys)  # metrics.json must hold them


def test_learning_curves_mark_the_switch_to_fine_tuning(tmp_path):
    from PIL import Image

    from kerasdl.report import plot_learning_curves

    history = {"loss": [0.9, 0.6, 0.5, 0.4, 0.35], "val_loss": [1.0, 0.8, 0.7, 0.65, 0.6], "accuracy": [0.5, 0.6, 0.7, 0.8, 0.85]}
    phases = [{"epochs": 2, "name": "head (frozen base)"}, {"epochs": 3, "name": "fine-tune (top 2 blocks)"}]
    assert plot_learning_curves(history, tmp_path / "marked.png", phases) == [(2.5, "fine-tune (top 2 blocks)")]
    assert plot_learning_curves(history, tmp_path / "plain.png") == []
    assert plot_learning_curves(history, tmp_path / "one_phase.png", phases[:1]) == []
    marked, plain = (numpy.asarray(Image.open(tmp_path / name).convert("L"), "int16") for name in ("marked.png", "plain.png"))
    assert marked.shape == plain.shape and numpy.count_nonzero(numpy.abs(marked - plain) > 40) > 100  # the line and its label
    assert numpy.array_equal(numpy.asarray(Image.open(tmp_path / "one_phase.png")), numpy.asarray(Image.open(tmp_path / "plain.png")))
