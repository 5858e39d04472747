"""The TF Serving SavedModel: `serving_default` (+ `image_bytes` for image models), warmup requests.

Every signature returns the same outputs (`kerasdl.contract.OUTPUT_NAMES`):
`probabilities` (softmax of the model's logits), `class_ids` (int64 argmax),
`class_names` (the predicted class's name), and, as TF's canned classifiers
did, `classes` (every class name, `[B, K]`) with `scores` (their
probabilities), so a client names every class without a side file. The
SavedModel is written with Keras' `ExportArchive` (what
`model.export(format="tf_saved_model")` uses) so that both signatures and the
lookup tables of TextVectorization are tracked.

Image models take raw pixels of any size and resize inside; `image_bytes`
decodes each file with `kerasdl.data.image_folder.decode_image_bytes` (the
training pipeline's decoder) and resizes it to the model's size with the same
bilinear `tf.image.resize`, so that images of different sizes share a batch.

Verification runs the SavedModel where TF Serving would: in a fresh process
that imports only TensorFlow and TF Text (`export.tfserving_check.run_fresh`), with
the TF1 loader and the "serve" tag. A graph that needs an op this process
registered by importing a Python package (keras-hub's TF Text, say) fails the
export there, instead of failing the user's TF Serving.
"""

import json
from pathlib import Path

import numpy as np

from export.tfserving_check import ServingSession, check_serving_outputs, run_fresh  # noqa: F401  (ServingSession: tools, tests)
from kerasdl.contract import IMAGE_BYTES_INPUT, IMAGE_BYTES_SIGNATURE, MODEL_CARD_FILE, image_size, input_spec
from kerasdl.heldout import encode_png

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
    for signature, runs in _feeds(job.source).items():
        feed = runs[0][0]
        for count in (1, WARMUP_BATCH):
            requests.append((signature, {key: value[:count] for key, value in feed.items()}))
    write_warmup(job.folder, job.name, requests)
    return {"signatures": signatures, "warmup": {"file": WARMUP_FILE, "requests": len(requests)}}


