"""Parity checks: every exported artifact must give the Keras model's answers.

The reference is the Keras model itself, `softmax(model(x))`, on held-out
examples; each format reloads its artifact and runs it (`export.formats`:
the SavedModel as TF Serving loads it, ONNX and LiteRT with their
TensorFlow-free runners). A result is OK when the largest absolute difference
in probabilities is within the tolerance (`export.formats.tolerance`: the
model's own, else the format's default) and every predicted class agrees,
except where the Keras model itself has a near tie (its two best
probabilities closer than twice the tolerance), where a flipped argmax is
rounding, not a defect.
"""

import dataclasses

import numpy as np

@dataclasses.dataclass
class ParityResult:
    """One row of the parity table."""

    artifact: str  # the format ("savedmodel", "onnx", ...) or "tokenizer"
    signature: str  # signature or input kind, e.g. "serving_default", "image_bytes", "probabilities"
    examples: int
    max_abs_diff: float
    tolerance: float
    class_agreement: float  # share of examples with the same predicted class, 0-1
    ok: bool
    detail: str = ""

    def as_dict(self):
        return dataclasses.asdict(self)


def keras_probabilities(model, inputs, metadata=None, batch_size=32):
    """Returns `softmax(model(inputs))` as float32 numpy, batch by batch.

    With `metadata`, text models get strings as the contract says (BERT runs
    its attached preprocessor first; see `export.text.raw_model_fn`).
    Raw examples as a list are fed as each path feeds them: images of different
    sizes in batches of one size each (the model resizes inside), series
    zero-padded to the longest of their batch (the model masks the padding).

    Example:
    >>> keras_probabilities(model, images).shape
    (64, 10)
    """
    import tensorflow as tf

    from export.text import raw_model_fn
    from kerasdl.runtime import pad_sequences
    from kerasdl.runtime.images import run_grouped

    call = raw_model_fn(model, metadata or {})
    modality = (metadata or {}).get("modality")

    def probabilities(batch):
        return tf.nn.softmax(tf.cast(call(batch), tf.float32), axis=-1).numpy()

    if modality == "image":
        # Batches of one size each, and few large images per batch (`image_batch_size`).
        return run_grouped(list(inputs), probabilities, batch_size).astype("float32")
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        if isinstance(batch, list):
            batch = pad_sequences(batch) if modality == "sequence" else tf.constant(batch)
        outputs.append(probabilities(batch))
    return np.concatenate(outputs, axis=0)


def compare(artifact, signature, actual, expected, tolerance, detail=""):
    """Compares probabilities `actual` with the Keras reference `expected`; returns a ParityResult."""
    actual = np.asarray(actual, dtype="float32")
    expected = np.asarray(expected, dtype="float32")
    if actual.shape != expected.shape:
        return ParityResult(artifact, signature, len(expected), float("inf"), tolerance, 0.0, False,
                            f"shape {actual.shape} != Keras {expected.shape}")
    difference = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    agree = actual.argmax(axis=-1) == expected.argmax(axis=-1)
    top_two = np.sort(expected, axis=-1)[:, -2:] if expected.shape[-1] > 1 else np.zeros((len(expected), 2))
    near_tie = (top_two[:, 1] - top_two[:, 0]) <= 2 * tolerance
    ok = bool(difference <= tolerance and np.all(agree | near_tie))
    return ParityResult(artifact, signature, len(expected), difference, tolerance, float(agree.mean()), ok, detail)


def format_table(results):
    """Returns the parity table as aligned text, one row per result.

    Example:
    >>> print(format_table([ParityResult("onnx", "probabilities", 64, 3e-7, 1e-4, 1.0, True)]))
    format      signature        examples  max abs diff  tolerance  class agreement  result
    onnx        probabilities          64      3.00e-07   1.00e-04          100.0 %  OK
    """
    header = ("format", "signature", "examples", "max abs diff", "tolerance", "class agreement", "result")
    rows = [
        (
            result.artifact,
            result.signature,
            str(result.examples),
            f"{result.max_abs_diff:.2e}",
            f"{result.tolerance:.2e}" if result.tolerance is not None else "-",
            f"{100 * result.class_agreement:.1f} %",
            ("OK" if result.ok else "FAIL") + (f" ({result.detail})" if result.detail else ""),
        )
        for result in results
    ]
    widths = [max(len(row[index]) for row in [header] + rows) for index in range(len(header))]
    align = ["<", "<", ">", ">", ">", ">", "<"]
    lines = []
    for row in [header] + rows:
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip())
    return "\n".join(lines)
