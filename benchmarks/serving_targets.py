"""Issue 14's serving targets, computed from `benchmarks.serving_bench.measure`'s numbers.

Every target comes from the measurements of the same run: a missing measurement is a target
"not measured" with its reason, and a target not met carries the measured breakdown as its
reason (each variant's p50, the servers' own p50 from their log lines, their model-run time
and rows per run from their metrics, the load average). Rows quote each variant against
in-process ONNX Runtime, this checkout against the `before` one, and `--workers 2` against
one process.

Example:
>>> from benchmarks.serving_targets import summarize
>>> summarize(raw)["targets"][0]["id"]
'serving_rest_p50_overhead_c1'
"""

import time

import numpy as np

from benchmarks import common

# The served variants: key -> edge server flags. The batching variant runs the server's
# defaults, so the overhead targets describe what a user gets.
SERVER_VARIANTS = {"batching": [], "no_batching": ["--no-batching"]}


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
    """p50 of `key` minus in-process ORT's: the median over the interleaved c=1 rounds when measured, else the levels'."""
    rounds = [item for item in raw.get("c1_rounds") or [] if item.get(key) is not None and item.get("in_process") is not None]
    if level == "1" and rounds:
        return float(np.median([item[key] - item["in_process"] for item in rounds]))
    served, floor = _level(raw, key, level), _level(raw, "in_process", level)
    if _missing(raw, (key, level), ("in_process", level)):
        return None
    return served["p50_ms"] - floor["p50_ms"]


def _rounds_text(raw, key):
    rounds = [item for item in raw.get("c1_rounds") or [] if item.get(key) is not None and item.get("in_process") is not None]
    if not rounds:
        return ""
    overheads = ", ".join(f"{item[key] - item['in_process']:.3f}" for item in rounds)
    return f"; the value is the median over {len(rounds)} interleaved rounds at c=1 of ({key} p50 - in_process p50): {overheads} ms"


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
    for variant in list(SERVER_VARIANTS) + ["batching_timeout"]:
        for level, numbers in (_level(raw, "resnet50", f"grpc_{variant}") or {}).items():
            if not isinstance(numbers, dict) or "requests" not in numbers:
                continue
            baseline = _level(raw, "resnet50", "grpc_no_batching", level) or {}
            rows.append(common.row(f"resnet50 grpc_{variant} c={level}", "served requests/s", numbers["requests_per_s"], "req/s", f"resnet50 grpc_no_batching c={level}", baseline.get("requests_per_s")))

    def breakdown(level):
        parts = [f"{key} {_level(raw, key, level, 'p50_ms')} ms" for key in ("in_process", "edge_batching", "edge_no_batching", "grpc_batching", "grpc_no_batching") if _level(raw, key, level)]
        return f"p50 at c={level}: " + ", ".join(parts) + _inside(raw, level)

    rows += _comparison_rows(raw)
    notes += _load_notes(raw)

    overhead = _p50_overhead(raw, "edge_batching", "1")
    targets.append(common.target("serving_rest_p50_overhead_c1", "REST p50 overhead over in-process ORT at c=1, seed CNN, ms", overhead, 1.0, "<=",
                                 reason=_missing(raw, ("edge_batching", "1"), ("in_process", "1")) or breakdown("1") + _rounds_text(raw, "edge_batching")))
    overhead = _p50_overhead(raw, "grpc_batching", "1")
    targets.append(common.target("serving_grpc_p50_overhead_c1", "gRPC p50 overhead over in-process ORT at c=1, seed CNN, ms", overhead, 0.5, "<=",
                                 reason=_missing(raw, ("grpc_batching", "1"), ("in_process", "1")) or breakdown("1") + _rounds_text(raw, "grpc_batching")))
    missing = _missing(raw, ("grpc_batching", "32"), ("in_process", "32"))
    ratio = None if missing else raw["grpc_batching"]["32"]["requests_per_s"] / raw["in_process"]["32"]["requests_per_s"]
    targets.append(common.target("serving_grpc_throughput_c32", "gRPC served requests/s at c=32 / in-process ORT, seed CNN", ratio, 0.5, ">=",
                                 reason=missing or f"c=32: gRPC {_level(raw, 'grpc_batching', '32', 'requests_per_s')} req/s (p99 {_level(raw, 'grpc_batching', '32', 'p99_ms')} ms) vs in process {_level(raw, 'in_process', '32', 'requests_per_s')} req/s on {raw.get('cpu_count')} cores" + _inside(raw, "32", ("grpc_batching",))))
    missing = _missing(raw, ("resnet50", "grpc_batching", "16"), ("resnet50", "grpc_no_batching", "16"))
    gain = None if missing else raw["resnet50"]["grpc_batching"]["16"]["requests_per_s"] / raw["resnet50"]["grpc_no_batching"]["16"]["requests_per_s"]
    targets.append(common.target("serving_batching_gain_resnet50_c16", "batching gain at c=16, ResNet50 224x224 over gRPC: served requests/s batching / no batching", gain, 1.5, ">=",
                                 reason=missing or f"c=16: batching p50 {_level(raw, 'resnet50', 'grpc_batching', '16', 'p50_ms')} ms, no batching p50 {_level(raw, 'resnet50', 'grpc_no_batching', '16', 'p50_ms')} ms"
                                 + _inside(raw.get("resnet50") or {}, "16", ("grpc_batching", "grpc_no_batching", "grpc_batching_timeout"))
                                 + _batching_ceiling(raw)))
    targets.append(common.target("serving_failed_requests", "failed requests, all variants and levels (reported, never served)", failures if raw.get("in_process") else None, 0, "<=",
                                 reason="see the notes for each level's failures" if failures else "not measured: no results"))
    result = common.result("serving", started, rows, targets, notes)
    result["raw"] = raw
    return result


