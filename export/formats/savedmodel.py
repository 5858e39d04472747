"""The TF Serving SavedModel: `serving_default` (+ `image_bytes` for image models), warmup requests.

Every signature returns the same three outputs: `probabilities` (softmax of the
model's logits), `class_ids` (int64 argmax) and `class_names` (the metadata's
class names looked up in-graph), so a client never needs a side file. The
SavedModel is written with Keras' `ExportArchive` (what
`model.export(format="tf_saved_model")` uses) so that both signatures and the
lookup tables of TextVectorization are tracked, and it is verified the way TF
Serving loads it: the TF1 loader, "serve" tag, fresh graph and session.
"""

import json
from pathlib import Path

import numpy as np

from kerasdl.contract import IMAGE_BYTES_INPUT, IMAGE_BYTES_SIGNATURE, MODEL_CARD_FILE, OUTPUT_NAMES, input_spec

NAME = "savedmodel"
FILES = {"fp32": "saved_model.pb"}
# The SavedModel runs the same TensorFlow kernels as Keras, so it differs only by graph rewrites.
DEFAULT_TOLERANCE = 1e-5
TAKES_TOKEN_IDS = False
# Warmup requests: one single example and one small batch per signature, so
# TF Serving initializes both the batch-1 and the batched paths.
WARMUP_BATCH = 8


def write(job):
    """Writes the SavedModel and its warmup requests into `job.folder`; returns the card's sections."""
    from export.warmup import WARMUP_FILE, write_warmup

    signatures = export_savedmodel(job.source.model, job.metadata, job.folder)
    job.log(f"wrote SavedModel with signatures {', '.join(signatures)}")
    requests = []
    for signature, feed in _feeds(job.source).items():
        for count in (1, WARMUP_BATCH):
            requests.append((signature, {key: value[:count] for key, value in feed.items()}))
    write_warmup(job.folder, job.name, requests)
    return {"signatures": signatures, "warmup": {"file": WARMUP_FILE, "requests": len(requests)}}


def verify(job):
    """Reloads the SavedModel as TF Serving does and compares every signature with Keras; returns parity rows.

    `serving_default` gets the held-out raw examples; `image_bytes` gets them
    as PNG files, so the decoding inside the signature is checked too.
    """
    from export.errors import VerificationError
    from export.verify import compare, keras_probabilities

    metadata = job.metadata
    feeds = _feeds(job.source)
    references = {"serving_default": job.expected}
    if IMAGE_BYTES_SIGNATURE in feeds:
        # PNG is lossless, so the decoded pixels equal the (rounded) raw ones and
        # the Keras reference on those pixels is exact.
        references[IMAGE_BYTES_SIGNATURE] = keras_probabilities(job.source.model, _png_pixels(job.source.examples).astype("float32"), metadata)
    limit = job.tolerance(NAME)
    rows = []
    with ServingSession(job.folder) as session:
        missing = sorted(set(feeds) - set(session.signatures))
        if missing:
            raise VerificationError(f"the reloaded SavedModel lacks signatures {missing}")
        for signature, feed in feeds.items():
            outputs = session.run(signature, feed)
            problem = check_serving_outputs(outputs, metadata["class_names"])
            result = compare(NAME, signature, outputs["probabilities"], references[signature], limit, problem)
            result.ok = result.ok and not problem
            rows.append(result)
    return rows


def load(path):
    """Returns a `SavedModelRunner` for a version folder (or its `saved_model.pb`)."""
    return SavedModelRunner(path)


