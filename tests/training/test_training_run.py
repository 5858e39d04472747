"""End-to-end tests of `python -m training.run` for the MLP and the CNN."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from training.run import main

ARTIFACTS = ("config.yaml", "model.keras", "history.csv", "metrics.json", "learning_curves.png", "confusion_matrix.png", "report.md", "data/heldout.json", "data/calibration.npz")


def only_run_dir(output, model):
    runs = sorted((Path(output) / model).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def history_rows(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_one_tiny_epoch_writes_every_artifact(model, tmp_path, capsys):
    code = main([model, "--epochs", "2", "--output", str(tmp_path), "--set", "train.verbose=2", "--set", "train.warmup_epochs=0"])
    assert code == 0
    out = capsys.readouterr().out
    run_dir = only_run_dir(tmp_path, model)
    for name in ARTIFACTS:
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "RUNNING").exists() and not (run_dir / "backup").exists()
    assert f"run directory: {run_dir}" in out and "test accuracy: " in out and "time: " in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test_loss", "test_accuracy", "per_class", "wall_time_s", "examples_per_s"} <= set(metrics)
    assert set(metrics["per_class"]) == {str(digit) for digit in range(10)}
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["examples_per_s"] > 0
    # This process holds Keras on TensorFlow (tests/conftest.py); auto keeps it, whatever the entry says.
    assert metrics["backend"] == "tensorflow"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model_name"] == model and config["train"]["epochs"] == 2
    rows = history_rows(run_dir)
    # The loss goes down on digits, even in two short epochs.
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    report = (run_dir / "report.md").read_text()
    assert "learning_curves.png" in report and "## Diagnosis" in report
    from kerasdl.artifact import load_model

    loaded, metadata = load_model(run_dir / "model.keras")
    assert metadata["class_names"] == [str(digit) for digit in range(10)]
    assert metadata["modality"] == ("features" if model == "mlp" else "image")
    from kerasdl.heldout import read_heldout

    heldout = read_heldout(run_dir, metadata)
    assert heldout.complete and len(heldout.examples) == len(heldout.labels) > 0
    assert loaded.predict(np.stack(heldout.examples[:4]), verbose=0).shape == (4, 10)


def test_same_seed_gives_same_metrics(tmp_path):
    arguments = ["mlp", "--epochs", "2", "--set", "train.verbose=0"]
    assert main(arguments + ["--output", str(tmp_path / "a")]) == 0
    assert main(arguments + ["--output", str(tmp_path / "b")]) == 0
    first = json.loads((only_run_dir(tmp_path / "a", "mlp") / "metrics.json").read_text())
    second = json.loads((only_run_dir(tmp_path / "b", "mlp") / "metrics.json").read_text())
    assert first["test_loss"] == second["test_loss"]
    assert first["confusion_matrix"] == second["confusion_matrix"]


def test_killed_run_resumes_from_its_last_epoch(tmp_path, repo_root):
    # Small batches make each epoch slow enough to kill the process mid-training.
    command = [sys.executable, "-m", "training.run", "cnn", "--epochs", "6", "--batch-size", "8", "--output", str(tmp_path), "--set", "train.verbose=2"]
    process = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    metadata = None
    while time.time() < deadline and process.poll() is None:
        found = list(tmp_path.glob("cnn/*/backup/training_metadata.json"))
        if found and json.loads(found[0].read_text()).get("epoch", 0) >= 2:
            metadata = found[0]
            break
        time.sleep(0.2)
    assert metadata is not None, "no epoch was backed up before the deadline"
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_epoch = json.loads(metadata.read_text())["epoch"]
    assert saved_epoch < 6

    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = only_run_dir(tmp_path, "cnn")
    assert f"resuming {run_dir} from epoch {saved_epoch}" in result.stdout
    assert "backend: tensorflow (the registry entry of cnn says tensorflow)" in result.stdout
    # Keras numbers epochs from 1 in its log: the restarted fit begins after the saved one.
    assert f"Epoch {saved_epoch + 1}/6" in result.stdout and "Epoch 1/6" not in result.stdout
    epochs = [int(row["epoch"]) for row in history_rows(run_dir)]
    assert epochs[-1] == 5 and sorted(set(epochs)) == list(range(6))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["transformer"], "unknown model 'transformer'; choose one of: "),
        (["mlp", "--set", "train.epoch=3"], "unknown config key 'train.epoch'; did you mean 'train.epochs'"),
        (["mlp", "--set", "train.epochs=many"], "train.epochs must be int, got 'many'"),
        (["mlp", "--data", "no/such/folder"], "no/such/folder: no such file or folder"),
        (["cnn", "--set", "model.depth=3"], "unknown config key 'model.depth'"),
    ],
)
def test_cli_rejects_bad_input_in_one_line(arguments, message, tmp_path, cli):
    result = cli("training.run", *arguments, "--output", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.rglob("*.keras"))


def test_help_documents_every_key(cli):
    result = cli("training.run", "--help")
    assert result.returncode == 0
    for key in ("train.epochs = 20", "data.on_bad_file = 'skip'", "augment.rotation = None", "train.min_steps = 1000", "train.lr_schedule = 'cosine'", "model.* for cnn: filters=(32, 64)"):
        assert key in result.stdout, key


def test_config_file_then_set_then_flags(tmp_path):
    from training.run import resolve_config

    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  epochs: 7\n  batch_size: 16\n  learning_rate: 0.01\nmodel:\n  hidden_units: 32\n")
    config = resolve_config("mlp", str(config_file), ["train.batch_size=24"], {"learning_rate": 0.5})
    assert (config.train.epochs, config.train.batch_size, config.train.learning_rate) == (7, 24, 0.5)
    assert config.model["hidden_units"] == 32


def test_cnn_trains_on_cifar10_jpeg_folder(shared_data, tmp_path):
    code = main([
        "cnn", "--data", str(shared_data / "cifar10-test-jpg"), "--epochs", "1", "--batch-size", "32",
        "--output", str(tmp_path), "--set", "data.max_examples=300", "--set", "train.verbose=2", "--set", "model.dense_units=64",
    ])
    assert code == 0
    run_dir = only_run_dir(tmp_path, "cnn")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_examples"] == 300 and metrics["test_examples"] == 300
    classes = sorted(entry.name for entry in (shared_data / "cifar10-test-jpg").iterdir() if entry.is_dir())
    assert sorted(metrics["per_class"]) == classes and len(classes) == 10
    from kerasdl.artifact import load_metadata

    # Images of any size in, resized inside the model to the folder's 32x32 (docs/CONTRACTS.md).
    model_input = load_metadata(run_dir / "model.keras")["input"]
    assert model_input["shape"] == [None, None, 3] and model_input["image_size"] == [32, 32]
