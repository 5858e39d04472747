"""How a request fails at the edge server: TF Serving's canonical status codes, for REST and gRPC.

Every failure is a status code name ("INVALID_ARGUMENT", "NOT_FOUND", ...)
and a one-line message. REST answers `{"error": message}` with the HTTP
status TF Serving gives that code (`model_servers/http_server.cc`,
`ToHTTPStatusCode`); gRPC aborts with the code itself.

`status_of` maps errors raised by the libraries underneath (TensorFlow's
`OpError`s carry their canonical code, ONNX Runtime's exceptions are named
after theirs, Pillow refuses decompression bombs) onto those codes. Anything
else is a bug in the server: INTERNAL (500), reported with its traceback.
"""

# TF Serving's mapping from canonical code to HTTP status.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# The canonical codes by number (tensorflow/core/protobuf/error_codes.proto), as TensorFlow's errors carry them.
CODE_NAMES = dict(enumerate(HTTP_STATUS))
# ONNX Runtime's Python exceptions, named after ORT's status codes, that mean the request was wrong.
_ORT_CODES = {"InvalidArgument": "INVALID_ARGUMENT", "NotImplemented": "UNIMPLEMENTED"}


class ServingError(Exception):
    """A request failure with a canonical status `code`; the message is one line, shown to the client."""

    code = "INTERNAL"

    def __str__(self):
        # LookupError's str() quotes its argument; every message should read as a plain sentence.
        return str(self.args[0]) if self.args else ""


class InvalidInput(ServingError, ValueError):
    """The request is malformed: REST 400, gRPC INVALID_ARGUMENT. The message names the problem."""

    code = "INVALID_ARGUMENT"


class NotFound(ServingError, LookupError):
    """The model or version does not exist: REST 404, gRPC NOT_FOUND."""

    code = "NOT_FOUND"


class FailedPrecondition(ServingError):
    """The signature cannot serve this API (e.g. a classify signature without `inputs`): REST 400."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(ServingError):
    """The request is larger than the server is configured to take: REST 429, gRPC RESOURCE_EXHAUSTED."""

    code = "RESOURCE_EXHAUSTED"


class Unimplemented(ServingError):
    """The server does not implement what was asked: REST 501, gRPC UNIMPLEMENTED."""

    code = "UNIMPLEMENTED"


class Unavailable(ServingError):
    """The server cannot take the request now; retrying later may work: REST 503."""

    code = "UNAVAILABLE"


def status_of(error):
    """Returns `(code, one-line message, unexpected)` for an exception raised while serving a request.

    `unexpected` is True for errors that are bugs (INTERNAL): the caller logs
    their traceback.

    Example:
    >>> status_of(InvalidInput("input 'x' must hold float32 numbers"))
    ('INVALID_ARGUMENT', "input 'x' must hold float32 numbers", False)
    >>> status_of(RecursionError("maximum recursion depth exceeded"))[0]
    'INVALID_ARGUMENT'
    """
    if isinstance(error, ServingError):
        return error.code, _one_line(str(error)), False
    kind = type(error)
    if kind.__module__.startswith("tensorflow") and isinstance(getattr(error, "error_code", None), int):
        code = CODE_NAMES.get(error.error_code, "UNKNOWN")
        return code, _one_line(getattr(error, "message", None) or str(error)), code in ("INTERNAL", "UNKNOWN", "DATA_LOSS")
    if kind.__module__.startswith("onnxruntime") and kind.__name__ in _ORT_CODES:
        return _ORT_CODES[kind.__name__], _one_line(str(error)), False
    if kind.__name__ == "DecompressionBombError":
        return "INVALID_ARGUMENT", _one_line(f"the image is too large to decode: {error}"), False
    if isinstance(error, RecursionError):
        return "INVALID_ARGUMENT", "the request is nested too deeply to parse", False
    if isinstance(error, MemoryError):
        return "RESOURCE_EXHAUSTED", "the request needs more memory than the server has", False
    return "INTERNAL", _one_line(f"{kind.__name__}: {error}"), True


def _one_line(message):
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " ".join(lines)[:2000] if lines else "unknown error"
