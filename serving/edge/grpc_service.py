"""TF Serving's gRPC API: `PredictionService` (Predict, Classify, Regress, MultiInference,
GetModelMetadata) and `ModelService.GetModelStatus`.

The messages are TF Serving's own (`tensorflow_serving.apis`), loaded without
TensorFlow (see `serving.protos`), so TF Serving's clients work unchanged.
Errors abort with their canonical code (see `serving.edge.errors`), and the
request log line and the request metrics carry that same code.
"""

import json
import logging
import re
import time
from concurrent import futures

from serving import protos
from serving.edge.errors import InvalidInput, ResourceExhausted, status_of
from serving.edge.metadata import served_file, signature_def_map
from serving.edge.quiet import filtered_stderr

LOGGER = logging.getLogger("serving.edge")
_BIND_FAILURE_LINE = re.compile(r"add_port\.cc:\d+\] Failed to add port to server")


def build_grpc_server(service, host, port, max_message_bytes=10 * 1024 * 1024, workers=32, reuse_port=False):
    """Returns `(server, bound_port)`: a started-later `grpc.Server` serving `service`.

    `reuse_port` lets other processes bind the same port (`--workers`); otherwise a
    port already in use is an error (gRPC would share it silently by default).

    Example:
    >>> server, port = build_grpc_server(service, "127.0.0.1", 8500)
    >>> server.start()
    """
    import grpc

    modules = protos.load()
    options = [
        ("grpc.max_receive_message_length", int(max_message_bytes)),
        ("grpc.max_send_message_length", int(max_message_bytes)),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"), options=options)
    # Subclassing the generated servicers makes the methods this server does not
    # implement (HandleReloadConfigRequest) answer UNIMPLEMENTED, as they should.
    prediction = type("PredictionService", (_PredictionService, modules.prediction_service_pb2_grpc.PredictionServiceServicer), {})
    model = type("ModelService", (_ModelService, modules.model_service_pb2_grpc.ModelServiceServicer), {})
    modules.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction(service, grpc), server)
    modules.model_service_pb2_grpc.add_ModelServiceServicer_to_server(model(service, grpc), server)
    # gRPC's C++ core logs its own line about a failed bind; the one-line error below says it.
    with filtered_stderr(_BIND_FAILURE_LINE):
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:  # Recent grpcio raises where older releases returned 0.
            bound = 0
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {host}:{port}; is it in use?")
    return server, bound


def _model_spec(request_spec):
    version = request_spec.version.value if request_spec.HasField("version") else None
    label = request_spec.version_label or None
    return request_spec.name, version, label


def _fill_spec(spec, name, version, signature_name=None):
    spec.name = name
    spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name


class _Base:
    def __init__(self, service, grpc):
        super().__init__()
        self.service = service
        self.grpc = grpc
        self.modules = protos.load()

    def _call(self, api, context, model, function):
        """Runs `function(resolved) -> response`; aborts with the failure's canonical code, logged as such.

        `resolved` is a dict that the function fills with the "version" it served, so
        that the log line and metrics carry it even when the request fails later.
        """
        started = time.perf_counter()
        resolved = {}
        try:
            response = function(resolved)
            code = "OK"
        except Exception as problem:  # Every failure answers with its canonical code.
            code, message, unexpected = status_of(problem)
            if unexpected:
                LOGGER.error("unexpected error serving gRPC %s", api, exc_info=problem)
        elapsed = time.perf_counter() - started
        version = resolved.get("version")
        if LOGGER.isEnabledFor(logging.INFO):
            LOGGER.info(
                json.dumps(
                    {"event": "request", "protocol": "grpc", "method": api, "model": model, "version": version,
                     "status": code, "latency_ms": round(elapsed * 1000, 3)}
                )
            )
        if model:
            self.service.record_request(model, version, api, "GRPC", code, elapsed)
        if code != "OK":
            context.abort(getattr(self.grpc.StatusCode, code), message)
        return response


