"""Edge-server throughput and latency on the CNN, against in-process ONNX Runtime.

`run(quick)` exports the seed CNN (32x32x3, 10 classes, untrained weights: speed
does not depend on them) to ONNX in a temporary folder, then measures
requests/s and p50/p99 latency of one-image requests at concurrency 1, 8 and 32:

- `in_process`: `InferenceSession.run` called directly from N threads (the floor);
- `edge_batching`: the edge server (`python -m serving.edge`, REST) with dynamic batching;
- `edge_no_batching`: the same server with `--no-batching`.

Example:
>>> from benchmarks import serving_bench
>>> results = serving_bench.run(quick=True)
>>> results["edge_batching"]["8"]["requests_per_s"]
"""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CONCURRENCY = (1, 8, 32)
REPO_ROOT = Path(__file__).resolve().parents[1]


def _export_cnn(folder):
    import keras
    import onnx

    from kerasdl.models import cnn

    keras.utils.set_random_seed(0)
    logits_model = cnn(input_shape=(32, 32, 3), num_classes=10)
    inputs = keras.Input((32, 32, 3), name="images")
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits_model(inputs)))
    model(np.zeros((1, 32, 32, 3), "float32"))
    raw = folder / "raw.onnx"
    model.export(str(raw), format="onnx", verbose=False)
    proto = onnx.load(str(raw))
    raw.unlink()
    graph = proto.graph
    renames = {graph.input[0].name: "images", graph.output[0].name: "probabilities"}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    graph.input[0].name, graph.output[0].name = "images", "probabilities"
    for key, value in {
        "class_names": json.dumps([str(index) for index in range(10)]),
        "modality": "image",
        "input_spec": json.dumps({"name": "images", "dtype": "float32", "shape": [None, 32, 32, 3]}),
    }.items():
        proto.metadata_props.add(key=key, value=value)
    version = folder / "exports" / "cnn" / "1"
    version.mkdir(parents=True)
    onnx.save(proto, str(version / "model.onnx"))
    return folder / "exports"


def _measure(call, concurrency, total):
    """Runs `call(index)` `total` times from `concurrency` threads; returns throughput and latency percentiles."""
    latencies = [0.0] * total
    errors = []

    def one(index):
        started = time.perf_counter()
        try:
            call(index)
        except Exception as error:  # Counted, not raised: a benchmark reports failures.
            errors.append(str(error))
        latencies[index] = time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    milliseconds = np.asarray(latencies) * 1000
    return {
        "requests": total,
        "errors": len(errors),
        "requests_per_s": round(total / elapsed, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
    }


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _start_server(base, extra):
    import requests

    port = _free_port()
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.edge", str(base), "--port", str(port), "--grpc-port", "-1",
         "--poll-seconds", "0", "--log-level", "WARNING", *extra],
        cwd=str(REPO_ROOT), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the edge server did not start")


def run(quick=True):
    """Measures the CNN served in-process and by the edge server (batching on/off); returns a dict."""
    import onnxruntime
    import requests

    total = 200 if quick else 2000
    images = np.random.default_rng(0).uniform(0, 255, (64, 32, 32, 3)).astype(np.float32)
    bodies = [json.dumps({"instances": [image.tolist()]}) for image in images]
    results = {"model": "cnn (seed: 32x32x3, conv 32/64, dense 512)", "requests_per_level": total, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as folder:
        base = _export_cnn(Path(folder))
        session = onnxruntime.InferenceSession(str(base / "cnn" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        results["in_process"] = {
            str(level): _measure(lambda index: session.run(None, {"images": images[index % 64 : index % 64 + 1]}), level, total)
            for level in CONCURRENCY
        }
        for key, extra in (("edge_batching", ["--max-batch-size", "32", "--batch-timeout-ms", "2"]), ("edge_no_batching", ["--no-batching"])):
            process, url = _start_server(base, extra)
            local = threading.local()

            def call(index):
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                answer = local.session.post(
                    url + "/v1/models/cnn:predict", data=bodies[index % 64], headers={"Content-Type": "application/json"}, timeout=60
                )
                if answer.status_code != 200:
                    raise RuntimeError(answer.text)

            try:
                call(0)  # Warm up the session and the server.
                results[key] = {str(level): _measure(call, level, total) for level in CONCURRENCY}
            finally:
                process.terminate()
                process.wait(timeout=10)
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
