"""The backends and the batcher, in-process."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
from serving.edge.backends import validate
from serving.edge.batching import Batcher
from serving.edge.errors import InvalidInput


def test_onnx_backend_imports_no_tensorflow(exports):
    code = (
        "import sys\n"
        "from serving.edge.server import build_server\n"
        f"service, app, grpc_server, port = build_server({str(exports)!r}, grpc_port=0, backend='onnx')\n"
        "import numpy as np\n"
        "version, signature, outputs = service.predict('cnn', {'images': np.zeros((1, 32, 32, 3), 'float32')})\n"
        "service.predict('text', {'text': np.array([b'a good film'], dtype=object)})\n"
        "leaked = sorted(name for name in sys.modules if name in ('tensorflow', 'keras') or name.startswith(('tensorflow.python', 'keras.')))\n"
        "assert not leaked, leaked\n"
        "print(outputs['class_names'][0].decode())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_savedmodel_backend_matches_onnx(exports, cifar_jpegs):
    from serving.edge.backends.onnx import OnnxBackend
    from serving.edge.backends.savedmodel import SavedModelBackend

    saved = SavedModelBackend(exports / "cnn" / "1")
    onnx = OnnxBackend(exports / "cnn" / "1")
    assert sorted(saved.signatures) == sorted(onnx.signatures) == ["image_bytes", "serving_default"]
    for name in saved.signatures:
        assert saved.signatures[name].inputs == onnx.signatures[name].inputs
        assert sorted(saved.signatures[name].outputs) == sorted(onnx.signatures[name].outputs)
    images = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    from_saved = saved.run(*saved.prepare("serving_default", {"images": images}))
    from_onnx = onnx.run(*onnx.prepare("serving_default", {"images": images}))
    np.testing.assert_allclose(from_saved["probabilities"], from_onnx["probabilities"], atol=1e-5)
    assert from_saved["class_names"].tolist() == from_onnx["class_names"].tolist()
    jpegs = np.array([data for _, data in cifar_jpegs], dtype=object)
    decoded_saved = saved.run(*saved.prepare("image_bytes", {"image_bytes": jpegs}))
    decoded_onnx = onnx.run(*onnx.prepare("image_bytes", {"image_bytes": jpegs}))
    # TensorFlow (accurate DCT) and kerasdl.runtime.images decode the same pixels.
    np.testing.assert_allclose(decoded_saved["probabilities"], decoded_onnx["probabilities"], atol=1e-5)


def test_both_backends_serve_the_export_command_output(built_exports):
    """Version 2 comes from `python -m export.run` (when present): both backends agree on it."""
    from serving.edge.backends.onnx import OnnxBackend
    from serving.edge.backends.savedmodel import SavedModelBackend

    folder = built_exports["cnn_v2"]
    saved, onnx = SavedModelBackend(folder), OnnxBackend(folder)
    assert sorted(saved.signatures) == sorted(onnx.signatures) == ["image_bytes", "serving_default"]
    assert saved.signatures["serving_default"].inputs == onnx.signatures["serving_default"].inputs
    images = np.random.default_rng(8).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    from_saved = saved.run(*saved.prepare("serving_default", {"images": images}))
    from_onnx = onnx.run(*onnx.prepare("serving_default", {"images": images}))
    np.testing.assert_allclose(from_saved["probabilities"], from_onnx["probabilities"], atol=1e-4)
    assert from_saved["class_names"].tolist() == from_onnx["class_names"].tolist()


def test_savedmodel_backend_serves_any_savedmodel(tmp_path):
    """A plain tf.Module (not kerasdl) with its own signature names and outputs."""
    import tensorflow as tf
    from starlette.testclient import TestClient

    from serving.edge.server import build_server

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2.0, "total": tf.reduce_sum(x, axis=1)}

    module = Doubler()
    tf.saved_model.save(module, str(tmp_path / "doubler" / "7"), signatures={"serving_default": module.serve})
    service, app, grpc_server, port = build_server(tmp_path, grpc_port=-1, backend="auto")
    client = TestClient(app)
    answer = client.post("/v1/models/doubler:predict", json={"instances": [[1.0, 2.0], [3.0, 4.0]]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [{"y": [2.0, 4.0], "total": 3.0}, {"y": [6.0, 8.0], "total": 7.0}]}
    assert client.post("/v1/models/doubler:predict", json={"inputs": {"x": [[1.0, 2.0]]}}).json() == {"outputs": {"y": [[2.0, 4.0]], "total": [3.0]}}
    assert client.get("/v1/models/doubler").json()["model_version_status"][0]["version"] == "7"
    answer = client.post("/v1/models/doubler:predict", json={"instances": [[1.0, 2.0, 3.0]]})
    assert answer.status_code == 400
    assert answer.json() == {"error": "input 'x' must have shape [-1,2], got [1,3]"}


def test_batcher_combines_requests_and_keeps_rows_apart():
    calls = []
    release = threading.Event()

    def run(inputs):
        release.wait(5)
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 10, "row_sum": inputs["x"].sum(axis=1)}

    batcher = Batcher(max_batch_size=8, batch_timeout_s=0.5)
    requests = [np.full((size, 2), index, dtype=np.float32) for index, size in enumerate([1, 3, 2, 2, 4])]
    futures = [batcher.submit("model", run, {"x": x}) for x in requests]
    release.set()
    for x, future in zip(requests, futures):
        result = future.result(10)
        np.testing.assert_array_equal(result["y"], x * 10)
        np.testing.assert_array_equal(result["row_sum"], x.sum(axis=1))
    # The first run may start alone; the rest are grouped without exceeding 8 rows.
    assert sum(calls) == 12 and max(calls) <= 8 and len(calls) < 5


def test_a_request_that_finds_the_model_idle_runs_at_once_in_its_own_thread():
    """No idle wait: a lone request is not held back for company, nor handed to another thread."""
    threads = []

    def run(inputs):
        threads.append(threading.current_thread())
        return {"y": inputs["x"] + 1}

    batcher = Batcher(max_batch_size=8)  # The default batch timeout: 0, as TF Serving's.
    assert batcher.batch_timeout_s == 0
    for value in (1.0, 2.0):
        assert batcher.run("model", run, {"x": np.array([[value]], np.float32)})["y"].tolist() == [[value + 1]]
    assert threads == [threading.current_thread()] * 2
    # Nothing is left behind: no queue, no worker thread.
    assert batcher.queue_count() == 0 and batcher.batch_sizes == {1: 2}


def test_requests_that_arrive_while_the_model_is_busy_run_as_one_batch():
    import concurrent.futures

    started, release, calls = threading.Event(), threading.Event(), []

    def run(inputs):
        calls.append(inputs["x"][:, 0].tolist())
        if len(calls) == 1:
            started.set()
            release.wait(10)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(max_batch_size=8)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.run, "model", run, {"x": np.array([[0.0]], np.float32)})
        assert started.wait(10)
        waiting = [pool.submit(batcher.run, "model", run, {"x": np.array([[value]], np.float32)}) for value in (1.0, 2.0, 3.0)]
        deadline = time.monotonic() + 5
        while batcher.queued_rows().get("", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher.queued_rows() == {"": 3}
        release.set()
        assert first.result(10)["y"].tolist() == [[0.0]]
        assert [future.result(10)["y"].tolist() for future in waiting] == [[[2.0]], [[4.0]], [[6.0]]]
    # The first ran alone at once; the three that queued behind it ran as one batch.
    assert calls[0] == [0.0] and sorted(calls[1]) == [1.0, 2.0, 3.0] and len(calls) == 2


def test_a_batch_timeout_makes_even_a_lone_request_wait_in_the_worker():
    threads = []

    def run(inputs):
        threads.append(threading.current_thread())
        return {"y": inputs["x"]}

    batcher = Batcher(max_batch_size=8, batch_timeout_s=0.01)
    batcher.run("model", run, {"x": np.zeros((1, 1), np.float32)})
    assert threads and threads[0].name == "batcher"


def test_a_negative_batch_timeout_is_refused():
    with pytest.raises(ValueError, match="batch_timeout_s must not be negative"):
        Batcher(batch_timeout_s=-0.001)


def test_batcher_reports_failures_to_every_request():
    def run(inputs):
        raise RuntimeError("model crashed")

    batcher = Batcher(max_batch_size=4, batch_timeout_s=0.05)
    futures = [batcher.submit("model", run, {"x": np.zeros((1, 2))}) for _ in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError, match="model crashed"):
            future.result(10)


def test_validate_names_the_problem():
    from serving.edge.backends import Signature, TensorSpec

    signature = Signature("serving_default", {"features": TensorSpec("features", "float32", (None, 4))}, {})
    with pytest.raises(InvalidInput, match=r"^missing input 'features' for signature 'serving_default'; expected: features$"):
        validate(signature, {})
    with pytest.raises(InvalidInput, match=r"^input 'features' must have shape \[-1,4\], got \[2,3\]$"):
        validate(signature, {"features": np.zeros((2, 3))})
    with pytest.raises(InvalidInput, match=r"^the request holds no examples"):
        validate(signature, {"features": np.zeros((0, 4))})


def test_batcher_bounds_its_queues_and_threads():
    """Inputs of many shapes (variable-length sequences) must not start a queue and a thread per shape."""
    import concurrent.futures

    release = threading.Event()

    def run(inputs):
        release.wait(10)
        return {"y": inputs["x"] * 2}

    def batcher_threads():
        return sum(thread.name == "batcher" for thread in threading.enumerate())

    before = batcher_threads()  # Other tests' batchers may still idle.
    batcher = Batcher(max_batch_size=8, batch_timeout_s=0.05, max_queues=3)
    requests = [np.full((1, length), length, dtype=np.float32) for length in range(1, 13)]
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(lambda x: batcher.submit("model", run, {"x": x}).result(10), x) for x in requests]
        deadline = time.monotonic() + 5
        while batcher.queue_count() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert batcher.queue_count() == 3
        assert batcher_threads() <= before + 3
        release.set()
        for x, future in zip(requests, futures):
            np.testing.assert_array_equal(future.result(10)["y"], x * 2)


def test_a_failing_request_fails_alone_in_its_batch():
    calls = []

    def run(inputs):
        calls.append(len(inputs["x"]))
        if np.any(inputs["x"] < 0):
            raise ValueError("negative input")
        return {"y": inputs["x"] + 1}

    batcher = Batcher(max_batch_size=8, batch_timeout_s=0.5)
    good, bad, other = (np.array([[value]], dtype=np.float32) for value in (1.0, -1.0, 2.0))
    futures = [batcher.submit("model", run, {"x": x}) for x in (good, bad, other)]
    assert futures[0].result(10)["y"].tolist() == [[2.0]]
    with pytest.raises(ValueError, match="negative input"):
        futures[1].result(10)
    assert futures[2].result(10)["y"].tolist() == [[3.0]]
    assert calls == [3, 1, 1, 1]  # One batch, then each request alone.


def _jpeg(seed):
    import io

    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_undecodable_image_fails_alone_on_the_savedmodel_backend(exports):
    import tensorflow as tf

    from serving.edge.backends.savedmodel import SavedModelBackend

    backend = SavedModelBackend(exports / "cnn" / "1")
    batcher = Batcher(max_batch_size=8, batch_timeout_s=0.5)
    good = np.array([_jpeg(1)], dtype=object)
    alone = backend.run("image_bytes", {"image_bytes": good})
    run = lambda inputs: backend.run("image_bytes", inputs)  # noqa: E731
    futures = [batcher.submit("cnn", run, {"image_bytes": items}) for items in (good, np.array([b"not an image"], dtype=object))]
    np.testing.assert_allclose(futures[0].result(30)["probabilities"], alone["probabilities"], atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError):
        futures[1].result(30)


def test_savedmodel_backend_falls_back_to_the_tf1_loader(exports, monkeypatch):
    # The conftest's CNN is written by keras.export.ExportArchive, as the export stage writes it.
    """A SavedModel that tf.saved_model.load refuses is loaded as TF Serving loads it."""
    import tensorflow as tf

    from serving.edge.backends.onnx import OnnxBackend
    from serving.edge.backends.savedmodel import SavedModelBackend

    def refuse(*args, **kwargs):
        raise ValueError("Shape must be rank 1 but is rank 0 for 'ParseExample/ParseExampleV2'")

    monkeypatch.setattr(tf.saved_model, "load", refuse)
    backend = SavedModelBackend(exports / "cnn" / "1")
    assert backend.loader == "tf1"
    assert sorted(backend.signatures) == ["image_bytes", "serving_default"]
    assert sorted(backend.signature_defs) == ["__saved_model_init_op", "image_bytes", "serving_default"]
    images = np.random.default_rng(6).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    expected = OnnxBackend(exports / "cnn" / "1").run("onnx", {"images": images})
    outputs = backend.run("serving_default", {"images": images})
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-5)
    assert outputs["class_names"].tolist() == expected["class_names"].tolist()


def test_tf1_graphs_load_with_the_session_loader(tf_serving_base):
    from serving.edge.backends.savedmodel import SavedModelBackend

    backend = SavedModelBackend(tf_serving_base / "saved_model_half_plus_three" / "00000123")
    assert backend.loader == "tf1"
    assert backend.signatures["regress_x_to_y"].method == "tensorflow/serving/regress"
    assert backend.signatures["serving_default"].strict is False
    assert backend.run("serving_default", {"x": np.array([1.0, 2.0], "float32")})["y"].tolist() == [3.5, 4.0]


def test_quiet_import_filter_drops_only_tensorflows_start_up_lines(capfd):
    import os

    from serving.edge.quiet import KNOWN_STARTUP_LINES, filtered_stderr

    noise = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1.2 30006 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
        b"E0000 00:00:1.2 30129 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    )
    real = b"E0000 00:00:1.3 30129 saver.cc:12] a real error\n"
    with filtered_stderr(KNOWN_STARTUP_LINES):
        os.write(2, noise + real)
    assert capfd.readouterr().err == real.decode()
    # When the block fails, nothing is hidden.
    with pytest.raises(RuntimeError), filtered_stderr(KNOWN_STARTUP_LINES):
        os.write(2, noise)
        raise RuntimeError("import failed")
    assert capfd.readouterr().err == noise.decode()
