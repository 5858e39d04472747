"""What a run leaves behind: metrics.json, learning-curve and confusion-matrix plots,
and report.md, which also diagnoses the common training issues from the history.

Over ~300 lines by design: the whole diagnosis (the history's issues, the validation
noise, the gradient norms) sits beside the report that shows it, so that every
threshold is read and tuned in one place.
"""

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
    # Not a remedy but what would settle the question.
    "inconclusive": "a larger validation split (data.validation_fraction) would tell; early stopping's restore-best keeps the best epoch meanwhile",
    "vanishing gradients": "ReLU activations instead of sigmoid/tanh, batch normalization, residual connections, and proper initialization (He for ReLU, Glorot for tanh/sigmoid)",
    "exploding gradients": "gradient clipping (train.clipnorm), a lower learning rate (train.learning_rate) or a longer warmup, batch normalization, and proper initialization",
}
# A first epoch whose mean training loss exceeds this many times chance's cross-entropy
# (ln of the class count) diverged: unnormalized 0-255 pixels gave first-epoch means of 5x
# (CNN) and 19x (MLP) on digits (measured), a learning rate of 1.0 gave 1e32.
DIVERGED_LOSS = 100.0
# A validation-loss rise counts as overfitting only beyond this many noise standard deviations.
NOISE_MARGIN = 2.0
# gradients.csv (written by kerasdl.gradients.GradientNormLogger, read here without Keras):
# one row per layer per epoch, plus the ALL_LAYERS row with the global norm.
GRADIENTS_FILE = "gradients.csv"
ALL_LAYERS = "(all layers)"
GRADIENT_COLUMNS = ("epoch", "layer", "gradient_norm", "gradient_norm_max", "weight_norm", "clipped_fraction")
# Input-side layers this far below the last layer's gradient norm count as vanishing:
# three orders of magnitude, since layer sizes alone (the norm grows with the square root of
# the parameter count) can put a small first layer one or two orders below a wide last one.
# Measured on digits: the default mlp/cnn stay within 0.3x-1.3x; a 10-layer sigmoid MLP's
# first layer is at 3e-6x.
VANISHING_RATIO = 1e-3
# Weights whose global norm grows this many times over, or a global gradient norm that does
# while the loss does not fall, are exploding (weight decay keeps healthy runs near 1x-3x).
EXPLODING_GROWTH = 10.0


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


