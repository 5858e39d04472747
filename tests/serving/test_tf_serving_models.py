"""TF Serving's own test cases against the edge server: TF1-era models, predict, classify, regress.

The models are built in the test (`tf1_models.build_half_plus`) to behave like
TF Serving's `saved_model_half_plus_two_2_versions` and
`saved_model_half_plus_three`; the expected bodies are those of TF Serving's
`http_rest_api_handler_test.cc` and its metadata test file.
"""

import numpy as np
import pytest
import requests

from conftest import HALF_PLUS_THREE, HALF_PLUS_TWO
from serving import protos

CLASSIFY, REGRESS, PREDICT = ("tensorflow/serving/" + verb for verb in ("classify", "regress", "predict"))


def _info(name, dtype, dims):
    """A TensorInfo as TF Serving's REST metadata writes it (default fields included)."""
    if dims is None:
        shape = {"dim": [], "unknown_rank": True}
    else:
        shape = {"dim": [{"size": str(size), "name": ""} for size in dims], "unknown_rank": False}
    return {"dtype": dtype, "tensor_shape": shape, "name": name}


def _signature(inputs, outputs, method):
    return {"inputs": inputs, "outputs": outputs, "method_name": method, "defaults": {}}


EXAMPLES = _info("tf_example:0", "DT_STRING", None)
# saved_model_half_plus_two_2_versions_metadata.json's signature_def map.
HALF_PLUS_TWO_SIGNATURES = {
    "regress_x2_to_y3": _signature({"inputs": _info("x2:0", "DT_FLOAT", [-1, 1])}, {"outputs": _info("y3:0", "DT_FLOAT", [-1, 1])}, REGRESS),
    "serving_default": _signature({"x": _info("x:0", "DT_FLOAT", [-1, 1])}, {"y": _info("y:0", "DT_FLOAT", [-1, 1])}, PREDICT),
    "classify_x_to_y": _signature({"inputs": EXAMPLES}, {"scores": _info("y:0", "DT_FLOAT", [-1, 1])}, CLASSIFY),
    "classify_x2_to_y3": _signature({"inputs": _info("x2:0", "DT_FLOAT", [-1, 1])}, {"scores": _info("y3:0", "DT_FLOAT", [-1, 1])}, CLASSIFY),
    "regress_x_to_y2": _signature({"inputs": EXAMPLES}, {"outputs": _info("y2:0", "DT_FLOAT", [-1, 1])}, REGRESS),
    "regress_x_to_y": _signature({"inputs": EXAMPLES}, {"outputs": _info("y:0", "DT_FLOAT", [-1, 1])}, REGRESS),
}


def _post(server, path, body):
    answer = requests.post(f"{server.url}/v1/models/{path}", json=body, timeout=30)
    return answer.status_code, answer.json()


