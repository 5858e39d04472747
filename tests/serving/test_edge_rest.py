"""The edge server's REST API against TF Serving's contract, answers equal to in-process onnxruntime."""

import base64

import numpy as np
import pytest
import requests

from conftest import CIFAR_CLASSES, decode_jpeg, text_tokenizer


def _images(count, seed):
    return np.random.default_rng(seed).uniform(0, 255, (count, 32, 32, 3)).astype(np.float32)


def test_status_and_metadata(edge):
    status = requests.get(f"{edge.url}/v1/models/cnn", timeout=10).json()
    assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(f"{edge.url}/v1/models/cnn/versions/1", timeout=10).status_code == 200
    assert requests.get(f"{edge.url}/v1/models/cnn/labels/stable", timeout=10).json()["model_version_status"][0]["version"] == "1"
    metadata = requests.get(f"{edge.url}/v1/models/cnn/metadata", timeout=10).json()
    assert metadata["model_spec"] == {"name": "cnn", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == ["image_bytes", "serving_default"]
    images = signatures["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in images["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert signatures["image_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert sorted(signatures["serving_default"]["outputs"]) == ["class_ids", "class_names", "classes", "probabilities", "scores"]
    assert requests.get(f"{edge.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{edge.url}/readyz", timeout=10).json()["models"] == ["cnn", "text"]


def test_row_and_columnar_predictions_equal_onnxruntime(edge, onnx_reference):
    images = _images(3, seed=0)
    expected = onnx_reference("cnn", 1, {"images": images})
    row = requests.post(f"{edge.url}/v1/models/cnn:predict", json={"instances": images.tolist()}, timeout=10).json()
    assert len(row["predictions"]) == 3
    for prediction, probabilities in zip(row["predictions"], expected):
        assert sorted(prediction) == ["class_ids", "class_names", "classes", "probabilities", "scores"]
        np.testing.assert_allclose(prediction["probabilities"], probabilities, rtol=1e-5, atol=1e-7)
        assert prediction["class_ids"] == int(np.argmax(probabilities))
        assert prediction["class_names"] == CIFAR_CLASSES[int(np.argmax(probabilities))]
    columnar = requests.post(
        f"{edge.url}/v1/models/cnn/versions/1:predict", json={"inputs": {"images": images.tolist()}}, timeout=10
    ).json()
    np.testing.assert_allclose(columnar["outputs"]["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert columnar["outputs"]["class_ids"] == np.argmax(expected, axis=1).tolist()
    # Named instances (one object per example) are the same request.
    named = requests.post(
        f"{edge.url}/v1/models/cnn/labels/stable:predict", json={"instances": [{"images": image} for image in images.tolist()]}, timeout=10
    ).json()
    assert named == row


def test_b64_jpegs_through_the_image_bytes_signature(edge, onnx_reference, cifar_jpegs):
    instances = [{"b64": base64.b64encode(data).decode()} for _, data in cifar_jpegs]
    answer = requests.post(
        f"{edge.url}/v1/models/cnn:predict", json={"signature_name": "image_bytes", "instances": instances}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    expected = onnx_reference("cnn", 1, {"images": np.stack([decode_jpeg(data) for _, data in cifar_jpegs])})
    got = np.array([prediction["probabilities"] for prediction in answer.json()["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_text_model(edge, onnx_reference):
    texts = ["A good film!", "the movie is awful", "not great, not bad"]
    answer = requests.post(f"{edge.url}/v1/models/text:predict", json={"instances": texts}, timeout=10)
    assert answer.status_code == 200, answer.text
    expected = onnx_reference("text", 1, text_tokenizer().encode_batch(texts))
    predictions = answer.json()["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, rtol=1e-5, atol=1e-7)
    assert [p["class_names"] for p in predictions] == [["negative", "positive"][i] for i in np.argmax(expected, axis=1)]
    # A b64 string is the same text.
    b64 = requests.post(
        f"{edge.url}/v1/models/text:predict", json={"inputs": [{"b64": base64.b64encode(texts[0].encode()).decode()}]}, timeout=10
    ).json()
    np.testing.assert_allclose(b64["outputs"]["probabilities"][0], expected[0], rtol=1e-5, atol=1e-7)


_GOOD_IMAGE = np.zeros((32, 32, 3)).tolist()


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v1/models/nope:predict", {"instances": [_GOOD_IMAGE]}, 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/cnn/versions/9:predict", {"instances": [_GOOD_IMAGE]}, 404, "Specific(cnn, 9); available versions: 1"),
        ("/v1/models/cnn/labels/beta:predict", {"instances": [_GOOD_IMAGE]}, 400, "Unrecognized servable version label: beta"),
        ("/v1/models/cnn:predict", {"instances": [np.zeros((32, 3)).tolist()]}, 400, "input 'images' must have shape [-1,32,32,3], got [1,32,3]"),
        ("/v1/models/cnn:predict", {"instances": [[["red"] * 3] * 32] * 1}, 400, "input 'images' must hold float32 numbers"),
        ("/v1/models/cnn:predict", {"examples": [_GOOD_IMAGE]}, 400, "exactly one of 'instances' (row format) or 'inputs'"),
        ("/v1/models/cnn:predict", {"inputs": {"pixels": [_GOOD_IMAGE]}}, 400, "unknown input 'pixels'"),
        ("/v1/models/cnn:predict", {"signature_name": "image_bytes", "instances": [{"b64": "not base64!"}]}, 400, "input 'image_bytes' holds invalid base64"),
        ("/v1/models/cnn:predict", {"signature_name": "image_bytes", "instances": [{"b64": "aGVsbG8="}]}, 400, "item 0 is not a decodable JPEG/PNG image"),
        ("/v1/models/cnn:predict", {"signature_name": "nope", "instances": [_GOOD_IMAGE]}, 400, "signature 'nope' not found for model 'cnn'"),
        ("/v1/models/cnn:predict", {"instances": []}, 400, "'instances' must be a non-empty list"),
        ("/v1/models/cnn:predict", {"instances": [[[[1.0, 2.0, 3.0]] * 32] * 31 + [[[1.0]] * 32]]}, 400, "regular (non-ragged) nested list"),
        ("/v1/models/cnn:predict", {"instances": [np.full((40, 40, 3), 123.25).tolist()] * 80}, 429, "exceeds the limit of 2000000 bytes"),
    ],
    ids=["unknown-model", "unknown-version", "unknown-label", "wrong-shape", "wrong-dtype", "missing-field",
         "unknown-input", "bad-base64", "not-an-image", "unknown-signature", "empty", "ragged", "oversized-body"],
)
def test_malformed_requests(edge, path, body, status, message):
    answer = requests.post(edge.url + path, json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert "\n" not in answer.json()["error"]
    # The server still answers.
    assert requests.post(f"{edge.url}/v1/models/cnn:predict", json={"instances": [_GOOD_IMAGE]}, timeout=10).status_code == 200


def test_invalid_json_body(edge):
    answer = requests.post(f"{edge.url}/v1/models/cnn:predict", data=b'{"instances": [1,', timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("JSON Parse error: ")
    empty = requests.post(f"{edge.url}/v1/models/cnn:predict", data=b"", timeout=10)
    assert (empty.status_code, empty.json()) == (400, {"error": "JSON Parse error: The document is empty"})


def test_request_logs_are_json_lines_with_latency(edge):
    import json

    requests.get(f"{edge.url}/v1/models/cnn", timeout=10)
    records = [json.loads(line) for line in edge.logs().splitlines() if line.startswith("{")]
    requests_logged = [record for record in records if record.get("event") == "request" and record.get("path") == "/v1/models/cnn"]
    assert requests_logged and requests_logged[-1]["status"] == 200
    assert requests_logged[-1]["latency_ms"] >= 0


def test_each_request_is_logged_before_its_answer_arrives(edge):
    """A client that reads the log right after its answer finds that request's line (REST and gRPC,
    interleaved). Regression: stderr through a filter process delivered the lines late."""
    import grpc

    from serving import protos

    modules = protos.load()
    stub = modules.prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(edge.grpc_target))

    def grpc_lines():
        return sum('"protocol": "grpc"' in line for line in edge.logs().splitlines())

    for index in range(20):
        path = f"/v1/models/cnn/versions/{900 + index}"
        requests.get(edge.url + path, timeout=10)
        assert f'"path": "{path}"' in edge.logs()
        before = grpc_lines()
        request = modules.predict_pb2.PredictRequest()
        request.model_spec.name = "cnn"
        request.model_spec.version.value = 900 + index
        with pytest.raises(grpc.RpcError):
            stub.Predict(request, timeout=10)
        assert grpc_lines() == before + 1
