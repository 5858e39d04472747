"""`python -m training.run` on the JAX backend, and the export of a JAX-trained model under TensorFlow.

Keras fixes its backend when first imported, and this test process holds Keras on
TensorFlow, so every JAX run is a subprocess.
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
    result = cli("training.run", "mlp", "--backend", "jax", "--epochs", "3", "--output", str(tmp_path), *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend: jax (train.backend=jax)" in result.stdout
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


def test_text_lstm_trained_on_jax_exports_and_verifies_under_tensorflow(cli, shared_data, tmp_path):
    arguments = ["--data", str(shared_data / "sst2"), "--set", "data.max_examples=300", "--set", "model.max_tokens=2000"]
    result = cli("training.run", "lstm", "--backend", "jax", "--epochs", "2", "--output", str(tmp_path / "runs"), *arguments, *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "runs", "lstm")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax"

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

    exported = cli("export.run", str(run_dir), "--format", "savedmodel", "onnx", "--base", str(tmp_path / "exports"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    verdicts = {line.split()[0]: line.split()[-1] for line in exported.stdout.splitlines() if line.split()[:1] in (["savedmodel"], ["tokenizer"], ["onnx"])}
    assert verdicts == {"savedmodel": "OK", "tokenizer": "OK", "onnx": "OK"}, exported.stdout


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
