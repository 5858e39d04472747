"""Vanishing and exploding gradients, read from `gradients.csv` (written by `kerasdl.gradients.GradientNormLogger`).

TensorFlow- and Keras-free: the file is read as CSV. Every threshold is here, with the
measurement that set it.
"""

import csv
import math
import os

import numpy as np

from kerasdl.report.diagnosis import REMEDIES

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

