"""What a run leaves behind and what it says about itself, by concern:

- `kerasdl.report.metrics`: the test metrics, `history.csv` read back, `metrics.json`;
- `kerasdl.report.plots`: learning curves and the confusion matrix;
- `kerasdl.report.diagnosis`: overfitting (beyond the validation noise), underfitting,
  unstable training, and every issue's remedies;
- `kerasdl.report.gradient_diagnosis`: vanishing and exploding gradients from `gradients.csv`;
- `kerasdl.report.markdown`: `report.md`, with the classical baseline's lines.

The public names of every part are importable from `kerasdl.report` itself. Nothing here
imports TensorFlow or Keras (matplotlib only when plotting).

Example:
>>> from kerasdl.report import diagnose, read_history
>>> diagnose(read_history("runs/mlp/x/history.csv"), num_classes=10)
[]
"""

from kerasdl.report.diagnosis import DIVERGED_LOSS, NOISE_MARGIN, REMEDIES, diagnose, validation_loss_noise
from kerasdl.report.gradient_diagnosis import (
    ALL_LAYERS,
    EXPLODING_GROWTH,
    GRADIENT_COLUMNS,
    GRADIENTS_FILE,
    VANISHING_RATIO,
    diagnose_gradients,
    read_gradients,
)
from kerasdl.report.markdown import baseline_metrics, baseline_section, write_report
from kerasdl.report.metrics import classification_metrics, read_history, write_json
from kerasdl.report.plots import plot_confusion_matrix, plot_learning_curves

__all__ = [
    "ALL_LAYERS", "DIVERGED_LOSS", "EXPLODING_GROWTH", "GRADIENTS_FILE", "GRADIENT_COLUMNS", "NOISE_MARGIN", "REMEDIES",
    "VANISHING_RATIO", "baseline_metrics", "baseline_section", "classification_metrics", "diagnose", "diagnose_gradients",
    "plot_confusion_matrix", "plot_learning_curves", "read_gradients", "read_history", "validation_loss_noise",
    "write_json", "write_report",
]
