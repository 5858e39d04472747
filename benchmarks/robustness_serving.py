"""The edge server under generated hostile requests and concurrent clients, on both backends.

`run(quick)` trains two small models with `kerasdl.train` (the CNN on the built-in digits at
32x32x3, whose SavedModel also takes JPEG/PNG bytes; the text LSTM on SST-2's dev set) and
publishes each with `python -m export.run` (SavedModel and ONNX). It starts
`python -m serving.edge` twice over that base path, with `--backend onnx` and with
`--backend savedmodel`, and against each runs

  - `benchmarks.serving_fuzz.fuzz_rest` and `fuzz_grpc` (Hypothesis: random JSON, deep
    nesting, mixed dtypes and shapes, b64, huge numbers, NaN, shape/content mismatches,
    wrong dtypes, unknown inputs and signatures): no 5xx, gRPC INTERNAL/UNKNOWN/DATA_LOSS or
    timeout, every REST error body `{"error": "..."}`, and the server still answers;
then `benchmarks.serving_concurrency.check_concurrency` with every predict signature of both
models on both backends and both protocols: each answer row must equal the in-process answer
(the same backend class, loaded from the same folder) for its own input.

Budgets: 1,000 cases per API per backend and 16 clients x 500 requests (100 and 4 x 50 with
--quick). Every target is computed from the counts.

Example:
>>> from benchmarks import robustness_serving
>>> [target["id"] for target in robustness_serving.run(quick=True)["targets"]][:2]
['serving-fuzz-cases', 'serving-fuzz-rest-onnx']
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

BACKENDS = ("onnx", "savedmodel")


def train_and_export(base, log=print):
    """Trains the two models (reused when trained by the same code before) and exports each to `base`; returns their names."""
    models = {"cnn": dict(epochs=1, sets=("data.image_size=[32, 32]", "data.channels=3"))}
    sst2 = common.data_path("sst2", "dev.tsv")
    if sst2:
        models["lstm"] = dict(data=sst2, epochs=1)
    else:
        log("serving robustness: ../shared/data/sst2 is absent; the text model is left out")
    environment = dict(os.environ, PYTHONPATH=str(common.REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    for name, options in models.items():
        run_dir, _ = common.trained_run(name, log=log, **options)
        exported = subprocess.run(
            [sys.executable, "-m", "export.run", run_dir, "--base", str(base), "--name", name, "--format", "savedmodel", "onnx"],
            cwd=str(common.REPO_ROOT), env=environment, capture_output=True, text=True, timeout=1800,
        )
        if exported.returncode != 0:
            raise RuntimeError(f"export.run {name} exited {exported.returncode}: {exported.stderr.strip()[-500:]}")
    return sorted(models)


def measure(quick):
    """Exports, serves, fuzzes and loads both backends; returns the raw numbers."""
    from benchmarks.serving_bench import _start_server
    from benchmarks.serving_concurrency import check_concurrency, server_cases
    from benchmarks.serving_fuzz import fuzz_grpc, fuzz_rest

    examples = 30 if common.TOY else (100 if quick else 1000)
    clients, requests_per_client = (2, 10) if common.TOY else ((4, 50) if quick else (16, 500))
    raw = {"examples": examples, "clients": clients, "requests_per_client": requests_per_client, "fuzz": {}}
    with common.temporary_folder("kerasdl-robustness-serving-") as folder:
        base = Path(folder) / "exports"
        raw["models"] = train_and_export(base)
        servers = {}
        try:
            for backend in BACKENDS:
                servers[backend] = _start_server(base, ["--backend", backend])
            cases = []
            for index, (backend, (_, url, grpc_target)) in enumerate(servers.items()):
                raw["fuzz"][f"rest-{backend}"] = fuzz_rest(url, examples=examples, seed=index).summary()
                raw["fuzz"][f"grpc-{backend}"] = fuzz_grpc(grpc_target, examples=examples, seed=index, url=url).summary()
                cases += server_cases(url, grpc_target, base, backend=backend)
            raw["cases"] = sorted(case.name for case in cases)
            raw["concurrency"] = check_concurrency(cases, clients=clients, requests_per_client=requests_per_client)
        finally:
            for process, _, _ in servers.values():
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return raw


def summarize(raw, started):
    """The `benchmarks.common` result: a target per fuzz run and for the concurrent clients, from the counts."""
    rows, targets, notes = [], [], []
    fuzz = raw["fuzz"]
    fewest = min((summary["cases"] for summary in fuzz.values()), default=None)
    targets.append(common.target("serving-fuzz-cases", f"generated requests per API per backend (fewest of {len(fuzz)} runs)", fewest,
                                 raw["examples"], ">=", reason=f"cases: { {key: summary['cases'] for key, summary in fuzz.items()} }"))
    for key, summary in fuzz.items():
        api, backend = key.split("-", 1)
        broken = summary["server_errors"] + summary["bad_error_bodies"] + (0 if summary["answers_afterwards"] else 1)
        reason = f"{summary['server_errors']} server faults, {summary['bad_error_bodies']} malformed error bodies, answers afterwards: {summary['answers_afterwards']}; e.g. {summary['examples_of_failures'][:2]}"
        targets.append(common.target(f"serving-fuzz-{key}", f"{api.upper()} fuzzing, {backend} backend: server faults (5xx, INTERNAL/UNKNOWN/DATA_LOSS, timeouts), "
                                     "malformed error bodies, and a server that stopped answering", broken, 0, "<=", reason=reason))
        notes.append(f"{api} fuzzing on {backend}: {summary['cases']} cases, statuses {summary['statuses']}")
    concurrency = raw["concurrency"]
    pairs = sorted({tuple(name.split("/")[:2]) for name in raw["cases"]})
    expected = raw["clients"] * raw["requests_per_client"]
    problems = f"examples: {concurrency['examples'][:3]}"
    targets += [
        common.target("serving-concurrency-coverage", "(backend, model) pairs the concurrent clients reach", len(pairs), 4, ">=", reason=f"pairs: {pairs}"),
        common.target("serving-concurrency-requests", f"requests sent by {raw['clients']} concurrent clients", concurrency["requests"], expected, ">="),
        common.target("serving-concurrency-errors", "concurrent requests that failed", concurrency["errors"], 0, "<=", reason=problems),
        common.target("serving-concurrency-mismatches", "answer rows that differ from the in-process answer for their own input", concurrency["mismatched_rows"], 0, "<=", reason=problems),
    ]
    rows.append(common.row("edge server, concurrent clients (both backends, both protocols)", "requests per second", concurrency["requests_per_second"], "1/s", None, None))
    notes.append(f"concurrency: {concurrency['clients']} clients x {raw['requests_per_client']} requests over {len(raw['cases'])} cases "
                 f"({', '.join(raw['cases'])}): {concurrency['requests']} requests, {concurrency['rows']} rows, {concurrency['errors']} errors, "
                 f"{concurrency['mismatched_rows']} mismatched rows in {concurrency['seconds']} s")
    result = common.result("robustness_serving", started, rows, targets, notes)
    result["raw"] = raw
    return result


def run(quick):
    """`measure` then `summarize`: the `benchmarks.robustness` part."""
    started = time.time()
    return summarize(measure(quick), started)
