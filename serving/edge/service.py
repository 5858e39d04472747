"""The protocol-free core of the edge server: resolve, validate, batch, run.

The REST and gRPC front ends both call `EdgeService.predict` with NumPy
inputs, so the two protocols cannot drift apart in what they accept.
"""

from serving.edge.backends import validate
from serving.edge.batching import Batcher
from serving.edge.errors import InvalidInput, NotFound

DEFAULT_SIGNATURE = "serving_default"


class EdgeService:
    """Predictions and metadata for the models of a `ModelRepository`.

    Args:
        repository: a `ModelRepository` (already scanned).
        batching: combine concurrent requests (dynamic batching).
        max_batch_size: the most rows one batch holds.
        batch_timeout_s: how long a request may wait for others to join its batch.

    Example:
    >>> service = EdgeService(repository)
    >>> version, outputs = service.predict("cnn", {"images": images})
    """

    def __init__(self, repository, batching=True, max_batch_size=32, batch_timeout_s=0.002):
        self.repository = repository
        self.batcher = Batcher(max_batch_size, batch_timeout_s) if batching else None

    def signature(self, backend, model, signature_name):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in backend.signatures:
            raise InvalidInput(
                f"signature {name!r} not found for model {model!r}; signatures: {', '.join(sorted(backend.signatures))}"
            )
        return backend.signatures[name]

    def predict(self, model, inputs, version=None, label=None, signature_name=None, output_filter=None, resolved=None):
        """Runs one request; returns `(version, signature, outputs)`.

        Raises:
            NotFound: unknown model, version or label.
            InvalidInput: unknown signature or bad inputs.
        """
        version, backend = resolved or self.repository.resolve(model, version, label)
        signature = self.signature(backend, model, signature_name)
        checked = validate(signature, inputs)
        core_key, core_inputs = backend.prepare(signature.name, checked)
        if self.batcher is not None:
            outputs = self.batcher.submit((id(backend), core_key), lambda batch: backend.run(core_key, batch), core_inputs).result()
        else:
            outputs = backend.run(core_key, core_inputs)
        if output_filter:
            unknown = [name for name in output_filter if name not in outputs]
            if unknown:
                raise InvalidInput(f"unknown output {unknown[0]!r} in output_filter; outputs: {', '.join(sorted(outputs))}")
            outputs = {name: outputs[name] for name in output_filter}
        return version, signature, outputs


__all__ = ["EdgeService", "InvalidInput", "NotFound", "DEFAULT_SIGNATURE"]