def verify(job):
    """Runs the SavedModel in a fresh TF-Serving-like process and compares every signature with Keras.

    `serving_default` gets the held-out raw examples (images grouped by size);
    `image_bytes` gets the held-out image files themselves (or lossless PNGs of
    the examples when the run kept no files), so decoding inside the signature
    is checked too. Returns parity rows.
    """
    from export.verify import compare, keras_probabilities

    metadata = job.metadata
    feeds = _feeds(job.source)
    runs = [(signature, feed) for signature, items in feeds.items() for feed, _ in items]
    outputs = run_fresh(job.folder, runs)
    references = {signature: job.expected for signature in feeds}
    if IMAGE_BYTES_SIGNATURE in feeds and job.source.encoded is None:
        # PNG is lossless, so the decoded pixels equal the rounded examples, and the
        # Keras reference on those pixels is exact.
        references[IMAGE_BYTES_SIGNATURE] = keras_probabilities(job.source.model, [_png_pixels(item) for item in job.source.examples], metadata)
    limit = job.tolerance(NAME)
    rows, position = [], 0
    for signature, items in feeds.items():
        probabilities = np.zeros((len(references[signature]), len(metadata["class_names"])), dtype="float32")
        problems = []
        for _, indices in items:
            answer = outputs[position]
            position += 1
            problem = check_serving_outputs(answer, metadata["class_names"])
            if problem:
                problems.append(problem)
            else:
                probabilities[indices] = answer["probabilities"]
        result = compare(NAME, signature, probabilities, references[signature], limit, "; ".join(sorted(set(problems))))
        result.ok = result.ok and not problems
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
        import tensorflow_text  # noqa: F401  (text SavedModels use TF Text's ops, which TF Serving links too)

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

        signature = self.loaded.signatures["serving_default"]
        name = self.input_spec["name"]
        if self.modality == "image":
            from kerasdl.runtime.images import run_grouped

            # Raw pixels of any size: one call per size (the model resizes inside).
            return run_grouped(list(examples), lambda batch: signature(**{name: tf.constant(batch)})["probabilities"].numpy())
        if self.modality == "text":
            batch = tf.constant([str(item) for item in examples])
        elif self.modality == "sequence":
            batch = tf.constant(pad_sequences(examples))
        else:
            batch = tf.constant(np.asarray(examples, dtype="float32"))
        return signature(**{name: batch})["probabilities"].numpy()

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

    from kerasdl.data.image_folder import decode_image_bytes

    spec = input_spec(metadata)
    call = raw_model_fn(model, metadata)
    class_names = tf.constant([str(name) for name in metadata["class_names"]])

    def predict_outputs(inputs):
        logits = call(inputs)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        # TF's canned classifiers' outputs: every class name per example, with its score.
        classes = tf.tile(class_names[tf.newaxis, :], [tf.shape(probabilities)[0], 1])
        return {"probabilities": probabilities, "class_ids": class_ids, "class_names": tf.gather(class_names, class_ids),
                "classes": classes, "scores": tf.identity(probabilities)}

    archive = keras.export.ExportArchive()
    # Tracking the model explicitly also tracks lookup tables (TextVectorization).
    archive.track(model)
    dtype = tf.string if spec["dtype"] == "string" else tf.float32
    archive.add_endpoint("serving_default", predict_outputs, input_signature=[tf.TensorSpec(spec["shape"], dtype, name=spec["name"])])
    signatures = {"serving_default": _describe(spec["name"], spec["dtype"], spec["shape"])}

    if metadata["modality"] == "image":
        channels = spec["shape"][-1]
        size = image_size(metadata)
        if size is None:
            from export.errors import ExportError

            raise ExportError("the image model names no size to resize to (metadata input.image_size); "
                              "train it with python -m training.run, or save it with that key")

        def decode(encoded):
            # The training pipeline's decoder (`channels` turns grey into RGB or RGB(A) into
            # grey as the model needs), then the model's own bilinear resize, so that images of
            # any size share one batch; the model's `Resizing` is then the identity.
            image = tf.cast(decode_image_bytes(encoded, channels), tf.float32)
            image = tf.image.resize(image, size, method="bilinear")
            return tf.ensure_shape(image, [size[0], size[1], channels])

        def predict_image_bytes(image_bytes):
            images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([size[0], size[1], channels], tf.float32))
            return predict_outputs(images)

        archive.add_endpoint(
            IMAGE_BYTES_SIGNATURE, predict_image_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)]
        )
        signatures[IMAGE_BYTES_SIGNATURE] = _describe(IMAGE_BYTES_INPUT, "string", [None])

    archive.write_out(str(directory), verbose=False)
    return signatures


def _feeds(source):
    """`{signature: [(feed, indices)]}` of the held-out examples, for verification and warmup.

    Images of different sizes cannot share a tensor, so `serving_default` gets
    one feed per size; `indices` say which examples each feed holds.
    """
    spec = input_spec(source.metadata)
    examples = source.examples
    modality = source.metadata["modality"]
    every = np.arange(len(examples))
    if modality == "text":
        return {"serving_default": [({spec["name"]: np.array([text.encode("utf-8") for text in examples], dtype=object)}, every)]}
    if modality == "sequence":
        from kerasdl.runtime import pad_sequences

        return {"serving_default": [({spec["name"]: pad_sequences(examples)}, every)]}
    if modality != "image":
        return {"serving_default": [({spec["name"]: np.asarray(np.stack(list(examples)), dtype="float32")}, every)]}
    from kerasdl.runtime.images import shape_groups

    images = list(examples)
    feeds = {"serving_default": [({spec["name"]: np.stack([np.asarray(images[index], dtype="float32") for index in indices])}, np.asarray(indices))
                                 for _, indices in shape_groups(images)]}
    encoded = source.encoded if source.encoded is not None else [encode_png(_png_pixels(image)) for image in images]
    feeds[IMAGE_BYTES_SIGNATURE] = [({IMAGE_BYTES_INPUT: np.array(list(encoded), dtype=object)}, every)]
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
            "classes": {"dtype": "string", "shape": [None, "num_classes"]},
            "scores": {"dtype": "float32", "shape": [None, "num_classes"]},
        },
    }
