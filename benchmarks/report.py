"""Markdown tables and PNG charts of the benchmark results."""

import os

from benchmarks import common


def wrap_serving(raw, started):
    """Turns `serving_bench.run`'s dict into the common result shape (ratios vs in-process ORT)."""
    import time

    rows, notes = [], [f"model: {raw.get('model')}, {raw.get('requests_per_level')} requests per concurrency level"]
    in_process = raw.get("in_process", {})
    for key in ("edge_batching", "edge_no_batching"):
        for level, numbers in raw.get(key, {}).items():
            base = in_process.get(level, {})
            rows.append(common.row(f"{key} c={level}", "requests/s", numbers["requests_per_s"], "req/s", f"in-process ORT c={level}", base.get("requests_per_s")))
            rows.append(common.row(f"{key} c={level}", "p99 latency", numbers["p99_ms"], "ms", f"in-process ORT c={level}", base.get("p99_ms"), higher_is_better=False))
            if numbers.get("errors"):
                notes.append(f"{key} c={level}: {numbers['errors']} failed requests")
    return {"name": "serving", "seconds": round(time.time() - started, 1), "rows": rows, "targets": [], "notes": notes, "raw": raw}


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _mark(met):
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def benchmark_markdown(name, outcome):
    lines = [f"### {name} ({outcome.get('seconds', 0):.0f} s)", ""]
    if outcome.get("error"):
        lines += [f"**failed**: `{outcome['error']}`", ""]
    if outcome.get("targets"):
        lines += ["| target | value | threshold | result |", "|---|---|---|---|"]
        for item in outcome["targets"]:
            lines.append(f"| {item['description']} | {_format(item['value'])} | {item['comparison']} {_format(item['threshold'])} | {_mark(item['met'])} |")
        lines.append("")
    if outcome.get("rows"):
        lines += ["| case | metric | value | unit | baseline (same run) | baseline value | ratio |", "|---|---|---|---|---|---|---|"]
        for item in outcome["rows"]:
            lines.append(f"| {item['case']} | {item['metric']} | {_format(item['value'])} | {item['unit']} | {item['baseline_case']} | {_format(item['baseline'])} | {_format(item['ratio'])} |")
        lines.append("")
    for note in outcome.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def document_markdown(document):
    environment = document["environment"]
    lines = [
        "# Benchmark results", "",
        f"Command: `{document['command']}` ({'quick' if document['quick'] else 'full'} run), {document['started']} to {document.get('finished')}.", "",
        f"CPU: {environment.get('cpu_model')} x {environment.get('cpu_count')} logical cores; "
        f"flags of interest: {' '.join(environment.get('cpu_flags_of_interest', []))}.", "",
        "Versions: " + ", ".join(f"{key} {value}" for key, value in environment.get("versions", {}).items()) + ".", "",
        f"Load average at start {environment.get('load_average')}, at end {environment.get('load_average_end')} "
        "(above ~2 means other work shared the 2 cores).", "",
    ]
    for name, outcome in document["benchmarks"].items():
        lines.append(benchmark_markdown(name, outcome))
    return "\n".join(lines)


def charts(document, folder):
    """Latency per format (batch 1) and accuracy per model, where those benchmarks ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = document["benchmarks"].get("latency", {})
    rows = [item for item in latency.get("rows", []) if item["metric"] == "latency batch 1"]
    if rows:
        models = sorted({item["case"].split(" ")[0] for item in rows})
        formats = []
        for item in rows:
            fmt = item["case"].split(" ", 1)[1]
            if fmt not in formats:
                formats.append(fmt)
        figure, axis = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / max(len(formats), 1)
        for index, fmt in enumerate(formats):
            values = []
            for model in models:
                match = [item["value"] for item in rows if item["case"] == f"{model} {fmt}"]
                values.append(match[0] if match and match[0] else 0)
            axis.bar([position + index * width for position in range(len(models))], values, width, label=fmt)
        axis.set_xticks([position + 0.4 - width / 2 for position in range(len(models))], models)
        axis.set_yscale("log")
        axis.set_ylabel("ms per call, batch 1 (log)")
        axis.set_title("Inference latency per format (batch 1, CPU)")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(os.path.join(folder, "latency_batch1.png"), dpi=110)
        plt.close(figure)
    accuracy = document["benchmarks"].get("accuracy", {})
    rows = [item for item in accuracy.get("rows", []) if item["metric"] == "test accuracy"]
    if rows:
        figure, axis = plt.subplots(figsize=(9, 4))
        labels = [item["case"] for item in rows]
        axis.barh(labels, [item["value"] or 0 for item in rows], label="ours")
        axis.scatter([item["baseline"] or 0 for item in rows], labels, color="black", marker="|", s=300, label="published reference")
        axis.set_xlim(0, 1)
        axis.set_xlabel("test accuracy")
        axis.legend(fontsize=8, loc="lower right")
        figure.tight_layout()
        figure.savefig(os.path.join(folder, "accuracy.png"), dpi=110)
        plt.close(figure)
