"""The history's diagnosis: overfitting (beyond the validation loss's noise), underfitting, unstable training.

`REMEDIES` holds the seed's remedies of every issue the report names, the gradient
issues (`kerasdl.report.gradient_diagnosis`) included.
"""

import math

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



def _finding(issue, epoch_index, evidence):
    return {"issue": issue, "epoch": epoch_index + 1 if issue == "unstable" else epoch_index, "evidence": evidence, "remedy": REMEDIES[issue]}

