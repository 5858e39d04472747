"""`benchmarks.backends` at toy size, on the MLP only: both backends run, each in its own process, and the result has the shape.

No timing is asserted (the machine is shared): only that every row compares JAX with
TensorFlow from numbers both children measured, that each child trained on the backend
it was given (with XLA on JAX, without on TensorFlow), and that the targets are computed.
"""

from benchmarks import backends, common


def test_toy_run_measures_the_mlp_on_both_backends(shared_data, monkeypatch):
    monkeypatch.setattr(common, "TOY", True)

    outcome = backends.run(quick=True, cases=("mlp",))

    assert outcome["name"] == "backends" and common.check_result(outcome) == []
    rows = {(row["case"], row["metric"]): row for row in outcome["rows"]}
    for steps in (1, 16):
        for metric, case in (("training examples/s", f"mlp jax spe={steps}"), ("CPU ms/example", f"mlp jax spe={steps}"), ("seconds", f"mlp jax spe={steps} first epoch")):
            row = rows[(case, metric)]
            assert row["baseline_case"] == case.replace("jax", "tensorflow")
            assert row["value"] > 0 and row["baseline"] > 0
            assert abs(row["ratio"] - row["value"] / row["baseline"]) <= 2e-3 * row["ratio"], row
    accuracy = rows[("mlp jax spe=16", "test accuracy")]
    assert 0.0 <= accuracy["value"] <= 1.0 and 0.0 <= accuracy["baseline"] <= 1.0
    notes = "\n".join(outcome["notes"])
    assert "mlp jax (jit_compile=True, 270 train examples, 5 steps/epoch)" in notes
    assert "mlp tensorflow (jit_compile=False, 270 train examples, 5 steps/epoch)" in notes
    assert "mlp jax: load average before" in notes and "mlp tensorflow: load average before" in notes
    targets = {target["id"]: target for target in outcome["targets"]}
    assert set(targets) == {"backend_mlp_registry_is_fastest", "backend_mlp_jax_accuracy"}
    assert targets["backend_mlp_registry_is_fastest"]["value"] > 0
    assert abs(targets["backend_mlp_jax_accuracy"]["value"] - (accuracy["value"] - accuracy["baseline"])) < 1e-3


def test_json_file_holds_the_environment_and_the_result(tmp_path, monkeypatch):
    # --json wrote nothing before: it called a benchmarks.common.environment that does not exist.
    import json

    outcome = common.result("backends", 0.0, [], [], ["a note"])
    monkeypatch.setattr(backends, "run", lambda quick, cases=None: outcome)
    path = tmp_path / "backends.json"

    assert backends.main(["--quick", "--cases", "mlp", "--json", str(path)]) == 0

    written = json.loads(path.read_text())
    assert written["result"]["name"] == "backends" and written["result"]["notes"] == ["a note"]
    assert {"versions", "code_version"} <= set(written["environment"])


def test_benchmark_runs_train_on_the_registry_backend_and_the_benchmark_stays_on_tensorflow(tmp_path, repo_root):
    # A benchmark trains as `training.run` would: in a child process on the model's registry
    # backend (JAX for the mlp), while the benchmark process itself exports and serves on
    # TensorFlow, so the child's backend must not leak into it.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json\n"
        "from benchmarks import common\n"
        "run_dir, _ = common.trained_run('mlp', epochs=1, log=lambda line: None)\n"
        "import keras\n"
        "print('BACKENDS ' + json.dumps([keras.config.backend(), json.load(open(run_dir + '/metrics.json'))['backend']]))\n"
    )
    environ = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    environ["KERASDL_BENCH_RUNS"] = str(tmp_path)
    completed = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=environ, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("BACKENDS "))
    assert json.loads(line[len("BACKENDS "):]) == ["tensorflow", "jax"]
    assert list(Path(tmp_path).rglob("metrics.json"))
