"""`python -m serving.edge --onnx-variant int8`: serves model.int8.onnx where a version has one.

Version 2 of the CNN gets a `model.int8.onnx` written by the export stage's own quantizer
(`export.quantize.quantize_int8`, static QDQ as `--quantize int8` does for CNNs); version 1
has none and is served from `model.onnx` with one log line naming it.
"""

import json
import shutil

import numpy as np
import pytest
import requests

from conftest import EdgeProcess
from serving.edge.server import main


def _images(count, seed):
    return np.random.default_rng(seed).uniform(0, 255, (count, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def int8_base(built_exports):
    from export.quantize import quantize_int8

    base = built_exports["root"] / "int8_exports"
    for version in (1, 2):
        shutil.copytree(built_exports["base"] / "cnn" / "1", base / "cnn" / str(version))
    calibration = [{"images": _images(8, seed)} for seed in range(4)]
    quantize_int8(base / "cnn" / "2" / "model.onnx", base / "cnn" / "2" / "model.int8.onnx", "static", calibration, log=lambda line: None)
    return base


@pytest.fixture(scope="module")
def edge_int8(int8_base):
    server = EdgeProcess(int8_base, ["--onnx-variant", "int8", "--backend", "onnx"])
    yield server
    server.stop()


def _predict(edge, version, images):
    answer = requests.post(f"{edge.url}/v1/models/cnn/versions/{version}:predict", json={"instances": images.tolist()}, timeout=30)
    assert answer.status_code == 200, answer.text
    return np.array([row["probabilities"] for row in answer.json()["predictions"]], dtype=np.float32)


def test_int8_version_answers_as_onnx_runtime_on_the_int8_file(edge_int8, int8_base):
    from kerasdl.runtime.onnx import OnnxRunner

    images = _images(4, seed=10)
    served = _predict(edge_int8, 2, images)
    int8 = OnnxRunner(str(int8_base / "cnn" / "2" / "model.int8.onnx")).run({"images": images})
    fp32 = OnnxRunner(str(int8_base / "cnn" / "2" / "model.onnx")).run({"images": images})
    np.testing.assert_allclose(served, int8, rtol=1e-5, atol=1e-6)
    # The int8 file answers differently from the fp32 one, so the comparison above tells them apart.
    assert np.abs(int8 - fp32).max() > 1e-4
    metadata = requests.get(f"{edge_int8.url}/v1/models/cnn/versions/2/metadata", timeout=10).json()
    assert metadata["metadata"]["model_file"] == "model.int8.onnx"
    assert "serving_default" in metadata["metadata"]["signature_def"]["signature_def"]


def test_version_without_int8_is_served_in_fp32_with_one_log_line(edge_int8, int8_base):
    from kerasdl.runtime.onnx import OnnxRunner

    images = _images(3, seed=11)
    expected = OnnxRunner(str(int8_base / "cnn" / "1" / "model.onnx")).run({"images": images})
    np.testing.assert_allclose(_predict(edge_int8, 1, images), expected, rtol=1e-5, atol=1e-7)
    metadata = requests.get(f"{edge_int8.url}/v1/models/cnn/versions/1/metadata", timeout=10).json()
    assert metadata["metadata"]["model_file"] == "model.onnx"
    records = [json.loads(line) for line in edge_int8.logs().splitlines() if line.startswith("{")]
    missing = [record for record in records if record.get("event") == "variant_missing"]
    assert missing == [{"event": "variant_missing", "model": "cnn", "version": 1, "wanted": "model.int8.onnx", "serving": "model.onnx"}]
    loaded = {record["version"]: record["model_file"] for record in records if record.get("event") == "model_loaded"}
    assert loaded == {1: "model.onnx", 2: "model.int8.onnx"}


def test_grpc_metadata_names_the_served_file(edge_int8):
    import grpc
    from google.protobuf import wrappers_pb2

    from serving import protos

    modules = protos.load()
    with grpc.insecure_channel(edge_int8.grpc_target) as channel:
        stub = modules.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        files = {}
        for version in (1, 2):
            request = modules.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            request.model_spec.name = "cnn"
            request.model_spec.version.value = version
            response = stub.GetModelMetadata(request, timeout=10)
            value = wrappers_pb2.StringValue()
            assert response.metadata["model_file"].Unpack(value)
            files[version] = value.value
    assert files == {1: "model.onnx", 2: "model.int8.onnx"}


def test_default_serves_fp32_even_where_int8_exists(int8_base):
    from serving.edge.repository import ModelRepository

    repository = ModelRepository(int8_base, backend="onnx")
    repository.scan()
    assert repository.resolve("cnn", 2)[1].model_file == "model.onnx"


def test_onnx_variant_with_savedmodel_backend_is_a_one_line_error(int8_base, capsys):
    assert main([str(int8_base), "--backend", "savedmodel", "--onnx-variant", "int8"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --onnx-variant picks the ONNX file; --backend savedmodel serves no ONNX (use --backend onnx or auto)\n"