def _inside(raw, level, keys=("edge_batching", "grpc_batching")):
    """The servers' own view of `level` (their metrics), and the load average, as a reason's tail."""
    parts = []
    for key in keys:
        view = _level(raw, key, level, "server") or {}
        if view.get("p50_request_ms") is not None:
            parts.append(f"{key} {view['p50_request_ms']} ms (its model runs: {view.get('mean_model_run_ms')} ms mean, "
                         f"{view.get('mean_batch_rows')} rows each)")
    text = f"; p50 inside the server (its own log lines): {', '.join(parts)}; the rest of each p50 is the client and the transport" if parts else ""
    load = (raw.get("load_average") or {}).get("batching")
    return text + (f"; load average {load[0]:.1f} on {raw.get('cpu_count')} cores" if load else "")


def _batching_ceiling(raw):
    """What batching can gain at most here (the model's own cost per image by batch size), and what a batch timeout gave."""
    costs = _level(raw, "resnet50", "in_process_ms_per_image") or {}
    text = ""
    if costs.get("1") and costs.get("16"):
        text = (f"; in-process ONNX Runtime: {costs['1']} ms per image at batch 1, {costs['16']} ms at batch 16, "
                f"so batching gains at most {costs['1'] / costs['16']:.2f}x on this machine")
    alone = _level(raw, "resnet50", "grpc_no_batching", "16", "server", "mean_model_run_ms")
    if alone:
        text += f"; without batching up to 16 runs overlap, {alone} ms each: {alone / 16:.1f} ms of wall time per image"
    timed = _level(raw, "resnet50", "grpc_batching_timeout", "16") or {}
    if timed.get("requests_per_s"):
        flags = " ".join(_level(raw, "resnet50", "grpc_batching_timeout", "flags") or [])
        text += f"; with {flags}: {timed['requests_per_s']} req/s"
    return text


def _comparison_rows(raw):
    """This checkout against the `before` checkout (same variant, level, back to back), and `--workers 2` against one process."""
    rows = []
    before = raw.get("before") or {}
    for key, levels in before.items():
        if not isinstance(levels, dict) or not key.startswith(("edge_", "grpc_")):
            continue
        for level, old in levels.items():
            new = _level(raw, key, level) or {}
            for metric, field, higher in (("served requests/s", "requests_per_s", True), ("p50 latency", "p50_ms", False), ("p99 latency", "p99_ms", False)):
                rows.append(common.row(f"{key} c={level}", metric, new.get(field), "req/s" if higher else "ms", f"{key} c={level} before the change", old.get(field), higher_is_better=higher))
    for key, levels in (raw.get("workers2") or {}).items():
        single = f"{key}_batching"
        for level, numbers in levels.items():
            baseline = _level(raw, single, level) or {}
            rows.append(common.row(f"workers2 {key} c={level}", "served requests/s", numbers.get("requests_per_s"), "req/s", f"{single} c={level} (one process)", baseline.get("requests_per_s")))
            rows.append(common.row(f"workers2 {key} c={level}", "p99 latency", numbers.get("p99_ms"), "ms", f"{single} c={level} (one process)", baseline.get("p99_ms"), higher_is_better=False))
    return rows


def _load_notes(raw):
    notes = []
    load = raw.get("load_average") or {}
    if load:
        notes.append("load average (1, 5, 15 min) on " + str(raw.get("cpu_count")) + " cores: "
                     + "; ".join(f"{when} {' '.join(f'{value:.2f}' for value in values)}" for when, values in load.items()))
    start, end = _level(raw, "in_process", "1", "p50_ms"), _level(raw, "in_process_end", "1", "p50_ms")
    if start is not None and end is not None:
        notes.append(f"in-process ORT p50 at c=1: {start} ms at the start, {end} ms at the end (the targets use the start)")
    if raw.get("before"):
        notes.append(f"before: the edge server of {raw['before'].get('root')}, each variant measured right before this checkout's")
    return notes
