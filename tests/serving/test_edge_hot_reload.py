"""A new version appearing under the base path is served without a restart; half-written ones are not."""

import json
import shutil
import time

import numpy as np
import requests

from conftest import EdgeProcess, copy_version


def _wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_new_version_is_picked_up_and_half_written_ones_are_ignored(built_exports, tmp_path, onnx_reference):
    base = tmp_path / "exports"
    shutil.copytree(built_exports["base"] / "cnn", base / "cnn")
    server = EdgeProcess(base, ["--no-batching"])
    try:
        images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        url = f"{server.url}/v1/models/cnn"

        def predict(path=""):
            answer = requests.post(f"{url}{path}:predict", json={"instances": images.tolist()}, timeout=10)
            assert answer.status_code == 200, answer.text
            return np.array([row["probabilities"] for row in answer.json()["predictions"]])

        np.testing.assert_allclose(predict(), onnx_reference("cnn", 1, {"images": images}, base=base), rtol=1e-5, atol=1e-7)

        # Half-written exports: a temp folder holding a complete model, and an
        # integer folder without its model file yet. Neither may be served.
        shutil.copytree(built_exports["cnn_v2"], base / "cnn" / ".tmp-3-abcd")
        (base / "cnn" / "4" / "variables").mkdir(parents=True)
        time.sleep(1.0)  # Three polls.
        assert [item["version"] for item in requests.get(url, timeout=10).json()["model_version_status"]] == ["1"]

        copy_version(built_exports["cnn_v2"], base / "cnn", 2)
        assert _wait_for(lambda: requests.get(url, timeout=10).json()["model_version_status"][0]["version"] == "2")
        expected_v2 = onnx_reference("cnn", 2, {"images": images}, base=base)
        assert not np.allclose(expected_v2, onnx_reference("cnn", 1, {"images": images}, base=base), atol=1e-4)
        np.testing.assert_allclose(predict(), expected_v2, rtol=1e-5, atol=1e-7)
        # Version 1 stays addressable.
        np.testing.assert_allclose(predict("/versions/1"), onnx_reference("cnn", 1, {"images": images}, base=base), rtol=1e-5, atol=1e-7)
        assert [item["version"] for item in requests.get(url, timeout=10).json()["model_version_status"]] == ["2", "1"]
        loads = [json.loads(line) for line in server.logs().splitlines() if '"model_loaded"' in line]
        assert [(record["model"], record["version"]) for record in loads] == [("cnn", 1), ("cnn", 2)]
    finally:
        server.stop()
