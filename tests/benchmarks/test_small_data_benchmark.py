"""benchmarks/small_data.py plumbing: cases, decisions and the result shape (no training)."""

from benchmarks import common, small_data


def test_every_decision_names_declared_cases_and_every_quick_case_exists():
    for decision, members in small_data.DECISIONS.items():
        assert members and set(members) <= set(small_data.CASES), decision
    assert set(small_data.QUICK) <= set(small_data.CASES)


def test_run_turns_measurements_into_rows_targets_and_decisions(monkeypatch):
    measured = {
        "test_accuracy": 0.94, "baseline_accuracy": 0.8867, "baseline": "1-NN", "epochs": 6, "train_examples": 50,
        "test_examples": 150, "cpu_s": 82.0, "wall_s": 311.0, "run_dir": "runs/lstm/x", "shifted_test_accuracy": 0.93,
        "backend": "jax",
    }
    quick_sets = {"gunpoint": ("gunpoint_new", "gunpoint_fcn"), "ecg200": ("ecg200_new",)}
    monkeypatch.setattr(small_data, "QUICK_SETS", quick_sets)
    monkeypatch.setattr(small_data, "QUICK", ("gunpoint_new", "gunpoint_fcn", "ecg200_new"))
    fcn = {**measured, "test_accuracy": 0.98, "cpu_s": 320.0}
    monkeypatch.setattr(small_data, "measure", lambda case, log=print: {"gunpoint_new": measured, "gunpoint_fcn": fcn}.get(case))
    outcome = small_data.run(quick=True)
    assert common.check_result(outcome) == []
    assert [row["case"] for row in outcome["rows"]] == ["gunpoint_new", "gunpoint_fcn"]
    assert outcome["rows"][0]["value"] == 0.94 and outcome["rows"][0]["baseline"] == 0.8867
    targets = {target["id"]: target for target in outcome["targets"]}
    # One accuracy target per data set, on its best default model; a CPU target per case.
    assert {name: target["met"] for name, target in targets.items()} == {
        "small_data_gunpoint": True, "small_data_gunpoint_new_cpu": True, "small_data_gunpoint_fcn_cpu": False,
    }
    assert targets["small_data_gunpoint"]["value"] == 0.98
    assert targets["small_data_gunpoint"]["description"] == "gunpoint: best default model (fcn) >= classical baseline"
    assert "ecg200_new: skipped, its data is not in ../shared/data" in outcome["notes"]
    assert any(note.startswith("gunpoint_new: lstm (defaults), 0.9300 on the test series moved and scaled") for note in outcome["notes"])
    assert any("82 CPU s (311 s wall) on jax; baseline 1-NN" in note for note in outcome["notes"])
    assert any(note.startswith("decision train.min_validation_examples: gunpoint_new 0.9400") for note in outcome["notes"])
