"""TF Serving's gRPC API: `PredictionService` (Predict, GetModelMetadata) and `ModelService.GetModelStatus`.

The messages are TF Serving's own (`tensorflow_serving.apis`), loaded without
TensorFlow (see `serving.protos`), so TF Serving's clients work unchanged.
Errors map to gRPC codes the way TF Serving maps them: bad input ->
INVALID_ARGUMENT, unknown model/version/label -> NOT_FOUND.
"""

import json
import logging
import time
from concurrent import futures

from serving import protos
from serving.edge.errors import InvalidInput, NotFound
from serving.edge.metadata import signature_def_map

LOGGER = logging.getLogger("serving.edge")


def build_grpc_server(service, host, port, max_message_bytes=10 * 1024 * 1024, workers=32):
    """Returns `(server, bound_port)`: a started-later `grpc.Server` serving `service`.

    Example:
    >>> server, port = build_grpc_server(service, "127.0.0.1", 8500)
    >>> server.start()
    """
    import grpc

    modules = protos.load()
    options = [
        ("grpc.max_receive_message_length", int(max_message_bytes)),
        ("grpc.max_send_message_length", int(max_message_bytes)),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"), options=options)
    # Subclassing the generated servicers makes the methods this server does
    # not implement (Classify, Regress, MultiInference, HandleReloadConfigRequest)
    # answer UNIMPLEMENTED, as they should.
    prediction = type("PredictionService", (_PredictionService, modules.prediction_service_pb2_grpc.PredictionServiceServicer), {})
    model = type("ModelService", (_ModelService, modules.model_service_pb2_grpc.ModelServiceServicer), {})
    modules.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction(service, grpc), server)
    modules.model_service_pb2_grpc.add_ModelServiceServicer_to_server(model(service, grpc), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {host}:{port}; is it in use?")
    return server, bound


def _model_spec(request_spec):
    version = request_spec.version.value if request_spec.HasField("version") else None
    label = request_spec.version_label or None
    return request_spec.name, version, label


class _Base:
    def __init__(self, service, grpc):
        super().__init__()
        self.service = service
        self.grpc = grpc
        self.modules = protos.load()

    def _call(self, method, context, function):
        started = time.perf_counter()
        code = "OK"
        try:
            return function()
        except NotFound as problem:
            code = "NOT_FOUND"
            context.abort(self.grpc.StatusCode.NOT_FOUND, str(problem))
        except InvalidInput as problem:
            code = "INVALID_ARGUMENT"
            context.abort(self.grpc.StatusCode.INVALID_ARGUMENT, str(problem))
        finally:
            LOGGER.info(
                json.dumps(
                    {
                        "event": "request",
                        "protocol": "grpc",
                        "method": method,
                        "status": code,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    }
                )
            )


class _PredictionService(_Base):
    def Predict(self, request, context):
        def predict():
            name, version, label = _model_spec(request.model_spec)
            inputs = {}
            for key, tensor in request.inputs.items():
                try:
                    inputs[key] = protos.to_numpy(tensor)
                except ValueError as problem:
                    raise InvalidInput(f"input {key!r}: {problem}") from None
            resolved_version, signature, outputs = self.service.predict(
                name,
                inputs,
                version=version,
                label=label,
                signature_name=request.model_spec.signature_name or None,
                output_filter=list(request.output_filter) or None,
            )
            response = self.modules.predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = resolved_version
            response.model_spec.signature_name = signature.name
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(protos.to_tensor_proto(value))
            return response

        return self._call("Predict", context, predict)

    def GetModelMetadata(self, request, context):
        def metadata():
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
            name, version, label = _model_spec(request.model_spec)
            resolved_version, backend = self.service.repository.resolve(name, version, label)
            response = self.modules.get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = name
            response.model_spec.version.value = resolved_version
            response.metadata["signature_def"].Pack(signature_def_map(backend))
            return response

        return self._call("GetModelMetadata", context, metadata)


class _ModelService(_Base):
    def GetModelStatus(self, request, context):
        def status():
            name, version, label = _model_spec(request.model_spec)
            response = self.modules.get_model_status_pb2.GetModelStatusResponse()
            for item in self.service.repository.status(name, version, label):
                entry = response.model_version_status.add()
                entry.version = int(item["version"])
                entry.state = self.modules.get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response

        return self._call("GetModelStatus", context, status)
