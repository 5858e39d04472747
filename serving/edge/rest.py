"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) over FastAPI.

Routes:
    GET  /v1/models/{model}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{model}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{model}[/versions/{v}|/labels/{l}]:predict    predictions
    GET  /healthz (liveness), /readyz (a model is loaded)

TF Serving puts the verb after a colon (`/v1/models/cnn:predict`), which a
path parameter would swallow, so one catch-all route parses the path itself.

Request bodies: row format `{"signature_name": ..., "instances": [...]}` or
columnar `{"inputs": ...}`; binary strings as `{"b64": "..."}`. Responses:
row -> `{"predictions": [...]}` (a list of objects when the signature has
several outputs, of plain values when one); columnar -> `{"outputs": ...}`;
errors -> `{"error": "..."}` with 400 (bad input) or 404 (unknown model).
"""

import base64
import binascii
import json
import logging
import re
import time

import numpy as np

from serving.edge.errors import InvalidInput, NotFound

LOGGER = logging.getLogger("serving.edge")

_PATH = re.compile(
    r"^(?P<model>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<metadata>/metadata)?"
    r"(?::(?P<verb>[A-Za-z]+))?$"
)


def parse_request(body, signature_of):
    """Parses a `:predict` JSON body; returns `(signature_name, inputs, row_format)`.

    Args:
        body: the request bytes.
        signature_of: `signature_name -> Signature`, used to know the inputs'
            names and dtypes (strings decode `{"b64"}`, numbers become arrays).

    Raises:
        InvalidInput: not JSON, no `instances`/`inputs`, or values of the wrong kind.
    """
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the request body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise InvalidInput("the request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = request.get("signature_name") or None
    if signature_name is not None and not isinstance(signature_name, str):
        raise InvalidInput("'signature_name' must be a string")
    has_instances, has_inputs = "instances" in request, "inputs" in request
    if has_instances == has_inputs:
        raise InvalidInput("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    signature = signature_of(signature_name)
    names = list(signature.inputs)
    if has_instances:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("'instances' must be a non-empty list, one item per example")
        named = all(isinstance(item, dict) and not _is_b64(item) for item in instances)
        if named:
            columns = {}
            for index, item in enumerate(instances):
                if set(item) != set(instances[0]):
                    raise InvalidInput(f"instance {index} has inputs {sorted(item)}, instance 0 has {sorted(instances[0])}")
                for name, value in item.items():
                    columns.setdefault(name, []).append(value)
        elif len(names) == 1:
            columns = {names[0]: instances}
        else:
            raise InvalidInput(f"signature {signature.name!r} has inputs {names}: each instance must be an object naming them")
        raw = columns
    else:
        value = request["inputs"]
        if isinstance(value, dict) and not _is_b64(value):
            raw = value
        elif len(names) == 1:
            raw = {names[0]: value}
        else:
            raise InvalidInput(f"signature {signature.name!r} has inputs {names}: 'inputs' must be an object naming them")
    inputs = {}
    for name, value in raw.items():
        spec = signature.inputs.get(name)
        if spec is None:
            raise InvalidInput(f"unknown input {name!r} for signature {signature.name!r}; expected: {', '.join(sorted(names))}")
        inputs[name] = _to_array(name, value, spec.dtype)
    return signature.name, inputs, has_instances


def format_response(outputs, row_format):
    """Returns the JSON-ready response of `outputs` (name -> array) in TF Serving's layout."""
    converted = {name: _to_json(name, array) for name, array in outputs.items()}
    if row_format:
        rows = len(next(iter(outputs.values())))
        if len(converted) == 1:
            return {"predictions": next(iter(converted.values()))}
        return {"predictions": [{name: values[index] for name, values in converted.items()} for index in range(rows)]}
    if len(converted) == 1:
        return {"outputs": next(iter(converted.values()))}
    return {"outputs": converted}


