"""The protocol-free core of the edge server: resolve, validate, batch, run.

The REST and gRPC front ends both call `EdgeService` with NumPy inputs or
tf.Example `Input` protos, so the two protocols cannot drift apart in what
they accept. Predict serves every signature; Classify and Regress serve
signatures whose method is classify or regress (kerasdl's own exports have
predict signatures only, so they answer those APIs as TF Serving does: with
an INVALID_ARGUMENT naming the method).
"""

import time

import numpy as np

from serving.edge import examples as tf_examples
from serving.edge.backends import CLASSIFY_METHOD, REGRESS_METHOD, validate
from serving.edge.batching import DEFAULT_BATCH_TIMEOUT_S, DEFAULT_MAX_QUEUES, Batcher
from serving.edge.errors import InvalidInput, NotFound, Unimplemented
from serving.edge.metrics import Metrics

DEFAULT_SIGNATURE = "serving_default"
UNKNOWN_MODEL = "<unknown model>"
# The most values one request may hold. A 10 MB body carries at most 2.6 M float32
# values; 16 M leaves room for JSON-free gRPC tensors while stopping a tensor that
# declares a huge shape around one broadcast value (4 bytes each: 64 MB).
DEFAULT_MAX_ELEMENTS = 16 * 1024 * 1024


