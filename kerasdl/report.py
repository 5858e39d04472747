"""What a run leaves behind: metrics.json, learning-curve and confusion-matrix plots,
and report.md, which also diagnoses the common training issues from the history."""

import csv
import json
import math
import os

import numpy as np

# The seed's remedies for each common issue.
REMEDIES = {
    "overfitting": "more data or augmentation, more dropout or weight decay, a smaller model, or earlier stopping",
    "underfitting": "a bigger model, more epochs, a higher learning rate, or less regularization",
    "unstable": "a lower learning rate, gradient clipping (train.clipnorm), input normalization, or a warmup",
}


def read_history(path):
    """Reads `history.csv` (CSVLogger) into `{column: [floats]}`; resumed runs keep the last row per epoch."""
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[int(row["epoch"])] = row
    columns = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else float("nan"))
    return columns


def diagnose(history, num_classes):
    """Finds overfitting, underfitting and unstable training in a history.

    Args:
        history: `{"loss": [...], "val_loss": [...], "accuracy": [...], ...}` per epoch.
        num_classes: for the chance level of accuracy.

    Returns:
        A list of `{"issue", "epoch", "evidence", "remedy"}` (epochs counted from 1).

    Example:
    >>> diagnose({"loss": [1.0, 0.5, 0.2, 0.1], "val_loss": [1.0, 0.6, 0.8, 0.9]}, 10)[0]["issue"]
    'overfitting'
    """
    findings = []
    loss = list(history.get("loss", []))
    val_loss = list(history.get("val_loss", []))
    accuracy = list(history.get("accuracy", []))
    bad = [index for index, value in enumerate(loss) if not math.isfinite(value)]
    if bad:
        findings.append(_finding("unstable", bad[0], "the training loss became NaN or infinite"))
    elif len(loss) >= 2 and max(loss[1:]) > 3 * loss[0]:
        epoch = next(index for index, value in enumerate(loss) if index and value > 3 * loss[0])
        findings.append(_finding("unstable", epoch, f"the training loss rose to {loss[epoch]:.3g}, over 3x its first value {loss[0]:.3g}"))
    if len(val_loss) >= 3 and all(math.isfinite(value) for value in val_loss):
        best = int(np.argmin(val_loss))
        # Validation loss rising for two or more epochs after its best while training loss falls.
        if best <= len(val_loss) - 3 and val_loss[-1] > val_loss[best] * 1.02 and loss[-1] < loss[best]:
            findings.append(_finding(
                "overfitting", best + 1,
                f"validation loss was lowest ({val_loss[best]:.3g}) at epoch {best + 1} and rose to {val_loss[-1]:.3g} while training loss kept falling ({loss[best]:.3g} -> {loss[-1]:.3g})",
            ))
    if accuracy:
        chance = 1.0 / max(2, num_classes)
        if accuracy[-1] < min(0.6, chance + 0.5 * (1 - chance)):
            findings.append(_finding("underfitting", len(accuracy), f"training accuracy ended at {accuracy[-1]:.3f} (chance is {chance:.3f})"))
        elif len(loss) >= 4 and all(math.isfinite(value) for value in loss):
            # A plateau: the loss stops falling (under 1% better over 3 epochs) while accuracy is still low.
            for index in range(3, len(loss)):
                if loss[index] > 0.99 * loss[index - 3] and accuracy[index] < 0.9:
                    findings.append(_finding("underfitting", index + 1, f"the training loss plateaued at {loss[index]:.3g} from epoch {index - 2} with accuracy {accuracy[index]:.3f}"))
                    break
    return findings


def _finding(issue, epoch_index, evidence):
    return {"issue": issue, "epoch": epoch_index + 1 if issue == "unstable" else epoch_index, "evidence": evidence, "remedy": REMEDIES[issue]}


def classification_metrics(labels, logits, class_names):
    """Accuracy, per-class precision/recall/support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predictions = np.argmax(logits, axis=-1)
    indices = list(range(len(class_names)))
    precision, recall, _, support = precision_recall_fscore_support(labels, predictions, labels=indices, zero_division=0)
    return {
        "test_accuracy": float(np.mean(predictions == labels)) if len(labels) else float("nan"),
        "per_class": {
            name: {"precision": float(precision[index]), "recall": float(recall[index]), "support": int(support[index])}
            for index, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
    }


def plot_learning_curves(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                axis.plot(epochs[: len(values)], values, style, marker="o", label=(prefix or "train_") + metric)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(metric)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_confusion_matrix(matrix, class_names, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    size = max(4, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", fontsize=8, color="black" if value < matrix.max() / 2 else "white")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_report(run_dir, model_name, description, metrics, history, findings, phases=None):
    """Writes report.md, which ties the run's artifacts together."""
    lines = [
        f"# {model_name} run",
        "",
        f"- Data: {description}",
        f"- Test accuracy: **{metrics['test_accuracy']:.4f}**, test loss {metrics['test_loss']:.4f}",
        f"- Wall time: {metrics['wall_time_s']:.1f} s, {metrics['examples_per_s']:.0f} training examples/s",
        f"- Epochs run: {len(history.get('loss', []))}",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
    ]
    if phases:
        lines += ["## Phases", "", "| phase | epochs | trainable parameters | learning rate |", "|---|---|---|---|"]
        lines += [f"| {phase['name']} | {phase['epochs']} | {phase['trainable_parameters']:,} | {phase['learning_rate']:g} |" for phase in phases]
        lines.append("")
    lines += ["## Diagnosis", ""]
    if findings:
        for finding in findings:
            lines.append(f"- **{finding['issue']}** (epoch {finding['epoch']}): {finding['evidence']}. Remedies: {finding['remedy']}.")
    else:
        lines.append("- No overfitting, underfitting or unstable training detected in the history.")
    lines += ["", "## Per-class results", "", "| class | precision | recall | support |", "|---|---|---|---|"]
    for name, values in metrics["per_class"].items():
        lines.append(f"| {name} | {values['precision']:.3f} | {values['recall']:.3f} | {values['support']} |")
    lines += ["", "Files: `config.yaml`, `model.keras`, `checkpoints/best.keras`, `history.csv`, `metrics.json`, `tensorboard/`.", ""]
    with open(os.path.join(run_dir, "report.md"), "w") as handle:
        handle.write("\n".join(lines))


def write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(value, handle, indent=2)
    os.replace(temporary, path)
