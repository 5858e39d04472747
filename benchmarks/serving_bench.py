"""The edge server's throughput and latency against in-process ONNX Runtime, with issue 14's targets.

`measure(quick)` exports untrained models (speed does not depend on the weights) to ONNX in
a temporary folder and drives one-example requests at several concurrency levels with the
load generator in its own process (`benchmarks.load_generator`):

- `in_process`: ONNX Runtime called directly (the floor), seed CNN (32x32x3);
- `edge_batching` / `edge_no_batching`: `python -m serving.edge` over REST, seed CNN,
  with its default dynamic batching and with `--no-batching`;
- `grpc_batching` / `grpc_no_batching`: the same servers over gRPC;
- `resnet50`: `{"grpc_batching", "grpc_no_batching"}` for ResNet50 at 224x224 (not in toy runs),
  where the model, not the request, is the cost.

Each level: `{"requests", "served", "errors", "error_samples", "requests_per_s", "p50_ms", "p99_ms"}`;
rates and percentiles count served requests only, and failures are reported, never served.

`summarize(raw)` turns that into the `benchmarks.common` result, computing every target
from the numbers (a missing measurement is a target "not measured" with its reason);
`run(quick)` is both.

Example:
>>> from benchmarks import serving_bench
>>> serving_bench.run(quick=True)["targets"]
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common

CONCURRENCY = (1, 8, 16, 32)
RESNET50_CONCURRENCY = (16,)
# The served variants: key -> (protocol, edge server flags). The batching variant runs the
# server's defaults, so the overhead targets describe what a user gets.
SERVER_VARIANTS = {"batching": [], "no_batching": ["--no-batching"]}
REPO_ROOT = Path(__file__).resolve().parents[1]


def _export(folder, name, logits_model, input_shape):
    """Writes `<folder>/exports/<name>/1/model.onnx` (softmax outputs, kerasdl's metadata); returns its path."""
    import keras
    import onnx

    inputs = keras.Input(input_shape, name="images")
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits_model(inputs)))
    model(np.zeros((1, *input_shape), "float32"))
    raw = folder / f"{name}-raw.onnx"
    model.export(str(raw), format="onnx", verbose=False)
    proto = onnx.load(str(raw))
    raw.unlink()
    graph = proto.graph
    renames = {graph.input[0].name: "images", graph.output[0].name: "probabilities"}
    for node in graph.node:
        node.input[:] = [renames.get(item, item) for item in node.input]
        node.output[:] = [renames.get(item, item) for item in node.output]
    graph.input[0].name, graph.output[0].name = "images", "probabilities"
    classes = int(model.output.shape[-1])
    for key, value in {
        "class_names": json.dumps([str(index) for index in range(classes)]),
        "modality": "image",
        "input_spec": json.dumps({"name": "images", "dtype": "float32", "shape": [None, *input_shape]}),
    }.items():
        proto.metadata_props.add(key=key, value=value)
    version = folder / "exports" / name / "1"
    version.mkdir(parents=True)
    onnx.save(proto, str(version / "model.onnx"))
    return version / "model.onnx"


def _models(folder, toy):
    """`{name: (onnx path, example inputs)}`: the seed CNN, and ResNet50 outside toy runs."""
    import keras

    from kerasdl.models import cnn, resnet50

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    models = {"cnn": (_export(folder, "cnn", cnn(input_shape=(32, 32, 3), num_classes=10), (32, 32, 3)),
                      rng.uniform(0, 255, (64, 32, 32, 3)).astype(np.float32))}
    if not toy:
        base = resnet50(input_shape=(224, 224, 3), num_classes=10, weights=None)
        models["resnet50"] = (_export(folder, "resnet50", base, (224, 224, 3)), rng.uniform(0, 255, (16, 224, 224, 3)).astype(np.float32))
    return models


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _start_server(base, extra):
    """Starts `python -m serving.edge` on free ports; returns `(process, rest url, grpc target)`."""
    import requests

    port, grpc_port = _free_port(), _free_port()
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.edge", str(base), "--port", str(port), "--grpc-port", str(grpc_port),
         "--poll-seconds", "0", "--log-level", "WARNING", *extra],
        cwd=str(REPO_ROOT), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url, f"127.0.0.1:{grpc_port}"
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"the edge server did not become ready (exit status {process.poll()})")


