"""Generated hostile requests against a running edge server, with Hypothesis; for tests and benchmarks.

`fuzz_rest(url, examples)` posts generated bodies: random JSON, deep
nesting, tensors of mixed dtypes and shapes around each signature's,
`{"b64"}` values good and bad, huge numbers, NaN/Infinity, wrong signature
names, tf.Examples for :classify/:regress, raw bytes and malformed paths.
`fuzz_grpc(target, examples)` sends generated `TensorProto`s (shapes that
disagree with their content, every dtype number, unknown inputs), Classify,
Regress and MultiInference requests.

The properties: no answer is a server fault (HTTP 5xx; gRPC INTERNAL, UNKNOWN
or DATA_LOSS), every REST error body is `{"error": "..."}`, and the server
still answers afterwards. Each case is recorded rather than stopping at the
first failure, so a benchmark can report how many cases ran and how many
broke a property; the request behind each failure is kept (shortened).

Over ~300 lines because the strategies are one catalogue of
hostile requests; they read best together.

Example:
>>> report = fuzz_rest("http://127.0.0.1:8501", examples=1000)
>>> report.summary()["server_errors"]
0
"""

import base64
import collections
import dataclasses
import json
import math
import urllib.parse

import numpy as np

from serving import protos

SERVER_FAULTS = ("INTERNAL", "UNKNOWN", "DATA_LOSS")
# Most generated tensors stay small so that a case costs milliseconds; the rest declare huge shapes.
_MAX_VALUES = 20_000
_HUGE = (2**31, 2**40, 2**62)
_DTYPE_ENUMS = {"DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5, "DT_INT8": 6, "DT_STRING": 7, "DT_INT64": 9, "DT_BOOL": 10, "DT_HALF": 19}


@dataclasses.dataclass
class FuzzReport:
    """What a fuzzing run saw: cases sent, answers by status, and the cases that broke a property."""

    api: str
    cases: int = 0
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    server_errors: list = dataclasses.field(default_factory=list)
    bad_bodies: list = dataclasses.field(default_factory=list)
    answers_afterwards: bool = False

    @property
    def ok(self):
        return not self.server_errors and not self.bad_bodies and self.answers_afterwards

    def summary(self):
        return {
            "api": self.api,
            "cases": self.cases,
            "server_errors": len(self.server_errors),
            "bad_error_bodies": len(self.bad_bodies),
            "answers_afterwards": self.answers_afterwards,
            "statuses": dict(sorted(self.statuses.items(), key=str)),
            "examples_of_failures": (self.server_errors + self.bad_bodies)[:5],
        }


def discover(url):
    """Returns `{model: {signature: {"method", "inputs": {name: (dtype enum, dims or None)}}}}` from a server's metadata."""
    import requests

    answer = requests.get(f"{url}/readyz", timeout=30)
    models = answer.json().get("models", []) if answer.status_code == 200 else []
    found = {}
    for model in models:
        metadata = requests.get(f"{url}/v1/models/{model}/metadata", timeout=30).json()
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        found[model] = {
            name: {"method": definition.get("method_name", ""), "inputs": {key: _tensor_info(info) for key, info in definition.get("inputs", {}).items()}}
            for name, definition in signatures.items()
            if not name.startswith("__")
        }
    return found


def fuzz_rest(url, examples=1000, seed=0, models=None):
    """Sends `examples` generated REST requests to the server at `url`; returns a `FuzzReport`."""
    import requests
    from hypothesis import given

    models = models if models is not None else discover(url)
    report = FuzzReport("rest")
    session = requests.Session()

    @_settings(examples, seed)
    @given(_rest_requests(models))
    def case(request):
        method, path, body = request
        report.cases += 1
        summary = f"{method} {path[:120]} {body[:200]!r}"
        try:
            answer = session.request(method, url + path, data=body, timeout=120, headers={"Content-Type": "application/json"})
        except requests.RequestException as error:
            report.statuses["no answer"] += 1
            report.server_errors.append((summary, "no answer", str(error)[:300]))
            return
        report.statuses[answer.status_code] += 1
        if answer.status_code >= 500:
            report.server_errors.append((summary, answer.status_code, answer.text[:300]))
        elif answer.status_code >= 400 and not _is_error_body(answer.content):
            report.bad_bodies.append((summary, answer.status_code, answer.text[:300]))

    case()
    try:
        report.answers_afterwards = session.get(f"{url}/healthz", timeout=30).status_code == 200 and all(
            session.get(f"{url}/v1/models/{model}", timeout=30).status_code == 200 for model in models
        )
    except requests.RequestException:
        report.answers_afterwards = False
    return report


def fuzz_grpc(target, examples=1000, seed=0, models=None, url=None):
    """Sends `examples` generated gRPC requests to `target`; returns a `FuzzReport`.

    `models` (see `discover`) comes from the REST `url` when not given.
    """
    import grpc
    from hypothesis import given

    models = models if models is not None else discover(url)
    modules = protos.load()
    report = FuzzReport("grpc")
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    stub = modules.prediction_service_pb2_grpc.PredictionServiceStub(channel)

    @_settings(examples, seed)
    @given(_grpc_requests(models, modules))
    def case(request):
        method, message = request
        report.cases += 1
        try:
            getattr(stub, method)(message, timeout=120)
            report.statuses["OK"] += 1
        except grpc.RpcError as error:
            code = error.code().name
            report.statuses[code] += 1
            if code in SERVER_FAULTS or code == "DEADLINE_EXCEEDED":
                report.server_errors.append((f"{method} {str(message)[:300]}", code, (error.details() or "")[:300]))

    try:
        case()
        status = modules.get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = next(iter(models), "none")
        modules.model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)
        report.answers_afterwards = True
    except grpc.RpcError as error:
        report.answers_afterwards = bool(models) is False and error.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
    return report


