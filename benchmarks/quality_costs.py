"""What issue 12's quality measures cost inside a default run: the classical baseline and the gradient-norm log.

    python -m benchmarks.quality_costs            # digits (mlp, cnn), SST-2 300 (lstm, mlp), GunPoint, CIFAR-10 2,000
    python -m benchmarks.quality_costs --quick    # digits only

Each case is a default `training.run` (`benchmarks.common.trained_run`), which fits the
baseline and logs gradient norms as every run does; the costs are read from its
`metrics.json`. Baseline rows: `baseline.total_seconds` (reading the sampled examples,
choosing C, fitting, scoring) against the run's wall time (target: under 10 %). Gradient rows:
`gradient_log.seconds` (the callback's own time: reading its batches, tracing, measuring,
writing) against the fit's time (target: under 5 %). For digits the fit is also timed in two
fresh processes, with and without the log (`report.gradients`), so the difference shows what
the logger adds to the fit as a whole (on a shared machine it is noisier than the callback's
own time).

Example:
>>> from benchmarks import quality_costs
>>> quality_costs.run(quick=True)["rows"][0]["metric"]
'baseline seconds'
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

# (case, model, data source or None for the built-in digits, --set overrides)
CASES = (
    ("digits_mlp", "mlp", None, ()),
    ("digits_cnn", "cnn", None, ()),
    ("sst2_300_lstm", "lstm", ("sst2",), ("data.max_examples=300",)),
    ("sst2_300_mlp", "mlp", ("sst2",), ("data.max_examples=300",)),
    ("gunpoint_lstm", "lstm", ("ucr", "GunPoint"), ()),
    ("cifar10_2000_cnn", "cnn", ("cifar10-test-jpg",), ("data.max_examples=2000",)),
)


def run(quick):
    started = time.time()
    rows, targets, notes = [], [], []
    for case, model_name, data, sets in CASES[:2] if quick else CASES:
        # A UCR set is a prefix (`ucr/GunPoint` for its _TRAIN/_TEST files): check its folder.
        folder = common.data_path(*data[:-1]) if data and data[0] == "ucr" else common.data_path(*data) if data else None
        source = os.path.join(folder, data[-1]) if folder and data[0] == "ucr" else folder
        if data and folder is None:
            notes.append(f"{case}: skipped, ../shared/data/{'/'.join(data)} is absent")
            continue
        run_dir, _ = common.trained_run(model_name, source, epochs=None, sets=sets, log=lambda line: print(line, flush=True))
        metrics = json.loads(Path(run_dir, "metrics.json").read_text())
        baseline, log = metrics["baseline"], metrics["gradient_log"]
        rows.append(common.row(case, "baseline seconds", baseline["total_seconds"], "s", f"default {model_name} run wall time", metrics["wall_time_s"], higher_is_better=False))
        targets.append(common.target(
            f"baseline_cost_{case}", f"{case}: baseline under 10 % of a default run", baseline["total_seconds"] / metrics["wall_time_s"], 0.10, "<=",
            reason=f"baseline {baseline['total_seconds']:.2f} s (read {baseline['read_seconds']:.2f} s, fit and score {baseline['seconds']:.2f} s) of a {metrics['wall_time_s']:.1f} s run",
        ))
        rows.append(common.row(f"{case}_gradients", "gradient logger seconds", log["seconds"], "s", "the fit's time", metrics["fit_time_s"], higher_is_better=False))
        targets.append(common.target(
            f"gradient_cost_{case}", f"{case}: gradient log under 5 % of the fit", log["seconds"] / metrics["fit_time_s"], 0.05, "<=",
            reason=f"{log['seconds']:.2f} s over {len(log['measured_epochs'])} measurements (epochs {log['measured_epochs']}) of {log['batches']} batches, in a {metrics['fit_time_s']:.1f} s fit",
        ))
        notes.append(
            f"{case}: baseline {baseline['name']} {baseline['test_accuracy']:.3f} (C={baseline['C']}) on {baseline['train_examples_used']} of "
            f"{baseline['train_examples']} training examples in {baseline['total_seconds']:.2f} s; default {model_name}: {metrics['test_accuracy']:.3f} "
            f"in {metrics['wall_time_s']:.1f} s ({metrics.get('epochs')} epochs); gradient log {log['seconds']:.2f} s, measured at epochs {log['measured_epochs']}"
        )
        if data is None:
            with_log, without_log = (_fresh_fit_seconds(model_name, switch) for switch in ("true", "false"))
            rows.append(common.row(f"{case}_fit_with_gradients", "fit seconds (fresh process)", with_log, "s", "the same fit with report.gradients=false", without_log, higher_is_better=False))
            notes.append(f"{case}: fit in a fresh process {with_log:.1f} s with the gradient log, {without_log:.1f} s without ({100 * (with_log / without_log - 1):+.1f} %)")
    return common.result("quality_costs", started, rows, targets, notes)


def _fresh_fit_seconds(model_name, gradients):
    """`fit_time_s` of a default run of `model_name` on digits in a fresh process, with `report.gradients` as given.

    A fresh process each: in one process the second run skips TensorFlow's one-time start,
    which would be charged to whichever run came first.
    """
    with common.temporary_folder() as folder:
        completed = subprocess.run(
            [sys.executable, "-m", "training.run", model_name, "--output", folder, "--set", "train.verbose=0", "--set", f"report.gradients={gradients}"],
            cwd=str(common.REPO_ROOT), capture_output=True, text=True, timeout=1800, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )
        if completed.returncode != 0:
            raise RuntimeError(f"training.run {model_name} exited {completed.returncode}: {completed.stderr[-500:]}")
        (metrics_path,) = Path(folder).glob(f"{model_name}/*/metrics.json")
        return json.loads(metrics_path.read_text())["fit_time_s"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    arguments = parser.parse_args(argv)
    common.quiet_tensorflow()
    outcome = run(arguments.quick)
    print(json.dumps(outcome, indent=2))


if __name__ == "__main__":
    main()