def _load(folder, protocol, target, model, inputs, levels, total):
    """Runs the load generator in its own process; returns `{level: numbers}`."""
    spec_path = Path(folder, f"spec-{protocol}-{model}-{time.monotonic_ns()}.json")
    inputs_path = spec_path.with_suffix(".npy")
    np.save(inputs_path, inputs)
    spec_path.write_text(json.dumps({
        "protocol": protocol, "target": str(target), "model": model, "input_name": "images",
        "inputs": str(inputs_path), "levels": list(levels), "total": total, "warmup": max(levels),
    }))
    return common.run_python(f"import sys; from benchmarks import load_generator; sys.exit(load_generator.main([{str(spec_path)!r}]))", timeout=3600)


def measure(quick=True):
    """Measures every variant (see the module docstring); returns the raw dict."""
    toy = common.TOY
    total = 40 if toy else (200 if quick else 2000)
    resnet_total = 48 if quick else 320
    levels = (1, 8) if toy else CONCURRENCY
    raw = {"model": "cnn (seed: 32x32x3, conv 32/64, dense 512), untrained", "requests_per_level": total,
           "levels": list(levels), "cpu_count": os.cpu_count(), "load_generator": "own process (benchmarks.load_generator)"}
    with tempfile.TemporaryDirectory(prefix="kerasdl-bench-serving-") as folder:
        models = _models(Path(folder), toy)
        path, inputs = models["cnn"]
        raw["in_process"] = _load(folder, "onnx", path, "cnn", inputs, levels, total)
        for variant, flags in SERVER_VARIANTS.items():
            process, url, grpc_target = _start_server(Path(folder) / "exports", flags)
            try:
                raw[f"edge_{variant}"] = _load(folder, "rest", url, "cnn", inputs, levels, total)
                raw[f"grpc_{variant}"] = _load(folder, "grpc", grpc_target, "cnn", inputs, levels, total)
                if "resnet50" in models:
                    raw.setdefault("resnet50", {"requests_per_level": resnet_total})
                    raw["resnet50"][f"grpc_{variant}"] = _load(folder, "grpc", grpc_target, "resnet50", models["resnet50"][1], RESNET50_CONCURRENCY, resnet_total)
            finally:
                process.terminate()
                process.wait(timeout=30)
    return raw


def _level(raw, *path):
    """The numbers at `raw[path...]`, or None where that was not measured."""
    value = raw
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _missing(raw, *paths):
    """Why a target cannot be computed: which measurement is absent or served nothing."""
    for path in paths:
        numbers = _level(raw, *path)
        if numbers is None:
            return f"not measured: no {'/'.join(path)} in serving_bench's results"
        if not numbers.get("served"):
            return f"{'/'.join(path)}: all {numbers.get('requests')} requests failed ({'; '.join(numbers.get('error_samples') or [])})"
    return None


def _p50_overhead(raw, key, level):
    served, floor = _level(raw, key, level), _level(raw, "in_process", level)
    if _missing(raw, (key, level), ("in_process", level)):
        return None
    return served["p50_ms"] - floor["p50_ms"]


