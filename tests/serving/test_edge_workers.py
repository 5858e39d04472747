"""`--workers 2`: two processes share the ports; answers, metrics summed over workers, hot reload in each, clean stop."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import EdgeProcess, copy_version

pytestmark = pytest.mark.skipif(not hasattr(__import__("socket"), "SO_REUSEPORT"), reason="SO_REUSEPORT is Linux-only")


def _records(server):
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def _predict_count(url):
    page = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=10).text
    pattern = r':tensorflow:serving:request_count_total\{API="Predict",entrypoint="(\w+)",model_name="cnn",status="OK",version="(\d)"\} (\S+)'
    return {(entrypoint, version): float(value) for entrypoint, version, value in re.findall(pattern, page)}


def test_two_workers_share_the_ports_metrics_and_reloads(built_exports, tmp_path, onnx_reference):
    import grpc

    from serving import protos

    base = tmp_path / "exports"
    shutil.copytree(built_exports["base"] / "cnn", base / "cnn")
    server = EdgeProcess(base, ["--workers", "2"])
    try:
        deadline = time.monotonic() + 60
        while sum(record.get("event") == "serving" for record in _records(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        (started,) = [record for record in _records(server) if record.get("event") == "workers"]
        assert started["count"] == 2 and len(started["pids"]) == 2
        # Without --threads, the workers share the cores out instead of each taking all of them.
        from serving.edge.workers import threads_per_worker

        for pid in started["pids"]:
            command = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            assert command[command.index("--threads") + 1] == str(threads_per_worker(2)) == str(max(1, os.cpu_count() // 2))
        images = np.random.default_rng(3).uniform(0, 255, (24, 32, 32, 3)).astype(np.float32)
        expected = onnx_reference("cnn", 1, {"images": images}, base=base)
        # A new connection per request: the kernel spreads connections over the workers.
        for image, probabilities in zip(images, expected):
            answer = requests.post(f"{server.url}/v1/models/cnn:predict", json={"instances": [image.tolist()]}, timeout=10)
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(answer.json()["predictions"][0]["probabilities"], probabilities, rtol=1e-5, atol=1e-7)
        modules = protos.load()
        for image, probabilities in zip(images[:6], expected[:6]):
            with grpc.insecure_channel(server.grpc_target) as channel:
                request = modules.predict_pb2.PredictRequest()
                request.model_spec.name = "cnn"
                request.inputs["images"].CopyFrom(protos.to_tensor_proto(image[None]))
                response = modules.prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
                np.testing.assert_allclose(protos.to_numpy(response.outputs["probabilities"])[0], probabilities, rtol=1e-5, atol=1e-7)
        served_by = {record["worker"] for record in _records(server) if record.get("event") == "request" and record.get("path") == "/v1/models/cnn:predict"}
        assert served_by == {0, 1}
        # Whichever worker answers the scrape, the counts are the sums over both.
        for _ in range(3):
            assert _predict_count(server.url) == {("REST", "1"): 24.0, ("GRPC", "1"): 6.0}

        copy_version(built_exports["cnn_v2"], base / "cnn", 2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            loaded = {record["worker"] for record in _records(server) if record.get("event") == "model_loaded" and record["version"] == 2}
            if loaded == {0, 1}:
                break
            time.sleep(0.2)
        assert loaded == {0, 1}
        for _ in range(10):
            status = requests.get(f"{server.url}/v1/models/cnn", timeout=10).json()["model_version_status"]
            assert [item["version"] for item in status] == ["2", "1"]
    finally:
        server.stop()
    assert server.process.returncode == 0
    for pid in started["pids"]:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    assert not os.path.exists(started["metrics_dir"])
