"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) over FastAPI.

Routes:
    GET  /v1/models/{model}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{model}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{model}[/versions/{v}|/labels/{l}]:predict    predictions
    POST /v1/models/{model}[/versions/{v}|/labels/{l}]:classify   classifications (tf.Examples)
    POST /v1/models/{model}[/versions/{v}|/labels/{l}]:regress    regressions (tf.Examples)
    GET  /monitoring/prometheus/metrics                          Prometheus metrics
    GET  /healthz (liveness), /readyz (a model is loaded)

Paths under /v1/ are parsed with TF Serving's own patterns
(`model_servers/http_rest_api_util.cc`): a path they do not match, a
version that is not a number, or the wrong HTTP method for a path is
"Malformed request" (400), as in TF Serving; any other unknown path is 404.
Every error body is `{"error": "..."}` with TF Serving's status for its code
(see `serving.edge.errors`). The JSON mapping is in `serving.edge.rest_json`.
"""

import json
import logging
import re
import time
import urllib.parse

from serving.edge import rest_json
from serving.edge.errors import HTTP_STATUS, InvalidInput, ResourceExhausted, status_of
from serving.edge.examples import input_from_json
from serving.edge.metrics import CONTENT_TYPE, PATH as METRICS_PATH

LOGGER = logging.getLogger("serving.edge")

# TF Serving's patterns, case-insensitive as there; POST takes the first, GET the second.
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
_INT64_MAX = 2**63 - 1
_API_OF_VERB = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}


def parse_path(method, path):
    """Parses a /v1/ request path as TF Serving does; returns `(model, version, label, verb_or_"metadata"_or_None)`.

    Raises:
        InvalidInput: "Malformed request: ...", "Missing model name in request.",
            or "Failed to convert version: ... to numeric." (all 400 in TF Serving).

    Example:
    >>> parse_path("POST", "/v1/models/cnn/versions/2:predict")
    ('cnn', 2, None, 'predict')
    >>> parse_path("GET", "/v1/models/cnn/labels/stable/metadata")
    ('cnn', None, 'stable', 'metadata')
    """
    pattern = {"POST": _PREDICTION_PATH, "GET": _STATUS_PATH}.get(method)
    match = pattern.fullmatch(path) if pattern is not None else None
    # TF Serving matches the verb case-insensitively but dispatches only the lower-case ones.
    if match is None or (method == "POST" and match[4] not in _API_OF_VERB):
        raise InvalidInput(f"Malformed request: {method} {path}")
    model = urllib.parse.unquote(match[1]) if match[1] else ""
    if not model:
        raise InvalidInput("Missing model name in request.")
    version = None
    if match[2] is not None:
        version = int(match[2])
        if version > _INT64_MAX:
            raise InvalidInput(f"Failed to convert version: {match[2]} to numeric.")
    label = urllib.parse.unquote(match[3]) if match[3] else None
    if method == "POST":
        return model, version, label, match[4]
    return model, version, label, "metadata" if match[4] == "metadata" else None


def build_app(service, max_body_bytes=10 * 1024 * 1024, metadata_of=None):
    """Returns the FastAPI app for `service` (an `EdgeService`).

    Args:
        service: the `EdgeService`.
        max_body_bytes: larger request bodies are refused (RESOURCE_EXHAUSTED, 429) before they are parsed.
        metadata_of: `(model, version, backend) -> dict`, the metadata response.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from serving.edge.metadata import metadata_json

    metadata_of = metadata_of or metadata_json
    app = FastAPI(title="kerasdl edge server", docs_url=None, redoc_url=None, openapi_url=None)

    def json_response(document, status=200):
        return Response(rest_json.dumps(document), status_code=status, media_type="application/json")

    def error(status, message):
        return json_response({"error": message}, status)

    @app.exception_handler(HTTPException)
    async def http_error(request, problem):
        # Starlette's own refusals (405 on /healthz, ...) in TF Serving's error shape.
        return error(problem.status_code, f"{problem.detail}: {request.method} {request.url.path}")

    @app.middleware("http")
    async def log_requests(request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        record = {
            "event": "request",
            "protocol": "rest",
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        record.update(getattr(request.state, "log", {}))
        LOGGER.info(json.dumps(record))
        return response

    @app.get("/healthz")
    async def healthz():
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz():
        models = service.repository.model_names()
        if not models:
            return json_response({"status": "no model loaded", "models": []}, 503)
        return json_response({"status": "ready", "models": models})

    @app.get(METRICS_PATH)
    async def prometheus_metrics():
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def everything_else(path: str, request: Request):
        raw = request.scope.get("raw_path") or request.url.path.encode()
        full_path = raw.decode("latin-1").split("?", 1)[0]
        if not full_path.lower().startswith("/v1/") and full_path.lower() != "/v1":
            return error(404, f"Not found: {request.method} {full_path}")
        started = time.perf_counter()
        log = request.state.log = {}
        model = version = None
        api = "Unknown"
        try:
            model, version, label, action = parse_path(request.method, full_path)
            log["model"] = model
            if action in _API_OF_VERB:
                api = _API_OF_VERB[action]
                body = await _read_body(request, max_body_bytes)
                resolved = service.repository.resolve(model, version, label)
                version = resolved[0]
                document, extra = await run_in_threadpool(_infer, service, action, model, resolved, body)
                log.update(extra)
            elif action == "metadata":
                api = "GetModelMetadata"
                version, backend = service.repository.resolve(model, version, label)
                document = metadata_of(model, version, backend)
            else:
                api = "GetModelStatus"
                document = {"model_version_status": service.repository.status(model, version, label)}
            code, response = "OK", json_response(document)
        except Exception as problem:  # Every failure answers {"error"} with TF Serving's status.
            code, message, unexpected = status_of(problem)
            if unexpected:
                LOGGER.error("unexpected error serving %s %s", request.method, full_path, exc_info=problem)
            response = error(HTTP_STATUS[code], message)
        log["code"] = code
        if model is not None:
            service.record_request(model, version, api, "REST", code, time.perf_counter() - started)
        return response

    return app


def _infer(service, action, model, resolved, body):
    """Runs one :predict/:classify/:regress body on a resolved `(version, backend)`; returns `(document, log fields)`."""
    request = rest_json.load_json(body)
    signature_name = request.get("signature_name") or None
    version, backend = resolved
    if action == "predict":
        signature = service.signature(backend, model, signature_name)
        inputs, row_format = rest_json.parse_predict(request, signature)
        version, signature, outputs = service.predict(model, inputs, signature_name=signature.name, resolved=resolved)
        document = rest_json.predict_response(outputs, row_format)
        first = next(iter(inputs.values()))
        rows = len(first) if first.ndim else 1
    elif action == "classify":
        version, signature, results = service.classify(model, input_from_json(request, "classify"), version, None, signature_name)
        document, rows = rest_json.classify_response(results), len(results)
    else:
        version, signature, values = service.regress(model, input_from_json(request, "regress"), version, None, signature_name)
        document, rows = rest_json.regress_response(values), len(values)
    return document, {"version": version, "signature": signature.name, "rows": rows}


async def _read_body(request, limit):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ResourceExhausted(f"request body of {declared} bytes exceeds the limit of {limit} bytes (--max-body-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ResourceExhausted(f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)
