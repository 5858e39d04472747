"""Renders benchmark results (`results.json` written by `benchmarks.run`) as Markdown, and charts.

Everything in the Markdown comes from the JSON: the commands, the machine (CPU model and
flags from /proc/cpuinfo, cores, RAM, load average at start and end), the code version,
the library versions, and every target with its measured value, met / NOT met / not
measured, and for each one not met the `reason` its benchmark measured (or "no measured
reason"). Nothing in `benchmarks/RESULTS.md` is typed by hand; it is regenerated with:

    python -m benchmarks.report benchmarks/results.json > benchmarks/RESULTS.md

Several files may be given (a full run, then a rerun of some benchmarks): a benchmark in a
later file replaces the same benchmark of an earlier one, and each section names its run.

Example:
>>> from benchmarks import report
>>> markdown = report.render([json.load(open("benchmarks/out/results.json"))], ["benchmarks/out/results.json"])
"""

import argparse
import json
import os
import shlex
import sys

NO_REASON = "no measured reason"
RESULT_WORDS = {True: "met", False: "NOT met", None: "not measured"}


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text):
    """Markdown table cells cannot hold '|' or line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _load_average(values):
    return "-" if not values else " / ".join(f"{float(value):.2f}" for value in values)


def _code(code):
    if not code or not code.get("commit"):
        return "unknown (not a git checkout: no trained run was reused)"
    if code.get("dirty"):
        return f"commit `{code['commit']}` **with uncommitted changes** (sha256 of the changes `{code['changes_sha256']}`)"
    return f"commit `{code['commit']}` (clean tree)"


def run_markdown(index, document, source):
    """The 'how it was produced' section of one results.json."""
    environment = document.get("environment", {})
    versions = environment.get("versions", {})
    variables = dict(document.get("variables", {}), **environment.get("variables", {}))
    lines = [
        f"### Run {index}: `{document.get('command')}`", "",
        f"- Source: `{source}`; {'toy' if document.get('toy') else ('quick' if document.get('quick') else 'full')} run, "
        f"{document.get('started')} to {document.get('finished')}; working directory `{document.get('cwd', '-')}`",
        f"- Code: {_code(environment.get('code_version'))}",
        f"- CPU: {environment.get('cpu_model')}, {environment.get('cpu_count')} logical cores, "
        f"{_format(environment.get('memory_gib'))} GiB RAM; {environment.get('platform')}, Python {environment.get('python')}",
        f"- CPU flags of interest: {' '.join(environment.get('cpu_flags_of_interest') or []) or '-'}",
        f"- Load average (1 / 5 / 15 min): at start {_load_average(environment.get('load_average'))}, "
        f"at end {_load_average(environment.get('load_average_end'))}",
        "- Versions: " + (", ".join(f"{name} {version or 'not installed'}" for name, version in versions.items()) or "-"),
    ]
    if variables:
        lines.append("- Environment: " + ", ".join(f"`{name}={value}`" for name, value in sorted(variables.items())))
    if environment.get("cpu_flags"):
        lines += ["", "<details><summary>All CPU flags (/proc/cpuinfo)</summary>", "", environment["cpu_flags"], "", "</details>"]
    return "\n".join(lines) + "\n"


def merged_benchmarks(documents):
    """`[(name, outcome, run index)]`: a later document's benchmark replaces an earlier one's."""
    merged = {}
    for index, document in enumerate(documents, 1):
        for name, outcome in document.get("benchmarks", {}).items():
            merged.pop(name, None)
            merged[name] = (outcome, index)
    return [(name, outcome, index) for name, (outcome, index) in merged.items()]


def targets_markdown(benchmarks):
    """Every target of every benchmark, with its result; then why each one not met was not met."""
    lines = ["| benchmark | target | measured | threshold | result |", "|---|---|---|---|---|"]
    counts = {True: 0, False: 0, None: 0}
    explanations = []
    for name, outcome, _ in benchmarks:
        if outcome.get("error"):
            lines.append(f"| {name} | the benchmark failed: `{_cell(outcome['error'])}` | - | - | not measured |")
            counts[None] += 1
            explanations.append(f"- **{name}** failed, so its other targets were not measured: `{outcome['error']}`")
        for item in outcome.get("targets", []):
            met = item.get("met")
            counts[met] += 1
            lines.append(f"| {name} | {_cell(item['description'])} | {_format(item.get('value'))} | {item['comparison']} {_format(item['threshold'])} | {RESULT_WORDS[met]} |")
            if met is not True:
                measured = "" if item.get("value") is None else f", measured {_format(item['value'])}"
                explanations.append(f"- **{name}: {item['description']}** ({RESULT_WORDS[met]}{measured}): {item.get('reason') or NO_REASON}")
    summary = f"{sum(counts.values())} targets: {counts[True]} met, {counts[False]} NOT met, {counts[None]} not measured."
    lines = [summary, ""] + lines
    if explanations:
        lines += ["", "### Why each target is not met (reasons measured by the benchmark)", ""] + explanations
    return "\n".join(lines) + "\n"


def benchmark_markdown(name, outcome, run_index=None):
    """One benchmark's rows, targets and notes."""
    origin = f", run {run_index}" if run_index is not None else ""
    lines = [f"### {name} ({float(outcome.get('seconds') or 0):.0f} s{origin})", ""]
    if outcome.get("error"):
        lines += [f"**failed**: `{outcome['error']}`", ""]
    if outcome.get("targets"):
        lines += ["| target | value | threshold | result |", "|---|---|---|---|"]
        for item in outcome["targets"]:
            lines.append(f"| {_cell(item['description'])} | {_format(item.get('value'))} | {item['comparison']} {_format(item['threshold'])} | {RESULT_WORDS[item.get('met')]} |")
        lines.append("")
    if outcome.get("rows"):
        lines += ["| case | metric | value | unit | baseline (same run) | baseline value | ratio |", "|---|---|---|---|---|---|---|"]
        for item in outcome["rows"]:
            lines.append(
                f"| {_cell(item['case'])} | {_cell(item['metric'])} | {_format(item['value'])} | {item['unit']} | "
                f"{_cell(item['baseline_case'] or '-')} | {_format(item['baseline'])} | {_format(item['ratio'])} |"
            )
        lines.append("")
    for note in outcome.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def render(documents, sources, command=None):
    """The whole report of one or more results.json documents, as Markdown.

    Args:
        documents: the parsed results.json files, earliest first.
        sources: their paths, as given on the command line (printed).
        command: the command that renders the report (printed); defaults to the report CLI on `sources`.
    """
    command = command or shlex.join(["python", "-m", "benchmarks.report", *sources])
    benchmarks = merged_benchmarks(documents)
    lines = [
        "# Benchmark results", "",
        f"Generated by `{command}` from the results of the run(s) below; every number, target and",
        "reason comes from those files (edit the benchmarks, not this file).", "",
        "## How the numbers were produced", "",
    ]
    for index, (document, source) in enumerate(zip(documents, sources), 1):
        lines.append(run_markdown(index, document, source))
    keys = {(document.get("environment", {}).get("code_version") or {}).get("key") for document in documents}
    machines = {(document.get("environment", {}).get("cpu_model"), document.get("environment", {}).get("cpu_count")) for document in documents}
    if len(keys) > 1:
        lines += [f"**The runs measured different code versions** ({', '.join(sorted(str(key) for key in keys))}).", ""]
    if len(machines) > 1:
        lines += ["**The runs were made on different machines.**", ""]
    lines += ["## Targets", "", targets_markdown(benchmarks), "## Details", ""]
    for name, outcome, index in benchmarks:
        lines.append(benchmark_markdown(name, outcome, index if len(documents) > 1 else None))
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


def main(argv=None):
    """`python -m benchmarks.report RESULTS_JSON [...]`: prints the Markdown report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.json files written by benchmarks.run, earliest first")
    arguments = parser.parse_args(argv)
    documents = []
    for path in arguments.results:
        try:
            with open(path) as handle:
                document = json.load(handle)
        except OSError as error:
            print(f"error: cannot read {path}: {error.strerror}; run `python -m benchmarks.run` first", file=sys.stderr)
            return 2
        except ValueError as error:
            print(f"error: {path} is not valid JSON ({error}); regenerate it with `python -m benchmarks.run`", file=sys.stderr)
            return 2
        if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), dict):
            print(f"error: {path} is not a benchmarks.run results file (no 'benchmarks' mapping)", file=sys.stderr)
            return 2
        documents.append(document)
    sys.stdout.write(render(documents, arguments.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
