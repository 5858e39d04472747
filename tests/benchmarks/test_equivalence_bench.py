"""`benchmarks.equivalence` and the comparison of `benchmarks.every_path`, without training or serving anything.

The paths themselves run in tests/test_every_path.py (tiny runs of every kind); here the
verdicts and targets are computed from made-up answers, so each rule is seen to fail.
"""

import numpy as np
import pytest

from benchmarks import common, equivalence, every_path

METADATA = {"model": "lstm", "modality": "sequence", "class_names": ["abnormal", "normal"]}
# Keras' probabilities: example 2 is a near tie (gap 5e-5 <= NEAR_TIE).
KERAS = np.array([[0.9, 0.1], [0.2, 0.8], [0.500025, 0.499975], [0.7, 0.3]], "float32")
LABELS = np.array([0, 1, 1, 1])  # Keras is right on 0 and 1: accuracy 0.5 (the near tie went to class 0).


def _answer(probabilities, names=("abnormal", "normal"), artifact_format="onnx", error=None):
    return every_path.Answer(None if probabilities is None else np.asarray(probabilities, "float32"), list(names), artifact_format, error)


def test_a_path_that_only_flips_a_near_tie_agrees():
    flipped = KERAS.copy()
    flipped[2] = [0.49997, 0.50003]
    verdict = every_path.compare(_answer(flipped), KERAS, LABELS, METADATA, reported_accuracy=0.5)
    assert verdict["disagreements"] == 0 and verdict["accuracy"] == 0.75
    # 0.75 is 0.25 from the reported 0.5: exactly the near ties' share (1 of 4), so it still matches.
    assert verdict["accuracy_matches"] is True and verdict["ok"] is True
    assert verdict["tolerance"] == 1e-4 and verdict["max_difference"] == pytest.approx(5.5e-5, abs=1e-6)


def test_each_rule_fails_on_its_own():
    compare = lambda answer, reported=0.5: every_path.compare(answer, KERAS, LABELS, METADATA, reported)  # noqa: E731
    other_class = KERAS.copy()
    other_class[3] = [0.3, 0.7]
    verdict = compare(_answer(other_class))
    assert verdict["disagreements"] == 1 and verdict["accuracy"] == 0.75 and verdict["ok"] is False
    drifted = KERAS + np.array([[2e-4, -2e-4]] * 4, "float32")
    verdict = compare(_answer(drifted))
    assert verdict["within_tolerance"] is False and verdict["disagreements"] == 0 and verdict["ok"] is False
    assert compare(_answer(KERAS, names=("normal", "abnormal")))["names_match"] is False
    assert compare(_answer(KERAS), reported=0.8)["accuracy_matches"] is False
    assert compare(_answer(KERAS[:3]))["shape_match"] is False
    failed = compare(_answer(None, error="RuntimeError: HTTP 500"))
    assert failed["ok"] is False and failed["disagreements"] == 3 and failed["accuracy"] is None
    assert compare(_answer(KERAS, artifact_format="savedmodel"))["ok"] is True


def test_requests_are_cut_by_count_and_bytes(monkeypatch):
    monkeypatch.setattr(every_path, "REQUEST_EXAMPLES", 3)
    monkeypatch.setattr(every_path, "REQUEST_BYTES", 100)
    assert list(every_path._chunks([10] * 7)) == [(0, 3), (3, 6), (6, 7)]
    # An example larger than the limit still goes, alone.
    assert list(every_path._chunks([60, 60, 500, 10])) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert list(every_path._chunks([])) == []


def _verdict(accuracy, difference, tolerance=1e-4, disagreements=0, error=None, matches=True):
    return {"error": error, "names_match": True, "shape_match": error is None, "max_difference": difference, "tolerance": tolerance,
            "within_tolerance": difference is not None and difference <= tolerance, "disagreements": disagreements,
            "accuracy": accuracy, "accuracy_matches": matches, "ok": False}