def diagnose(history, num_classes, validation_examples=None):
    """Finds overfitting, underfitting and unstable training in a history.

    A rise of the validation loss after its best epoch is called overfitting only when it
    exceeds `NOISE_MARGIN` times the loss's noise (`validation_loss_noise`); a smaller rise
    is reported as "inconclusive": not enough evidence.

    Args:
        history: `{"loss": [...], "val_loss": [...], "accuracy": [...], ...}` per epoch.
        num_classes: for the chance level of accuracy.
        validation_examples: the validation split's size, for the loss's sampling noise;
            None judges by the epoch-to-epoch spread alone.

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
    elif loss and loss[0] > DIVERGED_LOSS * math.log(max(2, num_classes)):
        # Diverged within the first epoch: its mean loss is already far above chance, so "rose
        # over its first value" cannot see it.
        findings.append(_finding("unstable", 0, f"the first epoch's training loss was {loss[0]:.3g}, over {DIVERGED_LOSS:g}x the chance level's {math.log(max(2, num_classes)):.3g}"))
    if len(val_loss) >= 3 and all(math.isfinite(value) for value in val_loss):
        best = int(np.argmin(val_loss))
        # Validation loss rising for two or more epochs after its best while training loss falls.
        if best <= len(val_loss) - 3 and val_loss[-1] > val_loss[best] * 1.02 and loss[-1] < loss[best]:
            noise = validation_loss_noise(val_loss, validation_examples)
            rise = val_loss[-1] - val_loss[best]
            observed = f"validation loss was lowest ({val_loss[best]:.3g}) at epoch {best + 1} and rose to {val_loss[-1]:.3g} while training loss kept falling ({loss[best]:.3g} -> {loss[-1]:.3g})"
            if rise > NOISE_MARGIN * noise["noise"]:
                findings.append(_finding("overfitting", best + 1, f"{observed}; the rise of {rise:.3g} exceeds {NOISE_MARGIN:g}x its noise ({noise['text']})"))
            else:
                findings.append(_finding("inconclusive", best + 1, f"not enough evidence of overfitting: {observed}, but the rise of {rise:.3g} is within {NOISE_MARGIN:g}x its noise ({noise['text']})"))
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


def validation_loss_noise(val_loss, validation_examples=None):
    """Estimates the standard deviation of one epoch's validation loss from chance alone.

    Two estimates, the larger wins:
      - sampling: the loss is a mean over the validation examples, and the spread of
        per-example cross-entropy is about as large as its mean (a skewed, roughly
        exponential distribution), so its standard error is about `loss / sqrt(n)`;
        e.g. 0.554 on 80 examples is +-0.062. Per-example losses are not kept, hence the rule of thumb;
      - epoch-to-epoch spread: the median absolute second difference of the curve, scaled
        to a standard deviation (for white noise it is 0.6745 * sqrt(6) sigma), which a
        steady trend (falling or rising in a straight line) does not inflate.

    Args:
        val_loss: the validation loss per epoch.
        validation_examples: the validation split's size, or None.

    Returns:
        `{"noise", "sampling", "spread", "text"}`.

    Example:
    >>> round(validation_loss_noise([0.9, 0.7, 0.6, 0.554, 0.56, 0.573], 80)["noise"], 3)
    0.062
    """
    finite = [value for value in val_loss if math.isfinite(value)]
    sampling = min(finite) / math.sqrt(validation_examples) if validation_examples and finite else 0.0
    second = np.abs(np.diff(finite, n=2)) if len(finite) >= 3 else np.zeros(0)
    spread = float(np.median(second)) / (0.6745 * math.sqrt(6)) if len(second) else 0.0
    parts = []
    if validation_examples:
        parts.append(f"±{sampling:.3g} from {validation_examples:,} validation examples")
    parts.append(f"±{spread:.3g} epoch-to-epoch spread")
    return {"noise": max(sampling, spread), "sampling": sampling, "spread": spread, "text": ", ".join(parts)}


def read_gradients(path):
    """Reads `gradients.csv` (`kerasdl.gradients.GradientNormLogger`) into `{layer: {column: [values]}}`.

    Layers come in the model's order (input side first, `ALL_LAYERS` last), as in the
    latest epoch that has them; a resumed run's repeated epoch keeps its last row; empty
    cells (no clipping) read as None.

    Example:
    >>> read_gradients("runs/mlp/x/gradients.csv")["logits"]["gradient_norm"]
    [0.41, 0.22, 0.17]
    """
    if not os.path.isfile(path):
        return {}
    rows, order, previous_epoch, index = {}, {}, None, 0
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row["epoch"])
            index = index + 1 if epoch == previous_epoch else 0
            previous_epoch = epoch
            rows.setdefault(row["layer"], {})[epoch] = row
            # The place in the latest epoch that has the layer: layers a fine-tuning phase
            # unfreezes appear late in the file but before the head in the model.
            order[row["layer"]] = index
    layers = {}
    for layer in sorted(rows, key=lambda name: (name == ALL_LAYERS, order[name])):
        by_epoch = rows[layer]
        columns = {"epoch": sorted(by_epoch)}
        for column in GRADIENT_COLUMNS[2:]:
            columns[column] = [float(by_epoch[epoch][column]) if by_epoch[epoch][column] not in ("", None) else None for epoch in columns["epoch"]]
        layers[layer] = columns
    return layers


def diagnose_gradients(gradients, history=None):
    """Finds vanishing and exploding gradients in per-layer gradient norms.

    Epochs in `gradients` count from 0, with -1 for the measurement before training.
    Exploding (first match): a non-finite gradient or weight norm; a non-finite training
    loss (a NaN stop); the global weight norm grown `EXPLODING_GROWTH`x above its first
    value; the global gradient norm grown as much while the training loss is no lower; or
    clipping active on most sampled batches in most epochs while the loss became
    non-finite or rose. Vanishing (only without those): the input-side layers (from the
    first trainable one on) with norms under `VANISHING_RATIO` of the last layer's, at the
    end and in at least half of the measurements (named, with the first such epoch); or the global norm fallen under
    `VANISHING_RATIO` of its first value while the training loss stalled (under 1 % better
    over 3 epochs) with training accuracy under 0.9.

    Each phase (a run of measurements with the same trainable layers: a fine-tuning phase
    that unfreezes more starts a new one) is judged on its own, against its own first measurement.

    Args:
        gradients: `read_gradients`' result.
        history: `read_history`'s result, for the training loss and accuracy.

    Returns:
        A list of `{"issue", "epoch", "evidence", "remedy", "layers"}`, at most one per
        phase; `epoch` counts from 1 (0: before training).

    Example:
    >>> [finding["issue"] for finding in diagnose_gradients(read_gradients("gradients.csv"), history)]
    ['vanishing gradients']
    """
    history = history or {}
    if ALL_LAYERS not in gradients or not gradients[ALL_LAYERS]["epoch"]:
        return []
    findings = []
    for phase in _phases(gradients):
        layers = [layer for layer in phase if layer != ALL_LAYERS]
        if layers:
            facts = _GradientFacts(phase, layers, list(history.get("loss", [])), list(history.get("accuracy", [])))
            finding = _exploding(facts) or _vanishing(facts)
            if finding:
                findings.append(finding)
    return findings


def _phases(gradients):
    """Splits the measurements where the set of trainable layers changes (a fine-tuning phase
    unfreezes more), so that each phase's columns line up epoch by epoch."""
    epochs = gradients[ALL_LAYERS]["epoch"]
    present = [frozenset(layer for layer, columns in gradients.items() if epoch in columns["epoch"]) for epoch in epochs]
    phases, start = [], 0
    for index in range(1, len(epochs) + 1):
        if index == len(epochs) or present[index] != present[start]:
            chosen = set(epochs[start:index])
            phase = {}
            for layer in gradients:
                if layer in present[start]:
                    keep = [position for position, epoch in enumerate(gradients[layer]["epoch"]) if epoch in chosen]
                    phase[layer] = {column: [values[position] for position in keep] for column, values in gradients[layer].items()}
            phases.append(phase)
            start = index
    return phases


