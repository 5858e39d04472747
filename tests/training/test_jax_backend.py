"""`python -m training.run` on the JAX backend, and the export of a JAX-trained model under TensorFlow.

What runs on JAX here: the mlp by `train.backend=auto` with every callback, the
baseline, the gradient log and the held-out files; a text LSTM whose SavedModel
export verifies under TensorFlow; the cross-validated epoch choice; a kill -9 and
resume. TensorFlow runs are in tests/training/test_training_run.py (cnn by `auto`).

Keras fixes its backend when first imported, and this test process holds Keras on
TensorFlow (tests/conftest.py), so every JAX run is a subprocess.
"""

import csv
import json
import zipfile
from pathlib import Path

import numpy as np

QUIET = ["--set", "train.verbose=2", "--set", "train.warmup_epochs=0"]


def only_run_dir(output, model):
    (run_dir,) = sorted((Path(output) / model).iterdir())
    return run_dir


def test_mlp_trains_on_jax_with_every_callback(cli, tmp_path):
    # train.backend=auto (the default) takes the mlp registry entry's backend, JAX.
    result = cli("training.run", "mlp", "--epochs", "3", "--output", str(tmp_path), "--set", "train.keep_checkpoint=true", *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend: jax (the registry entry of mlp says jax)" in result.stdout
    run_dir = only_run_dir(tmp_path, "mlp")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["epochs"] == 3 and metrics["test_accuracy"] > 0.5
    with open(run_dir / "history.csv") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    # Compiled with XLA: without it Keras runs JAX op by op (train.jit_compile unset is "auto").
    with zipfile.ZipFile(run_dir / "checkpoints" / "best.keras") as archive:
        assert json.loads(archive.read("config.json"))["compile_config"]["jit_compile"] is True
    assert list((run_dir / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert (run_dir / "report.md").is_file() and not (run_dir / "RUNNING").exists() and not (run_dir / "backup").exists()
    # The quality measures run on JAX too: the classical baseline and the gradient log (jax.grad).
    assert metrics["baseline"]["name"] == "logistic_regression" and metrics["versus_baseline"]["line"].startswith("kerasdl ")
    with open(run_dir / "gradients.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    measured = metrics["gradient_log"]["measured_epochs"]
    assert sorted({int(row["epoch"]) for row in rows}) == measured and measured[:2] == [-1, 0] and measured[-1] == 2
    norms = [float(row["gradient_norm"]) for row in rows]
    assert all(np.isfinite(norms)) and max(norms) > 0
    # The held-out manifest's predicted classes are this evaluation's, in the test split's order.
    from kerasdl.heldout import read_heldout

    heldout = read_heldout(run_dir)
    assert heldout.complete and len(heldout.predicted) == metrics["test_examples"] == 180
    assert heldout.accuracy == metrics["test_accuracy"]


def test_text_lstm_trained_on_jax_exports_and_verifies_under_tensorflow(cli, shared_data, tmp_path):
    # Without the cross-validated epoch choice (its own test is below) on the 30 validation sentences.
    arguments = ["--data", str(shared_data / "sst2"), "--set", "data.max_examples=300", "--set", "model.max_tokens=2000", "--set", "train.min_validation_examples=0"]
    result = cli("training.run", "lstm", "--backend", "jax", "--epochs", "2", "--output", str(tmp_path / "runs"), *arguments, *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "runs", "lstm")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax"
    # JAX's int64-to-int32 warning on the token ids is expected and hidden (kerasdl.train.start).
    assert "int64" not in result.stderr, result.stderr[-3000:]

    # The saved string model, loaded here under TensorFlow, gives the test predictions the
    # JAX process measured (it evaluated the token-id part on pipeline-tokenized texts).
    from kerasdl.artifact import load_model
    from kerasdl.config import DataConfig
    from kerasdl.data import load_data
    from kerasdl.data.pipeline import take_examples

    model, metadata = load_model(run_dir / "model.keras")
    assert metadata["modality"] == "text"
    splits = load_data(DataConfig(source=str(shared_data / "sst2"), max_examples=300), ("sequence", "text"), seed=42)
    texts, labels = take_examples(splits.test, splits.test.size)
    logits = model.predict(np.asarray(texts, dtype=object), verbose=0)
    assert float(np.mean(logits.argmax(axis=-1) == labels)) == metrics["test_accuracy"]
    # The held-out manifest keeps the raw texts with the class the JAX evaluation gave each:
    # the string model under TensorFlow gives the same classes, example by example.
    from kerasdl.heldout import read_heldout

    heldout = read_heldout(run_dir)
    assert len(heldout.examples) == len(heldout.predicted) > 0 and heldout.examples == list(texts[: len(heldout.examples)])
    tensorflow_classes = model.predict(np.asarray(heldout.examples, dtype=object), verbose=0).argmax(axis=-1)
    np.testing.assert_array_equal(heldout.predicted, tensorflow_classes)

    # SavedModel only: it is written from the .keras file under TensorFlow like every format
    # (tests/export cover ONNX and LiteRT from a .keras file), and keeps this test short.
    exported = cli("export.run", str(run_dir), "--format", "savedmodel", "--base", str(tmp_path / "exports"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    verdicts = {line.split()[0]: line.split()[-1] for line in exported.stdout.splitlines() if line.split()[:1] in (["savedmodel"], ["tokenizer"])}
    assert verdicts.get("savedmodel") == "OK" and set(verdicts.values()) == {"OK"}, exported.stdout


def test_jax_where_tensorflow_is_needed_is_one_line(cli, tmp_path):
    result = cli("training.run", "mlp", "--backend", "jax", "--strategy", "multi_worker", "--output", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: train.backend=jax cannot be used here: train.strategy=multi_worker is a tf.distribute strategy, "
        "which exists only on tensorflow; set train.backend=tensorflow or auto"
    )
    result = cli("training.run", "mlp", "--backend", "torch", "--output", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip() == "error: --backend (train.backend) must be one of 'tensorflow', 'jax', 'auto', got 'torch'"
    assert not any(tmp_path.iterdir())


CROSS_VALIDATION_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras

compiled = []
original_compile = keras.Model.compile


def recording_compile(self, *arguments, **options):
    original_compile(self, *arguments, **options)
    compiled.append(self.jit_compile)


keras.Model.compile = recording_compile
from training.run import main

code = main(sys.argv[1:])
print("COMPILED " + json.dumps(compiled))
sys.exit(code)
"""


def test_cross_validated_epoch_choice_trains_compiled_on_jax(shared_data, repo_root, tmp_path):
    # GunPoint's validation split (5 series) is under train.min_validation_examples, so the epoch
    # is chosen by cross-validation (kerasdl.selection), whose fold models compile on their own:
    # it runs on JAX, and every model it fits is XLA-compiled there (op by op is many times slower).
    import subprocess
    import sys

    arguments = [
        "lstm", "--backend", "jax", "--data", str(shared_data / "ucr" / "GunPoint"), "--epochs", "2", "--batch-size", "16",
        "--set", "train.cross_validation_folds=2", "--set", "model.hidden_size=8", "--output", str(tmp_path), *QUIET,
    ]
    completed = subprocess.run([sys.executable, "-c", CROSS_VALIDATION_SCRIPT, *arguments], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "choosing the epoch by 2-fold cross-validation" in completed.stdout
    compiled = json.loads(completed.stdout.split("COMPILED ")[-1])
    assert compiled == [True, True, True, True], compiled  # the run's model, 2 folds, the pool-trained model
    run_dir = only_run_dir(tmp_path, "lstm")
    choice = json.loads((run_dir / "cross_validation.json").read_text())
    assert choice["folds"] == 2 and 1 <= choice["epochs"] <= 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["test_examples"] == 150


def test_killed_jax_run_resumes_from_its_last_epoch(tmp_path, repo_root):
    # BackupAndRestore on JAX: kill -9 after an epoch is backed up, the same command resumes there.
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable, "-m", "training.run", "mlp", "--epochs", "6", "--set", "train.min_steps=3000",
        "--output", str(tmp_path), "--set", "train.verbose=2", "--set", "report.baseline=false",
    ]
    process = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, metadata = time.time() + 300, None
    while time.time() < deadline and process.poll() is None:
        found = list(tmp_path.glob("mlp/*/backup/training_metadata.json"))
        if found and json.loads(found[0].read_text()).get("epoch", 0) >= 2:
            metadata = found[0]
            break
        time.sleep(0.1)
    assert metadata is not None, "no epoch was backed up before the deadline"
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_epoch = json.loads(metadata.read_text())["epoch"]
    assert saved_epoch < 6

    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path, "mlp")
    assert "backend: jax" in result.stdout and f"resuming {run_dir} from epoch {saved_epoch}" in result.stdout
    assert f"Epoch {saved_epoch + 1}/6" in result.stdout and "Epoch 1/6" not in result.stdout
    with open(run_dir / "history.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(6))
    assert json.loads((run_dir / "metrics.json").read_text())["backend"] == "jax" and not (run_dir / "backup").exists()
