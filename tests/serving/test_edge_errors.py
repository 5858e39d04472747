"""Every failure is `{"error": ...}` with TF Serving's status: paths, hostile bodies, limits, backend errors."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
import requests

from conftest import EDGE_MAX_ELEMENTS
from serving import protos


def _bomb_png(side=14000):
    """A 60-byte PNG that declares side x side pixels, past Pillow's decompression-bomb limit."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


# TF Serving's path cases (http_rest_api_handler_test.cc, UnsupportedApiCalls), and other routes.
@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("POST", "/v1/models/cnn/versions/abc:predict", 400, "Malformed request: POST /v1/models/cnn/versions/abc:predict"),
        ("POST", "/v1/models/cnn/versions/HELLO:regress", 400, "Malformed request"),
        ("POST", f"/v1/models/cnn/versions/{2**64 - 1}:regress", 400, f"Failed to convert version: {2**64 - 1} to numeric."),
        ("POST", "/v1/models/cnn/label/stable:predict", 400, "Malformed request"),
        ("POST", "/v1/models/cnn/version/1:predict", 400, "Malformed request"),
        ("POST", "/v1/models/cnn/versions/1/labels/stable:predict", 400, "Malformed request"),
        ("POST", "/v1/models/cnn/versions/some_label:regress", 400, "Malformed request"),
        ("POST", "/v1/models/cnn/metadata", 400, "Malformed request: POST /v1/models/cnn/metadata"),
        ("GET", "/v1/models/cnn:predict", 400, "Malformed request: GET /v1/models/cnn:predict"),
        ("POST", "/v1/models/cnn:PREDICT", 400, "Malformed request"),
        ("POST", "/v1/models/cnn:explain", 400, "Malformed request"),
        ("PUT", "/v1/models/cnn:predict", 400, "Malformed request: PUT"),
        ("GET", "/v1/models", 400, "Missing model name in request."),
        ("GET", "/v1/foo", 400, "Malformed request: GET /v1/foo"),
        ("GET", "/v1/models/debug/model_name", 400, "Malformed request"),
        ("GET", "/v2/models/cnn", 404, "Not found: GET /v2/models/cnn"),
        ("GET", "/nope", 404, "Not found: GET /nope"),
        ("POST", "/healthz", 404, "Not found: POST /healthz"),
    ],
)
def test_paths_are_parsed_as_tf_serving_parses_them(edge, method, path, status, message):
    answer = requests.request(method, edge.url + path, json={"instances": [1.0]}, timeout=10)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"], answer.text
    assert message in answer.json()["error"]


