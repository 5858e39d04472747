"""The two ways a request fails at the edge server: bad input (400) and unknown model (404)."""


class InvalidInput(ValueError):
    """The request is malformed: REST 400, gRPC INVALID_ARGUMENT. The message names the problem."""


class NotFound(LookupError):
    """The model, version, label or signature does not exist: REST 404, gRPC NOT_FOUND."""

    def __str__(self):
        # LookupError's str() quotes its argument; the message should read as a plain sentence.
        return str(self.args[0]) if self.args else ""
