"""Training speed and accuracy of every model on the TensorFlow and the JAX backend, side by side.

For each case, both backends train the same registry model (the real builders) on
the same examples, with the project's optimizer (AdamW, clipnorm 1.0, cosine
schedule with warmup), the project's training input as a run uses it
(`training_input`: tokenized arrays on JAX, the tf.data pipeline on TensorFlow) and Keras' `jit_compile="auto"` (XLA on JAX, off
on TensorFlow on a CPU), at steps_per_execution 1 and 16:

- `mlp`: MNIST 28x28 flattened to 784-feature vectors;
- `cnn`: CIFAR-10 JPEGs, 32x32x3;
- `lstm`, `gru`, `fcn`: GunPoint series, 150 steps (train split tiled);
- `text_lstm`, `text_gru`: SST-2 sentences (the lstm/gru entries on text);
- `bert`: SST-2 sentences, BERT-Tiny's shape (2 layers, hidden 128) at 64 tokens.

Each backend runs in its own Python (the backend is fixed at import), the two of
a case back to back, with the load average recorded before each. Examples/s are
those of the fastest of epochs 2..n (the first one traces and compiles, reported as
`first epoch`; `fit seconds` is all epochs, what a short run costs): other work on a
shared machine only ever slows an epoch down, so the fastest is the least disturbed
(the medians are in the notes). `CPU ms/example` is the process's CPU time, all
threads, per training example in its least busy steady epoch, which other processes
disturb far less than wall time. Callbacks are off: they cost the same on both backends.
The test accuracy after the last epoch, same seed and data, shows what each
backend gives. The registry entry's `backend` (what `train.backend=auto` uses)
is checked against the faster backend at steps_per_execution 16 (the default).

Over ~300 lines: the cases' data, the per-backend child process, and the rows and targets
that compare them are one measurement; the child must import nothing the parent decides.

Example:
>>> python -m benchmarks.backends --quick
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks import common, provenance

BACKENDS = ("tensorflow", "jax")
STEPS_PER_EXECUTION = (1, 16)
# case: (registry name, modality, model options); the toy run (tests) shrinks the options.
CASES = {
    "mlp": ("mlp", "features", {}),
    "cnn": ("cnn", "image", {}),
    "lstm": ("lstm", "sequence", {}),
    "gru": ("gru", "sequence", {}),
    "fcn": ("fcn", "sequence", {}),
    "text_lstm": ("lstm", "text", {}),
    "text_gru": ("gru", "text", {}),
    "bert": ("bert", "text", {"sequence_length": 64}),
}
TOY_OPTIONS = {
    "text_lstm": {"max_tokens": 2000, "sequence_length": 32},
    "text_gru": {"max_tokens": 2000, "sequence_length": 32},
    "bert": {"num_layers": 1, "hidden_dim": 32, "intermediate_dim": 64, "sequence_length": 24, "vocabulary_size": 400},
}
BATCH_SIZE = 64
# JAX's test accuracy may be this much below TensorFlow's and still count as "nothing
# lost": a few epochs from different initial weights (each backend has its own random
# generator, so one seed gives different weights) move small-data accuracy by a few points.
ACCURACY_TOLERANCE = 0.05


def _sizes(quick):
    """Training examples per case (before the validation cut) and the epochs.

    At least 3 steady epochs (after the compiling first one): on a shared machine a single
    epoch can stall for seconds, and the median of 3 or more ignores one such stall.
    """
    if common.TOY:
        return {"mlp": 300, "cnn": 200, "series_repeat": 4, "text": 300, "bert": 200, "test": 200, "epochs": 2}
    if quick:
        return {"mlp": 3000, "cnn": 1500, "series_repeat": 20, "text": 2000, "bert": 1000, "test": 1000, "epochs": 4}
    return {"mlp": 8000, "cnn": 5000, "series_repeat": 40, "text": 6000, "bert": 3000, "test": 2000, "epochs": 5}


def _write(folder, case, x_train, y_train, x_validation, y_validation, x_test, y_test):
    path = os.path.join(folder, f"{case}.npz")
    np.savez(path, x_train=x_train, y_train=y_train, x_validation=x_validation, y_validation=y_validation, x_test=x_test, y_test=y_test)
    return path


def _split(x, y, validation_fraction=0.1):
    cut = max(1, int(len(y) * validation_fraction))
    return x[cut:], y[cut:], x[:cut]


def prepare_data(folder, quick, cases):
    """Writes one `.npz` per case (train, validation, test arrays) into `folder`; returns `{case: path}`.

    Cases whose shared data is absent are left out.
    """
    sizes = _sizes(quick)
    paths = {}
    if "mlp" in cases:
        mnist = common.mnist_npz(folder, train=8000, test=2000)
        if mnist:
            data = np.load(mnist)
            x = data["x_train"][: sizes["mlp"]].reshape(-1, 28 * 28)
            y = data["y_train"][: sizes["mlp"]]
            cut = max(1, len(y) // 10)
            paths["mlp"] = _write(folder, "mlp", x[cut:], y[cut:], x[:cut], y[:cut], data["x_test"][: sizes["test"]].reshape(-1, 28 * 28), data["y_test"][: sizes["test"]])
    if "cnn" in cases:
        x, y, _ = common.cifar_arrays(sizes["cnn"] + sizes["test"])
        if x is not None:
            train, test = slice(0, sizes["cnn"]), slice(sizes["cnn"], None)
            cut = max(1, sizes["cnn"] // 10)
            paths["cnn"] = _write(folder, "cnn", x[train][cut:], y[train][cut:], x[train][:cut], y[train][:cut], x[test], y[test])
    series_cases = [case for case in ("lstm", "gru", "fcn") if case in cases]
    if series_cases and common.data_path("ucr", "GunPoint_TRAIN.txt"):
        from kerasdl.data.pipeline import take_examples
        from kerasdl.data.ucr import load_ucr

        splits = load_ucr(os.path.join(common.data_path("ucr"), "GunPoint"), seed=0)
        (x_train, y_train), (x_validation, y_validation), (x_test, y_test) = (take_examples(split, split.size) for split in (splits.train, splits.validation, splits.test))
        repeat = sizes["series_repeat"]
        for case in series_cases:
            paths[case] = _write(folder, case, np.tile(x_train, (repeat, 1, 1)), np.tile(y_train, repeat), x_validation, y_validation, x_test, y_test)
    text_cases = [case for case in ("text_lstm", "text_gru", "bert") if case in cases]
    if text_cases and common.data_path("sst2", "train.tsv"):
        from kerasdl.config import DataConfig
        from kerasdl.data import load_data
        from kerasdl.data.pipeline import take_examples

        for case in text_cases:
            count = sizes["bert"] if case == "bert" else sizes["text"]
            splits = load_data(DataConfig(source=common.data_path("sst2"), max_examples=count), ("text",), seed=0)
            arrays = []
            for split in (splits.train, splits.validation, splits.test):
                texts, labels = take_examples(split, min(split.size, count if split is splits.train else sizes["test"]))
                arrays += [np.asarray(texts, dtype=str), labels]
            paths[case] = _write(folder, case, *arrays)
    return paths


def measure(case, backend, data_path, epochs, model_options):
    """Trains `case` on `backend` at each steps_per_execution; returns the rates and accuracies.

    Runs in a fresh Python: it selects the backend before importing Keras.

    Returns:
        `{"backend", "jit_compile", "train_examples", "steps_per_epoch",
          "runs": {spe: {"epoch_seconds": [...], "examples_per_s", "test_accuracy"}}}`.
    """
    from kerasdl.backend import select_backend

    select_backend(backend)
    import keras

    from kerasdl.optim import make_optimizer, steps_per_epoch
    from kerasdl.config import TrainConfig
    from kerasdl.data.pipeline import fit_arguments, make_pipeline, normalization_statistics, training_input
    from kerasdl.data.source import Split
    from kerasdl.models.registry import DataFacts, get_model_entry

    model_name, modality, _ = CASES[case]
    entry = get_model_entry(model_name)
    data = np.load(data_path)
    splits = {name: Split.from_arrays(data[f"x_{name}"], data[f"y_{name}"]) for name in ("train", "validation", "test")}
    num_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    mean, variance = normalization_statistics(splits["train"], modality)
    texts = [str(text) for text in data["x_train"]] if modality == "text" else None
    facts = DataFacts(modality, () if modality == "text" else tuple(data["x_train"].shape[1:]), num_classes, mean, variance, texts)
    defaults = TrainConfig()
    steps = steps_per_epoch(splits["train"].size, BATCH_SIZE)
    outcome = {"backend": keras.backend.backend(), "train_examples": int(splits["train"].size), "steps_per_epoch": int(steps), "runs": {}}
    for steps_per_execution in STEPS_PER_EXECUTION:
        keras.utils.set_random_seed(defaults.seed)
        model = entry(facts, **model_options)
        train_model, tokenizer = model, None
        if modality == "text" and entry.text.pipeline_split is not None:
            train_model, tokenizer = entry.text.pipeline_split(model)
        train_model.compile(
            optimizer=make_optimizer("adamw", defaults.learning_rate, defaults.weight_decay, 1.0, "cosine", defaults.warmup_epochs, epochs, steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"], steps_per_execution=steps_per_execution, jit_compile="auto",
        )
        # As a run feeds it: arrays on JAX where they fit, tf.data otherwise (`training_input`).
        train_data = training_input(splits["train"], BATCH_SIZE, tokenizer=tokenizer, seed=defaults.seed)
        validation_data = make_pipeline(splits["validation"], BATCH_SIZE, training=False, tokenizer=tokenizer)
        timer = _epoch_clock()
        train_model.fit(**fit_arguments(train_data), validation_data=validation_data, epochs=epochs, callbacks=[timer], verbose=0)
        outcome["jit_compile"] = bool(train_model.jit_compile)
        correct = total = 0
        for x, y in make_pipeline(splits["test"], BATCH_SIZE, training=False, tokenizer=tokenizer).as_numpy_iterator():
            logits = np.asarray(train_model.predict_on_batch(x))
            correct += int((logits.argmax(axis=-1) == y).sum())
            total += len(y)
        size = splits["train"].size
        steady_wall, steady_cpu = timer.wall[1:] or timer.wall, timer.cpu[1:] or timer.cpu
        outcome["runs"][str(steps_per_execution)] = {
            "epoch_seconds": [round(seconds, 3) for seconds in timer.wall],
            "epoch_cpu_seconds": [round(seconds, 3) for seconds in timer.cpu],
            "examples_per_s": size / min(steady_wall), "median_examples_per_s": size / float(np.median(steady_wall)),
            "cpu_ms_per_example": 1000.0 * min(steady_cpu) / size, "test_accuracy": correct / total,
        }
    return outcome


def _epoch_clock():
    """A callback recording each epoch's wall seconds and this process's CPU seconds (every thread)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall, self.cpu = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            self.wall.append(time.perf_counter() - self._started[0])
            self.cpu.append(time.process_time() - self._started[1])

    return EpochClock()


