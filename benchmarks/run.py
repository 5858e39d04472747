"""`python -m benchmarks.run`: every benchmark, as JSON, a Markdown report and charts.

    python -m benchmarks.run                 # the full run (full sizes and the model zoo)
    python -m benchmarks.run --quick         # reduced sizes
    python -m benchmarks.run --quick --only latency --toy   # seconds (tests)

Writes `<out>/results.json`, `<out>/results.md` (`benchmarks.report` of that JSON) and
`<out>/*.png`. Each benchmark runs in turn; one that fails (or cannot be imported) is
recorded with its error and the others still run. `benchmarks/RESULTS.md` is rendered
from a results.json by `python -m benchmarks.report` (see that module).

Adding a benchmark: write `benchmarks/<module>.py` with `run(quick) -> dict` in the
`benchmarks.common` result shape, and add one line `"<name>": "<module>"` to `BENCHMARKS`.
"""

import argparse
import datetime
import importlib
import json
import os
import shlex
import sys
import time
import traceback

# `--only` name -> module under benchmarks/ whose `run(quick)` returns the `benchmarks.common`
# result dict; the full run follows this order. A module may be absent from a checkout
# (another branch brings it): it is then recorded as failed, by name, and the rest still run.
BENCHMARKS = {
    "training_throughput": "training_throughput",
    "input_pipeline": "input_pipeline",
    "accuracy": "accuracy",
    "small_data": "small_data",
    "latency": "latency",
    "onnx_recurrent": "onnx_recurrent",
    "backends": "backends",
    "memory": "memory",
    "levers": "levers",
    "serving": "serving_bench",
    "robustness": "robustness",
    "equivalence": "equivalence",
}
# Settings of the benchmark itself, recorded with the command.
VARIABLES = ("KERASDL_BENCH_RUNS", "KERASDL_BENCH_TOY")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    parser.add_argument("--toy", action="store_true", help="smallest sizes, for tests (implies --quick)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--out", default=os.path.join("benchmarks", "out"), help="output folder (default benchmarks/out)")
    return parser


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def load_module(name):
    """Imports the module registered as `name`; an absent module gets an error naming its file."""
    module_name = f"benchmarks.{BENCHMARKS[name]}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # The module exists; something it imports is missing: keep that message.
        raise ModuleNotFoundError(f"benchmarks/{BENCHMARKS[name]}.py is not in this checkout, so '{name}' cannot run", name=module_name) from None


def run_benchmark(name, quick):
    """Runs one registered benchmark; returns its result dict, or one recording why it failed."""
    from benchmarks import common

    started = time.time()
    try:
        outcome = load_module(name).run(quick)
        problems = common.check_result(outcome)
        if problems:
            raise ValueError(f"benchmarks.{BENCHMARKS[name]}.run returned a malformed result: {'; '.join(problems)}")
    except Exception as error:  # Recorded: one broken benchmark must not hide the others.
        traceback.print_exc()
        outcome = common.result(name, started, [], [], [])
        outcome["error"] = f"{type(error).__name__}: {error}"
    return outcome


def _write_json(document, path):
    with open(path + ".tmp", "w") as handle:
        json.dump(document, handle, indent=2, default=str)
    os.replace(path + ".tmp", path)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = build_parser().parse_args(argv)
    if arguments.toy:
        os.environ["KERASDL_BENCH_TOY"] = "1"
        arguments.quick = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(arguments.out, exist_ok=True)
    os.environ["KERASDL_BENCH_OUT"] = os.path.abspath(arguments.out)
    os.environ.setdefault("KERASDL_BENCH_RUNS", os.path.abspath(os.path.join(arguments.out, "trained")))
    from benchmarks import common, provenance, report

    common.quiet_tensorflow()
    document = {
        "command": shlex.join(["python", "-m", "benchmarks.run", *argv]),
        "cwd": os.getcwd(),
        "variables": {name: os.environ[name] for name in VARIABLES if name in os.environ},
        "quick": arguments.quick, "toy": arguments.toy,
        "started": _now(), "finished": None,
        # Taken before anything runs: the code version and the load average at the start.
        "environment": provenance.environment(), "benchmarks": {},
    }
    json_path = os.path.join(arguments.out, "results.json")
    for name in arguments.only or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        outcome = run_benchmark(name, arguments.quick)
        document["benchmarks"][name] = outcome
        print(report.benchmark_markdown(name, outcome), flush=True)
        document["finished"] = _now()
        document["environment"]["load_average_end"] = list(os.getloadavg())
        _write_json(document, json_path)
    markdown = report.render([document], [json_path])
    with open(os.path.join(arguments.out, "results.md"), "w") as handle:
        handle.write(markdown)
    report.charts(document, arguments.out)
    print(f"wrote {json_path} and {os.path.join(arguments.out, 'results.md')}")
    print(f"RESULTS.md: python -m benchmarks.report {shlex.quote(json_path)} > benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())