def summarize(raw, started=None):
    """The `benchmarks.common` result of `measure`'s dict: rows vs in-process ORT, computed targets."""
    started = started or time.time()
    rows, targets, notes = [], [], [f"model: {raw.get('model')}, {raw.get('requests_per_level')} requests per level; load generator: {raw.get('load_generator')}"]
    failures = 0
    keys = [(key, raw.get(key, {})) for key in ("edge_batching", "edge_no_batching", "grpc_batching", "grpc_no_batching")]
    keys += [(f"resnet50 {key}", numbers) for key, numbers in (raw.get("resnet50") or {}).items() if isinstance(numbers, dict)]
    for key, levels in [("in_process", raw.get("in_process", {}))] + keys:
        for level, numbers in levels.items():
            if not isinstance(numbers, dict) or "requests" not in numbers:
                continue
            failures += numbers["errors"]
            if numbers["errors"]:
                notes.append(f"{key} c={level}: {numbers['errors']} of {numbers['requests']} requests failed (not counted as served): {'; '.join(numbers['error_samples'])}")
            if key == "in_process" or key.startswith("resnet50"):
                continue
            base = raw.get("in_process", {}).get(level, {})
            rows.append(common.row(f"{key} c={level}", "served requests/s", numbers["requests_per_s"], "req/s", f"in-process ORT c={level}", base.get("requests_per_s")))
            rows.append(common.row(f"{key} c={level}", "p50 latency", numbers["p50_ms"], "ms", f"in-process ORT c={level}", base.get("p50_ms"), higher_is_better=False))
            rows.append(common.row(f"{key} c={level}", "p99 latency", numbers["p99_ms"], "ms", f"in-process ORT c={level}", base.get("p99_ms"), higher_is_better=False))
    for variant in SERVER_VARIANTS:
        for level, numbers in (_level(raw, "resnet50", f"grpc_{variant}") or {}).items():
            baseline = _level(raw, "resnet50", "grpc_no_batching", level) or {}
            rows.append(common.row(f"resnet50 grpc_{variant} c={level}", "served requests/s", numbers["requests_per_s"], "req/s", f"resnet50 grpc_no_batching c={level}", baseline.get("requests_per_s")))

    def breakdown(level):
        parts = [f"{key} {_level(raw, key, level, 'p50_ms')} ms" for key in ("in_process", "edge_batching", "edge_no_batching", "grpc_batching", "grpc_no_batching") if _level(raw, key, level)]
        return f"p50 at c={level}: " + ", ".join(parts)

    overhead = _p50_overhead(raw, "edge_batching", "1")
    targets.append(common.target("serving_rest_p50_overhead_c1", "REST p50 overhead over in-process ORT at c=1, seed CNN, ms", overhead, 1.0, "<=",
                                 reason=_missing(raw, ("edge_batching", "1"), ("in_process", "1")) or breakdown("1")))
    overhead = _p50_overhead(raw, "grpc_batching", "1")
    targets.append(common.target("serving_grpc_p50_overhead_c1", "gRPC p50 overhead over in-process ORT at c=1, seed CNN, ms", overhead, 0.5, "<=",
                                 reason=_missing(raw, ("grpc_batching", "1"), ("in_process", "1")) or breakdown("1")))
    missing = _missing(raw, ("grpc_batching", "32"), ("in_process", "32"))
    ratio = None if missing else raw["grpc_batching"]["32"]["requests_per_s"] / raw["in_process"]["32"]["requests_per_s"]
    targets.append(common.target("serving_grpc_throughput_c32", "gRPC served requests/s at c=32 / in-process ORT, seed CNN", ratio, 0.5, ">=",
                                 reason=missing or f"c=32: gRPC {_level(raw, 'grpc_batching', '32', 'requests_per_s')} req/s (p99 {_level(raw, 'grpc_batching', '32', 'p99_ms')} ms) vs in process {_level(raw, 'in_process', '32', 'requests_per_s')} req/s on {raw.get('cpu_count')} cores"))
    missing = _missing(raw, ("resnet50", "grpc_batching", "16"), ("resnet50", "grpc_no_batching", "16"))
    gain = None if missing else raw["resnet50"]["grpc_batching"]["16"]["requests_per_s"] / raw["resnet50"]["grpc_no_batching"]["16"]["requests_per_s"]
    targets.append(common.target("serving_batching_gain_resnet50_c16", "batching gain at c=16, ResNet50 224x224 over gRPC: served requests/s batching / no batching", gain, 1.5, ">=",
                                 reason=missing or f"c=16: batching p50 {_level(raw, 'resnet50', 'grpc_batching', '16', 'p50_ms')} ms, no batching p50 {_level(raw, 'resnet50', 'grpc_no_batching', '16', 'p50_ms')} ms"))
    targets.append(common.target("serving_failed_requests", "failed requests, all variants and levels (reported, never served)", failures if raw.get("in_process") else None, 0, "<=",
                                 reason="see the notes for each level's failures" if failures else "not measured: no results"))
    result = common.result("serving", started, rows, targets, notes)
    result["raw"] = raw
    return result


def run(quick=True):
    """`measure` then `summarize`: the `benchmarks.run` entry."""
    started = time.time()
    return summarize(measure(quick), started)


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
