"""`python -m serving.edge exports/`: TF Serving's REST + gRPC API for the models under a base path.

Usage:
    python -m serving.edge exports/ [--port 8501] [--grpc-port 8500] [--host 127.0.0.1]
        [--backend onnx|savedmodel|auto] [--onnx-variant fp32|int8] [--max-batch-size 32] [--batch-timeout-ms 0]
        [--no-batching] [--max-body-bytes N] [--max-elements N] [--max-batch-queues 32]
        [--poll-seconds 2] [--label cnn:stable=1] [--threads N] [--workers 1]

It binds 127.0.0.1 by default (pass `--host 0.0.0.0` deliberately to expose
it), logs one JSON line per request (with its latency) to stderr, picks up new
versions without a restart, answers `/healthz` and `/readyz`, and serves
Prometheus metrics at `/monitoring/prometheus/metrics` on the REST port.
`--workers N` runs N server processes on the same ports (`serving.edge.workers`).
"""

import argparse
import json
import logging
import sys

from serving.edge import workers
from serving.edge.batching import DEFAULT_BATCH_TIMEOUT_S, DEFAULT_MAX_QUEUES
from serving.edge.metrics import Metrics
from serving.edge.repository import BACKENDS, ONNX_VARIANTS, ModelRepository
from serving.edge.service import DEFAULT_MAX_ELEMENTS, EdgeService, check_settings
from serving.labels import EVERY_MODEL, parse_labels

LOGGER = logging.getLogger("serving.edge")


class _LabelView(dict):
    """`{model: {label: version}}` where labels given without a model apply to every model."""

    def __init__(self, labels):
        super().__init__(labels)
        self.shared = labels.get(EVERY_MODEL, {})

    def get(self, model, default=None):
        merged = dict(self.shared)
        merged.update(dict.get(self, model, {}))
        return merged or default


