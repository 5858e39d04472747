"""TF Serving's JSON mapping for the REST API: request bodies to arrays, outputs to response bodies.

Request bodies: row format `{"signature_name": ..., "instances": [...]}` or
columnar `{"inputs": ...}`; binary strings as `{"b64": "..."}`. Responses:
row -> `{"predictions": [...]}` (a list of objects when the signature has
several outputs, of plain values when one); columnar -> `{"outputs": ...}`;
classify -> `{"results": [[[label, score], ...], ...]}`; regress ->
`{"results": [value, ...]}`. Floats are written as the shortest decimal that
reads back as the same float32 (0.1, not 0.10000000149011612), and NaN and
Infinity as the bare words, as TF Serving's `json_tensor.cc` writes them.

Speed: bodies are parsed with orjson (about 6x faster than the json module on
an image's nested lists) and responses written with it. Where orjson reads or
writes differently from the json module, the json module decides, so what is
accepted and what is answered did not change: a body orjson refuses (NaN,
Infinity, 1e400, lone surrogates) is parsed again by the json module; an
integer literal beyond 64 bits, which orjson reads as a float, is caught when
its array is built (a magnitude of 2**63 or more) and the body parsed again,
as is a body refused after orjson read it, so that the refusal is the same;
`:classify`/`:regress` bodies (tf.Example features) always take the json
module; a response holding NaN or Infinity, which orjson writes as null, is
written by the json module.
"""

import base64
import binascii
import json

import numpy as np
import orjson

from serving.edge.errors import InvalidInput

# Below this magnitude a float from orjson cannot stand for an integer literal that the
# json module would have read as an int (orjson reads integers beyond 64 bits as floats).
_EXACT_INTEGER_LIMIT = 2.0**63


class _Document(dict):
    """A parsed request body that remembers its bytes, so it can be parsed again exactly."""

    __slots__ = ("body", "exact")


class _InexactNumbers(Exception):
    """orjson may have read an integer literal beyond 64 bits as a float: parse the body with the json module."""