class EdgeService:
    """Predictions, classifications, regressions and metadata for the models of a `ModelRepository`.

    Args:
        repository: a `ModelRepository` (already scanned).
        batching: combine concurrent requests (dynamic batching).
        max_batch_size: the most rows one batch holds.
        batch_timeout_s: how long a batch may wait for more requests (0: none; see `serving.edge.batching`).
        max_elements: the most values one request may hold (RESOURCE_EXHAUSTED beyond).
        max_batch_queues: the most batching queues (and worker threads) at once.
        metrics: a `Metrics` to record into (a new one by default).

    Example:
    >>> service = EdgeService(repository)
    >>> version, signature, outputs = service.predict("cnn", {"images": images})
    """

    def __init__(
        self,
        repository,
        batching=True,
        max_batch_size=32,
        batch_timeout_s=DEFAULT_BATCH_TIMEOUT_S,
        max_elements=DEFAULT_MAX_ELEMENTS,
        max_batch_queues=DEFAULT_MAX_QUEUES,
        metrics=None,
    ):
        check_settings(max_elements, max_batch_queues, max_batch_size, batch_timeout_s)
        self.repository = repository
        self.max_elements = max_elements
        self.metrics = metrics or getattr(repository, "metrics", None) or Metrics()
        self.batcher = None
        if batching:
            self.batcher = Batcher(max_batch_size, batch_timeout_s, max_queues=max_batch_queues, on_batch=self.metrics.batch)
            self.metrics.watch_batcher(self.batcher)

    def record_request(self, model, version, api, entrypoint, code, seconds):
        """Counts one request in the metrics. Names the server does not serve are counted together as
        UNKNOWN_MODEL: a label per name a client makes up would grow the metrics without bound."""
        known = self.repository.serves(model)
        self.metrics.request(model if known else UNKNOWN_MODEL, version if known else None, api, entrypoint, code, seconds)

    def signature(self, backend, model, signature_name):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in backend.signatures:
            raise InvalidInput(
                f"signature {name!r} not found for model {model!r}; signatures: {', '.join(sorted(backend.signatures))}"
            )
        return backend.signatures[name]

    def predict(self, model, inputs, version=None, label=None, signature_name=None, output_filter=None, resolved=None):
        """Runs one Predict request; returns `(version, signature, outputs)`.

        Raises:
            NotFound: unknown model or version.
            InvalidInput: unknown label or signature, or bad inputs.
        """
        version, backend = resolved or self.repository.resolve(model, version, label)
        signature = self.signature(backend, model, signature_name)
        if output_filter:
            unknown = [name for name in output_filter if name not in signature.outputs]
            if unknown:
                raise InvalidInput(f"unknown output {unknown[0]!r} in output_filter; outputs: {', '.join(sorted(signature.outputs))}")
        outputs = self.run(model, backend, signature, inputs, "Predict")
        if output_filter:
            outputs = {name: outputs[name] for name in output_filter}
        return version, signature, outputs

    def classify(self, model, input_message, version=None, label=None, signature_name=None):
        """Runs a Classify request on tf.Examples; returns `(version, signature, [[(label, score), ...], ...])`."""
        version, backend = self.repository.resolve(model, version, label)
        signature = self.signature(backend, model, signature_name)
        tf_examples.check_classify(signature)
        serialized = tf_examples.serialized_examples(input_message)
        outputs = self.run(model, backend, signature, {tf_examples.INPUTS: serialized}, "Classify")
        return version, signature, tf_examples.classifications(outputs, len(serialized))

    def regress(self, model, input_message, version=None, label=None, signature_name=None):
        """Runs a Regress request on tf.Examples; returns `(version, signature, [value, ...])`."""
        version, backend = self.repository.resolve(model, version, label)
        signature = self.signature(backend, model, signature_name)
        tf_examples.check_regress(signature)
        serialized = tf_examples.serialized_examples(input_message)
        outputs = self.run(model, backend, signature, {tf_examples.INPUTS: serialized}, "Regress")
        return version, signature, tf_examples.regressions(outputs, len(serialized))

    def multi_inference(self, tasks, input_message):
        """Runs several classify/regress signatures of one model on the same examples.

        Args:
            tasks: `(model, version, label, signature_name, method_name)` tuples.
            input_message: the shared `tensorflow.serving.Input`.

        Returns:
            `(version, [(signature, method, results), ...])` in task order.
        """
        if not tasks:
            raise InvalidInput("MultiInferenceRequest has no tasks")
        model = tasks[0][0]
        names = set()
        for name, _, _, signature_name, method in tasks:
            if not name:
                raise InvalidInput("Found ModelSpec with an empty model name.")
            if name != model:
                raise InvalidInput("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            signature_name = signature_name or DEFAULT_SIGNATURE
            if signature_name in names:
                raise InvalidInput(f"Duplicate evaluation of signature: {signature_name}")
            names.add(signature_name)
            if method not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise Unimplemented(f"Unsupported signature method_name: {method}")
        version, backend = self.repository.resolve(model, tasks[0][1], tasks[0][2])
        planned = []
        for _, _, _, signature_name, method in tasks:
            signature = backend.signatures.get(signature_name or DEFAULT_SIGNATURE)
            if signature is None:
                raise InvalidInput(f"Requested signature not found in model graph: {signature_name or DEFAULT_SIGNATURE}")
            (tf_examples.check_classify if method == CLASSIFY_METHOD else tf_examples.check_regress)(signature)
            planned.append((signature, method))
        if len({_input_tensor(backend, signature) for signature, _ in planned}) > 1:
            raise InvalidInput("Input tensor must be the same for all Signatures.")
        serialized = tf_examples.serialized_examples(input_message)
        results = []
        for signature, method in planned:
            outputs = self.run(model, backend, signature, {tf_examples.INPUTS: serialized}, "MultiInference")
            convert = tf_examples.classifications if method == CLASSIFY_METHOD else tf_examples.regressions
            results.append((signature, method, convert(outputs, len(serialized))))
        return version, results

    def run(self, model, backend, signature, inputs, api):
        """Validates `inputs` for `signature`, then runs it (batched with other requests when possible)."""
        checked = validate(signature, inputs, self.max_elements)
        core_key, core_inputs = backend.prepare(signature.name, checked)
        metrics = self.metrics

        def timed_run(batch):
            started = time.perf_counter()
            outputs = backend.run(core_key, batch)
            metrics.runtime(model, api, backend.kind, time.perf_counter() - started)
            return outputs

        rows = _batch_rows(core_inputs)
        if rows:
            metrics.examples(model, rows)
        if self.batcher is not None and rows:
            return self.batcher.run((id(backend), core_key), timed_run, core_inputs, label=model)
        return timed_run(core_inputs)


def check_settings(max_elements, max_batch_queues, max_batch_size, batch_timeout_s):
    """Raises ValueError naming the command-line flag of the first setting out of range."""
    if max_elements is not None and max_elements < 1:
        raise ValueError(f"--max-elements must be at least 1, got {max_elements}")
    if batch_timeout_s < 0:
        raise ValueError(f"--batch-timeout-ms must not be negative, got {batch_timeout_s * 1000:g}")
    if max_batch_queues < 1 or max_batch_size < 1:
        raise ValueError(f"--max-batch-queues and --max-batch-size must be at least 1, got {max_batch_queues} and {max_batch_size}")


def _batch_rows(inputs):
    """The shared batch size of `inputs`, or 0 when they cannot be batched (scalars, differing sizes)."""
    sizes = {value.shape[0] if np.ndim(value) else -1 for value in inputs.values()}
    if len(sizes) != 1:
        return 0
    return max(sizes.pop(), 0)


def _input_tensor(backend, signature):
    definitions = getattr(backend, "signature_defs", None)
    if definitions and signature.name in definitions:
        return definitions[signature.name].inputs[tf_examples.INPUTS].name
    return signature.name


__all__ = ["EdgeService", "InvalidInput", "NotFound", "DEFAULT_SIGNATURE", "DEFAULT_MAX_ELEMENTS", "check_settings"]