class _GradientFacts:
    """The columns the gradient rules read, with the history aligned to gradients.csv's epochs."""

    def __init__(self, gradients, layers, loss, accuracy):
        self.gradients, self.layers, self.loss, self.accuracy = gradients, layers, loss, accuracy
        self.epochs = gradients[ALL_LAYERS]["epoch"]
        self.norms = gradients[ALL_LAYERS]["gradient_norm"]
        self.weights = gradients[ALL_LAYERS]["weight_norm"]

    def norm(self, layer, position):
        return self.gradients[layer]["gradient_norm"][position]

    def loss_at(self, epoch):
        return self.loss[epoch] if 0 <= epoch < len(self.loss) else float("nan")


def _when(epoch):
    return "before training" if epoch < 0 else f"at epoch {epoch + 1}"


def _since(epoch):
    return "before training" if epoch < 0 else f"epoch {epoch + 1}"


def _gradient_finding(issue, epoch, evidence, layers):
    return {"issue": issue, "epoch": max(epoch + 1, 0), "evidence": evidence, "remedy": REMEDIES[issue], "layers": list(layers)}


def _exploding(facts):
    for position, epoch in enumerate(facts.epochs):
        bad = [layer for layer in facts.layers if not math.isfinite(facts.norm(layer, position))]
        if bad:
            return _gradient_finding("exploding gradients", epoch, f"gradient norms became NaN or infinite {_when(epoch)} in {_named(bad)}", bad)
        overflowed = [layer for layer in facts.layers if not math.isfinite(facts.gradients[layer]["weight_norm"][position])]
        if overflowed:
            return _gradient_finding("exploding gradients", epoch, f"the weights of {_named(overflowed)} overflowed to NaN or infinity {_when(epoch)}", overflowed)
    bad_loss = [epoch for epoch, value in enumerate(facts.loss) if not math.isfinite(value)]
    if bad_loss:
        peak = int(np.argmax(facts.norms))
        return _gradient_finding(
            "exploding gradients", bad_loss[0],
            f"the training loss became NaN or infinite at epoch {bad_loss[0] + 1} (a NaN stop); the sampled global gradient norm peaked at {facts.norms[peak]:.3g} {_when(facts.epochs[peak])}",
            facts.layers,
        )
    first_epoch, first_norm, first_weight = facts.epochs[0], facts.norms[0], facts.weights[0]
    for position, epoch in enumerate(facts.epochs[1:], start=1):
        if first_weight > 0 and facts.weights[position] >= EXPLODING_GROWTH * first_weight:
            grown = [layer for layer in facts.layers if facts.gradients[layer]["weight_norm"][position] >= EXPLODING_GROWTH * facts.gradients[layer]["weight_norm"][0]]
            return _gradient_finding(
                "exploding gradients", epoch,
                f"the weights' global norm grew from {first_weight:.3g} ({_when(first_epoch)}) to {facts.weights[position]:.3g} {_when(epoch)}, most in {_named(grown or facts.layers)}",
                grown or facts.layers,
            )
        if first_norm > 0 and facts.norms[position] >= EXPLODING_GROWTH * first_norm and not facts.loss_at(epoch) < facts.loss_at(max(first_epoch, 0)):
            grown = [layer for layer in facts.layers if facts.norm(layer, position) >= EXPLODING_GROWTH * facts.norm(layer, 0)]
            return _gradient_finding(
                "exploding gradients", epoch,
                f"the global gradient norm grew from {first_norm:.3g} ({_when(first_epoch)}) to {facts.norms[position]:.3g} {_when(epoch)} while the training loss did not fall; grown most in {_named(grown or facts.layers)}",
                grown or facts.layers,
            )
    clipped = facts.gradients[ALL_LAYERS]["clipped_fraction"]
    if all(value is not None for value in clipped):
        busy = [position for position, value in enumerate(clipped) if value >= 0.5]
        loss_rose = len(facts.loss) >= 2 and max(facts.loss[1:]) > facts.loss[0]
        if len(busy) * 2 >= len(clipped) and loss_rose:
            epoch = facts.epochs[busy[0]]
            return _gradient_finding(
                "exploding gradients", epoch,
                f"gradient clipping was active on most sampled batches in {len(busy)} of {len(clipped)} measurements (from {_since(epoch)}) and the training loss rose",
                facts.layers,
            )
    return None


