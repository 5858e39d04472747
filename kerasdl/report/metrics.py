"""The numbers a run keeps: the test metrics, `history.csv` read back, and `metrics.json` written atomically."""

import csv
import json
import os

import numpy as np


def read_history(path):
    """Reads `history.csv` (CSVLogger) into `{column: [floats]}`; resumed runs keep the last row per epoch.

    CSVLogger writes "NA" for a column an epoch's logs lack (validation columns of a fit
    without validation data); those cells, like empty ones, read as NaN.
    """
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[int(row["epoch"])] = row
    columns = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            columns.setdefault(key, []).append(float(value) if value not in ("", "NA", None) else float("nan"))
    return columns


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


def write_json(path, value):
    """Writes `value` as indented JSON to `path` through a temporary file, so a reader never sees half a file.

    Example:
    >>> write_json("runs/mlp/x/metrics.json", {"test_accuracy": 0.97})
    """
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(value, handle, indent=2)
    os.replace(temporary, path)
