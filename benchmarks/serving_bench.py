"""The edge server's throughput and latency against in-process ONNX Runtime, with issue 14's targets.

`measure(quick)` exports untrained models (speed does not depend on the weights) to ONNX in
a temporary folder and drives one-example requests at several concurrency levels with the
load generator in its own process (`benchmarks.load_generator`):

- `in_process`: ONNX Runtime called directly (the floor), seed CNN (32x32x3), measured first
  and again last (`in_process_end`), so a change in the machine's load shows;
- `c1_rounds`: p50 at c=1 of in-process ORT, REST and gRPC (default server) in interleaved
  rounds, from which the c=1 overhead targets are taken (the median of the per-round overheads);
- `edge_batching` / `edge_no_batching`: `python -m serving.edge` over REST, seed CNN,
  with its default dynamic batching and with `--no-batching`;
- `grpc_batching` / `grpc_no_batching`: the same servers over gRPC;
- `workers2`: `{"edge", "grpc"}` with `--workers 2` at c=8 and c=32 (outside toy runs), for
  the README's advice on when to run several processes;
- `resnet50`: `{"grpc_batching", "grpc_no_batching", "grpc_batching_timeout"}` for ResNet50 at
  224x224 (not in toy runs), where the model, not the request, is the cost, with
  `in_process_ms_per_image` at batch 1 and 16 (what batching can gain at most on this machine);
- `before` (only with `--before PATH`): the batching and no-batching variants again, served by
  the edge server of another checkout (the code before a change), each measured right before
  the same variant of this checkout, so before and after are compared back to back.

Each level: `{"requests", "served", "errors", "error_samples", "requests_per_s", "p50_ms", "p99_ms"}`;
rates and percentiles count served requests only, and failures are reported, never served.
Served levels also carry `server`: what the server's own Prometheus metrics say about that
level alone (scraped before and after it): mean request time inside the server, mean model
run time, and mean rows per model run. The load average is recorded at each server start.

`summarize(raw)` (`benchmarks.serving_targets`) turns that into the `benchmarks.common` result,
computing every target from the numbers; `run(quick)` is both.

    python -m benchmarks.serving_bench [--full] [--toy] [--before ../edge-before] [--out serving.json]

Over ~300 lines: the in-process reference, the server's start-up, the load generator's
runs and the targets are one measurement, compared in one run.

Example:
>>> from benchmarks import serving_bench
>>> serving_bench.run(quick=True)["targets"]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.serving_targets import SERVER_VARIANTS, summarize

CONCURRENCY = (1, 8, 16, 32)
RESNET50_CONCURRENCY = (16,)
# TF Serving's batching guide suggests trying batch_timeout_micros of 1-10 ms when batches run
# part-full: measured for ResNet50 beside the default (0), whose closed-loop clients come back
# out of phase with the batch that answered them (batches alternate between few rows and many).
RESNET50_TIMEOUT_FLAGS = ["--batch-timeout-ms", "10"]
# Several processes on the same ports (README Serving: when to use --workers).
WORKERS_FLAGS = ["--workers", "2"]
WORKERS_CONCURRENCY = ("8", "32")
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
    """`{name: (onnx path, example inputs)}`: the seed CNN, and ResNet50 outside toy runs.

    Each export runs in a child process: converting ResNet50 to ONNX peaks at several GB,
    which must not stay with this process (or its servers) for the rest of the run.
    """
    rng = np.random.default_rng(0)
    models = {"cnn": (_export_in_child(folder, "cnn", "cnn(input_shape=(32, 32, 3), num_classes=10)", (32, 32, 3)),
                      rng.uniform(0, 255, (64, 32, 32, 3)).astype(np.float32))}
    if not toy:
        build = "resnet50(input_shape=(224, 224, 3), num_classes=10, weights=None)"
        models["resnet50"] = (_export_in_child(folder, "resnet50", build, (224, 224, 3)), rng.uniform(0, 255, (16, 224, 224, 3)).astype(np.float32))
    return models


def _export_in_child(folder, name, build, input_shape):
    code = (
        "import json, keras; from pathlib import Path; from benchmarks import serving_bench; "
        f"from kerasdl.models import {name}; keras.utils.set_random_seed(0); "
        f"path = serving_bench._export(Path({str(folder)!r}), {name!r}, {build}, {tuple(input_shape)!r}); "
        "print('BENCH_JSON ' + json.dumps(str(path)))"
    )
    return Path(common.run_python(code, timeout=3600))


def _start_server(base, extra, root=REPO_ROOT, log_path=os.devnull):
    """Starts `python -m serving.edge` of the checkout at `root` on free ports; returns `(process, rest url, grpc target)`.

    The server runs as a user starts it (its defaults, one JSON log line per request), its log
    going to `log_path`.
    """
    import requests

    port, grpc_port = common.free_ports(2)
    environment = dict(os.environ, PYTHONPATH=str(root))
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.edge", str(base), "--port", str(port), "--grpc-port", str(grpc_port),
             "--poll-seconds", "0", *extra],
            cwd=str(root), env=environment, stdout=log, stderr=subprocess.STDOUT,
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


def _load(folder, protocol, target, model, inputs, levels, total, warmup=None):
    """Runs the load generator in its own process; returns `{level: numbers}`."""
    spec_path = Path(folder, f"spec-{protocol}-{model}-{time.monotonic_ns()}.json")
    inputs_path = spec_path.with_suffix(".npy")
    np.save(inputs_path, inputs)
    spec_path.write_text(json.dumps({
        "protocol": protocol, "target": str(target), "model": model, "input_name": "images",
        "inputs": str(inputs_path), "levels": list(levels), "total": total, "warmup": max(levels) if warmup is None else warmup,
    }))
    return common.run_python(f"import sys; from benchmarks import load_generator; sys.exit(load_generator.main([{str(spec_path)!r}]))", timeout=3600)


def _batch_costs(folder, path, inputs, sizes):
    """In-process ONNX Runtime ms per image at each batch size (sequential runs, in a child): what batching can gain at most."""
    inputs_path = Path(folder, "batch-costs.npy")
    np.save(inputs_path, inputs)
    code = (
        "import json, time, numpy as np, onnxruntime; "
        f"session = onnxruntime.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider']); "
        f"inputs = np.load({str(inputs_path)!r}); costs = {{}}\n"
        f"for size in {tuple(sizes)!r}:\n"
        "    batch = inputs[:size]; session.run(None, {'images': batch}); runs = max(2, 32 // size); started = time.perf_counter()\n"
        "    for _ in range(runs): session.run(None, {'images': batch})\n"
        "    costs[str(size)] = round((time.perf_counter() - started) / runs / size * 1000, 2)\n"
        "print('BENCH_JSON ' + json.dumps(costs))"
    )
    return common.run_python(code, timeout=3600)


# The server's own view, from its Prometheus page: series -> (metric, label that must be present).
_SERVER_SERIES = {
    "model_run": (":tensorflow:serving:runtime_latency", 'API="Predict"'),
    "batch": (":tensorflow:serving:batching:batch_size", ""),
}
# Requests sent to warm a level up before it is measured (server caches, threads, connections).
WARMUP_REQUESTS = 50
# The c=1 overhead targets: interleaved rounds of in-process, REST and gRPC (`_rounds_at_c1`).
C1_ROUNDS = {"toy": 2, "quick": 6, "full": 12}
C1_ROUND_REQUESTS = 150
C1_ROUND_WARMUP = 20


def _scrape(url, model):
    """`{(series, "sum"|"count"): value}` for one model from the server's metrics page (empty if unreadable)."""
    import requests

    try:
        page = requests.get(url + "/monitoring/prometheus/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    totals = {}
    for series, (metric, label) in _SERVER_SERIES.items():
        for suffix in ("sum", "count"):
            matches = re.findall(rf"^{re.escape(metric)}_{suffix}{{([^}}]*)}} (\S+)$", page, re.MULTILINE)
            totals[(series, suffix)] = sum(float(number) for labels, number in matches if f'model_name="{model}"' in labels and label in labels)
    return totals


def _server_view(before, after, log_lines, protocol):
    """One level as the server saw it: p50 of its own request latency (its log lines), mean model run (ms), rows per run."""
    if not before or not after:
        return None

    def mean(series, scale):
        count = after[(series, "count")] - before[(series, "count")]
        return round((after[(series, "sum")] - before[(series, "sum")]) / count * scale, 3) if count else None

    latencies = []
    for line in log_lines:
        if '"event": "request"' in line and f'"protocol": "{protocol}"' in line and ('"Predict"' in line or ":predict" in line):
            record = json.loads(line[line.index("{"):])
            latencies.append(record["latency_ms"])
    return {"p50_request_ms": round(float(np.median(latencies)), 3) if latencies else None, "requests_logged": len(latencies),
            "mean_model_run_ms": mean("model_run", 1e-3), "mean_batch_rows": mean("batch", 1.0)}


def _load_levels(server, protocol, model, inputs, levels, total):
    """`_load` one level at a time (after its own warm-up), with the server's own view of each level (`server`)."""
    folder, url, log_path = server["folder"], server["url"], server["log"]
    target = url if protocol == "rest" else server["grpc"]
    results = {}
    for level in levels:
        _load(folder, protocol, target, model, inputs, (level,), max(WARMUP_REQUESTS, 2 * level), warmup=0)
        before, offset = _scrape(url, model), log_path.stat().st_size
        numbers = _load(folder, protocol, target, model, inputs, (level,), total, warmup=0)[str(level)]
        with open(log_path) as handle:
            handle.seek(offset)
            lines = handle.read().splitlines()
        numbers["server"] = _server_view(before, _scrape(url, model), lines, protocol)
        results[str(level)] = numbers
    return results


def _rounds_at_c1(server, onnx_path, inputs, rounds, requests):
    """p50 at c=1 of in-process ORT, REST and gRPC in interleaved rounds (the order rotating each round).

    On a shared machine the load drifts within seconds; an overhead taken within one round,
    between measurements seconds apart, and then the median over rounds, is far steadier than
    two levels measured minutes apart.
    """
    calls = [("in_process", "onnx", onnx_path), ("edge_batching", "rest", server["url"]), ("grpc_batching", "grpc", server["grpc"])]
    results = []
    for index in range(rounds):
        measured = {}
        for key, protocol, target in calls[index % 3:] + calls[: index % 3]:
            measured[key] = _load(server["folder"], protocol, target, "cnn", inputs, (1,), requests, warmup=C1_ROUND_WARMUP)["1"]["p50_ms"]
        results.append(measured)
    return results


def _serve_and_load(folder, flags, plan, root=REPO_ROOT, rounds=None):
    """Starts a server with `flags`, runs `plan` [(key, protocol, model, inputs, levels, total)]; returns `{key: levels}`.

    `rounds` = `(onnx path, inputs, rounds, requests)` adds `c1_rounds` (see `_rounds_at_c1`).
    """
    log_path = Path(folder, f"edge-{time.monotonic_ns()}.log")
    process, url, grpc_target = _start_server(Path(folder) / "exports", flags, root, log_path)
    server = {"folder": folder, "url": url, "grpc": grpc_target, "log": log_path}
    try:
        results = {"load_average": list(os.getloadavg())}
        for key, protocol, model, inputs, levels, total in plan:
            results[key] = _load_levels(server, protocol, model, inputs, levels, total)
        if rounds is not None:
            results["c1_rounds"] = _rounds_at_c1(server, *rounds)
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(quick=True, before=None):
    """Measures every variant (see the module docstring); returns the raw dict.

    Args:
        quick: 200 requests per level instead of 2,000.
        before: the root of another checkout whose edge server is measured beside this one's.
    """
    toy = common.TOY
    total = 40 if toy else (200 if quick else 2000)
    resnet_total = 48 if quick else 320
    levels = (1, 8) if toy else CONCURRENCY
    raw = {"model": "cnn (seed: 32x32x3, conv 32/64, dense 512), untrained", "requests_per_level": total,
           "levels": list(levels), "cpu_count": os.cpu_count(), "load_generator": "own process (benchmarks.load_generator)",
           "load_average": {"start": list(os.getloadavg())}}
    with tempfile.TemporaryDirectory(prefix="kerasdl-bench-serving-") as folder:
        models = _models(Path(folder), toy)
        path, inputs = models["cnn"]
        raw["in_process"] = _load(folder, "onnx", path, "cnn", inputs, levels, total)
        for variant, flags in SERVER_VARIANTS.items():
            plan = [(f"edge_{variant}", "rest", "cnn", inputs, levels, total), (f"grpc_{variant}", "grpc", "cnn", inputs, levels, total)]
            if before is not None:
                measured = _serve_and_load(folder, flags, plan, Path(before))
                raw.setdefault("before", {"root": str(before)}).update({key: measured[key] for key, *_ in plan})
                raw["before"][f"load_average_{variant}"] = measured["load_average"]
            if "resnet50" in models:
                plan.append(("resnet50", "grpc", "resnet50", models["resnet50"][1], RESNET50_CONCURRENCY, resnet_total))
            rounds = None
            if variant == "batching":
                rounds = (path, inputs, C1_ROUNDS["toy" if toy else ("quick" if quick else "full")], C1_ROUND_REQUESTS)
            measured = _serve_and_load(folder, flags, plan, rounds=rounds)
            raw.update({key: measured[key] for key, *_ in plan[:2]})
            if "c1_rounds" in measured:
                raw["c1_rounds"] = measured["c1_rounds"]
            raw["load_average"][variant] = measured["load_average"]
            if "resnet50" in measured:
                raw.setdefault("resnet50", {"requests_per_level": resnet_total})[f"grpc_{variant}"] = measured["resnet50"]
        if "resnet50" in models:
            resnet_path, resnet_inputs = models["resnet50"]
            measured = _serve_and_load(folder, RESNET50_TIMEOUT_FLAGS, [("resnet50", "grpc", "resnet50", resnet_inputs, RESNET50_CONCURRENCY, resnet_total)])
            raw["resnet50"]["grpc_batching_timeout"] = dict(measured["resnet50"], flags=RESNET50_TIMEOUT_FLAGS)
            raw["resnet50"]["in_process_ms_per_image"] = _batch_costs(folder, resnet_path, resnet_inputs, (1, max(RESNET50_CONCURRENCY)))
        if not toy:
            worker_levels = [int(level) for level in WORKERS_CONCURRENCY]
            measured = _serve_and_load(folder, WORKERS_FLAGS, [("edge", "rest", "cnn", inputs, worker_levels, total),
                                                               ("grpc", "grpc", "cnn", inputs, worker_levels, total)])
            raw["workers2"] = {key: measured[key] for key in ("edge", "grpc")}
            raw["load_average"]["workers2"] = measured["load_average"]
        raw["in_process_end"] = _load(folder, "onnx", path, "cnn", inputs, levels, total)
    raw["load_average"]["end"] = list(os.getloadavg())
    return raw


def run(quick=True):
    """`measure` then `summarize`: the `benchmarks.run` entry."""
    started = time.time()
    return summarize(measure(quick), started)


def main(argv=None):
    """`python -m benchmarks.serving_bench`: measures, prints the Markdown table, writes the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="2,000 requests per level (default: 200)")
    parser.add_argument("--toy", action="store_true", help="the smallest run (tests): c=1 and 8, 40 requests, no ResNet50")
    parser.add_argument("--before", help="root of another checkout whose edge server is measured beside this one")
    parser.add_argument("--out", help="write the result (with the raw numbers) to this JSON file")
    arguments = parser.parse_args(argv)
    if arguments.toy:
        common.TOY = True
    if arguments.before and not (Path(arguments.before) / "serving" / "edge" / "server.py").is_file():
        print(f"error: {arguments.before} holds no serving/edge/server.py; give the root of a kerasdl checkout", file=sys.stderr)
        return 2
    from benchmarks import report

    started = time.time()
    outcome = summarize(measure(quick=not arguments.full, before=arguments.before), started)
    print(report.benchmark_markdown("serving", outcome))
    for item in outcome["targets"]:
        if item["met"] is not True:
            print(f"- {item['id']} ({report.RESULT_WORDS[item['met']]}): {item.get('reason')}")
    if arguments.out:
        Path(arguments.out).write_text(json.dumps(outcome, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