class _PredictionService(_Base):
    def Predict(self, request, context):
        def predict(resolved):
            name, version, label = _model_spec(request.model_spec)
            served = self.service.repository.resolve(name, version, label)
            resolved["version"] = served[0]
            inputs, total = {}, 0
            for key, tensor in request.inputs.items():
                try:
                    # Bound the declared size before anything is allocated: one value may declare any shape.
                    total += protos.element_count(tensor)
                    if self.service.max_elements is not None and total > self.service.max_elements:
                        raise ResourceExhausted(
                            f"the request declares {total} values, more than this server's limit of "
                            f"{self.service.max_elements} (--max-elements)"
                        )
                    inputs[key] = protos.to_numpy(tensor)
                except ValueError as problem:
                    raise InvalidInput(f"input {key!r}: {problem}") from None
            resolved_version, signature, outputs = self.service.predict(
                name,
                inputs,
                signature_name=request.model_spec.signature_name or None,
                output_filter=list(request.output_filter) or None,
                resolved=served,
            )
            response = self.modules.predict_pb2.PredictResponse()
            _fill_spec(response.model_spec, name, resolved_version, signature.name)
            for key, value in outputs.items():
                try:
                    protos.fill_tensor_proto(response.outputs[key], value)
                except ValueError as problem:
                    raise InvalidInput(f"output {key!r} cannot be sent: {problem}") from None
            return response

        return self._call("Predict", context, request.model_spec.name, predict)

    def Classify(self, request, context):
        def classify(resolved):
            name, version, label = _model_spec(request.model_spec)
            resolved["version"] = self.service.repository.resolve(name, version, label)[0]
            resolved_version, signature, results = self.service.classify(
                name, request.input, resolved["version"], None, request.model_spec.signature_name or None
            )
            response = self.modules.classification_pb2.ClassificationResponse()
            _fill_spec(response.model_spec, name, resolved_version, signature.name)
            _fill_classifications(response.result, results)
            return response

        return self._call("Classify", context, request.model_spec.name, classify)

    def Regress(self, request, context):
        def regress(resolved):
            name, version, label = _model_spec(request.model_spec)
            resolved["version"] = self.service.repository.resolve(name, version, label)[0]
            resolved_version, signature, values = self.service.regress(
                name, request.input, resolved["version"], None, request.model_spec.signature_name or None
            )
            response = self.modules.regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, name, resolved_version, signature.name)
            response.result.regressions.extend(self.modules.regression_pb2.Regression(value=value) for value in values)
            return response

        return self._call("Regress", context, request.model_spec.name, regress)

    def MultiInference(self, request, context):
        def infer(resolved):
            tasks = [(*_model_spec(task.model_spec), task.model_spec.signature_name or None, task.method_name) for task in request.tasks]
            version, results = self.service.multi_inference(tasks, request.input)
            resolved["version"] = version
            response = self.modules.inference_pb2.MultiInferenceResponse()
            for (name, *_), (signature, method, values) in zip(tasks, results):
                result = response.results.add()
                _fill_spec(result.model_spec, name, version, signature.name)
                if method.endswith("classify"):
                    _fill_classifications(result.classification_result, values)
                else:
                    result.regression_result.regressions.extend(
                        self.modules.regression_pb2.Regression(value=value) for value in values
                    )
            return response

        model = request.tasks[0].model_spec.name if request.tasks else ""
        return self._call("MultiInference", context, model, infer)

    def GetModelMetadata(self, request, context):
        def metadata(resolved):
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
            name, version, label = _model_spec(request.model_spec)
            resolved_version, backend = self.service.repository.resolve(name, version, label)
            resolved["version"] = resolved_version
            response = self.modules.get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_spec(response.model_spec, name, resolved_version)
            response.metadata["signature_def"].Pack(signature_def_map(backend))
            if served_file(backend) is not None:
                # The ONNX file served (--onnx-variant), as a StringValue beside the signatures.
                from google.protobuf import wrappers_pb2

                response.metadata["model_file"].Pack(wrappers_pb2.StringValue(value=served_file(backend)))
            return response

        return self._call("GetModelMetadata", context, request.model_spec.name, metadata)


class _ModelService(_Base):
    def GetModelStatus(self, request, context):
        def status(resolved):
            name, version, label = _model_spec(request.model_spec)
            response = self.modules.get_model_status_pb2.GetModelStatusResponse()
            for item in self.service.repository.status(name, version, label):
                entry = response.model_version_status.add()
                entry.version = int(item["version"])
                entry.state = self.modules.get_model_status_pb2.ModelVersionStatus.AVAILABLE
            resolved["version"] = version
            return response

        return self._call("GetModelStatus", context, request.model_spec.name, status)


def _fill_classifications(result, results):
    for classes in results:
        classifications = result.classifications.add()
        for label, score in classes:
            classifications.classes.add(label=label.decode("utf-8", errors="replace"), score=score)