@pytest.mark.parametrize(
    "path, body, expected",
    [
        (f"{HALF_PLUS_TWO}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
        (f"{HALF_PLUS_TWO}/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (f"{HALF_PLUS_TWO}/labels/Version_Label:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (f"{HALF_PLUS_TWO}/versions/123:predict", {"signature_name": "serving_default", "instances": [3.0, 4.0]}, {"predictions": [3.5, 4.0]}),
        (f"{HALF_PLUS_TWO}/versions/123:predict", {"signature_name": "serving_default", "inputs": [3.0, 4.0]}, {"outputs": [3.5, 4.0]}),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, {"results": [42]}),
        (f"{HALF_PLUS_TWO}/versions/123:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, {"results": [42]}),
        (f"{HALF_PLUS_TWO}/labels/Version_Label:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, {"results": [42]}),
        (f"{HALF_PLUS_TWO}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}, {"results": [[["", 12]]]}),
        (f"{HALF_PLUS_TWO}/labels/Version_Label:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}, {"results": [[["", 7]]]}),
        # The context's features reach every example; an example's own features override them.
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y2", "context": {"x": 10.0}, "examples": [{}, {"x": 20.0}]}, {"results": [8, 13]}),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x2_to_y3", "examples": [{"x": 1.0}]}, None),
        (f"{HALF_PLUS_THREE}:predict", {"instances": [1.0, 2.0]}, {"predictions": [3.5, 4.0]}),
        (f"{HALF_PLUS_THREE}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}, {"x": 1.0, "x2": 5.0}]}, {"results": [43, 3.5]}),
    ],
)
def test_rest_answers_equal_tf_servings(edge_savedmodel, path, body, expected):
    status, answer = _post(edge_savedmodel, path, body)
    if expected is None:
        # regress_x2_to_y3 takes x2's floats, not serialized examples: TF Serving's graph refuses them too.
        assert status == 400 and "must hold float32 numbers" in answer["error"], answer
        return
    assert status == 200, answer
    assert answer == expected


def test_rest_status_and_metadata(edge_savedmodel):
    url = f"{edge_savedmodel.url}/v1/models/{HALF_PLUS_TWO}"
    available = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert requests.get(url, timeout=10).json() == {
        "model_version_status": [{"version": "124", **available}, {"version": "123", **available}]
    }
    assert requests.get(f"{url}/versions/123", timeout=10).json() == {"model_version_status": [{"version": "123", **available}]}
    assert requests.get(f"{url}/labels/Version_Label", timeout=10).json() == {"model_version_status": [{"version": "123", **available}]}
    metadata = requests.get(f"{url}/versions/123/metadata", timeout=10).json()
    assert metadata == {
        "model_spec": {"name": HALF_PLUS_TWO, "signature_name": "", "version": "123"},
        "metadata": {"signature_def": {"signature_def": HALF_PLUS_TWO_SIGNATURES}},
    }
    # The latest version when none is named.
    assert requests.get(f"{url}/metadata", timeout=10).json()["model_spec"]["version"] == "124"


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (f"{HALF_PLUS_TWO}:predict", {"instances": ["x", "y"]}, 400, "not of expected type: float32"),
        (f"{HALF_PLUS_TWO}/labels/Version_Nonexistent:predict", {"instances": [1.0]}, 400, "Unrecognized servable version label"),
        (f"{HALF_PLUS_TWO}:predict", {"signature_name": 100}, 400, "'signature_name' key must be a string value."),
        (f"{HALF_PLUS_TWO}99:predict", {"instances": [1.0]}, 404, f"Servable not found for request: Latest({HALF_PLUS_TWO}99)"),
        (f"{HALF_PLUS_TWO}:classify", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}, 400,
         "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/regress"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "serving_default", "examples": [{"x": 1.0}]}, 400,
         "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/predict"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": []}, 400, "'examples' value is an empty array"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "instances": [1.0]}, 400, "key 'examples' is expected"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, "a"]}]}, 400,
         "Unexpected element type in feature: x expecting type: float"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": None}]}, 400, "unexpected JSON type: Null"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": {"b64": "!!"}}]}, 400, "Unable to base64 decode"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 1e39}]}, 400, "without loss of precision"),
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2**63}]}, 400, "has uint64 element"),
        # The graph's ParseExample refuses an example without the required feature (TF's INVALID_ARGUMENT).
        (f"{HALF_PLUS_TWO}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x2": 1.0}]}, 400, "Feature: x (data type: float) is required"),
        # TensorFlow's error quotes the bad example's bytes; not being UTF-8, they used to make it a 500.
        (f"{HALF_PLUS_TWO}:predict", {"signature_name": "regress_x_to_y", "inputs": [{"b64": "4IBhYmM="}]}, 400, "refused the input"),
        ("cnn:classify", {"examples": [{"x": 1.0}]}, 400,
         "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    ],
)
def test_rest_errors_are_tf_servings(edge_savedmodel, path, body, status, message):
    answer = requests.post(f"{edge_savedmodel.url}/v1/models/{path}", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"] and message in answer.json()["error"], answer.text


@pytest.fixture(scope="module")
def stubs(edge_savedmodel):
    import grpc

    modules = protos.load()
    channel = grpc.insecure_channel(edge_savedmodel.grpc_target)
    yield modules, modules.prediction_service_pb2_grpc.PredictionServiceStub(channel), modules.model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def _examples(modules, request, values):
    for features in values:
        example = request.input.example_list.examples.add()
        for name, value in features.items():
            example.features.feature[name].float_list.value.append(value)
    return request


def test_grpc_predict_classify_regress(stubs):
    modules, prediction, _ = stubs
    request = modules.predict_pb2.PredictRequest()
    request.model_spec.name = HALF_PLUS_TWO
    request.inputs["x"].CopyFrom(protos.to_tensor_proto(np.array([1.0, 2.0], "float32")))
    response = prediction.Predict(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (HALF_PLUS_TWO, 124, "serving_default")
    assert protos.to_numpy(response.outputs["y"]).tolist() == [2.5, 3.0]

    request = _examples(modules, modules.classification_pb2.ClassificationRequest(), [{"x": 20.0}, {"x": 10.0}])
    request.model_spec.name, request.model_spec.signature_name = HALF_PLUS_TWO, "classify_x_to_y"
    request.model_spec.version.value = 123
    response = prediction.Classify(request, timeout=30)
    assert response.model_spec.version.value == 123
    assert [[(item.label, item.score) for item in row.classes] for row in response.result.classifications] == [[("", 12.0)], [("", 7.0)]]

    request = _examples(modules, modules.regression_pb2.RegressionRequest(), [{"x": 80.0}])
    request.model_spec.name, request.model_spec.signature_name = HALF_PLUS_THREE, "regress_x_to_y"
    response = prediction.Regress(request, timeout=30)
    assert [item.value for item in response.result.regressions] == [43.0]

    request = _examples(modules, modules.inference_pb2.MultiInferenceRequest(), [{"x": 20.0}])
    for signature_name, method in (("classify_x_to_y", CLASSIFY), ("regress_x_to_y2", REGRESS)):
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = HALF_PLUS_TWO, signature_name
    response = prediction.MultiInference(request, timeout=30)
    classification, regression = response.results
    assert [item.score for item in classification.classification_result.classifications[0].classes] == [12.0]
    assert [item.value for item in regression.regression_result.regressions] == [13.0]
    assert (regression.model_spec.signature_name, regression.model_spec.version.value) == ("regress_x_to_y2", 124)


def test_grpc_metadata_and_status(stubs):
    from google.protobuf import json_format

    modules, prediction, model_service = stubs
    request = modules.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = HALF_PLUS_TWO
    response = prediction.GetModelMetadata(request, timeout=30)
    signature_map = modules.get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert json_format.MessageToDict(signature_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True) == {
        "signature_def": HALF_PLUS_TWO_SIGNATURES
    }
    request = modules.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = HALF_PLUS_TWO
    versions = [(item.version, item.state) for item in model_service.GetModelStatus(request, timeout=30).model_version_status]
    assert versions == [(124, modules.get_model_status_pb2.ModelVersionStatus.AVAILABLE), (123, modules.get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


@pytest.mark.parametrize(
    "method, build, code, message",
    [
        ("Classify", lambda m: m.classification_pb2.ClassificationRequest(), "INVALID_ARGUMENT",
         "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
        ("Regress", lambda m: m.regression_pb2.RegressionRequest(), "INVALID_ARGUMENT", "Was: tensorflow/serving/predict"),
        ("Regress", lambda m: m.regression_pb2.RegressionRequest(model_spec={"signature_name": "regress_x_to_y"}), "INVALID_ARGUMENT", "Input is empty."),
    ],
)
def test_grpc_classify_regress_errors(stubs, method, build, code, message):
    import grpc

    modules, prediction, _ = stubs
    request = build(modules)
    request.model_spec.name = HALF_PLUS_TWO if request.model_spec.signature_name else "cnn"
    if request.model_spec.name == "cnn":
        _examples(modules, request, [{"x": 1.0}])
    with pytest.raises(grpc.RpcError) as caught:
        getattr(prediction, method)(request, timeout=30)
    assert caught.value.code() == getattr(grpc.StatusCode, code)
    assert message in caught.value.details()


def test_grpc_multi_inference_refuses_predict(stubs):
    import grpc

    modules, prediction, _ = stubs
    request = _examples(modules, modules.inference_pb2.MultiInferenceRequest(), [{"x": 1.0}])
    task = request.tasks.add(method_name=PREDICT)
    task.model_spec.name = HALF_PLUS_TWO
    with pytest.raises(grpc.RpcError) as caught:
        prediction.MultiInference(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.details() == f"Unsupported signature method_name: {PREDICT}"


def test_savedmodel_server_starts_quietly(edge_savedmodel):
    """TensorFlow's start-up lines (oneDNN, cuda drivers, cuInit) never reach the server's output."""
    log = edge_savedmodel.logs()
    assert '"event": "serving"' in log
    for noise in ("I0000", "E0000", "cuInit", "oneDNN", "absl::InitializeLog", "is deprecated"):
        assert noise not in log, f"{noise!r} in the server's output:\n{log[:3000]}"