def _vanishing(facts):
    if len(facts.layers) >= 2:
        last = facts.layers[-1]

        def small_at(position):
            # The input-side run of small layers: the signal fades on its way back to the
            # input. Small layers in the middle behind healthy early ones are not that, e.g. a
            # transformer's query/key projections at initialization (uniform attention has a
            # near-zero gradient for them) behind healthy embeddings.
            reference = facts.norm(last, position)
            names = []
            for layer in facts.layers[:-1]:
                if not (reference > 0 and facts.norm(layer, position) < VANISHING_RATIO * reference):
                    break
                names.append(layer)
            return names

        small = [small_at(position) for position in range(len(facts.epochs))]
        flagged = [position for position, names in enumerate(small) if names]
        if small[-1] and len(flagged) * 2 >= len(facts.epochs):
            names = small[-1]
            zero = [layer for layer in names if facts.norm(layer, -1) == 0.0]
            dead = f"; {_named(zero)} had exactly zero gradient (dead units, e.g. ReLUs that no longer activate, which a too-high learning rate often causes)" if zero else ""
            return _gradient_finding(
                "vanishing gradients", facts.epochs[flagged[0]],
                f"from {_since(facts.epochs[flagged[0]])} on, {_named(names)} had gradient norms over "
                f"{1 / VANISHING_RATIO:,.0f}x below the last layer's ({names[0]}: {facts.norm(names[0], -1):.2g} against {last}: {facts.norm(last, -1):.2g} {_when(facts.epochs[-1])}){dead}",
                names,
            )
    first = facts.norms[0]
    for position, epoch in enumerate(facts.epochs):
        stalled = 3 <= epoch < len(facts.loss) and facts.loss[epoch] > 0.99 * facts.loss[epoch - 3]
        low = 0 <= epoch < len(facts.accuracy) and facts.accuracy[epoch] < 0.9
        if position and first > 0 and facts.norms[position] < VANISHING_RATIO * first and stalled and low:
            return _gradient_finding(
                "vanishing gradients", epoch,
                f"the global gradient norm fell from {first:.3g} to {facts.norms[position]:.3g} by epoch {epoch + 1} while the training loss stalled at {facts.loss[epoch]:.3g} (accuracy {facts.accuracy[epoch]:.3f})",
                facts.layers,
            )
    return None


def _named(layers, limit=4):
    """`a, b, c and 2 more layers`."""
    shown = ", ".join(layers[:limit])
    return f"{shown} and {len(layers) - limit} more layers" if len(layers) > limit else shown


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


