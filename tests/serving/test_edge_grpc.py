"""The edge server's gRPC PredictionService through `serving.client.GrpcClient`, and the client CLI."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import CIFAR_CLASSES, REPO_ROOT, decode_jpeg, text_tokenizer
from serving.client import GrpcClient, RestClient, ServingError


@pytest.fixture(scope="module")
def grpc_client(edge):
    client = GrpcClient(edge.grpc_target, timeout=10, retries=0)
    yield client
    client.close()


def test_predict_equals_onnxruntime(grpc_client, onnx_reference):
    images = np.random.default_rng(5).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    outputs, version = grpc_client.predict("cnn", {"images": images}, with_version=True)
    expected = onnx_reference("cnn", 1, {"images": images})
    assert version == 1
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert outputs["class_ids"].dtype == np.int64
    assert outputs["class_ids"].tolist() == np.argmax(expected, axis=1).tolist()
    assert outputs["class_names"].tolist() == [CIFAR_CLASSES[i].encode() for i in np.argmax(expected, axis=1)]
    only = grpc_client.predict("cnn", {"images": images[:1]}, output_filter=["class_ids"], label="stable")
    assert list(only) == ["class_ids"]


def test_image_bytes_and_text(grpc_client, onnx_reference, cifar_jpegs):
    jpegs = [data for _, data in cifar_jpegs]
    outputs = grpc_client.predict("cnn", {"image_bytes": jpegs}, signature_name="image_bytes")
    expected = onnx_reference("cnn", 1, {"images": np.stack([decode_jpeg(data) for data in jpegs])})
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-7)
    texts = ["a good film", "awful"]
    outputs = grpc_client.predict("text", {"text": texts})
    np.testing.assert_allclose(outputs["probabilities"], onnx_reference("text", 1, text_tokenizer().encode_batch(texts)), rtol=1e-5, atol=1e-7)


def test_metadata_and_status(grpc_client):
    metadata = grpc_client.metadata("cnn")
    assert metadata["version"] == 1
    assert metadata["signature_def"]["serving_default"]["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert grpc_client.status("cnn") == [{"version": 1, "state": "AVAILABLE"}]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c.predict("nope", {"images": np.zeros((1, 32, 32, 3), "float32")}), "gRPC NOT_FOUND: Servable not found for request: Latest(nope)"),
        (lambda c: c.predict("cnn", {"images": np.zeros((1, 32, 32, 3), "float32")}, version=4), "gRPC NOT_FOUND: Servable not found for request: Specific(cnn, 4)"),
        (lambda c: c.predict("cnn", {"images": np.zeros((1, 32, 32), "float32")}), "gRPC INVALID_ARGUMENT: input 'images' must have shape [-1,32,32,3], got [1,32,32]"),
        (lambda c: c.predict("cnn", {"images": ["a"]}), "gRPC INVALID_ARGUMENT: input 'images' must hold float32 numbers"),
        (lambda c: c.predict("cnn", {}), "gRPC INVALID_ARGUMENT: missing input 'images'"),
        (lambda c: c.predict("cnn", {"image_bytes": [b"\xff\xd8garbage"]}, signature_name="image_bytes"), "gRPC INVALID_ARGUMENT: input 'image_bytes' item 0"),
    ],
    ids=["unknown-model", "unknown-version", "wrong-shape", "wrong-dtype", "missing-input", "bad-image"],
)
def test_grpc_errors(grpc_client, call, message):
    with pytest.raises(ServingError) as caught:
        call(grpc_client)
    assert str(caught.value).startswith(message)
    assert grpc_client.status("cnn")[0]["state"] == "AVAILABLE"


def test_unreachable_server_is_one_line_after_retries():
    client = RestClient("http://127.0.0.1:9", timeout=1, retries=1, backoff=0.01)
    with pytest.raises(ServingError, match=r"^cannot connect to http://127.0.0.1:9; is the server running\? \(after 2 attempts\)$"):
        client.status("cnn")


def _cli(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "serving.client", *arguments], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT)
    )


def test_cli_image_text_and_csv(edge, tmp_path, cifar_jpegs, onnx_reference):
    image = tmp_path / "cat.jpg"
    image.write_bytes(cifar_jpegs[2][1])
    expected = onnx_reference("cnn", 1, {"images": decode_jpeg(cifar_jpegs[2][1])[None]})[0]
    best = CIFAR_CLASSES[int(np.argmax(expected))]
    for where in (["--rest", edge.url], ["--grpc", edge.grpc_target]):
        result = _cli("--model", "cnn", "--image", str(image), *where)
        assert result.returncode == 0, result.stderr
        label, name, top = result.stdout.strip().split("\t")
        assert (label, name) == (str(image), best)
        assert top.startswith(f"{best}={expected.max():.4f}")
    result = _cli("--model", "text", "--text", "a good film", "--rest", edge.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[1] in ("negative", "positive")
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n1,2\n")
    result = _cli("--model", "cnn", "--csv", str(rows), "--rest", edge.url)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: HTTP 400: input 'images' must have shape [-1,32,32,3], got [1,2]"


def test_cli_errors_are_one_line(edge):
    result = _cli("--model", "nope", "--text", "x", "--rest", edge.url)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: HTTP 404: Servable not found for request: Latest(nope); served models: cnn, text"
    result = _cli("--model", "cnn", "--text", "x", "--grpc", edge.grpc_target, "--version", "3")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: gRPC NOT_FOUND: Servable not found for request: Specific(cnn, 3)")