class SavedModelRunner:
    """A kerasdl SavedModel loaded with `tf.saved_model.load`: `predict` on raw examples, `predict_image_bytes`.

    The class names, modality and input spec come from the version folder's model card.

    Example:
    >>> runner = SavedModelRunner("exports/cnn/3")
    >>> runner.predict_image_bytes([open("photo.jpg", "rb").read()]).shape
    (1, 10)
    """

    kind = NAME

    def __init__(self, path):
        import tensorflow as tf

        from kerasdl.runtime import REEXPORT, ArtifactError

        directory = Path(path).parent if Path(path).is_file() else Path(path)
        card_path = directory / MODEL_CARD_FILE
        if not card_path.is_file():
            raise ArtifactError(f"{directory}: no {MODEL_CARD_FILE}; not a SavedModel written by python -m export.run")
        try:
            card = json.loads(card_path.read_text())
            self.input_spec, class_names, self.modality = card["input_spec"], card["class_names"], card["modality"]
        except (ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
            raise ArtifactError(f"{card_path}: damaged model card ({type(error).__name__}: {error}); {REEXPORT}") from None
        try:
            self.loaded = tf.saved_model.load(str(directory))
        except (OSError, ValueError, tf.errors.OpError) as error:  # a truncated saved_model.pb, missing variables/
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(f"{directory}: TensorFlow cannot load this SavedModel ({detail}); {REEXPORT}") from None
        self.class_names = [str(name) for name in class_names]
        self.input_shape = (card.get("input") or {}).get("shape")
        self.path = str(directory)

    def predict(self, examples):
        """Returns `serving_default`'s probabilities for raw examples (strings for text, arrays otherwise)."""
        import tensorflow as tf

        from kerasdl.runtime import pad_sequences

        if self.modality == "text":
            batch = tf.constant([str(item) for item in examples])
        elif self.modality == "sequence":
            batch = tf.constant(pad_sequences(examples))
        else:
            batch = tf.constant(np.asarray(examples, dtype="float32"))
        return self.loaded.signatures["serving_default"](**{self.input_spec["name"]: batch})["probabilities"].numpy()

    def predict_image_bytes(self, encoded):
        """Returns the `image_bytes` signature's probabilities for encoded JPEG/PNG images (the served path)."""
        import tensorflow as tf

        signature = self.loaded.signatures[IMAGE_BYTES_SIGNATURE]
        return signature(**{IMAGE_BYTES_INPUT: tf.constant(list(encoded))})["probabilities"].numpy()


def export_savedmodel(model, metadata, directory):
    """Writes `model` as a SavedModel with serving signatures into `directory`.

    Args:
        model: the Keras model (raw input in, logits out).
        metadata: its kerasdl metadata (modality, class names, input shape).
        directory: the SavedModel folder (the TF Serving version folder).

    Returns:
        `{signature: {"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}}`,
        the signatures written, for the model card.

    Example:
    >>> export_savedmodel(model, metadata, "exports/cnn/.tmp-1-x")
    {'serving_default': {'inputs': {'images': ...}, 'outputs': {...}}, 'image_bytes': {...}}
    """
    import keras
    import tensorflow as tf

    from export.text import raw_model_fn

    spec = input_spec(metadata)
    call = raw_model_fn(model, metadata)
    class_names = tf.constant([str(name) for name in metadata["class_names"]])

    def predict_outputs(inputs):
        logits = call(inputs)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "class_ids": class_ids, "class_names": tf.gather(class_names, class_ids)}

    archive = keras.export.ExportArchive()
    # Tracking the model explicitly also tracks lookup tables (TextVectorization).
    archive.track(model)
    dtype = tf.string if spec["dtype"] == "string" else tf.float32
    archive.add_endpoint("serving_default", predict_outputs, input_signature=[tf.TensorSpec(spec["shape"], dtype, name=spec["name"])])
    signatures = {"serving_default": _describe(spec["name"], spec["dtype"], spec["shape"])}

    if metadata["modality"] == "image":
        height, width, channels = spec["shape"][1:]

        def decode(encoded):
            # expand_animations=False makes GIFs a single frame and gives a 3-D
            # tensor; `channels` turns grey into RGB or RGB(A) into grey as the
            # model needs.
            image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
            image = tf.cast(image, tf.float32)
            if height is not None and width is not None:
                image = tf.image.resize(image, [height, width], method="bilinear")
                image = tf.ensure_shape(image, [height, width, channels])
            return image

        def predict_image_bytes(image_bytes):
            images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32))
            return predict_outputs(images)

        archive.add_endpoint(
            IMAGE_BYTES_SIGNATURE, predict_image_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)]
        )
        signatures[IMAGE_BYTES_SIGNATURE] = _describe(IMAGE_BYTES_INPUT, "string", [None])

    archive.write_out(str(directory), verbose=False)
    return signatures


class ServingSession:
    """A SavedModel loaded as TF Serving loads it: TF1 loader, "serve" tag, fresh graph and session.

    Use as a context manager; `run(signature, feed)` returns the signature's
    outputs as numpy arrays by output name.

    Example:
    >>> with ServingSession("exports/cnn/1") as session:
    ...     session.run("serving_default", {"images": images})["class_names"]
    """

    def __init__(self, directory):
        self.directory = str(directory)

    def __enter__(self):
        import tensorflow as tf

        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], self.directory)
        self.signatures = {name: signature for name, signature in self.meta_graph.signature_def.items() if not name.startswith("__")}
        return self

    def __exit__(self, *exc_info):
        self._session.close()

    def run(self, signature_name, feed):
        signature = self.signatures[signature_name]
        if sorted(feed) != sorted(signature.inputs):
            raise KeyError(f"signature {signature_name} takes {sorted(signature.inputs)}, got {sorted(feed)}")
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        feeds = {signature.inputs[name].name: value for name, value in feed.items()}
        return self._session.run(fetches, feeds)


def check_serving_outputs(outputs, class_names):
    """Returns "" when `class_ids`/`class_names` agree with `probabilities`, else what is wrong."""
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        return f"missing outputs {missing}"
    expected_ids = np.asarray(outputs["probabilities"]).argmax(axis=-1)
    if not np.array_equal(np.asarray(outputs["class_ids"]), expected_ids):
        return "class_ids != argmax(probabilities)"
    names = [value.decode() if isinstance(value, bytes) else str(value) for value in outputs["class_names"]]
    if names != [str(class_names[index]) for index in expected_ids]:
        return "class_names do not match class_ids"
    return ""


def encode_png(pixels):
    """Returns PNG bytes of a uint8 `[H, W, C]` image (C = 1 or 3)."""
    import io

    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _feeds(source):
    """`{signature: {input name: array}}` of the held-out examples, for verification and warmup."""
    spec = input_spec(source.metadata)
    examples = source.examples
    if isinstance(examples, list):
        raw = np.array([text.encode("utf-8") for text in examples], dtype=object)
    else:
        raw = np.asarray(examples, dtype="float32")
    feeds = {"serving_default": {spec["name"]: raw}}
    if source.metadata["modality"] == "image":
        feeds[IMAGE_BYTES_SIGNATURE] = {
            IMAGE_BYTES_INPUT: np.array([encode_png(image) for image in _png_pixels(examples)], dtype=object)
        }
    return feeds


def _png_pixels(examples):
    return np.clip(np.round(examples), 0, 255).astype("uint8")


def _describe(input_name, dtype, shape):
    return {
        "method_name": "tensorflow/serving/predict",
        "inputs": {input_name: {"dtype": dtype, "shape": shape}},
        "outputs": {
            "probabilities": {"dtype": "float32", "shape": [None, "num_classes"]},
            "class_ids": {"dtype": "int64", "shape": [None]},
            "class_names": {"dtype": "string", "shape": [None]},
        },
    }
