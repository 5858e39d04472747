"""Exported classifiers run without TensorFlow: raw examples in, probabilities out.

An edge box has numpy, Pillow and a runtime (ONNX Runtime, the LiteRT
interpreter), not TensorFlow; `export.predict`, `export.verify` and the edge
server's ONNX backend all run exported models through the runners here, so
there is one way to turn raw examples into a model's inputs and one way to run
it. This package must never import TensorFlow or Keras, and nothing under
`export/` (docs/ARCHITECTURE.md; `tests/test_architecture.py` checks both).

A runner knows its model's contract (`kerasdl.contract`): the class names,
the modality and the raw input spec, and for text models the TensorFlow-free
tokenizer in the `tokenizer/` folder beside the model file.

- `Runner.feed(examples)` turns raw examples into the named arrays the model
  takes: text is tokenized; images (decoded pixels, float32 0-255) and
  features are stacked; sequences are zero-padded after their end to a common
  length (padding is what the models mask).
- `Runner.run(feed)` runs one batch and returns float32 probabilities `[B, K]`.
- `Runner.predict(examples)` is both, batch by batch.

Example:
>>> from kerasdl.runtime.onnx import OnnxRunner
>>> runner = OnnxRunner("exports/text_lstm/1/model.onnx")
>>> runner.predict(["a gripping film", "dull"]).shape
(2, 2)
"""

import os

import numpy as np

from kerasdl.contract import TOKENIZER_DIR


# What every message about a damaged or unreadable artifact tells the user to do.
REEXPORT = "export it again with python -m export.run"


class ArtifactError(ValueError):
    """An exported artifact cannot be run: a missing tokenizer, absent metadata, an input it cannot take.

    The message is one line that names the file and says what to do.
    """


class Runner:
    """The runtime-independent half of a runner: the model's contract and raw-example feeds.

    Args:
        class_names: the class names, index = class id (None when the artifact does not say).
        modality: "image" | "features" | "sequence" | "text".
        input_spec: `kerasdl.contract.input_spec` of the model (`{"name", "dtype", "shape"}`).
        folder: the folder holding the model file; text models read `tokenizer/` there.
        sequence_length: for sequence models with a fixed time axis, the length every
            series is padded to (longer ones are refused); None pads to the longest in the batch.
    """

    kind = ""

    def __init__(self, class_names, modality, input_spec, folder, sequence_length=None):
        self.class_names = [str(name) for name in class_names] if class_names is not None else None
        self.modality = modality
        self.input_spec = dict(input_spec or {})
        self.folder = os.fspath(folder)
        self.sequence_length = sequence_length
        self.tokenizer = load_text_tokenizer(self.folder) if modality == "text" else None

    @property
    def input_shape(self):
        """One raw example's shape (without the batch axis), or None for text."""
        shape = self.input_spec.get("shape")
        return list(shape[1:]) if shape else None

    def feed(self, examples):
        """Returns `{input name: array}` for a list (or array) of raw examples.

        Raises:
            ArtifactError: a series longer than the model's fixed time axis.
        """
        if self.modality == "text":
            texts = [item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item) for item in examples]
            return {name: np.asarray(value, dtype=np.int64) for name, value in self.tokenizer.encode_batch(texts).items()}
        name = self.input_spec.get("name")
        if self.modality == "sequence":
            return {name: pad_sequences(examples, self.sequence_length)}
        return {name: np.asarray(np.stack(list(examples)) if isinstance(examples, list) else examples, dtype=np.float32)}

    def run(self, feed):
        """Runs one batch of named input arrays; returns float32 probabilities `[B, K]`."""
        raise NotImplementedError

    def predict(self, examples, batch_size=32):
        """Returns the probabilities `[N, K]` of raw `examples`, `batch_size` at a time."""
        outputs = [self.run(self.feed(examples[start : start + batch_size])) for start in range(0, len(examples), batch_size)]
        if not outputs:
            return np.zeros((0, len(self.class_names or [])), dtype=np.float32)
        return np.concatenate(outputs, axis=0)


def pad_sequences(examples, length=None):
    """Stacks float32 series `[T_i, F]` into `[N, T, F]`, zero-padded after each one's end.

    Args:
        examples: a `[N, T, F]` array or a list of `[T_i, F]` arrays.
        length: the time axis to pad to; None pads to the longest series.

    Raises:
        ArtifactError: a series is longer than `length`.

    Example:
    >>> pad_sequences([np.ones((2, 1)), np.ones((3, 1))]).shape
    (2, 3, 1)
    """
    series = [np.asarray(item, dtype=np.float32) for item in examples]
    longest = max((len(item) for item in series), default=0)
    if length is None:
        length = longest
    elif longest > length:
        raise ArtifactError(f"a series has {longest} time steps; this model takes at most {length} (zero-padded)")
    features = series[0].shape[-1] if series else 0
    batch = np.zeros((len(series), length, features), dtype=np.float32)
    for index, item in enumerate(series):
        batch[index, : len(item)] = item
    return batch


def load_text_tokenizer(folder):
    """Returns the TensorFlow-free tokenizer in `folder/tokenizer/` (`kerasdl.tokenizer`).

    Raises:
        ArtifactError: the folder is missing or unreadable.
    """
    from kerasdl.tokenizer import load_tokenizer

    tokenizer_folder = os.path.join(os.fspath(folder), TOKENIZER_DIR)
    if not os.path.isdir(tokenizer_folder):
        raise ArtifactError(
            f"text model has no tokenizer folder at {tokenizer_folder}; it travels beside the model file "
            "(re-export it with python -m export.run)"
        )
    try:
        return load_tokenizer(tokenizer_folder)
    except (OSError, KeyError, ValueError) as error:
        raise ArtifactError(f"cannot read the tokenizer in {tokenizer_folder}: {error}; re-export the model") from None
