"""How much an int8 model costs in accuracy, and whether it may be published (any format with an int8 variant).

The ONNX and LiteRT formats both judge their int8 file here
(`gate_int8`): on every held-out example the run kept, against the float
model, with the paired interval of the accuracy drop. `export.orchestrator`
then publishes the int8 file or leaves it out.
"""

import os

import numpy as np

# The confidence level of the interval reported for the int8 accuracy drop.
CONFIDENCE = 0.95


def int8_comparison(fp32_probabilities, int8_probabilities, labels, fp32_path, int8_path):
    """Measures an int8 model against its float twin on the same held-out examples (any format).

    Args:
        fp32_probabilities, int8_probabilities: the two models' probabilities `[N, K]`.
        labels: the examples' true class ids, or None (synthetic examples): then
            "accuracy" is measured against the float model's predictions.
        fp32_path, int8_path: the two files (for their sizes).

    Returns:
        `{"examples", "fp32_bytes", "int8_bytes", "size_ratio", "agreement", "fp32_accuracy",
        "int8_accuracy", "accuracy_drop_points", "fp32_only_correct", "int8_only_correct",
        "accuracy_drop_interval_points", "interval", "labels"}`; the drop and its interval are in
        percentage points (fp32 minus int8), the interval from `paired_accuracy_drop_interval`.

    Example:
    >>> int8_comparison(fp32, int8, labels, "model.onnx", "model.int8.onnx")["agreement"]
    1.0
    """
    fp32 = np.asarray(fp32_probabilities).argmax(axis=-1)
    int8 = np.asarray(int8_probabilities).argmax(axis=-1)
    reference = np.asarray(labels) if labels is not None else fp32
    fp32_correct, int8_correct = fp32 == reference, int8 == reference
    counts = {
        "both": int(np.sum(fp32_correct & int8_correct)),
        "first_only": int(np.sum(fp32_correct & ~int8_correct)),
        "second_only": int(np.sum(~fp32_correct & int8_correct)),
        "neither": int(np.sum(~fp32_correct & ~int8_correct)),
    }
    low, high = paired_accuracy_drop_interval(**counts)
    fp32_accuracy = float(np.mean(fp32_correct)) if len(fp32) else 0.0
    int8_accuracy = float(np.mean(int8_correct)) if len(int8) else 0.0
    return {
        "examples": int(len(fp32)),
        "fp32_bytes": os.path.getsize(fp32_path),
        "int8_bytes": os.path.getsize(int8_path),
        "size_ratio": os.path.getsize(int8_path) / os.path.getsize(fp32_path),
        "agreement": float(np.mean(fp32 == int8)) if len(fp32) else 0.0,
        "fp32_accuracy": fp32_accuracy,
        "int8_accuracy": int8_accuracy,
        "accuracy_drop_points": 100.0 * (fp32_accuracy - int8_accuracy),
        "fp32_only_correct": counts["first_only"],
        "int8_only_correct": counts["second_only"],
        "accuracy_drop_interval_points": [100.0 * low, 100.0 * high],
        "interval": f"{100 * CONFIDENCE:.0f} % Newcombe paired score interval (Wilson), fp32 minus int8",
        "labels": "held-out labels" if labels is not None else "fp32 predictions (no labels)",
    }


def paired_accuracy_drop_interval(both, first_only, second_only, neither, confidence=CONFIDENCE):
    """Returns the confidence interval `(low, high)` of accuracy(first) - accuracy(second) on the same examples.

    The two models answer the same examples, so their accuracies are paired
    (McNemar's setting): only the discordant examples (`first_only`: right for
    the first model only, `second_only`: for the second only) move the
    difference. This is Newcombe's method 10 (Statistics in Medicine 17:2635,
    1998): Wilson score intervals for each accuracy, combined with the
    continuity-corrected correlation of the pairs. Unlike the Wald interval it
    stays inside [-1, 1] and keeps a width when no example is discordant (one
    flipped example out of 64 is a 1.6-point drop, but the interval shows how
    little 64 examples can tell). Hand-written because no dependency has the
    paired version (scipy gives the Wilson intervals; statsmodels is not a
    dependency and has the independent-samples one only).

    Args:
        both, first_only, second_only, neither: the 2x2 counts of examples by
            which model is right.
        confidence: the confidence level.

    Returns:
        `(low, high)` as fractions (multiply by 100 for points); `(0.0, 0.0)` for no examples.

    Example:
    >>> low, high = paired_accuracy_drop_interval(both=950, first_only=12, second_only=3, neither=35)
    >>> round(low, 4), round(high, 4)
    (0.0009, 0.018)
    """
    from scipy.stats import binomtest

    total = both + first_only + second_only + neither
    if total == 0:
        return 0.0, 0.0
    first = (both + first_only) / total
    second = (both + second_only) / total

    def wilson(successes):
        interval = binomtest(int(successes), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
        return float(interval.low), float(interval.high)

    first_low, first_high = wilson(both + first_only)
    second_low, second_high = wilson(both + second_only)
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    concordance = both * neither - first_only * second_only
    # The continuity-corrected phi of method 10: shrunk by n/2 when positive, kept when negative.
    corrected = concordance - total / 2 if concordance > total / 2 else (concordance if concordance < 0 else 0.0)
    phi = corrected / np.sqrt(margins) if margins > 0 else 0.0
    difference = first - second
    below = np.sqrt(max((first - first_low) ** 2 - 2 * phi * (first - first_low) * (second_high - second)
                        + (second_high - second) ** 2, 0.0))
    above = np.sqrt(max((second - second_low) ** 2 - 2 * phi * (second - second_low) * (first_high - first)
                        + (first_high - first) ** 2, 0.0))
    return float(difference - below), float(difference + above)


def int8_summary(label, comparison, max_accuracy_drop):
    """Returns the one progress line that reports an int8 comparison, e.g. "int8 (static): size 27.1 % of fp32, ..."."""
    low, high = comparison["accuracy_drop_interval_points"]
    return (
        f"{label}: size {100 * comparison['size_ratio']:.1f} % of fp32, agreement with fp32 "
        f"{100 * comparison['agreement']:.1f} %, accuracy {100 * comparison['fp32_accuracy']:.1f} % -> "
        f"{100 * comparison['int8_accuracy']:.1f} % on {comparison['examples']} held-out examples "
        f"(drop {comparison['accuracy_drop_points']:.2f} points, {100 * CONFIDENCE:.0f} % interval [{low:.2f}, {high:.2f}], "
        f"limit {max_accuracy_drop}; vs {comparison['labels']})"
    )


def gate_int8(job, label, fp32_runner, int8_runner, fp32_path, int8_path):
    """Compares the int8 runner with the float one on every held-out example and applies the accuracy gate.

    Both formats with an int8 variant (ONNX, LiteRT) judge this way: on the
    whole held-out split the run kept (`ExportSource.held_out`), not the few
    parity examples, with the interval of the drop.

    Returns:
        `{"comparison", "max_accuracy_drop_points", "accepted"}` for the format's card section.
    """
    examples, labels = job.source.held_out()
    comparison = int8_comparison(fp32_runner.predict(examples), int8_runner.predict(examples), labels, fp32_path, int8_path)
    limit = job.options.get("max_accuracy_drop")
    job.log(int8_summary(label, comparison, limit))
    return {"comparison": comparison, "max_accuracy_drop_points": limit, "accepted": comparison["accuracy_drop_points"] <= limit}
