"""The robustness parts' targets are computed from their counts, and docs/RELIABILITY.md shows those counts.

Plumbing only (fake reports, no processes): a count that is not zero must fail its target and
carry its reason, and the page must print every figure it is given.
"""

import json

from benchmarks import common, reliability_doc, robustness_faults, robustness_serving


def training_report(scenario="mlp", lost=0, duplicated=(), model_loss=0.5, problems=()):
    return {
        "scenario": scenario, "problems": list(problems), "lost_epochs": lost, "duplicated_epochs": list(duplicated), "missing_epochs": [],
        "incomplete_rows": [], "best_val_loss": 0.5, "model_val_loss": model_loss, "checkpoint_val_loss": 0.5, "history_epochs": [0, 1, 2],
        "kills": [{"point": "mid-epoch", "epoch": 1, "saved_epoch": 1, "resumed_from": 1 - lost, "note": ""}],
    }


EXPORT = {
    "reference_seconds": 30.0, "write_window_seconds": 2.0, "checks": 500, "partial_versions_seen": 0, "incomplete_after_kill": 0,
    "next_export_status": 0, "versions": ["1", "2"], "problems": [],
    "kills": [{"seed": 0, "after_staging_seconds": 1.2, "killed": True, "exit_status": -9, "staged_files": 5, "published": [], "leftovers": [".tmp-2-x"]}],
}


def by_id(targets):
    return {target["id"]: target for target in targets}


def test_fault_targets_follow_the_counts():
    good = by_id(robustness_faults.summarize([training_report()], EXPORT)["targets"])
    assert all(target["met"] for target in good.values()), good
    bad = by_id(robustness_faults.summarize(
        [training_report(lost=1, duplicated=[2], model_loss=0.7, problems=["history.csv epochs [0, 1, 2, 2]"])],
        dict(EXPORT, partial_versions_seen=2, next_export_status=1, problems=["partial versions visible: ['2: model.onnx missing']"]),
    )["targets"])
    assert bad["fault-training-lost-epochs"]["value"] == 1 and bad["fault-training-lost-epochs"]["met"] is False
    assert bad["fault-training-history"]["value"] == 1 and bad["fault-training-best-model"]["value"] == 1
    assert "history.csv epochs [0, 1, 2, 2]" in bad["fault-training-problems"]["reason"]
    assert bad["fault-export-partial-versions"]["value"] == 2 and "model.onnx missing" in bad["fault-export-partial-versions"]["reason"]
    assert bad["fault-export-next-export"]["met"] is False
    for target in bad.values():
        assert common.target(target["id"], target["description"], target["value"], target["threshold"], target["comparison"])["met"] is target["met"]


def serving_raw(server_errors=0, mismatched=0):
    summary = {"cases": 1000, "server_errors": server_errors, "bad_error_bodies": 0, "answers_afterwards": True, "statuses": {200: 10, 400: 990},
               "examples_of_failures": [("POST /v1/models/cnn:predict", 500, "boom")] if server_errors else []}
    return {
        "examples": 1000, "clients": 16, "requests_per_client": 500, "models": ["cnn", "lstm"],
        "fuzz": {f"{api}-{backend}": summary for api in ("rest", "grpc") for backend in ("onnx", "savedmodel")},
        "cases": [f"{backend}/{model}/serving_default/rest" for backend in ("onnx", "savedmodel") for model in ("cnn", "lstm")],
        "concurrency": {"clients": 16, "requests": 8000, "rows": 16000, "errors": 0, "mismatched_rows": mismatched, "seconds": 40.0,
                        "requests_per_second": 200.0, "examples": ["onnx/cnn/serving_default/rest row 0: output 'probabilities' differs"] if mismatched else []},
    }


def test_serving_targets_follow_the_counts():
    good = by_id(robustness_serving.summarize(serving_raw(), 0)["targets"])
    assert all(target["met"] for target in good.values()), good
    assert good["serving-concurrency-coverage"]["value"] == 4
    bad = by_id(robustness_serving.summarize(serving_raw(server_errors=3, mismatched=2), 0)["targets"])
    assert bad["serving-fuzz-rest-onnx"]["value"] == 3 and "boom" in bad["serving-fuzz-rest-onnx"]["reason"]
    assert bad["serving-concurrency-mismatches"]["value"] == 2 and "differs" in bad["serving-concurrency-mismatches"]["reason"]


def test_reliability_page_prints_every_figure(tmp_path, capsys):
    faults = robustness_faults.summarize([training_report(scenario="two-phase")], EXPORT)
    serving = robustness_serving.summarize(serving_raw(mismatched=2), 0)
    outcome = common.result("robustness", 0, [], faults["targets"] + serving["targets"], [])
    outcome["raw"] = {
        "robustness_data": {"examples": 1003, "loaded": 300, "refused": 703, "failures": 0},
        "robustness_config": {"cases": 1005, "accepted": 205, "refused": 800, "failures": 0, "real_runs": 5, "real_trained": 2, "real_refused": 3},
        "robustness_serving": serving["raw"],
        "robustness_faults": {"training": [training_report(scenario="two-phase")], "export": EXPORT},
    }
    document = {"command": "python -m benchmarks.run --only robustness", "environment": {}, "benchmarks": {"robustness": outcome}}
    page = reliability_doc.render(document, "results.json")
    assert "| data loaders: generated tables | 1003 | 0 | 0 | 300 loaded, 703 refused" in page
    assert "| training.run: generated config values | 1005 | 0 | 0 |" in page
    assert "| edge server REST fuzzing, savedmodel backend | 1000 | 0 | 0 |" in page
    assert "| edge server, 16 concurrent clients x 500 requests | 8000 | 0 | 2 |" in page
    assert "| training killed: two-phase | 1 | 0 | 0 | lost epochs 0;" in page
    assert "| two-phase | mid-epoch | - | 1 | 1 | 1 |" in page
    assert "| 0 | 1.2 | True | 5 | none | .tmp-2-x |" in page
    assert "NOT met" in page and "output 'probabilities' differs" in page  # The mismatch target, with its reason.
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    assert reliability_doc.main([str(path)]) == 0 and capsys.readouterr().out == reliability_doc.render(document, str(path))
    path.write_text(json.dumps({"benchmarks": {}}))
    assert reliability_doc.main([str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path} has no robustness result; run `python -m benchmarks.run --only robustness`\n"
