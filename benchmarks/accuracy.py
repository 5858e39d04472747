"""Test accuracy of every model on the real sets in ../shared/data, beside the published reference.

Quality tracking, not a gate (only MLP/MNIST >= 96% and LSTM/GunPoint >= 90% are
targets). Every case trains with `kerasdl.train.train_and_evaluate`, exactly as
`python -m training.run <model> --data ...` would; the budget (epochs, examples,
batch size, overrides) is recorded beside each number. The ratio column is ours /
the published reference (which mostly used far larger budgets or pretrained weights).

Example:
>>> from benchmarks import accuracy
>>> accuracy.run(quick=True)["rows"][0]["value"]
"""

import time

from benchmarks import common, specs

TARGETS = {"mlp_mnist": 0.96, "lstm_gunpoint": 0.90}


def run(quick):
    started = time.time()
    rows, targets, notes = [], [], []
    for case, spec in specs.specs(quick).items():
        try:
            run_dir, metrics = specs.train(case, spec, log=lambda line: print(line, flush=True))
        except Exception as error:  # One failing case is reported; the rest still run.
            notes.append(f"{case}: failed: {type(error).__name__}: {str(error)[:300]}")
            if case in TARGETS:
                targets.append(common.target(f"accuracy_{case}", f"{case}: test accuracy", None, TARGETS[case], ">=", reason=f"training failed: {type(error).__name__}: {str(error)[:300]}"))
            continue
        reference, reference_text = spec["reference"]
        rows.append(common.row(case, "test accuracy", metrics["test_accuracy"], "fraction", f"published: {reference_text}", reference))
        overrides = list(spec["sets"]) + (["--weights " + spec["weights"]] if spec["weights"] else [])
        budget = (f"{metrics.get('epochs')} of {spec['epochs']} epochs (early stopping), {metrics.get('train_examples')} train / "
                  f"{metrics.get('test_examples')} test examples, batch {spec['batch_size'] or 'default'}, "
                  f"overrides {overrides}, fit {metrics.get('fit_time_s', 0):.0f} s")
        notes.append(f"{case}: {budget}")
        if case in TARGETS:
            targets.append(common.target(f"accuracy_{case}", f"{case}: test accuracy", metrics["test_accuracy"], TARGETS[case], ">=", reason=f"budget: {budget}"))
    return common.result("accuracy", started, rows, targets, notes)
