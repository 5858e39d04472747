"""Test accuracy on the real sets in ../shared/data: the best default kerasdl model against the classical
baseline fitted in the same run, and the published reference.

Per shared set (MNIST split, CIFAR-10 JPEGs, SST-2 with dev as validation and test as test,
GunPoint, Coffee, ECG200), every candidate model trains with defaults, exactly as
`python -m training.run <model> --data <set>` would (`benchmarks.common.trained_run`); each run
fits the classical baseline on its own splits (`kerasdl.baseline`, in `metrics.json`). The
best default model is the candidate with the best validation accuracy (at the epoch early
stopping keeps); its test accuracy is reported once. The UCR sets' candidates are the LSTM, the
GRU and the FCN, the network behind their published figures (Wang et al. 2017). Targets, computed from the measurements:

1. the best default model >= the baseline of its run, on every set;
2. then half the distance from the baseline to the published figure (where one exists and
   is above the baseline).

`--quick` caps the larger sets (`data.max_examples`, recorded beside each number) and keeps
the defaults otherwise. The full run also trains the model zoo at the budgets of
`benchmarks.specs` (BERT, ResNet50 included; `latency` exports those runs), with its two
targets (MLP/MNIST >= 96 %, LSTM/GunPoint >= 90 %).

Example:
>>> from benchmarks import accuracy
>>> accuracy.run(quick=True)["targets"][0]["id"]
'accuracy_mnist_vs_baseline'
"""

import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import common, provenance, specs

ZOO_TARGETS = {"mlp_mnist": 0.96, "lstm_gunpoint": 0.90}

# Published references per set: (accuracy, source). The UCR figures are Wang et al. 2017's
# (FCN; the 1-NN Euclidean figure is the baseline's own method).
REFERENCES = {
    "mnist": (0.9905, "LeNet-5, 0.95 % error on the full MNIST (LeCun 1998); ours is an 8k/2k split of the 10k test set"),
    "cifar10": (0.9357, "ResNet-110, 6.43 % error on the full CIFAR-10 (He 2016); ours trains on 8k test JPEGs"),
    "sst2": (0.881, "CNN (Kim 2014) 88.1 % on SST-2"),
    "gunpoint": (1.0, "FCN 100 % (Wang 2017); 1-NN Euclidean 91.3 %"),
    "coffee": (1.0, "FCN 100 % (Wang 2017); 1-NN Euclidean 100 %"),
    "ecg200": (0.90, "FCN 90 % (Wang 2017); 1-NN Euclidean 88 %"),
}


def shared_sets(quick):
    """`{set: (data source or writer, candidate models, --set overrides)}` of the sets present."""
    if common.TOY:
        return {"digits": (None, ("mlp",), ("train.epochs=1",))}
    cap = lambda count: (f"data.max_examples={count}",) if quick else ()  # noqa: E731
    table = {"mnist": (specs.mnist_data, ("mlp", "cnn"), cap(2000))}
    if common.data_path("cifar10-test-jpg"):
        table["cifar10"] = (common.data_path("cifar10-test-jpg"), ("cnn", "mlp"), cap(2000))
    if common.data_path("sst2"):
        table["sst2"] = (common.data_path("sst2"), ("mlp", "lstm"), cap(5000))
    if common.data_path("ucr"):
        for name in ("GunPoint", "Coffee", "ECG200"):
            table[name.lower()] = (os.path.join(common.data_path("ucr"), name), ("lstm", "gru", "fcn"), ())
    return table


def run(quick):
    started = time.time()
    rows, targets, notes = [], [], []
    for name, (data, candidates, sets) in shared_sets(quick).items():
        _compare_set(name, data, candidates, sets, rows, targets, notes)
    if not quick and not common.TOY:
        _zoo(rows, targets, notes)
    return common.result("accuracy", started, rows, targets, notes)