def build_server(
    base_path,
    host="127.0.0.1",
    grpc_port=8500,
    backend="auto",
    batching=True,
    max_batch_size=32,
    batch_timeout_ms=DEFAULT_BATCH_TIMEOUT_S * 1000,
    max_body_bytes=10 * 1024 * 1024,
    labels=None,
    threads=None,
    max_elements=DEFAULT_MAX_ELEMENTS,
    max_batch_queues=DEFAULT_MAX_QUEUES,
    reuse_port=False,
    onnx_variant="fp32",
):
    """Loads the models and returns `(service, app, grpc_server_or_None, grpc_port)`; nothing listens yet.

    `reuse_port` lets other processes bind the same gRPC port (`--workers`); `onnx_variant`
    "int8" serves `model.int8.onnx` where a version has one (`ModelRepository`).

    Example:
    >>> service, app, grpc_server, port = build_server("exports/", grpc_port=0)
    """
    metrics = Metrics()
    repository = ModelRepository(base_path, backend=backend, labels=_LabelView(labels or {}), threads=threads, metrics=metrics,
                                 onnx_variant=onnx_variant)
    service = EdgeService(
        repository,
        batching=batching,
        max_batch_size=max_batch_size,
        batch_timeout_s=batch_timeout_ms / 1000.0,
        max_elements=max_elements,
        max_batch_queues=max_batch_queues,
        metrics=metrics,
    )
    repository.scan()  # After the settings are checked: a bad flag fails before models load.
    from serving.edge.rest import build_app

    app = build_app(service, max_body_bytes=max_body_bytes)
    grpc_server, bound = None, None
    if grpc_port is not None and grpc_port >= 0:
        from serving.edge.grpc_service import build_grpc_server

        grpc_server, bound = build_grpc_server(service, host, grpc_port, max_message_bytes=max_body_bytes, reuse_port=reuse_port)
    return service, app, grpc_server, bound


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.edge", description=__doc__.splitlines()[0])
    parser.add_argument("base_path", help="the export base path (exports/) or one model's base path")
    parser.add_argument("--port", type=int, default=8501, help="REST port (TF Serving's is 8501)")
    parser.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (TF Serving's is 8500); -1 disables gRPC")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind; loopback unless you mean to expose it")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: ONNX when model.onnx exists, else the SavedModel")
    parser.add_argument("--onnx-variant", choices=sorted(ONNX_VARIANTS), default=None,
                        help="which ONNX file to serve (default fp32: model.onnx); int8 serves model.int8.onnx "
                             "(export --quantize int8) of every version that has one, and model.onnx, with one "
                             "log line naming the version, of those without it (export leaves int8 out when it "
                             "fails the accuracy gate, so refusing would take the model offline); the metadata "
                             "answer's model_file says which; an error with --backend savedmodel")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=DEFAULT_BATCH_TIMEOUT_S * 1000,
                        help="how long a batch may wait for more requests; 0 (TF Serving's default) batches only what queues while the model is busy")
    parser.add_argument("--no-batching", action="store_true", help="run every request on its own")
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024, help="larger requests get RESOURCE_EXHAUSTED")
    parser.add_argument("--max-elements", type=int, default=DEFAULT_MAX_ELEMENTS, help="the most values one request may hold")
    parser.add_argument("--max-batch-queues", type=int, default=DEFAULT_MAX_QUEUES,
                        help="the most batching queues (worker threads) at once; other shapes run unbatched")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look for new versions; 0 disables")
    parser.add_argument("--label", action="append", default=[], help="version label, [model:]label=version (repeatable)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads per model (default: every core; with --workers N, cores / N)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the ports (SO_REUSEPORT, Linux), each with its own models; see README Serving")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # Set by the supervisor.
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    worker = args.worker_index is not None
    if worker:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerField(args.worker_index))
    if args.workers > 1 and not worker:
        try:
            _check(args)
            given = sys.argv[1:] if argv is None else list(argv)
            if args.threads is None:
                # Each worker runs its own models: N processes with every core each would oversubscribe.
                given += ["--threads", str(workers.threads_per_worker(args.workers))]
            return workers.supervise(given, args.workers, args.host, args.port, args.grpc_port,
                                     lambda record: LOGGER.info(json.dumps(record)))
        except (ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        labels = _check(args)
        service, app, grpc_server, grpc_port = build_server(
            args.base_path,
            host=args.host,
            grpc_port=args.grpc_port,
            backend=args.backend,
            batching=not args.no_batching,
            max_batch_size=args.max_batch_size,
            batch_timeout_ms=args.batch_timeout_ms,
            max_body_bytes=args.max_body_bytes,
            labels=labels,
            threads=args.threads,
            max_elements=args.max_elements,
            max_batch_queues=args.max_batch_queues,
            reuse_port=worker,
            onnx_variant=args.onnx_variant or "fp32",
        )
        rest_socket = workers.rest_socket(args.host, args.port, reuse_port=worker)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not service.repository.model_names():
        LOGGER.warning(json.dumps({"event": "no_models", "base_path": service.repository.base_path, "hint": "waiting for exports to appear"}))

    import uvicorn

    service.repository.start_polling(args.poll_seconds)
    if grpc_server is not None:
        grpc_server.start()
    LOGGER.info(
        json.dumps(
            {
                "event": "serving",
                "rest": f"http://{args.host}:{rest_socket.getsockname()[1]}",
                "grpc": f"{args.host}:{grpc_port}" if grpc_server is not None else None,
                "models": {name: service.repository.versions(name) for name in service.repository.model_names()},
                "batching": not args.no_batching,
                "onnx_variant": args.onnx_variant or "fp32",
            }
        )
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none")
    try:
        uvicorn.Server(config).run(sockets=[rest_socket])
    finally:
        service.repository.stop()
        if grpc_server is not None:
            grpc_server.stop(grace=1).wait()
    return 0


def _check(args):
    """Checks the flags without loading anything (ValueError names the flag); returns the parsed labels."""
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    labels = parse_labels(args.label)
    if args.onnx_variant is not None and args.backend == "savedmodel":
        raise ValueError("--onnx-variant picks the ONNX file; --backend savedmodel serves no ONNX (use --backend onnx or auto)")
    ModelRepository(args.base_path, backend=args.backend, onnx_variant=args.onnx_variant or "fp32")
    check_settings(args.max_elements, args.max_batch_queues, args.max_batch_size, args.batch_timeout_ms / 1000.0)
    return labels


class _WorkerField(logging.Filter):
    """Starts every JSON log line of a worker with `"worker": index`, so that its lines can be told apart."""

    def __init__(self, index):
        super().__init__()
        self.prefix = '{"worker": %d, ' % index

    def filter(self, record):
        message = record.msg
        if isinstance(message, str) and message.startswith("{") and len(message) > 2 and not record.args and not message.startswith(self.prefix):
            record.msg = self.prefix + message[1:]
        return True