def _measured(paths, int8=None, disagreeing=0):
    return {"kind": "series", "model": "lstm", "examples": 100, "keras_accuracy": 0.8, "reported_accuracy": 0.8, "near_ties": 0,
            "disagreeing_examples": disagreeing, "paths": paths, "int8": int8, "notes": []}


def test_summary_targets_are_computed_from_the_answers():
    good = _measured({"onnx fp32": _verdict(0.8, 2e-7), "savedmodel serving_default (fresh process)": _verdict(0.8, 5e-5, tolerance=1e-4)},
                     int8={"method": "dynamic", "published": True, "left_out": None, "gate_examples": 100, "gate_drop_points": 1.0,
                           "accuracy": 0.79, "fp32_accuracy": 0.8, "drop_points": 1.0})
    bad = _measured({"onnx fp32": _verdict(0.79, 3e-4, disagreements=1, matches=False),
                     "edge onnx gRPC": _verdict(None, None, disagreements=100, error="ServingError: gRPC INTERNAL: x", matches=False)},
                    int8={"method": "static", "published": False, "left_out": "accuracy drop 3.00 points", "gate_examples": 100,
                          "gate_drop_points": 3.0, "accuracy": None, "fp32_accuracy": 0.79, "drop_points": None}, disagreeing=100)
    rows, targets = equivalence.summarize({"good": good, "bad": bad})
    targets = {item["id"]: item for item in targets}
    assert common.check_result(common.result("equivalence", 0, rows, list(targets.values()))) == []

    assert [targets[f"equivalence_good_{name}"]["met"] for name in ("classes", "tolerance", "accuracy", "int8_gate")] == [True] * 4
    assert targets["equivalence_good_tolerance"]["value"] == 0.5  # the SavedModel's 5e-5 of its 1e-4
    assert "whole test split (100)" in targets["equivalence_good_int8_gate"]["description"]

    assert targets["equivalence_bad_classes"]["value"] == 100 and targets["equivalence_bad_classes"]["met"] is False
    assert targets["equivalence_bad_classes"]["reason"] == "per path: onnx fp32 1; edge onnx gRPC failed: ServingError: gRPC INTERNAL: x"
    # A failed path leaves the tolerance unmeasured, with the failure as its reason.
    assert targets["equivalence_bad_tolerance"]["met"] is None
    assert targets["equivalence_bad_tolerance"]["reason"].startswith("onnx fp32: 0.0003 against 1e-04; edge onnx gRPC failed")
    assert targets["equivalence_bad_accuracy"]["value"] == 2 and targets["equivalence_bad_accuracy"]["reason"] == "onnx fp32 0.79, edge onnx gRPC None"
    gate = targets["equivalence_bad_int8_gate"]
    assert gate["value"] == 3.0 and gate["met"] is False and "the gate's 100 held-out examples" in gate["description"]
    assert gate["reason"] == "the exporter's gate on 100 held-out examples: drop 3.00 points, left out: accuracy drop 3.00 points"

    by_case = {(row["case"], row["metric"]): row for row in rows}
    assert by_case[("good: onnx fp32", "accuracy")]["ratio"] == 1.0
    assert by_case[("good: onnx fp32", "max abs difference vs .keras")]["baseline"] == 1e-4
    assert by_case[("good: onnx int8 (dynamic)", "accuracy")]["baseline_case"] == "good: onnx fp32"
    assert by_case[("bad: edge onnx gRPC", "accuracy")]["value"] is None


def test_cases_and_the_toy_run(monkeypatch):
    full, quick = equivalence.cases(False), equivalence.cases(True)
    if common.data_path("sst2") and common.data_path("hymenoptera"):
        assert "resnet50_hymenoptera" in full and "resnet50_hymenoptera" not in quick
        assert full["mlp_sst2"][3] == () and quick["mlp_sst2"][3] == ("data.max_examples=5000",)
        assert {kind for kind, *_ in full.values()} >= {"image", "text"}
    monkeypatch.setattr(common, "TOY", True)
    outcome = equivalence.run(quick=True)
    assert outcome["rows"] == [] and outcome["targets"] == [] and "tests/test_every_path.py" in outcome["notes"][0]
    assert common.check_result(outcome) == []