def _settings(examples, seed):
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as with_seed

    configured = settings(
        max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    return lambda function: with_seed(seed)(configured(function))


def _is_error_body(content):
    try:
        document = json.loads(content)
    except ValueError:
        return False
    return isinstance(document, dict) and list(document) == ["error"] and isinstance(document["error"], str)


def _tensor_info(info):
    shape = info.get("tensor_shape", {})
    dims = None if shape.get("unknown_rank") else [int(dim.get("size", -1)) for dim in shape.get("dim", [])]
    return info.get("dtype", "DT_FLOAT"), dims


def _mostly(value, other):
    """`value` nine times in ten, else a draw from `other`: most cases then get past the first check."""
    from hypothesis import strategies as st

    return st.integers(0, 9).flatmap(lambda coin: other if coin == 0 else st.just(value))


def _scalars():
    from hypothesis import strategies as st

    b64 = st.builds(lambda data: {"b64": base64.b64encode(data).decode()}, st.binary(max_size=48))
    bad_b64 = st.builds(lambda text: {"b64": text}, st.text(max_size=12))
    return st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1e308, -1e308, 3.5e38, 1e-320, 2**63, 2**64 + 1, 10**400]), st.text(max_size=16), b64, bad_b64,
    )


def _rest_requests(models):
    from hypothesis import strategies as st

    names = sorted(models) or ["none"]
    signatures = [(model, name, spec) for model in sorted(models) for name, spec in sorted(models[model].items())] or [("none", "x", {"inputs": {}})]
    json_values = st.recursive(_scalars(), lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=30)

    @st.composite
    def tensor(draw, dims):
        rank = len(dims) if dims is not None else draw(st.integers(0, 3))
        shape = [draw(st.integers(1, 3)) if dims is None or dims[axis] < 0 else dims[axis] for axis in range(rank)]
        if draw(st.integers(0, 4)) == 0 and shape:  # A shape that disagrees with the signature's.
            shape[draw(st.integers(0, len(shape) - 1))] += draw(st.sampled_from([-1, 1]))
        shape = [max(size, 0) for size in shape]
        while shape and math.prod(shape) > _MAX_VALUES:
            shape[-1] = max(shape[-1] // 2, 1)
        values = np.empty(shape, dtype=object)
        values[...] = draw(st.one_of(st.floats(0, 255), st.floats(0, 255), st.integers(0, 255), _scalars()))
        for _ in range(draw(st.integers(0, 3)) if draw(st.integers(0, 2)) == 0 else 0):
            if values.size:
                values.flat[draw(st.integers(0, values.size - 1))] = draw(_scalars())
        return values.tolist()

    @st.composite
    def predict(draw):
        model, name, spec = draw(st.sampled_from(signatures))
        inputs = {key: draw(tensor(dims)) for key, (_, dims) in spec["inputs"].items()}
        if draw(st.integers(0, 9)) == 0:
            inputs[draw(st.sampled_from(["unknown", "", "images", "text"]))] = draw(json_values)
        body = {"signature_name": draw(_mostly(name, st.one_of(st.text(max_size=10), st.integers())))}
        if len(inputs) == 1 and draw(st.booleans()):
            body["instances"] = next(iter(inputs.values())) if isinstance(next(iter(inputs.values())), list) else [next(iter(inputs.values()))]
        else:
            body["inputs"] = inputs
        return "POST", f"/v1/models/{model}:predict", json.dumps(body, allow_nan=True).encode()

    @st.composite
    def examples(draw):
        model, name, _ = draw(st.sampled_from(signatures))
        features = st.dictionaries(st.sampled_from(["x", "x2", "a", ""]), st.one_of(_scalars(), st.lists(_scalars(), max_size=4)), max_size=3)
        body = {"signature_name": name, "examples": draw(st.one_of(st.lists(features, max_size=4), json_values))}
        if draw(st.booleans()):
            body["context"] = draw(st.one_of(features, json_values))
        verb = draw(st.sampled_from(["classify", "regress"]))
        return "POST", f"/v1/models/{model}:{verb}", json.dumps(body, allow_nan=True).encode()

    @st.composite
    def nesting(draw):
        depth = draw(st.integers(1, 200_000))
        opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = opening * depth + ("1" if opening == "[" else "1") + closing * depth
        wrapped = draw(st.sampled_from(["{}", '{{"instances": {}}}', '{{"inputs": {}}}']))
        return "POST", f"/v1/models/{draw(st.sampled_from(names))}:predict", wrapped.format(inner).encode()

    @st.composite
    def paths(draw):
        segment = st.text(min_size=0, max_size=12)
        path = "/v1/models/" + draw(st.one_of(st.sampled_from(names), segment))
        if draw(st.booleans()):
            path += "/versions/" + str(draw(st.one_of(st.integers(-5, 2**70), segment)))
        if draw(st.booleans()):
            path += "/labels/" + draw(segment)
        path += draw(st.sampled_from(["", "/metadata", ":predict", ":classify", ":regress", ":PREDICT", ":x", "/"]))
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
        body = draw(st.one_of(st.binary(max_size=64), st.builds(lambda value: json.dumps(value, allow_nan=True).encode(), json_values)))
        return method, urllib.parse.quote(path, safe="/:"), body

    random_json = st.builds(
        lambda model, verb, value: ("POST", f"/v1/models/{model}:{verb}", json.dumps(value, allow_nan=True).encode()),
        st.sampled_from(names), st.sampled_from(["predict", "classify", "regress"]), json_values,
    )
    raw = st.builds(lambda model, data: ("POST", f"/v1/models/{model}:predict", data), st.sampled_from(names), st.binary(max_size=256))
    return st.one_of(predict(), predict(), examples(), random_json, nesting(), raw, paths())


def _grpc_requests(models, modules):
    from hypothesis import strategies as st

    names = sorted(models) or ["none"]
    signatures = [(model, name, spec) for model in sorted(models) for name, spec in sorted(models[model].items())] or [("none", "x", {"inputs": {}})]
    dtypes = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 9, 10, 19, 0, 8, 14, 17, 21, 23, 30])

    @st.composite
    def tensor(draw, dims, dtype):
        proto = modules.tensor_pb2.TensorProto(dtype=draw(_mostly(dtype, dtypes)))
        if dims is not None and draw(st.integers(0, 3)):
            shape = [draw(st.integers(1, 3)) if size < 0 else size for size in dims]
        else:
            shape = draw(st.lists(st.one_of(st.integers(-3, 6), st.sampled_from(_HUGE)), max_size=5))
        if draw(st.booleans()) and dims is not None and math.prod(max(size, 1) for size in shape) <= _MAX_VALUES:
            # Content that matches the declared shape, but possibly not the dtype the signature wants.
            values = np.full([max(size, 0) for size in shape], draw(st.floats(0, 255)))
            name = protos.dtype_name(proto.dtype) if proto.dtype in (1, 2, 3, 4, 5, 6, 9, 19) else "float32"
            kept = proto.dtype
            proto.CopyFrom(protos.to_tensor_proto(values.astype(name)))
            proto.dtype = kept
        else:
            for size in shape:
                proto.tensor_shape.dim.add(size=size)
            field = draw(st.sampled_from(["float_val", "double_val", "int_val", "int64_val", "bool_val", "string_val", "half_val", "tensor_content", None]))
            values = {
                "float_val": st.lists(st.floats(width=32, allow_nan=True), max_size=8),
                "double_val": st.lists(st.floats(allow_nan=True), max_size=8),
                "int_val": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
                "int64_val": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
                "bool_val": st.lists(st.booleans(), max_size=8),
                "string_val": st.lists(st.binary(max_size=32), max_size=8),
                "half_val": st.lists(st.integers(0, 65535), max_size=8),
            }
            if field == "tensor_content":
                proto.tensor_content = draw(st.binary(max_size=4096))
            elif field is not None:
                getattr(proto, field).extend(draw(values[field]))
        return proto

    @st.composite
    def predict(draw):
        model, name, signature = draw(st.sampled_from(signatures))
        request = modules.predict_pb2.PredictRequest()
        request.model_spec.name = draw(_mostly(model, st.text(max_size=8)))
        request.model_spec.signature_name = draw(_mostly(name, st.text(max_size=8)))
        if draw(st.integers(0, 9)) == 0:
            request.model_spec.version.value = draw(st.integers(-(2**63), 2**63 - 1))
        for key, (dtype, dims) in signature["inputs"].items():
            request.inputs[draw(_mostly(key, st.text(max_size=8)))].CopyFrom(draw(tensor(dims, _DTYPE_ENUMS.get(dtype, 1))))
        if draw(st.booleans()):
            request.output_filter.extend(draw(st.lists(st.text(max_size=8), max_size=2)))
        return "Predict", request

    @st.composite
    def examples(draw):
        model, name, _ = draw(st.sampled_from(signatures))
        method = draw(st.sampled_from(["Classify", "Regress", "MultiInference"]))
        request = {"Classify": modules.classification_pb2.ClassificationRequest, "Regress": modules.regression_pb2.RegressionRequest,
                   "MultiInference": modules.inference_pb2.MultiInferenceRequest}[method]()
        with_context = draw(st.booleans())
        target = request.input.example_list_with_context if with_context else request.input.example_list
        for _ in range(draw(st.integers(0, 3))):
            example = target.examples.add()
            for feature in draw(st.lists(st.sampled_from(["x", "x2", "a"]), max_size=3)):
                kind = draw(st.sampled_from(["float_list", "int64_list", "bytes_list"]))
                values = {"float_list": st.floats(width=32, allow_nan=True), "int64_list": st.integers(-(2**63), 2**63 - 1), "bytes_list": st.binary(max_size=8)}[kind]
                getattr(example.features.feature[feature], kind).value.extend(draw(st.lists(values, max_size=3)))
        if method == "MultiInference":
            for _ in range(draw(st.integers(0, 3))):
                task = request.tasks.add(method_name=draw(st.sampled_from(["tensorflow/serving/classify", "tensorflow/serving/regress", "tensorflow/serving/predict", ""])))
                task.model_spec.name = draw(st.one_of(st.just(model), st.text(max_size=6)))
                task.model_spec.signature_name = draw(st.one_of(st.sampled_from(sorted(models.get(model, {"x": 0}))), st.text(max_size=6)))
        else:
            request.model_spec.name = draw(st.one_of(st.just(model), st.sampled_from(names)))
            request.model_spec.signature_name = draw(st.one_of(st.just(name), st.text(max_size=8)))
        return method, request

    @st.composite
    def metadata(draw):
        request = modules.get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = draw(st.one_of(st.sampled_from(names), st.text(max_size=8)))
        request.metadata_field.extend(draw(st.lists(st.sampled_from(["signature_def", "x", ""]), max_size=2)))
        if draw(st.booleans()):
            request.model_spec.version_label = draw(st.text(max_size=8))
        return "GetModelMetadata", request

    return st.one_of(predict(), predict(), predict(), examples(), metadata())