def write_report(run_dir, model_name, description, metrics, history, findings, phases=None, baseline=None, comparison=None, text_stats=None):
    """Writes report.md, which ties the run's artifacts together.

    Args:
        run_dir: the run directory.
        model_name, description: the model's name and the data's description line.
        metrics: `metrics.json`'s content.
        history: `read_history`'s result.
        findings: `diagnose` (+ `diagnose_gradients`) findings.
        phases: the training phases, when there were several.
        baseline, comparison: `kerasdl.baseline.fit_baseline`'s and `compare`'s results, or None.
        text_stats: `kerasdl.baseline.text_statistics` of the training texts, or None.

    Example:
    >>> write_report("runs/mlp/x", "mlp", "digits", metrics, history, findings, baseline=baseline, comparison=comparison)
    """
    lines = [
        f"# {model_name} run",
        "",
        f"- Data: {description}",
        f"- Test accuracy: **{metrics['test_accuracy']:.4f}**, test loss {metrics['test_loss']:.4f}",
        f"- Wall time: {metrics['wall_time_s']:.1f} s, {metrics['examples_per_s']:.0f} training examples/s",
        f"- Epochs run: {len(history.get('loss', []))}",
    ]
    if comparison is not None:
        lines.append(f"- Against a classical baseline: {comparison['line']}")
    lines += [
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
    ]
    lines += baseline_section(baseline, comparison, text_stats)
    if phases:
        lines += ["## Phases", "", "| phase | epochs | trainable parameters | learning rate |", "|---|---|---|---|"]
        lines += [f"| {phase['name']} | {phase['epochs']} | {phase['trainable_parameters']:,} | {phase['learning_rate']:g} |" for phase in phases]
        lines.append("")
    lines += ["## Diagnosis", ""]
    if findings:
        for finding in findings:
            lines.append(f"- **{finding['issue']}** (epoch {finding['epoch']}): {finding['evidence']}. Remedies: {finding['remedy']}.")
    else:
        checked = " or vanishing/exploding gradients in gradients.csv" if os.path.isfile(os.path.join(run_dir, GRADIENTS_FILE)) else ""
        lines.append(f"- No overfitting, underfitting or unstable training detected in the history{checked}.")
    lines += ["", "## Per-class results", "", "| class | precision | recall | support |", "|---|---|---|---|"]
    for name, values in metrics["per_class"].items():
        lines.append(f"| {name} | {values['precision']:.3f} | {values['recall']:.3f} | {values['support']} |")
    gradients = ", `gradients.csv`" if os.path.isfile(os.path.join(run_dir, GRADIENTS_FILE)) else ""
    lines += ["", f"Files: `config.yaml`, `model.keras`, `checkpoints/best.keras`, `history.csv`{gradients}, `metrics.json`, `tensorboard/`.", ""]
    with open(os.path.join(run_dir, "report.md"), "w") as handle:
        handle.write("\n".join(lines))


def baseline_section(baseline=None, comparison=None, text_stats=None):
    """report.md's lines on the classical baseline and, for text, the guide's ratio; [] when there is neither.

    Example:
    >>> baseline_section(baseline, compare(0.812, baseline, "image"))[2]
    '- kerasdl 0.812 vs baseline 0.795 (+1.7 points)'
    """
    lines = []
    if comparison is not None and baseline is not None:
        lines += ["## Against a classical baseline", "", f"- {comparison['line']}", f"- {comparison['statement']}"]
        used = f"{baseline['train_examples_used']:,} of {baseline['train_examples']:,}" if baseline["train_examples_used"] < baseline["train_examples"] else f"all {baseline['train_examples']:,}"
        unconverged = ", stopped at its iteration cap before converging" if not baseline.get("converged", True) else ""
        lines.append(f"- Baseline: {baseline['description']}, fitted on {used} training examples and scored on the same {baseline['test_examples']:,} test examples in {baseline['seconds']:.1f} s{unconverged}.")
        if comparison["suggestions"]:
            lines.append("- What to try:")
            lines += [f"  - {suggestion}" for suggestion in comparison["suggestions"]]
        lines.append("")
    if text_stats is not None:
        lines += ["## Text: which model suits this data", "", f"- {text_stats['reason']}.", f"- Recommended by the guide: **{text_stats['recommended_model']}**.", ""]
    return lines


def baseline_metrics(baseline=None, comparison=None, text_stats=None):
    """The `metrics.json` keys for the baseline: `baseline`, `versus_baseline` and `text_statistics` (each when given).

    Example:
    >>> metrics.update(baseline_metrics(baseline, comparison))
    >>> metrics["versus_baseline"]["line"]
    'kerasdl 0.812 vs baseline 0.795 (+1.7 points)'
    """
    keys = {}
    if baseline is not None:
        keys["baseline"] = {key: value for key, value in baseline.items() if key != "text_statistics"}
    if comparison is not None:
        keys["versus_baseline"] = dict(comparison)
    if text_stats is not None:
        keys["text_statistics"] = dict(text_stats)
    return keys


def write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(value, handle, indent=2)
    os.replace(temporary, path)
