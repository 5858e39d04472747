"""The end of a run: the test evaluation, then everything the run directory keeps.

`evaluate` runs the saved (string-taking) model over the raw test split; `write_artifacts`
writes `model.keras` (with its metadata), the raw examples export needs, `metrics.json`, the
plots and `report.md`, then removes what only a resume needed and releases the lock.
"""

import os
import shutil
import time

import numpy as np

from kerasdl import report, rundir
from kerasdl.artifact import save_model
from kerasdl.data.pipeline import take_examples

# Raw held-out examples kept with the run for export parity checks and the warmup file,
# and raw training examples for static int8 calibration.
# Raw held-out examples kept with the run: export checks parity and writes the warmup file on
# the first 64, and judges int8 on all of them, so the whole validation split is kept (one
# flipped prediction in 64 is 1.6 points against a 1-point limit). The bound keeps the file
# small for very large splits (10,000 CIFAR images are 31 MB as uint8).
VALIDATION_EXAMPLES = 10_000
CALIBRATION_EXAMPLES = 256


def evaluate(run, started):
    """Returns the test metrics: one pass over the test split for logits and labels.

    Multi-worker runs call the model directly (local to each worker; Keras' multi-worker
    predict is unpatched); otherwise `predict_on_batch`, so that keras-hub tasks apply their
    string preprocessor. `epochs` counts every epoch of every phase, as `history.csv` does.
    """
    import keras

    logits, labels = [], []
    for x, y in run.data["test"]:
        logits.append(np.asarray(run.model(x, training=False) if run.multi_worker else run.model.predict_on_batch(x)))
        labels.append(np.asarray(y))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    metrics = report.classification_metrics(labels, logits, run.splits.class_names)
    metrics.update(
        test_loss=float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))),
        wall_time_s=time.time() - started, fit_time_s=run.fit_seconds,
        examples_per_s=run.examples_trained / run.fit_seconds if run.fit_seconds else 0.0,
        epochs=sum(phase["epochs"] for phase in run.phases),
        train_examples=run.splits.train.size, test_examples=int(len(labels)),
    )
    return metrics


def write_artifacts(run, metrics):
    """Writes the model, examples, metrics, plots and report; then the run is complete and unlocked."""
    config, splits, run_dir, entry = run.config, run.splits, run.run_dir, run.entry
    metadata = {
        "model": config.model_name,
        "modality": splits.modality,
        "class_names": list(splits.class_names),
        "input": input_spec(splits),
        "output": "logits",
        "run_dir": os.path.abspath(run_dir),
        "data": splits.description,
    }
    if splits.modality == "text":
        metadata["text"] = {"tokenizer": entry.text.tokenizer, "sequence_length": config.model.get("sequence_length")}
    save_model(run.model, os.path.join(run_dir, "model.keras"), metadata)
    if entry.save_extras is not None:
        entry.save_extras(run.model, run_dir)
    save_examples(run_dir, splits)
    history = report.read_history(os.path.join(run_dir, "history.csv"))
    findings = report.diagnose(history, len(splits.class_names))
    metrics["diagnosis"] = findings
    metrics["phases"] = run.phases
    report.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    report.plot_learning_curves(history, os.path.join(run_dir, "learning_curves.png"))
    report.plot_confusion_matrix(metrics["confusion_matrix"], splits.class_names, os.path.join(run_dir, "confusion_matrix.png"))
    report.write_report(run_dir, config.model_name, splits.description, metrics, history, findings, run.phases if len(run.phases) > 1 else None)
    for leftover in ("backup", "backup_finetune"):
        shutil.rmtree(os.path.join(run_dir, leftover), ignore_errors=True)
    rundir.remove_progress(run_dir)
    rundir.release_lock(run_dir)


def input_spec(splits):
    """The `input` entry of the model's metadata (docs/CONTRACTS.md, section 3)."""
    if splits.modality == "text":
        return {"shape": [], "dtype": "string"}
    spec = {"shape": list(splits.input_shape), "dtype": "float32"}
    if splits.modality == "sequence":
        # Series are zero-padded at the end; any length is accepted.
        spec["shape"][0] = None
        spec["padding_value"] = 0.0
    if splits.modality == "image":
        spec["value_range"] = [0, 255]
    return spec


def save_examples(run_dir, splits):
    """Writes `data/validation` and `data/calibration`: raw examples for export checks and int8 calibration."""
    folder = os.path.join(run_dir, "data")
    os.makedirs(folder, exist_ok=True)
    for name, split, count in (("validation", splits.validation, VALIDATION_EXAMPLES), ("calibration", splits.train, CALIBRATION_EXAMPLES)):
        x, y = take_examples(split, count)
        if splits.modality == "text":
            report.write_json(os.path.join(folder, f"{name}.json"), {"x": list(x), "y": y.tolist()})
        else:
            # Whole pixel values 0-255 are kept as uint8 (a quarter of float32, the same values once read).
            lossless = x.size and np.all((x >= 0) & (x <= 255) & (x == np.round(x)))
            np.savez(os.path.join(folder, f"{name}.npz"), x=x.astype(np.uint8 if lossless and splits.modality == "image" else np.float32), y=y)
