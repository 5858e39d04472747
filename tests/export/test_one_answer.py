"""One model, one answer (issue 15): the same decode and resize on every path, artifacts that load where
TF Serving runs them, and outputs that name every class.

- Decoding: TensorFlow (training, the SavedModel) and `kerasdl.runtime.images` (ONNX, LiteRT, the edge
  server, export.predict) give identical pixels for real JPEG and PNG files.
- Resizing: the image models take any size and resize inside, exactly as the training pipeline resizes;
  the ONNX graph carries the same `Resize` (half-pixel), and nothing outside the artifacts resizes.
- Loading: the SavedModel is verified in a fresh process with only TensorFlow and TF Text; the old
  in-process check passes a SavedModel whose ops this process happened to register, the new one fails it.
- Outputs: `classes` [B, K] with `scores` [B, K] in every signature and runner answer.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _png(array, mode=None):
    from PIL import Image

    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _test_images():
    """Real photos (JPEG, many sizes), CIFAR JPEGs, and PNGs of every colour mode."""
    rng = np.random.default_rng(0)
    files = []
    for folder, step in ((SHARED_DATA / "hymenoptera" / "val" / "bees", 9), (SHARED_DATA / "cifar10-test-jpg" / "cat", 50)):
        if folder.is_dir():
            files += [path.read_bytes() for path in sorted(folder.iterdir())[::step]]
    colour = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    pngs = [_png(colour, mode) for mode in (None, "RGBA", "L", "LA", "P")]
    pngs.append(_png(rng.integers(0, 65536, (9, 11)).astype(np.uint16)))
    return files + pngs


@pytest.mark.parametrize("channels", [3, 1])
def test_tensorflow_and_the_runtime_decode_identical_pixels(channels):
    import tensorflow as tf

    from kerasdl.data.image_folder import decode_image_bytes
    from kerasdl.runtime.images import decode_image

    images = _test_images()
    assert len(images) >= 6
    for data in images:
        expected = decode_image_bytes(tf.constant(data), channels).numpy().astype("float32")
        actual = decode_image(data, channels)
        assert actual.shape == expected.shape and actual.dtype == np.float32
        assert np.array_equal(actual, expected)


def test_tensorflows_default_jpeg_decoder_is_what_differed(shared_data):
    # The regression: the pipeline decoded with tf.io.decode_image (fast DCT), up to 20 levels
    # away from what Pillow gives the ONNX and edge paths on the same photo.
    import tensorflow as tf

    from kerasdl.runtime.images import decode_image

    data = sorted((shared_data / "hymenoptera" / "val" / "ants").iterdir())[0].read_bytes()
    old = tf.io.decode_image(data, channels=3, expand_animations=False).numpy().astype("float32")
    assert np.abs(old - decode_image(data, 3)).max() >= 3


def test_a_broken_image_is_one_line(monkeypatch):
    from PIL import Image

    from kerasdl.runtime.images import ImageDecodeError, decode_image

    with pytest.raises(ImageDecodeError, match="not a decodable JPEG/PNG image"):
        decode_image(b"not an image", 3)
    truncated = _png(np.zeros((40, 40, 3), np.uint8))[:60]
    with pytest.raises(ImageDecodeError, match="broken image"):
        decode_image(truncated, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40x40 is then a decompression bomb
    with pytest.raises(ImageDecodeError, match="too large to decode"):
        decode_image(_png(np.zeros((40, 40, 3), np.uint8)), 3)


@pytest.mark.parametrize("builder", ["mlp", "cnn", "resnet50"])
def test_image_models_take_any_size_and_resize_as_the_pipeline_does(builder, shared_data):
    import keras
    import tensorflow as tf

    from kerasdl.data.image_folder import decode_image_bytes
    from kerasdl.models.cnn import cnn
    from kerasdl.models.mlp import mlp
    from kerasdl.models.resnet50 import resnet50

    keras.utils.set_random_seed(0)
    build = {
        "mlp": lambda: mlp(input_shape=(24, 20, 3), num_classes=3, hidden_units=8, normalization_mean=[120.0] * 3, normalization_variance=[3000.0] * 3),
        "cnn": lambda: cnn(input_shape=(24, 20, 3), num_classes=3, filters=(4,), dense_units=8, normalization_mean=[120.0] * 3, normalization_variance=[3000.0] * 3),
        "resnet50": lambda: resnet50(input_shape=(32, 32, 3), num_classes=3, weights=None, image_size=32),
    }[builder]
    model = build()
    assert tuple(model.input_shape) == (None, None, None, 3)
    size = (24, 20) if builder != "resnet50" else (32, 32)
    for path in sorted((shared_data / "hymenoptera" / "val" / "ants").iterdir())[:3]:
        raw = decode_image_bytes(tf.constant(path.read_bytes()), 3)
        # What training fed the model: the pipeline's decode + resize (kerasdl.data.image_folder.decode_image).
        pipeline = tf.image.resize(raw, size, method="bilinear")[tf.newaxis]
        served = tf.cast(raw, tf.float32)[tf.newaxis]
        assert served.shape[1:3] != size
        np.testing.assert_array_equal(model(served).numpy(), model(pipeline).numpy())


def test_features_models_keep_their_plain_input():
    from kerasdl.models.mlp import mlp

    model = mlp(input_shape=(6,), num_classes=2, hidden_units=4)
    assert tuple(model.input_shape) == (None, 6)
    assert "resize" not in [layer.name for layer in model.layers]


def test_onnx_resizes_with_tf_image_resize_coordinates_and_takes_any_size(cnn_export, cnn_run, helpers, shared_data):
    import onnx

    from kerasdl.runtime.onnx import OnnxRunner

    path = cnn_export.version_dir / "model.onnx"
    graph = onnx.load(str(path)).graph
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    assert len(resizes) == 1
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in resizes[0].attribute}
    assert attributes["coordinate_transformation_mode"] == b"half_pixel" and attributes["mode"] == b"linear"
    shape = [dim.dim_param or dim.dim_value for dim in graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["batch", "height", "width", 3]
    # Raw photos of many sizes, straight from their files: ONNX equals Keras on every one.
    runner = OnnxRunner(path)
    photos = [runner.decode_images([item.read_bytes()])[0] for item in sorted((shared_data / "hymenoptera" / "val" / "bees").iterdir())[:6]]
    assert len({photo.shape for photo in photos}) > 1
    expected = helpers.keras_reference(cnn_run, photos)
    np.testing.assert_allclose(runner.predict(photos), expected, atol=1e-4)


def test_classifier_outputs_name_every_class():
    from kerasdl.runtime import classifier_outputs

    outputs = classifier_outputs(np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]]), ["-1", "1", "2"])
    assert outputs["class_ids"].tolist() == [1, 0]
    assert outputs["class_names"].tolist() == [b"1", b"-1"]
    assert outputs["classes"].tolist() == [[b"-1", b"1", b"2"]] * 2
    np.testing.assert_array_equal(outputs["scores"], outputs["probabilities"])
    with pytest.raises(ValueError, match="do not fit 2 class names"):
        classifier_outputs(np.ones((1, 3)), ["a", "b"])


def test_every_savedmodel_signature_names_every_class(cnn_export):
    from export.tfserving_check import ServingSession

    classes = json.loads((cnn_export.version_dir / "assets.extra" / "model_card.json").read_text())["class_names"]
    with ServingSession(cnn_export.version_dir) as session:
        for signature in ("serving_default", "image_bytes"):
            assert {"classes", "scores"} <= set(session.signatures[signature].outputs)
        outputs = session.run("serving_default", {"images": np.full((2, 40, 30, 3), 128.0, "float32")})
    assert [[name.decode() for name in row] for row in outputs["classes"]] == [classes, classes]
    np.testing.assert_array_equal(outputs["scores"], outputs["probabilities"])


# --- the SavedModel loads where TF Serving runs it -------------------------------------------------


def test_the_fresh_process_check_catches_what_the_in_process_check_missed(bert_export):
    """A BERT SavedModel needs TF Text's ops: the exporting process registered them (keras-hub
    imports tensorflow_text), so the old in-process check passed; a process without them is TF
    Serving without TF Text, and the fresh check fails there, naming the op."""
    from export.errors import VerificationError
    from export.tfserving_check import ServingSession, run_fresh

    folder = bert_export.version_dir
    feed = {"text": np.array([b"a gripping , funny film", b"dull"], dtype=object)}
    with ServingSession(folder) as session:  # the old verification: passes in this process
        assert session.run("serving_default", feed)["probabilities"].shape == (2, 2)
    (answer,) = run_fresh(folder, [("serving_default", feed)])  # TF + TF Text, as TF Serving links
    assert [name.decode() for name in answer["classes"][0]] == ["negative", "positive"]
    with pytest.raises(VerificationError, match=r"fails where TF Serving runs it.*Op type not registered"):
        run_fresh(folder, [("serving_default", feed)], block=("tensorflow_text",))


def test_the_fresh_process_imports_no_keras_and_refuses_what_it_blocks(mlp_export):
    from export.errors import VerificationError
    from export.tfserving_check import run_fresh

    feed = {"features": np.full((3, 6), 50.0, "float32")}
    (answer,) = run_fresh(mlp_export.version_dir, [("serving_default", feed)])
    assert answer["probabilities"].shape == (3, 3) and answer["classes"].shape == (3, 3)
    with pytest.raises(VerificationError, match="has no signature 'nope'"):
        run_fresh(mlp_export.version_dir, [("nope", feed)])


def test_bert_loads_in_new_processes_of_export_predict_and_the_edge_savedmodel_backend(bert_export):
    folder = bert_export.version_dir
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "export.predict", str(folder), "a gripping , funny film", "--json"],
        cwd=str(REPO_ROOT), env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    answer = json.loads(result.stdout)
    assert answer["format"] == "savedmodel" and set(answer["predictions"][0]["probabilities"]) == {"negative", "positive"}
    code = (
        "import json, numpy as np\n"
        "from serving.edge.backends.savedmodel import SavedModelBackend\n"
        f"backend = SavedModelBackend({str(folder)!r})\n"
        "outputs = backend.run('serving_default', {'text': np.array([b'dull'], dtype=object)})\n"
        "print(json.dumps({'classes': [[name.decode() for name in row] for row in outputs['classes']]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=str(REPO_ROOT), env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"classes": [["negative", "positive"]]}


# --- the raw examples a run keeps ------------------------------------------------------------------


def test_a_run_keeps_raw_held_out_examples_and_uint8_calibration(tmp_path):
    from kerasdl.data.source import splits_from_arrays
    from kerasdl.heldout import read_heldout, save_run_examples

    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (60, 9, 7, 3)).astype("float32")
    labels = np.repeat([0, 1, 2], 20)
    splits = splits_from_arrays(pixels, labels, ["a", "b", "c"], "image", "toy", 0.1, 0.2, seed=0)
    predicted = np.arange(splits.test.size) % 3
    manifest = save_run_examples(tmp_path, splits, predicted, calibration_examples=16)
    assert manifest["complete"] and manifest["count"] == splits.test.size == 12
    heldout = read_heldout(tmp_path, {"input": {"shape": [None, None, 3]}})
    # In-memory pixels are kept as lossless PNGs of the pixels rounded to 8 bits.
    test_pixels = np.stack([x for x, _ in splits.test.dataset.as_numpy_iterator()])
    np.testing.assert_array_equal(np.stack(heldout.examples), np.clip(np.round(test_pixels), 0, 255))
    assert heldout.encoded[0][:4] == b"\x89PNG" and heldout.predicted.tolist() == predicted.tolist()
    assert heldout.accuracy == float(np.mean(predicted == heldout.labels))
    with np.load(tmp_path / "data" / "calibration.npz") as calibration:
        assert calibration["x"].dtype == np.uint8 and calibration["x"].shape == (16, 9, 7, 3)
    # Fewer than all: evenly spaced over the stored examples, so every class shows up.
    some = read_heldout(tmp_path, {"input": {"shape": [None, None, 3]}}, limit=4)
    assert len(some.examples) == 4 and not some.complete
    assert some.names == [heldout.names[index] for index in (0, 4, 7, 11)]


def test_series_are_kept_without_their_padding(tmp_path):
    from kerasdl.data.source import splits_from_arrays
    from kerasdl.heldout import read_heldout, save_run_examples

    series = np.zeros((30, 10, 1), "float32")
    lengths = np.tile([3, 6, 10], 10)
    for index, length in enumerate(lengths):
        series[index, :length, 0] = np.arange(1, length + 1)
    splits = splits_from_arrays(series, np.tile([0, 1, 2], 10), ["x", "y", "z"], "sequence", "toy", 0.1, 0.3, seed=0)
    save_run_examples(tmp_path, splits, np.zeros(splits.test.size, int))
    heldout = read_heldout(tmp_path)
    assert sorted({len(item) for item in heldout.examples}) == [3, 6, 10]
    assert all(item[-1, 0] == len(item) for item in heldout.examples)
