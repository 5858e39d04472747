"""The end of a run: the test evaluation, then everything the run directory keeps.

`evaluate` runs the trained model over the test split (a text model's token-id part, on the
split tokenized in the pipeline, as in training: the string model cannot run on JAX); `write_artifacts`
writes `model.keras` (with its metadata), the raw examples export needs (`kerasdl.heldout`),
`metrics.json` (with the diagnosis and the baseline comparison of `kerasdl.quality`), the plots
and `report.md`, then removes what only a resume needed and releases the lock.
"""

import os
import shutil
import time

import numpy as np

from kerasdl import quality, report, rundir
from kerasdl.artifact import save_model
from kerasdl.data.pipeline import take_examples
from kerasdl.heldout import save_run_examples

# The validation split kept with the run: export judges int8 on all of it (one flipped
# prediction in 64 is 1.6 points against a 1-point limit). The bound keeps the file small
# for very large splits (10,000 CIFAR images are 31 MB as uint8).
VALIDATION_EXAMPLES = 10_000


def evaluate(run, started):
    """Returns the test metrics: one pass over the test split for logits and labels.

    Batches are NumPy arrays: the JAX backend takes no tf.Tensor. Multi-worker runs call the
    model directly (local to each worker; Keras' multi-worker predict is unpatched); otherwise
    `predict_on_batch`, so that keras-hub tasks apply their string preprocessor. `epochs`
    counts every epoch of every phase, as `history.csv` does.
    """
    import keras

    logits, labels = [], []
    for x, y in run.data["test"].as_numpy_iterator():
        logits.append(np.asarray(run.train_model(x, training=False) if run.multi_worker else run.train_model.predict_on_batch(x)))
        labels.append(y)
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    # The class of every test example, in the split's order: kept beside the raw held-out files.
    run.test_predictions = logits.argmax(axis=-1)
    metrics = report.classification_metrics(labels, logits, run.splits.class_names)
    metrics.update(
        test_loss=float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))),
        wall_time_s=time.time() - started, fit_time_s=run.fit_seconds,
        examples_per_s=run.examples_trained / run.fit_seconds if run.fit_seconds else 0.0,
        epochs=sum(phase["epochs"] for phase in run.phases),
        train_examples=run.splits.train.size, test_examples=int(len(labels)), backend=run.backend,
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
    # Raw test examples (with the class this evaluation gave each) for export and the served
    # paths' checks, and training examples for int8 calibration (kerasdl.heldout).
    save_run_examples(run_dir, splits, run.test_predictions)
    save_validation(run_dir, splits)
    history = report.read_history(os.path.join(run_dir, "history.csv"))
    findings, quality_keys, report_arguments = quality.findings_and_metrics(run, metrics, history)
    metrics["diagnosis"] = findings
    metrics["phases"] = run.phases
    metrics.update(quality_keys)
    report.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    report.plot_learning_curves(history, os.path.join(run_dir, "learning_curves.png"), run.phases)
    report.plot_confusion_matrix(metrics["confusion_matrix"], splits.class_names, os.path.join(run_dir, "confusion_matrix.png"))
    report.write_report(run_dir, config.model_name, splits.description, metrics, history, findings, run.phases if len(run.phases) > 1 else None, checkpoint_kept=config.train.keep_checkpoint, **report_arguments)
    # The lock goes first: with it the run is complete. A kill during the cleanup then leaves
    # files a finished run no longer needs, rather than a locked run without its progress
    # (which the same command would train again from the first epoch).
    rundir.release_lock(run_dir)
    for leftover in ("backup", "backup_finetune") + (() if config.train.keep_checkpoint else ("checkpoints",)):
        shutil.rmtree(os.path.join(run_dir, leftover), ignore_errors=True)
    rundir.remove_progress(run_dir)


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
        # Raw decoded pixels of any size: the model resizes them to its own image_size inside.
        spec["image_size"] = spec["shape"][:2]
        spec["shape"] = [None, None, spec["shape"][2]]
    return spec


def save_validation(run_dir, splits):
    """Writes `data/validation.npz|json`: the validation split, on which export judges int8."""
    folder = os.path.join(run_dir, "data")
    os.makedirs(folder, exist_ok=True)
    x, y = take_examples(splits.validation, VALIDATION_EXAMPLES)
    if splits.modality == "text":
        report.write_json(os.path.join(folder, "validation.json"), {"x": list(x), "y": y.tolist()})
    elif splits.modality == "image":
        # Pixels as uint8, rounded: a quarter of float32 (int8 is judged on fp32's and int8's
        # answers to the same pixels, which half a level of rounding does not bias).
        np.savez(os.path.join(folder, "validation.npz"), x=np.clip(np.round(x), 0, 255).astype(np.uint8), y=y)
    else:
        np.savez(os.path.join(folder, "validation.npz"), x=np.asarray(x, dtype=np.float32), y=y)