def build_app(service, max_body_bytes=10 * 1024 * 1024, metadata_of=None):
    """Returns the FastAPI app for `service` (an `EdgeService`).

    Args:
        service: the `EdgeService`.
        max_body_bytes: larger request bodies get a 400 before they are parsed.
        metadata_of: `(model, version, backend) -> dict`, the metadata response.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from serving.edge.metadata import metadata_json

    metadata_of = metadata_of or metadata_json
    app = FastAPI(title="kerasdl edge server", docs_url=None, redoc_url=None, openapi_url=None)

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
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        models = service.repository.model_names()
        if not models:
            return JSONResponse({"status": "no model loaded", "models": []}, status_code=503)
        return {"status": "ready", "models": models}

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status)

    @app.api_route("/v1/models/{rest:path}", methods=["GET", "POST"])
    async def models(rest: str, request: Request):
        match = _PATH.match(rest)
        if match is None:
            return error(404, f"unknown path /v1/models/{rest}; see the TF Serving REST API")
        model, version, label = match["model"], match["version"], match["label"]
        if version is not None and not version.isdigit():
            return error(400, f"version must be a non-negative integer, got {version!r}")
        request.state.log = {"model": model}
        try:
            if match["verb"] is not None:
                if match["verb"] != "predict":
                    return error(400, f"unsupported verb :{match['verb']}; this server implements :predict")
                if request.method != "POST":
                    return error(405, ":predict takes POST")
                body = await _read_body(request, max_body_bytes)
                result = await run_in_threadpool(_predict, service, model, version, label, body)
                request.state.log.update(result.pop("_log"))
                return JSONResponse(result)
            if request.method != "GET":
                return error(405, "model status and metadata take GET")
            if match["metadata"]:
                resolved_version, backend = service.repository.resolve(model, version, label)
                return JSONResponse(metadata_of(model, resolved_version, backend))
            return JSONResponse({"model_version_status": service.repository.status(model, version, label)})
        except NotFound as problem:
            return error(404, str(problem))
        except InvalidInput as problem:
            return error(400, str(problem))

    return app


def _predict(service, model, version, label, body):
    resolved = service.repository.resolve(model, version, label)
    backend = resolved[1]
    signature_name, inputs, row_format = parse_request(
        body, lambda name: service.signature(backend, model, name)
    )
    resolved_version, signature, outputs = service.predict(
        model, inputs, signature_name=signature_name, resolved=resolved
    )
    response = format_response(outputs, row_format)
    rows = len(next(iter(outputs.values())))
    response["_log"] = {"version": resolved_version, "signature": signature.name, "rows": rows}
    return response


async def _read_body(request, limit):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidInput(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidInput(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _to_array(name, value, dtype):
    if dtype == "string":
        try:
            return _string_array(value)
        except binascii.Error as problem:
            raise InvalidInput(f"input {name!r} holds invalid base64: {problem}") from None
        except (TypeError, ValueError) as problem:
            raise InvalidInput(f"input {name!r} must hold strings or {{\"b64\": ...}} values: {problem}") from None
    try:
        array = np.asarray(value)
    except ValueError as problem:
        raise InvalidInput(f"input {name!r} must be a regular (non-ragged) nested list of numbers: {problem}") from None
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {name!r} must hold {dtype} numbers, got {_describe(value)}")
    return array


def _string_array(value):
    """Converts nested lists of str / {"b64"} into an object array of bytes (shape kept)."""
    if isinstance(value, str):
        return np.array(value.encode("utf-8"), dtype=object)
    if _is_b64(value):
        if not isinstance(value["b64"], str):
            raise TypeError("the b64 value must be a string")
        return np.array(base64.b64decode(value["b64"], validate=True), dtype=object)
    if isinstance(value, list):
        items = [_string_array(item) for item in value]
        shapes = {item.shape for item in items}
        if len(shapes) > 1:
            raise ValueError("nested lists have different lengths")
        stacked = np.empty((len(items),) + (items[0].shape if items else ()), dtype=object)
        for index, item in enumerate(items):
            stacked[index, ...] = item
        return stacked
    raise TypeError(f"got {type(value).__name__}")


def _to_json(name, array):
    array = np.asarray(array)
    if array.dtype.kind == "O" or array.dtype.kind == "S":
        return _strings_to_json(name, array.tolist())
    if array.dtype.kind == "f":
        return array.astype(np.float64).tolist()
    return array.tolist()


def _strings_to_json(name, value):
    if isinstance(value, list):
        return [_strings_to_json(name, item) for item in value]
    if isinstance(value, bytes):
        # TF Serving returns outputs whose names end in `_bytes` as base64.
        if not name.endswith("_bytes"):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _describe(value):
    while isinstance(value, list) and value:
        value = value[0]
    return f"{type(value).__name__} values"