def load_json(body, exact=False):
    """Parses a request body that must be a JSON object; raises InvalidInput ("JSON Parse error: ...") otherwise.

    Args:
        body: the request bytes.
        exact: parse with the json module only (see the module docstring); otherwise
            orjson first, and the json module for what orjson refuses.

    Example:
    >>> load_json(b'{"instances": [[1.0, 2.0]]}')["instances"]
    [[1.0, 2.0]]
    """
    if not body:
        raise InvalidInput("JSON Parse error: The document is empty")
    request = None
    if not exact:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            exact = True  # NaN, Infinity, 1e400, lone surrogates, or malformed: the json module's verdict.
    if exact:
        try:
            request = json.loads(body)
        except RecursionError:
            raise InvalidInput("JSON Parse error: the document is nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidInput(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise InvalidInput("JSON Parse error: the request body must be a JSON object")
    request = _Document(request)
    request.body, request.exact = body, exact
    signature_name = request.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise InvalidInput("'signature_name' key must be a string value.")
    return request


def dumps(document):
    """The response bytes: compact JSON with NaN/Infinity allowed (TF Serving writes them).

    Example:
    >>> dumps({"predictions": [0.5, float("nan")]})
    b'{"predictions":[0.5,NaN]}'
    """
    data = orjson.dumps(document)
    # orjson writes NaN and Infinity as null; a response never holds a null of its own,
    # so a null means one of them (or a string containing "null": written again, harmlessly).
    if b"null" in data:
        return json.dumps(document, allow_nan=True, separators=(",", ":")).encode("utf-8")
    return data


def parse_predict(request, signature):
    """Reads the inputs of a parsed `:predict` body for `signature`; returns `(inputs, row_format)`.

    Raises:
        InvalidInput: no `instances`/`inputs`, or values of the wrong kind.
    """
    try:
        return _parse_predict(request, signature)
    except (_InexactNumbers, InvalidInput):
        if getattr(request, "exact", True):
            raise
        # What orjson read may differ (an integer beyond 64 bits read as a float): the json
        # module's reading decides what is accepted, and what a refusal says.
        return _parse_predict(load_json(request.body, exact=True), signature)


def _parse_predict(request, signature):
    names = list(signature.inputs)
    has_instances, has_inputs = "instances" in request, "inputs" in request
    if has_instances == has_inputs:
        raise InvalidInput("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if has_instances:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("'instances' must be a non-empty list, one item per example")
        named = all(isinstance(item, dict) and not _is_b64(item) for item in instances)
        if named:
            raw = {}
            for index, item in enumerate(instances):
                if set(item) != set(instances[0]):
                    raise InvalidInput(f"instance {index} has inputs {sorted(item)}, instance 0 has {sorted(instances[0])}")
                for name, value in item.items():
                    raw.setdefault(name, []).append(value)
        elif len(names) == 1:
            raw = {names[0]: instances}
        else:
            raise InvalidInput(f"signature {signature.name!r} has inputs {names}: each instance must be an object naming them")
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
        inputs[name] = _to_array(name, value, spec.dtype, exact=getattr(request, "exact", True))
    return inputs, has_instances


def predict_response(outputs, row_format):
    """Returns the JSON-ready response of `outputs` (name -> array) in TF Serving's layout.

    Raises:
        InvalidInput: row format asked of outputs without a shared batch axis.
    """
    converted = {name: _to_json(name, array) for name, array in outputs.items()}
    if row_format:
        rows = set()
        for name, array in outputs.items():
            if np.ndim(array) == 0:
                raise InvalidInput(f"Tensor name: {name} has no shape information; ask with 'inputs' (columnar format)")
            rows.add(len(array))
        if len(rows) > 1:
            raise InvalidInput(f"outputs have inconsistent batch sizes {sorted(rows)}; ask with 'inputs' (columnar format)")
        if len(converted) == 1:
            return {"predictions": next(iter(converted.values()))}
        count = rows.pop()
        return {"predictions": [{name: values[index] for name, values in converted.items()} for index in range(count)]}
    if len(converted) == 1:
        return {"outputs": next(iter(converted.values()))}
    return {"outputs": converted}


def classify_response(results):
    """`{"results": [[[label, score], ...] per example]}` from `EdgeService.classify`'s results."""
    return {
        "results": [
            [[label.decode("utf-8", errors="replace"), _float32(score)] for label, score in classes] for classes in results
        ]
    }


def regress_response(values):
    """`{"results": [value per example]}` from `EdgeService.regress`'s results."""
    return {"results": [_float32(value) for value in values]}


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _to_array(name, value, dtype, exact=True):
    if dtype == "string":
        try:
            return _string_array(value)
        except binascii.Error as problem:
            raise InvalidInput(f"input {name!r} holds invalid base64: {problem}") from None
        except (TypeError, ValueError) as problem:
            raise InvalidInput(f"input {name!r} must hold strings or {{\"b64\": ...}} values: {problem}") from None
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError) as problem:
        raise InvalidInput(f"input {name!r} must be a regular (non-ragged) nested list of numbers: {problem}") from None
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {name!r} must hold {dtype} numbers, got {_describe(value)} (not of expected type: {dtype})")
    if not exact and array.dtype.kind == "f" and array.size and np.abs(array).max() >= _EXACT_INTEGER_LIMIT:
        raise _InexactNumbers()
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
    if array.dtype.kind in "OS":
        return _strings_to_json(name, array.tolist())
    if array.dtype.kind == "f" and array.dtype.itemsize <= 4:
        # The shortest decimal of each float32, read back as a Python float, prints the same.
        return _short_floats(array)
    if array.dtype.kind == "f":
        return array.astype(np.float64).tolist()
    return array.tolist()


def _short_floats(array):
    # NumPy writes each float32 as its shortest round-tripping decimal; parsing that
    # text as float64 gives the Python float that json prints the same way.
    return array.astype(np.float32).astype(str).astype(np.float64).tolist()


def _float32(value):
    return float(str(np.float32(value)))


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