def _compare_set(name, data, candidates, sets, rows, targets, notes):
    """Trains every candidate on one set; adds its rows, the two targets and a note."""
    runs = {}
    for model_name in candidates:
        try:
            runs[model_name] = _train(model_name, data, sets)
        except Exception as error:  # One failing candidate is reported; the others still count.
            notes.append(f"{name}: {model_name} failed: {type(error).__name__}: {str(error)[:300]}")
    if not runs:
        targets.append(common.target(f"accuracy_{name}_vs_baseline", f"{name}: best default model >= classical baseline", None, 0.0, ">=", reason="every candidate failed to train"))
        return
    for model_name, result in runs.items():
        baseline = result["metrics"]["baseline"]
        rows.append(common.row(f"{name}: {model_name}", "test accuracy", result["metrics"]["test_accuracy"], "fraction", f"{name}: {baseline['name']}", baseline["test_accuracy"]))
    best_name = max(runs, key=lambda model_name: runs[model_name]["validation_accuracy"])
    best = runs[best_name]
    metrics, baseline, versus = best["metrics"], best["metrics"]["baseline"], best["metrics"]["versus_baseline"]
    accuracy, baseline_accuracy = metrics["test_accuracy"], baseline["test_accuracy"]
    chosen = ", ".join(f"{model_name} {result['validation_accuracy']:.3f}" for model_name, result in runs.items())
    budget = (
        f"{metrics['epochs']} of {best['planned_epochs']} epochs, {metrics['train_examples']} train / {metrics['test_examples']} test examples, "
        f"overrides {list(sets) or 'none'}, fit {metrics['fit_time_s']:.0f} s"
    )
    measured = (
        f"best default model {best_name} (validation accuracy {chosen}) scored {accuracy:.4f} ({budget}); "
        f"baseline {baseline['description']} {baseline_accuracy:.4f}; {versus['statement'].rstrip('.')}"
    )
    targets.append(common.target(f"accuracy_{name}_vs_baseline", f"{name}: best default model >= classical baseline", accuracy, round(baseline_accuracy, 4), ">=", reason=measured))
    reference, reference_text = REFERENCES.get(name, (None, ""))
    if reference is not None:
        rows.append(common.row(f"{name}: best default ({best_name})", "test accuracy", accuracy, "fraction", f"published: {reference_text}", reference))
        if reference > baseline_accuracy:
            halfway = baseline_accuracy + (reference - baseline_accuracy) / 2
            targets.append(common.target(
                f"accuracy_{name}_half_to_published", f"{name}: half the distance from the baseline to the published {reference:.3f}",
                accuracy, round(halfway, 4), ">=", reason=f"{measured}; halfway to {reference:.3f} is {halfway:.4f}, {100 * (halfway - accuracy):.1f} points above the model",
            ))
    notes.append(f"{name}: {measured}; published: {reference_text or 'none'}")


def _train(model_name, data, sets):
    """One default run; returns its metrics.json, the planned epochs and its validation accuracy at the kept epoch."""
    if callable(data):
        data = _written(data)
    run_dir, _ = common.trained_run(model_name, data, epochs=None, sets=sets, log=lambda line: print(line, flush=True))
    metrics = json.loads(Path(run_dir, "metrics.json").read_text())
    with open(Path(run_dir, "history.csv"), newline="") as handle:
        history = list(csv.DictReader(handle))
    # The epoch early stopping keeps is the one with the lowest validation loss.
    losses = [float(row["val_loss"]) if row["val_loss"] not in ("", "NA") else math.inf for row in history]
    kept = history[losses.index(min(losses))]
    config = yaml.safe_load(Path(run_dir, "config.yaml").read_text())
    return {"metrics": metrics, "validation_accuracy": float(kept["val_accuracy"]), "planned_epochs": config["train"]["epochs"]}


def _written(writer):
    """Data written by code (the MNIST npz) lives under the code version, as `benchmarks.specs.train` keeps it."""
    code = provenance.code_version()["key"]
    return writer(os.path.join(common.runs_folder(), "data", code) if code else tempfile.mkdtemp(prefix="kerasdl-bench-data-"))


def _zoo(rows, targets, notes):
    """Every model at the budgets of `benchmarks.specs` (full run), beside the published reference."""
    for case, spec in specs.specs(False).items():
        try:
            run_dir, metrics = specs.train(case, spec, log=lambda line: print(line, flush=True))
        except Exception as error:  # One failing case is reported; the rest still run.
            notes.append(f"{case}: failed: {type(error).__name__}: {str(error)[:300]}")
            if case in ZOO_TARGETS:
                targets.append(common.target(f"accuracy_{case}", f"{case}: test accuracy", None, ZOO_TARGETS[case], ">=", reason=f"training failed: {type(error).__name__}: {str(error)[:300]}"))
            continue
        reference, reference_text = spec["reference"]
        rows.append(common.row(case, "test accuracy", metrics["test_accuracy"], "fraction", f"published: {reference_text}", reference))
        overrides = list(spec["sets"]) + (["--weights " + spec["weights"]] if spec["weights"] else [])
        budget = (f"{metrics.get('epochs')} of {spec['epochs']} epochs (early stopping), {metrics.get('train_examples')} train / "
                  f"{metrics.get('test_examples')} test examples, batch {spec['batch_size'] or 'default'}, "
                  f"overrides {overrides}, fit {metrics.get('fit_time_s', 0):.0f} s")
        notes.append(f"{case}: {budget}")
        if case in ZOO_TARGETS:
            targets.append(common.target(f"accuracy_{case}", f"{case}: test accuracy", metrics["test_accuracy"], ZOO_TARGETS[case], ">=", reason=f"budget: {budget}"))