def test_versions_and_labels_resolve(edge):
    assert requests.get(f"{edge.url}/v1/models/cnn/versions/1/metadata", timeout=10).status_code == 200
    assert requests.get(f"{edge.url}/V1/MODELS/cnn/VERSIONS/1", timeout=10).json()["model_version_status"][0]["version"] == "1"
    assert requests.get(f"{edge.url}/v1/models/cnn/versions/{2**63 - 1}", timeout=10).status_code == 404


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"[" * 100_000 + b"]" * 100_000, 400, "JSON Parse error: the document is nested too deeply"),
        (b'{"instances": ' + b"[" * 900 + b"1.0" + b"]" * 900 + b"}", 400, "input 'images'"),
        (b'{"inputs": {"images": {"b64": "AAAA"}}}', 400, "must hold float32 numbers"),
        (b'{"instances": [[[[1e400]]]]}', 400, "must have shape"),
        (b'{"instances": [' + json.dumps(np.full((32, 32, 3), 1e300).tolist()).encode() + b"]}", 400, "too large for float32"),
        (b'{"instances": [' + json.dumps(np.full((32, 32, 3), 10**30).tolist()).encode() + b"]}", 400, "must hold float32 numbers"),
        (b"\xff\xfe", 400, "JSON Parse error"),
        (b"[1, 2]", 400, "must be a JSON object"),
    ],
    ids=["deep-nesting", "deep-list", "b64-for-floats", "huge-number", "beyond-float32", "beyond-int64", "not-utf8", "not-an-object"],
)
def test_hostile_bodies_get_400(edge, body, status, message):
    answer = requests.post(f"{edge.url}/v1/models/cnn:predict", data=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert requests.get(f"{edge.url}/healthz", timeout=10).status_code == 200


def test_nan_inputs_give_nan_outputs_not_a_500(edge):
    body = '{"instances": [' + json.dumps(np.full((32, 32, 3), 1.0).tolist()).replace("1.0", "NaN", 5) + "]}"
    answer = requests.post(f"{edge.url}/v1/models/cnn:predict", data=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert "NaN" in answer.text
    assert all(np.isnan(answer.json()["predictions"][0]["probabilities"]))


def test_decompression_bomb_is_a_400(edge):
    import base64

    body = {"signature_name": "image_bytes", "instances": [{"b64": base64.b64encode(_bomb_png()).decode()}]}
    answer = requests.post(f"{edge.url}/v1/models/cnn:predict", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert "too large to decode" in answer.json()["error"]


@pytest.fixture(scope="module")
def predict_stub(edge):
    import grpc

    channel = grpc.insecure_channel(edge.grpc_target)
    yield protos.load().prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _tensor(dims, dtype=1, **values):
    proto = protos.load().tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize(
    "tensor, code, message",
    [
        # One value declaring 1000 images: over --max-elements, refused before anything is allocated.
        (lambda: _tensor([1000, 32, 32, 3], float_val=[1.0]), "RESOURCE_EXHAUSTED",
         f"declares 3072000 values, more than this server's limit of {EDGE_MAX_ELEMENTS}"),
        (lambda: _tensor([2**40, 2**40, 3], float_val=[1.0]), "RESOURCE_EXHAUSTED", "more than this server's limit"),
        # Neither one value nor one per element: TF Serving's "Expecting tensor size".
        (lambda: _tensor([2, 32, 32, 3], float_val=[1.0, 2.0, 3.0, 4.0, 5.0]), "INVALID_ARGUMENT", "Expecting tensor size: 6144 but got: 5"),
        (lambda: _tensor([1, 32, 32, 3], tensor_content=b"\x00" * 12), "INVALID_ARGUMENT", "Expecting tensor size: 3072 but got: 3"),
        (lambda: _tensor([1, 32, 32, 3], tensor_content=b"\x00" * 7), "INVALID_ARGUMENT", "not a whole number of float32 values"),
        (lambda: _tensor([1, -32, 32, 3], float_val=[1.0]), "INVALID_ARGUMENT", "negative dimension"),
        (lambda: _tensor([1, 32, 32, 3], dtype=21, float_val=[1.0]), "INVALID_ARGUMENT", "tensor dtype 21 is not supported"),
        (lambda: _tensor([1, 32, 32, 3], dtype=6, int_val=[300]), "INVALID_ARGUMENT", "does not fit int8"),
    ],
    ids=["broadcast-over-limit", "overflowing-shape", "count-mismatch", "content-mismatch", "partial-value", "negative-dim",
         "unsupported-dtype", "int8-overflow"],
)
def test_grpc_tensor_rules(edge, predict_stub, tensor, code, message):
    import grpc

    request = protos.load().predict_pb2.PredictRequest()
    request.model_spec.name = "cnn"
    request.inputs["images"].CopyFrom(tensor())
    with pytest.raises(grpc.RpcError) as caught:
        predict_stub.Predict(request, timeout=30)
    assert caught.value.code() == getattr(grpc.StatusCode, code), caught.value.details()
    assert message in caught.value.details()
    # The log line carries the real status.
    lines = [json.loads(line) for line in edge.logs().splitlines() if line.startswith('{"event": "request", "protocol": "grpc"')]
    assert lines[-1]["status"] == code


def test_grpc_single_value_broadcast_is_allowed(edge, predict_stub, onnx_reference):
    request = protos.load().predict_pb2.PredictRequest()
    request.model_spec.name = "cnn"
    request.inputs["images"].CopyFrom(_tensor([2, 32, 32, 3], float_val=[7.0]))
    response = predict_stub.Predict(request, timeout=30)
    expected = onnx_reference("cnn", 1, {"images": np.full((2, 32, 32, 3), 7.0, "float32")})
    np.testing.assert_allclose(protos.to_numpy(response.outputs["probabilities"]), expected, rtol=1e-5, atol=1e-7)


def test_grpc_decompression_bomb_is_invalid_argument_and_logged_so(edge, predict_stub):
    import grpc

    request = protos.load().predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "cnn", "image_bytes"
    request.inputs["image_bytes"].CopyFrom(protos.to_tensor_proto(np.array([_bomb_png()], dtype=object)))
    with pytest.raises(grpc.RpcError) as caught:
        predict_stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    lines = [json.loads(line) for line in edge.logs().splitlines() if '"protocol": "grpc"' in line]
    assert (lines[-1]["method"], lines[-1]["status"]) == ("Predict", "INVALID_ARGUMENT")


def test_savedmodel_backend_errors_follow_tf_codes(edge_savedmodel):
    import base64

    body = {"signature_name": "image_bytes", "instances": [{"b64": base64.b64encode(b"not an image").decode()}]}
    answer = requests.post(f"{edge_savedmodel.url}/v1/models/cnn:predict", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert list(answer.json()) == ["error"]


def test_rest_element_limit_in_process(exports):
    from starlette.testclient import TestClient

    from serving.edge.server import build_server

    service, app, _, _ = build_server(exports, grpc_port=-1, backend="onnx", max_elements=5000, batching=False)
    client = TestClient(app)
    one = np.zeros((1, 32, 32, 3)).tolist()
    assert client.post("/v1/models/cnn:predict", json={"instances": one}).status_code == 200
    answer = client.post("/v1/models/cnn:predict", json={"instances": one * 2})
    assert answer.status_code == 429
    assert answer.json() == {"error": "the request holds 6144 values, more than this server's limit of 5000 (--max-elements)"}


def test_unexpected_errors_are_500_with_error_body_and_traceback(exports, caplog):
    from starlette.testclient import TestClient

    from serving.edge.server import build_server

    service, app, _, _ = build_server(exports, grpc_port=-1, backend="onnx", batching=False)
    version, backend = service.repository.resolve("cnn")

    def broken(core_key, inputs):
        raise ZeroDivisionError("a bug")

    backend.run = broken
    with caplog.at_level("ERROR", logger="serving.edge"):
        answer = TestClient(app).post("/v1/models/cnn:predict", json={"instances": np.zeros((1, 32, 32, 3)).tolist()})
    assert answer.status_code == 500
    assert answer.json() == {"error": "ZeroDivisionError: a bug"}
    assert any(record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records)


def test_pillow_bomb_check_is_what_the_png_triggers():
    from PIL import Image

    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(_bomb_png()))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-elements", "0"], "error: --max-elements must be at least 1, got 0"),
        (["--max-batch-queues", "0"], "error: --max-batch-queues and --max-batch-size must be at least 1, got 0 and 32"),
        (["--batch-timeout-ms", "-1"], "error: --batch-timeout-ms must not be negative, got -1"),
        (["--workers", "0"], "error: --workers must be at least 1, got 0"),
        (["--workers", "2", "--max-elements", "0"], "error: --max-elements must be at least 1, got 0"),
    ],
)
def test_bad_server_flags_fail_in_one_line_before_loading(exports, flags, message):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "serving.edge", str(exports), "--grpc-port", "-1", *flags],
        capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == message


@pytest.mark.parametrize("protocol", ["REST", "gRPC"])
def test_a_port_in_use_fails_in_one_line(exports, protocol):
    """Even a port held with SO_REUSEPORT (another server's workers, another gRPC server) is refused, not shared."""
    import socket
    import subprocess
    import sys

    from conftest import REPO_ROOT, free_port

    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    flags = ["--port", str(port), "--grpc-port", "-1"] if protocol == "REST" else ["--port", str(free_port()), "--grpc-port", str(port)]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "serving.edge", str(exports), "--poll-seconds", "0", *flags],
            capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
        )
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot bind the {protocol} port 127.0.0.1:{port}")
    assert "add_port" not in result.stderr  # gRPC's own C++ log line about it is not shown.
