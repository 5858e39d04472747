"""Tiny exported models (CONTRACTS.md section 5) and a running edge server for the serving tests.

The fixtures write `exports/<name>/<version>/` the way the export stage does:
a SavedModel with `serving_default` and `image_bytes` signatures, and a
`model.onnx` with a softmax `probabilities` output and the contract's
`metadata_props`. They are session-scoped: building them costs seconds.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
CIFAR_JPG = SHARED_DATA / "cifar10-test-jpg"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TEXT_VOCABULARY = ["", "[UNK]", "the", "a", "film", "good", "bad", "great", "awful", "movie", "is", "not"]
TEXT_SEQUENCE_LENGTH = 8


def free_port():
    return free_ports(1)[0]


def _write_onnx(keras_model, path, input_name, metadata):
    """Exports `keras_model` (probabilities out) to ONNX with the contract's names and metadata_props."""
    import onnx

    temporary = str(path) + ".raw.onnx"
    # Keras exports only models that have been called once.
    keras_model(np.zeros((1,) + tuple(keras_model.input_shape[1:]), keras_model.inputs[0].dtype))
    keras_model.export(temporary, format="onnx", verbose=False)
    model_proto = onnx.load(temporary)
    os.remove(temporary)
    graph = model_proto.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: "probabilities"}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    graph.input[0].name = input_name
    graph.output[0].name = "probabilities"
    for key, value in metadata.items():
        model_proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))


