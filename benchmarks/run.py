"""`python -m benchmarks.run`: every benchmark, as JSON, a Markdown table and charts.

    python -m benchmarks.run                 # the full run (within an hour on 2 cores)
    python -m benchmarks.run --quick         # a few minutes
    python -m benchmarks.run --quick --only latency --toy   # seconds (tests)

Writes `<out>/results.json`, `<out>/results.md` and `<out>/*.png`. Each benchmark
runs in turn; one that fails is recorded with its error and the others still run.
"""

import argparse
import importlib
import json
import os
import sys
import time
import traceback

BENCHMARKS = ("training_throughput", "input_pipeline", "accuracy", "latency", "memory", "levers", "serving")
MODULES = {"serving": "serving_bench"}


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    parser.add_argument("--toy", action="store_true", help="smallest sizes, for tests (implies --quick)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--out", default=os.path.join("benchmarks", "out"), help="output folder (default benchmarks/out)")
    return parser


def main(argv=None):
    arguments = build_parser().parse_args(argv)
    if arguments.toy:
        os.environ["KERASDL_BENCH_TOY"] = "1"
        arguments.quick = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(arguments.out, exist_ok=True)
    os.environ.setdefault("KERASDL_BENCH_RUNS", os.path.abspath(os.path.join(arguments.out, "trained")))
    from benchmarks import common, report

    common.quiet_tensorflow()
    names = arguments.only or list(BENCHMARKS)
    document = {
        "command": " ".join(["python", "-m", "benchmarks.run"] + (argv if argv is not None else sys.argv[1:])),
        "quick": arguments.quick, "toy": arguments.toy,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "environment": common.environment(), "benchmarks": {},
    }
    json_path = os.path.join(arguments.out, "results.json")
    for name in names:
        print(f"== {name}", flush=True)
        started = time.time()
        try:
            module = importlib.import_module(f"benchmarks.{MODULES.get(name, name)}")
            outcome = module.run(arguments.quick)
            if name == "serving":
                outcome = report.wrap_serving(outcome, started)
        except Exception as error:  # Recorded: one broken benchmark must not hide the others.
            traceback.print_exc()
            outcome = {"name": name, "seconds": round(time.time() - started, 1), "rows": [], "targets": [], "notes": [], "error": f"{type(error).__name__}: {error}"}
        document["benchmarks"][name] = outcome
        print(report.benchmark_markdown(name, outcome), flush=True)
        document["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        document["environment"]["load_average_end"] = os.getloadavg()
        with open(json_path + ".tmp", "w") as handle:
            json.dump(document, handle, indent=2, default=str)
        os.replace(json_path + ".tmp", json_path)
    markdown = report.document_markdown(document)
    with open(os.path.join(arguments.out, "results.md"), "w") as handle:
        handle.write(markdown)
    report.charts(document, arguments.out)
    print(f"wrote {json_path} and {os.path.join(arguments.out, 'results.md')}")
    return 0


if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())
