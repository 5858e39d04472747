"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) as a plain ASGI application.

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

Why plain ASGI and not a web framework: these eight routes are all the
server has, and a framework's routing, request objects and middleware run on
every request, where a small model's own run takes about 0.15 ms
(`benchmarks/serving_bench.py` measures the whole path). The event loop reads
the body; decoding, the model run and encoding happen in a thread of
`_EXECUTOR_THREADS`, so a large body or a slow model never blocks other
connections.
"""

import asyncio
import concurrent.futures
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
# Requests decoded and run at once. With batching, a request waits in its thread for
# the batch it joins, so this bounds how many requests one batch can gather (64 covers
# the largest default batch, 32, twice over); beyond it requests wait for a thread.
_EXECUTOR_THREADS = 64
_JSON_HEADERS = [(b"content-type", b"application/json")]


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
    """Returns the ASGI application serving `service` (an `EdgeService`).

    Args:
        service: the `EdgeService`.
        max_body_bytes: larger request bodies are refused (RESOURCE_EXHAUSTED, 429) before they are parsed.
        metadata_of: `(model, version, backend) -> dict`, the metadata response.

    Example:
    >>> app = build_app(service)
    >>> uvicorn.run(app, port=8501)
    """
    return RestApp(service, max_body_bytes, metadata_of)


class RestApp:
    """The REST API as an ASGI 3 application (see the module docstring and `build_app`)."""

    def __init__(self, service, max_body_bytes=10 * 1024 * 1024, metadata_of=None):
        from serving.edge.metadata import metadata_json

        self.service = service
        self.max_body_bytes = max_body_bytes
        self.metadata_of = metadata_of or metadata_json
        self.executor = concurrent.futures.ThreadPoolExecutor(_EXECUTOR_THREADS, thread_name_prefix="rest")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope, receive, send):
        started = time.perf_counter()
        method = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        full_path = raw.decode("latin-1").split("?", 1)[0]
        log = {}
        if method == "GET" and full_path == "/healthz":
            status, body, content_type = 200, rest_json.dumps({"status": "ok"}), None
        elif method == "GET" and full_path == "/readyz":
            models = self.service.repository.model_names()
            document = {"status": "ready", "models": models} if models else {"status": "no model loaded", "models": []}
            status, body, content_type = (200 if models else 503), rest_json.dumps(document), None
        elif method == "GET" and full_path == METRICS_PATH:
            status, body, content_type = 200, self.service.metrics.exposition(), CONTENT_TYPE.encode("latin-1")
        elif not full_path.lower().startswith("/v1/") and full_path.lower() != "/v1":
            status, body, content_type = 404, _error_body(f"Not found: {method} {full_path}"), None
        else:
            status, body = await self._v1(method, full_path, scope["headers"], receive, started, log)
            content_type = None
        # Logged before the answer leaves: a client that reads the log after its answer finds the line.
        if LOGGER.isEnabledFor(logging.INFO):
            record = {"event": "request", "protocol": "rest", "method": method, "path": scope["path"], "status": status,
                      "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
            record.update(log)
            LOGGER.info(json.dumps(record))
        headers = _JSON_HEADERS if content_type is None else [(b"content-type", content_type)]
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode("latin-1"))]})
        await send({"type": "http.response.body", "body": body})

    async def _v1(self, method, full_path, scope_headers, receive, started, log):
        """Answers a /v1/ request; returns `(status, body)`. Every failure is TF Serving's `{"error"}`."""
        service = self.service
        model = version = None
        api = "Unknown"
        try:
            model, version, label, action = parse_path(method, full_path)
            log["model"] = model
            if action in _API_OF_VERB:
                api = _API_OF_VERB[action]
                body = await _read_body(scope_headers, receive, self.max_body_bytes)
                resolved = service.repository.resolve(model, version, label)
                version = resolved[0]
                loop = asyncio.get_running_loop()
                payload, extra = await loop.run_in_executor(self.executor, _infer, service, action, model, resolved, body)
                log.update(extra)
            elif action == "metadata":
                api = "GetModelMetadata"
                version, backend = service.repository.resolve(model, version, label)
                payload = rest_json.dumps(self.metadata_of(model, version, backend))
            else:
                api = "GetModelStatus"
                payload = rest_json.dumps({"model_version_status": service.repository.status(model, version, label)})
            code, status = "OK", 200
        except Exception as problem:  # Every failure answers {"error"} with TF Serving's status.
            code, message, unexpected = status_of(problem)
            if unexpected:
                LOGGER.error("unexpected error serving %s %s", method, full_path, exc_info=problem)
            status, payload = HTTP_STATUS[code], _error_body(message)
        log["code"] = code
        if model is not None:
            service.record_request(model, version, api, "REST", code, time.perf_counter() - started)
        return status, payload


def _infer(service, action, model, resolved, body):
    """Runs one :predict/:classify/:regress body on a resolved `(version, backend)`; returns `(response bytes, log fields)`."""
    # tf.Example features keep the json module's reading of numbers (see serving.edge.rest_json).
    request = rest_json.load_json(body, exact=action != "predict")
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
    return rest_json.dumps(document), {"version": version, "signature": signature.name, "rows": rows}


def _error_body(message):
    return rest_json.dumps({"error": message})


async def _read_body(headers, receive, limit):
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ResourceExhausted(f"request body of {int(value)} bytes exceeds the limit of {limit} bytes (--max-body-bytes)")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client closed the connection before the request body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ResourceExhausted(f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive, send):
    """Acknowledges the server's start-up and shutdown (nothing to do at either)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