def _build_image_export(folder, seed):
    import keras
    import tensorflow as tf

    from kerasdl.data.image_folder import decode_image_bytes
    from kerasdl.models import cnn

    keras.utils.set_random_seed(seed)
    logits_model = cnn(input_shape=(32, 32, 3), num_classes=10, filters=(4, 8), dense_units=16, dropout_rate=0.0)
    # Random pixels in 0-255 give large activations; scale the weights so the
    # softmax is not saturated and probabilities differ between inputs.
    logits_model(np.zeros((1, 32, 32, 3), "float32"))
    names = tf.constant(CIFAR_CLASSES)

    def outputs(images):
        probabilities = tf.nn.softmax(logits_model(images, training=False) / 100.0, axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        classes = tf.tile(names[tf.newaxis], [tf.shape(probabilities)[0], 1])
        return {"probabilities": probabilities, "class_ids": class_ids, "class_names": tf.gather(names, class_ids),
                "classes": classes, "scores": tf.identity(probabilities)}

    def image_bytes(image_bytes):
        def decode(data):
            image = decode_image_bytes(data, 3)  # kerasdl's decoder: the pixels the ONNX backend decodes
            return tf.cast(tf.image.resize(image, (32, 32)), tf.float32)

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([32, 32, 3], tf.float32))
        return outputs(images)

    # keras.export.ExportArchive, as the export stage writes it: TF Serving's TF1 loader can read it
    # (a plain tf.Module holding a Keras 3 model saves variables that loader cannot find).
    archive = keras.export.ExportArchive()
    archive.track(logits_model)
    archive.add_endpoint("serving_default", outputs, input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
    archive.add_endpoint("image_bytes", image_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    folder.mkdir(parents=True)
    archive.write_out(str(folder), verbose=False)
    inputs = keras.Input((32, 32, 3), name="images")
    probabilities = keras.layers.Softmax(name="probabilities")(
        keras.layers.Rescaling(1 / 100.0, name="temperature")(logits_model(inputs))
    )
    _write_onnx(
        keras.Model(inputs, probabilities),
        folder / "model.onnx",
        "images",
        {
            "class_names": json.dumps(CIFAR_CLASSES),
            "modality": "image",
            "input_spec": json.dumps({"name": "images", "dtype": "float32", "shape": [None, 32, 32, 3]}),
            "preprocessing": json.dumps({"inside_model": "none"}),
        },
    )


def text_tokenizer():
    from kerasdl.tokenizer import TextVectorizationTokenizer

    return TextVectorizationTokenizer(TEXT_VOCABULARY, sequence_length=TEXT_SEQUENCE_LENGTH)


def _build_text_export(folder):
    from kerasdl.tokenizer import write_tokenizer_files

    import keras

    keras.utils.set_random_seed(3)
    token_ids = keras.Input((TEXT_SEQUENCE_LENGTH,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(len(TEXT_VOCABULARY), 8, name="embedding")(token_ids)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    logits = keras.layers.Dense(2, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities")(keras.layers.Rescaling(20.0, name="sharpen")(logits))
    folder.mkdir(parents=True)
    _write_onnx(
        keras.Model(token_ids, probabilities),
        folder / "model.onnx",
        "token_ids",
        {
            "class_names": json.dumps(["negative", "positive"]),
            "modality": "text",
            "input_spec": json.dumps({"name": "text", "dtype": "string", "shape": [None]}),
        },
    )
    write_tokenizer_files(folder / "tokenizer", text_tokenizer())


def _export_with_the_export_cli(root, seed):
    """Publishes a tiny CNN with the real `python -m export.run`; returns the version folder."""
    import keras

    from kerasdl.artifact import save_model
    from kerasdl.models import cnn

    keras.utils.set_random_seed(seed)
    model = cnn(input_shape=(32, 32, 3), num_classes=10, filters=(4, 8), dense_units=16, dropout_rate=0.0)
    model(np.zeros((1, 32, 32, 3), "float32"))
    metadata = {
        "model": "cnn",
        "modality": "image",
        "class_names": CIFAR_CLASSES,
        "input": {"shape": [32, 32, 3], "dtype": "float32", "value_range": [0, 255]},
        "output": "logits",
    }
    save_model(model, root / "cnn_v2.keras", metadata)
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "export.run", str(root / "cnn_v2.keras"), "--base", str(root / "spare"), "--version", "2"],
        cwd=str(REPO_ROOT), env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "spare" / "cnn" / "2"


@pytest.fixture(scope="session")
def built_exports(tmp_path_factory):
    """`{"base": exports/, "cnn_v2": a second CNN version kept aside for hot-reload tests}`.

    Version 1 and the text model are built here (the contract's layout, by
    hand); version 2 is published by the real export command when it exists,
    so the edge server is also tested on what `python -m export.run` writes.
    """
    root = tmp_path_factory.mktemp("serving")
    base = root / "exports"
    _build_image_export(base / "cnn" / "1", seed=1)
    if (REPO_ROOT / "export" / "run.py").is_file():
        cnn_v2 = _export_with_the_export_cli(root, seed=2)
    else:
        cnn_v2 = root / "spare" / "cnn_v2"
        _build_image_export(cnn_v2, seed=2)
    _build_text_export(base / "text" / "1")
    return {"base": base, "cnn_v2": cnn_v2, "root": root}


@pytest.fixture(scope="session")
def exports(built_exports):
    return built_exports["base"]


@pytest.fixture(scope="session")
def onnx_reference(exports):
    """In-process onnxruntime answers: `reference(model, version, feed) -> probabilities`."""
    import onnxruntime

    sessions = {}

    def reference(model, version, feed, base=None):
        path = str(Path(base or exports) / model / str(version) / "model.onnx")
        if path not in sessions:
            sessions[path] = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return sessions[path].run(["probabilities"], feed)[0]

    return reference


class EdgeProcess:
    def __init__(self, base, extra_args=()):
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.base = Path(base)
        self.log_path = self.base.parent / f"edge-{self.rest_port}.log"
        command = [
            sys.executable, "-m", "serving.edge", str(base),
            "--port", str(self.rest_port), "--grpc-port", str(self.grpc_port), "--poll-seconds", "0.3",
            *extra_args,
        ]
        environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=str(REPO_ROOT), env=environment, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self._wait_ready()

    def _wait_ready(self):
        import requests

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"edge server exited with {self.process.returncode}: {self.logs()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"edge server did not become ready: {self.logs()}")

    def logs(self):
        self.log.flush()
        return self.log_path.read_text()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def edge(exports):
    """The edge server (ONNX backend, batching on) serving `exports`, as a subprocess on free ports."""
    server = EdgeProcess(exports, ["--max-body-bytes", "2000000", "--max-elements", str(EDGE_MAX_ELEMENTS), "--label", "cnn:stable=1"])
    yield server
    server.stop()


# The edge fixture's --max-elements: 650 CIFAR images' worth of values.
EDGE_MAX_ELEMENTS = 2_000_000
HALF_PLUS_TWO = "saved_model_half_plus_two_2_versions"
HALF_PLUS_THREE = "saved_model_half_plus_three"


@pytest.fixture(scope="session")
def tf_serving_base(built_exports):
    """A base path in TF Serving's test layout: half_plus_two (versions 123 and 124, zero-padded
    folders), half_plus_three (123), and the CNN export's version 1 (SavedModel and ONNX)."""
    from tf1_models import build_half_plus

    base = built_exports["root"] / "tf_serving"
    build_half_plus(base / HALF_PLUS_TWO / "00000123", b=2.0, c=3.0)
    build_half_plus(base / HALF_PLUS_TWO / "00000124", b=2.0, c=3.0)
    build_half_plus(base / HALF_PLUS_THREE / "00000123", b=3.0, c=4.0)
    shutil.copytree(built_exports["base"] / "cnn" / "1", base / "cnn" / "1")
    return base


@pytest.fixture(scope="session")
def edge_savedmodel(tf_serving_base):
    """The edge server on the SavedModel backend (TF1 graphs and the CNN's SavedModel), as a subprocess."""
    server = EdgeProcess(tf_serving_base, ["--backend", "savedmodel", "--label", f"{HALF_PLUS_TWO}:Version_Label=123"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cifar_jpegs():
    """A few CIFAR-10 test JPEGs as `(class_name, bytes)`."""
    if not CIFAR_JPG.is_dir():
        pytest.skip(f"{CIFAR_JPG} is absent (the shared datasets are not mounted)")
    items = []
    for class_name in ("airplane", "cat", "ship", "truck"):
        for path in sorted((CIFAR_JPG / class_name).glob("*.jpg"))[:2]:
            items.append((class_name, path.read_bytes()))
    return items


def decode_jpeg(data):
    """Pillow decode as the ONNX backend does it: RGB, float32 [H, W, 3]."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def copy_version(source, model_base, version):
    """Publishes `source` as `model_base/<version>` atomically (temp folder + rename), like the export stage."""
    temporary = Path(model_base) / f".tmp-{version}-copy"
    shutil.copytree(source, temporary)
    os.replace(temporary, Path(model_base) / str(version))