def _child(case, backend, data_path, epochs, model_options, timeout):
    spec = json.dumps([case, backend, data_path, epochs, model_options])
    code = (
        "import json, sys\n"
        "from benchmarks.backends import measure\n"
        f"print('BENCH_JSON ' + json.dumps(measure(*json.loads({spec!r}))))\n"
    )
    return common.run_python(code, timeout=timeout)


def run(quick, cases=None):
    """Measures every case on both backends; returns the benchmark result (see `benchmarks.common`)."""
    from kerasdl.models.registry import get_model_entry

    started = time.time()
    sizes = _sizes(quick)
    cases = tuple(cases or CASES)
    rows, targets, notes = [], [], []
    with common.temporary_folder() as folder:
        paths = prepare_data(folder, quick, cases)
        for case in cases:
            if case not in paths:
                notes.append(f"{case}: skipped, its shared data is absent")
                continue
            model_name = CASES[case][0]
            options = dict(CASES[case][2], **(TOY_OPTIONS.get(case, {}) if common.TOY else {}))
            measured = {}
            for backend in BACKENDS:
                load = os.getloadavg()
                try:
                    measured[backend] = _child(case, backend, paths[case], sizes["epochs"], options, timeout=3600)
                except (RuntimeError, OSError, ValueError) as error:  # One failing backend is recorded, not fatal.
                    notes.append(f"{case} {backend}: failed: {error}")
                    measured[backend] = None
                notes.append(f"{case} {backend}: load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            rows += _rows(case, measured)
            targets += _targets(case, model_name, get_model_entry(model_name).backend, measured, sizes["epochs"])
            notes += _case_notes(case, measured, sizes["epochs"])
    notes.append(f"batch {BATCH_SIZE}, {sizes['epochs']} epochs, AdamW + clipnorm 1.0 + cosine, the training input of a run (arrays on JAX, tf.data on TensorFlow), jit_compile='auto', no callbacks; rate of the fastest of epochs 2..{sizes['epochs']}")
    return common.result("backends", started, rows, targets, notes)


def _rate(measured, backend, steps_per_execution):
    outcome = measured.get(backend)
    return outcome["runs"][str(steps_per_execution)]["examples_per_s"] if outcome else None


def _run_value(measured, backend, steps_per_execution, key):
    outcome = measured.get(backend)
    if not outcome:
        return None
    value = outcome["runs"][str(steps_per_execution)][key]
    return value[0] if isinstance(value, list) else value


def _total_seconds(measured, backend, steps_per_execution):
    outcome = measured.get(backend)
    return sum(outcome["runs"][str(steps_per_execution)]["epoch_seconds"]) if outcome else None


def _rows(case, measured):
    rows = []
    for steps_per_execution in STEPS_PER_EXECUTION:
        label = f"spe={steps_per_execution}"
        rows.append(common.row(
            f"{case} jax {label}", "training examples/s", _rate(measured, "jax", steps_per_execution), "examples/s",
            f"{case} tensorflow {label}", _rate(measured, "tensorflow", steps_per_execution),
        ))
        rows.append(common.row(
            f"{case} jax {label}", "CPU ms/example", _run_value(measured, "jax", steps_per_execution, "cpu_ms_per_example"), "ms",
            f"{case} tensorflow {label}", _run_value(measured, "tensorflow", steps_per_execution, "cpu_ms_per_example"), higher_is_better=False,
        ))
        rows.append(common.row(
            f"{case} jax {label} first epoch", "seconds", _run_value(measured, "jax", steps_per_execution, "epoch_seconds"), "s",
            f"{case} tensorflow {label} first epoch", _run_value(measured, "tensorflow", steps_per_execution, "epoch_seconds"), higher_is_better=False,
        ))
    top = STEPS_PER_EXECUTION[-1]
    # What a short run costs in all: the compiling first epoch plus the steady ones.
    rows.append(common.row(
        f"{case} jax spe={top}", "fit seconds", _total_seconds(measured, "jax", top), "s",
        f"{case} tensorflow spe={top}", _total_seconds(measured, "tensorflow", top), higher_is_better=False,
    ))
    rows.append(common.row(
        f"{case} jax spe={top}", "test accuracy", _run_value(measured, "jax", top, "test_accuracy"), "fraction",
        f"{case} tensorflow spe={top}", _run_value(measured, "tensorflow", top, "test_accuracy"),
    ))
    return rows


def _targets(case, model_name, registry_backend, measured, epochs):
    """The registry's backend is the faster one at the default steps_per_execution, and JAX loses no accuracy."""
    top = STEPS_PER_EXECUTION[-1]
    other = "jax" if registry_backend == "tensorflow" else "tensorflow"
    chosen, alternative = _rate(measured, registry_backend, top), _rate(measured, other, top)
    speed = chosen / alternative if chosen and alternative else None
    cpu = {backend: _run_value(measured, backend, top, "cpu_ms_per_example") for backend in BACKENDS}
    speed_reason = None
    if speed is not None:
        speed_reason = (
            f"{other} ran {alternative:.0f} examples/s against {chosen:.0f} on {registry_backend} (best steady epoch); "
            f"CPU ms/example: jax {cpu['jax']:.3f}, tensorflow {cpu['tensorflow']:.3f}"
        )
    jax_accuracy, tensorflow_accuracy = (_run_value(measured, backend, top, "test_accuracy") for backend in ("jax", "tensorflow"))
    difference = jax_accuracy - tensorflow_accuracy if jax_accuracy is not None and tensorflow_accuracy is not None else None
    accuracy_reason = None
    if difference is not None:
        accuracy_reason = f"test accuracy jax {jax_accuracy:.4f}, tensorflow {tensorflow_accuracy:.4f} after {epochs} epochs from each backend's own initial weights"
    return [
        common.target(
            f"backend_{case}_registry_is_fastest",
            f"{case}: examples/s on the registry's backend ({model_name}: {registry_backend}) / on {other}, spe={top}, >= 1.0",
            speed, 1.0, ">=", reason=speed_reason or "a backend's run failed (see the notes)",
        ),
        common.target(
            f"backend_{case}_jax_accuracy",
            f"{case}: test accuracy on jax minus on tensorflow, same seed and data, >= -{ACCURACY_TOLERANCE}",
            difference, -ACCURACY_TOLERANCE, ">=", reason=accuracy_reason or "a backend's run failed (see the notes)",
        ),
    ]


def _case_notes(case, measured, epochs):
    notes = []
    for backend, outcome in measured.items():
        if outcome:
            runs = "; ".join(
                f"spe={spe}: epochs {run['epoch_seconds']} s (CPU {run['epoch_cpu_seconds']} s), median {run['median_examples_per_s']:.0f} examples/s, "
                f"test accuracy {run['test_accuracy']:.4f}" for spe, run in outcome["runs"].items()
            )
            notes.append(f"{case} {backend} (jit_compile={outcome['jit_compile']}, {outcome['train_examples']} train examples, {outcome['steps_per_epoch']} steps/epoch): {runs}")
    rates = {backend: _rate(measured, backend, STEPS_PER_EXECUTION[-1]) for backend in BACKENDS}
    if all(rates.values()):
        faster = max(rates, key=rates.get)
        notes.append(f"{case}: faster backend at spe={STEPS_PER_EXECUTION[-1]}: {faster} ({rates[faster] / min(rates.values()):.2f}x)")
    return notes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sets and 3 epochs")
    parser.add_argument("--toy", action="store_true", help="smallest sizes, for tests (implies --quick)")
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), help="only these cases (default: all)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    arguments = parser.parse_args(argv)
    if arguments.toy:
        os.environ["KERASDL_BENCH_TOY"] = "1"
        common.TOY = True
    common.quiet_tensorflow()
    outcome = run(arguments.quick or arguments.toy, cases=arguments.cases)
    print(f"{'case':<34} {'metric':<20} {'value':>10}  {'against':<38} {'ratio':>7}")
    for row in outcome["rows"]:
        ratio = row["ratio"] if row["ratio"] is not None else "-"
        print(f"{row['case']:<34} {row['metric']:<20} {row['value'] if row['value'] is not None else '-':>10}  {row['baseline_case']:<38} {ratio:>7}")
    for target in outcome["targets"]:
        status = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        print(f"target {target['description']}: {target['value']} ({status})")
    for note in outcome["notes"]:
        print(f"note: {note}")
    print(f"load average now: {' '.join(f'{value:.2f}' for value in os.getloadavg())}; {outcome['seconds']} s")
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump({"environment": provenance.environment(), "result": outcome}, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
