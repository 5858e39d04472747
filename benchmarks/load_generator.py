"""A closed-loop load generator, run in its own process so that it does not share the server's
(or the benchmark's) interpreter: N client threads each send one-example requests back to back.

    python -m benchmarks.load_generator SPEC.json      # prints one line: BENCH_JSON {...}

SPEC: `{"protocol": "rest" | "grpc" | "onnx", "target": URL | "host:port" | model.onnx path,
"model": served name, "input_name": "images", "inputs": examples.npy, "levels": [1, 8, 32],
"total": requests per level, "warmup": requests before each level (0: none)}`. `onnx` calls ONNX
Runtime in this process (the in-process floor), through the same harness.

Per level it reports `requests` (sent), `served` (answered with success), `errors` (failed:
an HTTP status other than 200, a gRPC error, an exception), the first few error texts,
`requests_per_s` (served requests only, over the level's wall time) and p50/p99 latency in
ms over the served requests only. A failed request is never counted as served.

Example:
>>> from benchmarks.load_generator import measure
>>> measure(lambda index: None, concurrency=2, total=10)["served"]
10
"""

import concurrent.futures
import json
import sys
import threading
import time

import numpy as np

# Error texts kept per level (the count is always complete).
ERROR_SAMPLES = 3


def measure(call, concurrency, total):
    """Runs `call(index)` for index in range(total) from `concurrency` threads.

    Args:
        call: sends request `index`; returns on success, raises on any failure.
        concurrency: client threads, each with one request in flight.
        total: requests sent.

    Returns:
        `{"requests", "served", "errors", "error_samples", "seconds", "requests_per_s", "p50_ms", "p99_ms"}`;
        rates and percentiles count served requests only (None when none was served).
    """
    latencies, errors = [None] * total, []
    lock = threading.Lock()

    def one(index):
        begin = time.perf_counter()
        try:
            call(index)
        except Exception as error:  # Counted as a failure, never as served.
            with lock:
                errors.append(f"{type(error).__name__}: {str(error)[:200]}")
            return
        latencies[index] = time.perf_counter() - begin

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    served = np.asarray([value for value in latencies if value is not None]) * 1000
    return {
        "requests": total,
        "served": int(served.size),
        "errors": len(errors),
        "error_samples": errors[:ERROR_SAMPLES],
        "seconds": round(elapsed, 6),
        "requests_per_s": round(served.size / elapsed, 1) if served.size else None,
        "p50_ms": round(float(np.percentile(served, 50)), 3) if served.size else None,
        "p99_ms": round(float(np.percentile(served, 99)), 3) if served.size else None,
    }


def _rest_call(spec, inputs):
    """One keep-alive `http.client` connection per client thread.

    Not `requests`: its per-call cost (about 0.3 ms of Python: sessions, adapters, header
    merging) would be counted as the server's, as a C client's would not be.
    """
    import http.client
    import urllib.parse

    bodies = [json.dumps({"instances": [example.tolist()]}).encode() for example in inputs]
    target = urllib.parse.urlsplit(spec["target"])
    path = f"/v1/models/{spec['model']}:predict"
    headers = {"Content-Type": "application/json"}
    local = threading.local()

    def call(index):
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            local.connection.request("POST", path, body=bodies[index % len(bodies)], headers=headers)
            answer = local.connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException):
            local.connection.close()  # The next request of this thread opens a new connection.
            raise
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {body[:200].decode('utf-8', 'replace')}")

    return call


def _grpc_call(spec, inputs):
    import grpc

    from serving import protos

    modules = protos.load()
    requests = []
    for example in inputs:  # Built before timing: the client's encoding is not the server's cost.
        request = modules.predict_pb2.PredictRequest()
        request.model_spec.name = spec["model"]
        request.inputs[spec["input_name"]].CopyFrom(protos.to_tensor_proto(example[None]))
        requests.append(request)
    local = threading.local()

    def call(index):
        if not hasattr(local, "stub"):
            local.stub = modules.prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(spec["target"]))
        local.stub.Predict(requests[index % len(requests)], timeout=60)  # An RpcError is a failure.

    return call


def _onnx_call(spec, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(spec["target"], providers=["CPUExecutionProvider"])
    name = spec["input_name"]
    return lambda index: session.run(None, {name: inputs[index % len(inputs) : index % len(inputs) + 1]})


CALLS = {"rest": _rest_call, "grpc": _grpc_call, "onnx": _onnx_call}


def run(spec):
    """Measures every concurrency level of `spec` (see the module docstring); returns `{level: numbers}`."""
    inputs = np.load(spec["inputs"])
    call = CALLS[spec["protocol"]](spec, inputs)
    results = {}
    for level in spec["levels"]:
        warmup_requests = spec.get("warmup", level)
        warmup = measure(call, level, warmup_requests) if warmup_requests else None  # 0: the caller warmed up.
        if warmup is not None and warmup["served"] == 0:  # Nothing answers: report the failures instead of timing them.
            results[str(level)] = dict(warmup, requests_per_s=None, p50_ms=None, p99_ms=None, note="every warm-up request failed")
            continue
        results[str(level)] = measure(call, level, spec["total"])
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as handle:
        spec = json.load(handle)
    print("BENCH_JSON " + json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
