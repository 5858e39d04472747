"""Prometheus metrics for the edge server, with prometheus-client, at TF Serving's path and names.

Served at `/monitoring/prometheus/metrics` (TF Serving's default path). Names
follow TF Serving's where TF Serving has the metric (its names with `/` turned
into `:`, as its exporter writes them); the rest are `kerasdl_edge_*`:

- `:tensorflow:serving:request_count` (counter): requests by model_name,
  version, API (Predict, Classify, Regress, MultiInference, GetModelMetadata,
  GetModelStatus), entrypoint (REST, GRPC) and status (the canonical code:
  OK, INVALID_ARGUMENT, ...). TF Serving labels it by model_name and status;
  version, API and entrypoint are added here. Requests for models the server
  does not serve count under `<unknown model>`, so made-up names cannot grow
  the metrics. As every prometheus-client counter, its samples carry the
  `_total` suffix.
- `:tensorflow:serving:request_latency` (histogram, microseconds, TF Serving's
  buckets): successful requests by model_name, API, entrypoint.
- `:tensorflow:serving:runtime_latency` (histogram, microseconds): model runs
  by model_name, API and runtime (onnx, savedmodel).
- `:tensorflow:serving:request_example_counts` (histogram): examples per request.
- `:tensorflow:serving:batching:batch_size` (histogram): rows per model run.
- `kerasdl_edge_batch_queue_depth` (gauge): rows waiting in the batcher, by model_name.
- `kerasdl_edge_batch_queues` (gauge): live batching queues (one worker thread each).
- `:tensorflow:cc:saved_model:load_attempt_count` (counter): model loads by
  model_path and status (success, fail).
- `:tensorflow:cc:saved_model:load_latency` (counter, microseconds): time spent
  in successful loads, by model_path.

Each server has its own registry, so several servers in one process (tests)
do not mix their counts. Under `--workers N` (`PROMETHEUS_MULTIPROC_DIR` set,
see `serving.edge.workers`), the values live in prometheus-client's
multiprocess files and every scrape reports the sum over the workers; the
queue gauges are then sampled by each worker when a batch starts and summed
over the live workers.
"""

import os

import prometheus_client
from prometheus_client.core import GaugeMetricFamily

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
PATH = "/monitoring/prometheus/metrics"


def _exponential(scale, factor, count):
    """TF's `monitoring::Buckets::Exponential(scale, factor, count)` upper bounds (the last is +Inf)."""
    return [scale * factor**index for index in range(count - 1)] + [float("inf")]


