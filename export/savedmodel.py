"""The TF Serving SavedModel: `serving_default` (+ `image_bytes` for image models).

Every signature returns the same three outputs: `probabilities` (softmax of the
model's logits), `class_ids` (int64 argmax) and `class_names` (the metadata's
class names looked up in-graph), so a client never needs a side file.
"""

from kerasdl.contract import IMAGE_BYTES_INPUT, IMAGE_BYTES_SIGNATURE, input_spec


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
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "class_names": tf.gather(class_names, class_ids),
        }

    archive = keras.export.ExportArchive()
    # Tracking the model explicitly also tracks lookup tables (TextVectorization).
    archive.track(model)
    dtype = tf.string if spec["dtype"] == "string" else tf.float32
    archive.add_endpoint(
        "serving_default",
        predict_outputs,
        input_signature=[tf.TensorSpec(spec["shape"], dtype, name=spec["name"])],
    )
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
            images = tf.map_fn(
                decode,
                image_bytes,
                fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
            )
            return predict_outputs(images)

        archive.add_endpoint(
            IMAGE_BYTES_SIGNATURE,
            predict_image_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)],
        )
        signatures[IMAGE_BYTES_SIGNATURE] = _describe(IMAGE_BYTES_INPUT, "string", [None])

    archive.write_out(str(directory), verbose=False)
    return signatures


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
