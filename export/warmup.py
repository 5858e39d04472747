"""The TF Serving warmup file: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays these requests when it loads a model version, before it
marks the version available, so the first real request does not pay for graph
initialization. The file is a TFRecord of `PredictionLog` protos (the format
TF Serving's `saved_model_warmup` reads), one `PredictRequest` each.
"""

import os

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup(version_dir, model_name, requests):
    """Writes `requests` as the warmup file of the SavedModel in `version_dir`.

    Args:
        version_dir: the SavedModel folder.
        model_name: the TF Serving model name (`model_spec.name`).
        requests: a list of `(signature_name, {input_name: numpy array})`.

    Returns:
        The path of the file written.

    Example:
    >>> write_warmup("exports/cnn/.tmp-1-x", "cnn", [("serving_default", {"images": images[:1]})])
    'exports/cnn/.tmp-1-x/assets.extra/tf_serving_warmup_requests'
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = os.path.join(os.fspath(version_dir), WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for input_name, value in inputs.items():
                request.inputs[input_name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(path):
    """Returns the `PredictionLog` records of a warmup file (for checks and tests)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = []
    for serialized in tf.data.TFRecordDataset(os.fspath(path)).as_numpy_iterator():
        records.append(prediction_log_pb2.PredictionLog.FromString(serialized))
    return records
