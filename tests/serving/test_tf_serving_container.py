"""The deploy files and the client against a real TF Serving container (needs a Docker engine)."""

import shutil
import subprocess
import time

import numpy as np
import pytest

from conftest import free_port
from serving import deploy
from serving.client import GrpcClient, RestClient, ServingError


def _docker_ready():
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return "no Docker engine (`docker info` fails)"
    if subprocess.run(["docker", "image", "inspect", deploy.DEFAULT_IMAGE], capture_output=True).returncode != 0:
        pulled = subprocess.run(["docker", "pull", deploy.DEFAULT_IMAGE], capture_output=True, timeout=600)
        if pulled.returncode != 0:
            return f"{deploy.DEFAULT_IMAGE} is not available locally and cannot be pulled"
    return None


@pytest.fixture
def docker_engine():
    reason = _docker_ready()
    if reason:
        pytest.skip(reason)


# `docker_engine` comes first so that the skip happens before the exports are built.
def test_tf_serving_serves_the_export(docker_engine, exports, tmp_path, onnx_reference):
    base = tmp_path / "exports"
    shutil.copytree(exports / "cnn", base / "cnn")
    written, _ = deploy.generate(base, tmp_path / "deploy", policy="latest", label_values=["stable=1"])
    command = deploy.docker_run_command(str(base), str(tmp_path / "deploy"), deploy.DEFAULT_IMAGE, deploy.server_flags(True))
    grpc_port, rest_port = free_port(), free_port()
    command[command.index("8500:8500")] = f"127.0.0.1:{grpc_port}:8500"
    command[command.index("8501:8501")] = f"127.0.0.1:{rest_port}:8501"
    name = f"kerasdl-test-{rest_port}"
    command[command.index("kerasdl-serving")] = name
    command.insert(2, "-d")
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    try:
        rest = RestClient(f"http://127.0.0.1:{rest_port}", timeout=5, retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                if rest.status("cnn")["model_version_status"][0]["state"] == "AVAILABLE":
                    break
            except ServingError:
                pass
            assert time.monotonic() < deadline, subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr[-3000:]
            time.sleep(1)
        images = np.random.default_rng(9).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        expected = onnx_reference("cnn", 1, {"images": images})
        answer = rest.predict("cnn", instances=images.tolist(), label="stable")
        np.testing.assert_allclose([row["probabilities"] for row in answer["predictions"]], expected, atol=1e-4)
        outputs = GrpcClient(f"127.0.0.1:{grpc_port}", timeout=10).predict("cnn", {"images": images})
        np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-4)
        with pytest.raises(ServingError, match="HTTP 404"):
            rest.predict("cnn", instances=images.tolist(), version=9)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