class Metrics:
    """The edge server's metrics; `exposition()` renders them in Prometheus' text format.

    Example:
    >>> metrics = Metrics()
    >>> metrics.request("cnn", 1, "Predict", "REST", "OK", 0.004)
    >>> b":tensorflow:serving:request_count_total" in metrics.exposition()
    True
    """

    def __init__(self):
        prometheus_client.disable_created_metrics()
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR_ENV))
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        # In multiprocess mode the metrics write to files, and the page is read from all of them.
        registry = prometheus_client.CollectorRegistry(auto_describe=True) if self.multiprocess else self.registry
        latency_buckets = _exponential(10, 1.8, 33)  # TF Serving's: 10 us to ~20 minutes.
        self.request_count = prometheus_client.Counter(
            ":tensorflow:serving:request_count", "The total number of requests.",
            ["model_name", "version", "API", "entrypoint", "status"], registry=registry,
        )
        self.request_latency = prometheus_client.Histogram(
            ":tensorflow:serving:request_latency", "Distribution of wall time (in microseconds) for successful requests.",
            ["model_name", "API", "entrypoint"], buckets=latency_buckets, registry=registry,
        )
        self.runtime_latency = prometheus_client.Histogram(
            ":tensorflow:serving:runtime_latency", "Distribution of wall time (in microseconds) for model runs.",
            ["model_name", "API", "runtime"], buckets=latency_buckets, registry=registry,
        )
        self.example_counts = prometheus_client.Histogram(
            ":tensorflow:serving:request_example_counts", "The number of examples per request.",
            ["model"], buckets=_exponential(1, 2, 15), registry=registry,
        )
        self.batch_size = prometheus_client.Histogram(
            ":tensorflow:serving:batching:batch_size", "The number of rows per batched model run.",
            ["model_name"], buckets=_exponential(1, 1.5, 20), registry=registry,
        )
        self.load_attempts = prometheus_client.Counter(
            ":tensorflow:cc:saved_model:load_attempt_count", "The number of times a model version was loaded, by outcome.",
            ["model_path", "status"], registry=registry,
        )
        self.load_latency = prometheus_client.Counter(
            ":tensorflow:cc:saved_model:load_latency", "Latency in microseconds for models that were successfully loaded.",
            ["model_path"], registry=registry,
        )
        self._batchers = []
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)
            self.queue_depth = prometheus_client.Gauge(
                "kerasdl_edge_batch_queue_depth", "Rows waiting to be batched.", ["model_name"],
                multiprocess_mode="livesum", registry=registry,
            )
            self.queue_count = prometheus_client.Gauge(
                "kerasdl_edge_batch_queues", "Live batching queues (one worker thread each).",
                multiprocess_mode="livesum", registry=registry,
            )
        else:
            registry.register(_BatcherCollector(self._batchers))
        # Labelled children by (metric, label values): `labels()` validates and locks on every
        # call, which costs more than the increment itself on the request path.
        self._children = {}
        self._sampled_models = set()  # Queue depths written in multiprocess mode (a retired queue then reads 0).

    def watch_batcher(self, batcher):
        """Reports `batcher`'s queue depth and queue count at every scrape (multiprocess mode: at every batch)."""
        self._batchers.append(batcher)

    def _child(self, metric, *labels):
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, model, version, api, entrypoint, status, seconds):
        """Counts one request; successful ones also add their latency."""
        self._child(self.request_count, model or "", "" if version is None else str(version), api, entrypoint, status).inc()
        if status == "OK":
            self._child(self.request_latency, model or "", api, entrypoint).observe(seconds * 1e6)

    def runtime(self, model, api, runtime, seconds):
        self._child(self.runtime_latency, model, api, runtime).observe(seconds * 1e6)

    def examples(self, model, count):
        self._child(self.example_counts, model).observe(count)

    def batch(self, model, rows):
        self._child(self.batch_size, model).observe(rows)
        if self.multiprocess:
            self._sample_queues()

    def _sample_queues(self):
        depth, count = {}, 0
        for batcher in self._batchers:
            for name, waiting in batcher.queued_rows().items():
                depth[name] = depth.get(name, 0) + waiting
            count += batcher.queue_count()
        self._sampled_models |= set(depth)
        for name in self._sampled_models:
            self._child(self.queue_depth, name).set(depth.get(name, 0))
        self.queue_count.set(count)

    def load(self, model_path, succeeded, seconds):
        self.load_attempts.labels(model_path, "success" if succeeded else "fail").inc()
        if succeeded:
            self.load_latency.labels(model_path).inc(seconds * 1e6)

    def exposition(self):
        """The metrics page (bytes, `CONTENT_TYPE`)."""
        return prometheus_client.generate_latest(self.registry)


class _BatcherCollector:
    """Reads the batchers' queues at scrape time, so queuing costs nothing per request."""

    def __init__(self, batchers):
        self.batchers = batchers

    def describe(self):
        return []

    def collect(self):
        depth = GaugeMetricFamily("kerasdl_edge_batch_queue_depth", "Rows waiting to be batched.", labels=["model_name"])
        queues = GaugeMetricFamily("kerasdl_edge_batch_queues", "Live batching queues (one worker thread each).")
        totals, count = {}, 0
        for batcher in self.batchers:
            for model, rows in batcher.queued_rows().items():
                totals[model] = totals.get(model, 0) + rows
            count += batcher.queue_count()
        for model, rows in sorted(totals.items()):
            depth.add_metric([model], rows)
        queues.add_metric([], count)
        yield depth
        yield queues
