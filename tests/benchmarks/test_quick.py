"""The benchmark entry point at toy size: it runs, and its JSON has the documented schema.

No timing is asserted (the machine is shared); only keys, types and that every ratio
is a positive number computed from its own value and baseline.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"case", "metric", "value", "unit", "baseline_case", "baseline", "ratio", "higher_is_better"}
TARGET_KEYS = {"id", "description", "value", "threshold", "comparison", "met", "reason"}


def _run(out, *extra):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--toy", "--out", str(out), *extra],
        cwd=str(REPO_ROOT), env=environment, capture_output=True, text=True, timeout=300,
    )


def test_quick_latency_writes_results_with_the_schema(tmp_path):
    completed = _run(tmp_path, "--only", "latency")
    assert completed.returncode == 0, completed.stderr[-2000:]
    document = json.loads((tmp_path / "results.json").read_text())

    assert document["quick"] is True and document["toy"] is True
    assert document["command"].startswith("python -m benchmarks.run")
    environment = document["environment"]
    assert isinstance(environment["cpu_count"], int) and environment["cpu_count"] >= 1
    assert "tensorflow" in environment["versions"] and "onnxruntime" in environment["versions"]
    assert list(document["benchmarks"]) == ["latency"]

    latency = document["benchmarks"]["latency"]
    assert "error" not in latency, latency.get("error")
    assert latency["name"] == "latency" and isinstance(latency["seconds"], float)
    assert latency["rows"] and all(set(row) == ROW_KEYS for row in latency["rows"])
    for row in latency["rows"]:
        assert isinstance(row["value"], float) and row["value"] > 0, row
        assert isinstance(row["baseline"], float) and row["baseline"] > 0, row
        assert row["ratio"] > 0
        # The ratio is value / baseline, rounded to 4 significant digits.
        assert abs(row["ratio"] - row["value"] / row["baseline"]) <= 2e-3 * row["ratio"], row

    cases = {row["case"] for row in latency["rows"]}
    for fmt in ("keras predict", "keras call", "savedmodel", "ort fp32", "ort int8"):
        assert f"mlp {fmt}" in cases, cases
    assert {row["metric"] for row in latency["rows"]} >= {"latency batch 1", "latency batch 4", "GFLOP/s"}
    # LiteRT beside ONNX Runtime at the same precision.
    baselines = {row["case"]: row["baseline_case"] for row in latency["rows"] if row["metric"] == "latency batch 1"}
    assert baselines.get("mlp litert fp32") == "mlp ort fp32" and baselines.get("mlp litert int8") == "mlp ort int8", baselines
    assert all(set(target) == TARGET_KEYS for target in latency["targets"])
    ort_target = [target for target in latency["targets"] if target["id"] == "latency_mlp_ort_vs_savedmodel"]
    assert len(ort_target) == 1 and ort_target[0]["value"] > 0 and isinstance(ort_target[0]["met"], bool)
    assert ort_target[0]["met"] == (ort_target[0]["value"] <= ort_target[0]["threshold"])

    markdown = (tmp_path / "results.md").read_text()
    assert "# Benchmark results" in markdown and "### latency" in markdown and "| mlp savedmodel |" in markdown
    assert (tmp_path / "latency_batch1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_benchmark_name_is_rejected(tmp_path):
    completed = _run(tmp_path, "--only", "nonsense")
    assert completed.returncode == 2
    assert "invalid choice: 'nonsense'" in completed.stderr
