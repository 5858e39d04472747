"""What issue 12's quality measures cost beside a default run: the classical baseline and the gradient-norm log.

    python -m benchmarks.quality_costs            # digits (mlp, cnn), SST-2 300, GunPoint, CIFAR-10 2,000
    python -m benchmarks.quality_costs --quick    # digits only

Baseline rows: `kerasdl.baseline.baseline_for_splits` (reading the sampled examples,
choosing C, fitting and scoring) in seconds, against the wall time of a default
`training.run` of the same model on the same data, trained in the same process
(target: under 10 %). Gradient rows: `GradientNormLogger`'s own time (tracing, sampling two
batches per epoch, writing) against the fit's epoch time for the default mlp and cnn on
digits, 20 epochs (target: under 5 % per epoch; the one-time start is reported beside it).

Example:
>>> from benchmarks import quality_costs
>>> quality_costs.run(quick=True)["rows"][0]["metric"]
'baseline seconds'
"""

import argparse
import json
import os
import tempfile
import time

from benchmarks import common

# (case, model, data source or None for the built-in digits, --set overrides)
CASES = (
    ("digits_mlp", "mlp", None, ()),
    ("digits_cnn", "cnn", None, ()),
    ("sst2_300_lstm", "lstm", ("sst2",), ("data.max_examples=300",)),
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
        seconds, baseline = _baseline_seconds(model_name, source, sets)
        _, metrics = common.trained_run(model_name, source, epochs=None, sets=sets, log=lambda line: print(line, flush=True))
        rows.append(common.row(case, "baseline seconds", seconds, "s", f"default {model_name} run wall time", metrics["wall_time_s"], higher_is_better=False))
        targets.append(common.target(f"baseline_cost_{case}", f"{case}: baseline under 10 % of a default run", seconds / metrics["wall_time_s"], 0.10, "<="))
        notes.append(
            f"{case}: baseline {baseline['name']} {baseline['test_accuracy']:.3f} (C={baseline['C']}) on {baseline['train_examples_used']} of "
            f"{baseline['train_examples']} training examples, fit {baseline['seconds']:.2f} s + read {baseline['read_seconds']:.2f} s; "
            f"default {model_name}: {metrics['test_accuracy']:.3f} in {metrics['wall_time_s']:.1f} s ({metrics.get('epochs')} epochs)"
        )
    for model_name in ("mlp", "cnn"):
        logger_seconds, setup_seconds, epoch_seconds, steady = _gradient_overhead(model_name, epochs=20)
        rows.append(common.row(f"digits_{model_name}_gradients", "gradient logger seconds", logger_seconds, "s", "epoch time of the same fit", epoch_seconds, higher_is_better=False))
        rows.append(common.row(f"digits_{model_name}_gradients_per_epoch", "gradient logger seconds per epoch", steady, "s", "mean epoch time", epoch_seconds / 20, higher_is_better=False))
        targets.append(common.target(f"gradient_cost_{model_name}", f"digits {model_name}: gradient log under 5 % of epoch time, per epoch", steady / (epoch_seconds / 20), 0.05, "<="))
        notes.append(
            f"digits_{model_name}_gradients: {logger_seconds:.2f} s in all over 20 epochs of {epoch_seconds:.1f} s ({100 * logger_seconds / epoch_seconds:.1f} %), "
            f"of which {setup_seconds:.2f} s once at the start (batches, tracing, the measurement before training) and {1000 * steady:.1f} ms per epoch "
            f"({100 * steady / (epoch_seconds / 20):.1f} % of an epoch)"
        )
    return common.result("quality_costs", started, rows, targets, notes)


def _baseline_seconds(model_name, source, sets):
    """Loads the data as `training.run` would and times the baseline on it."""
    from kerasdl.baseline import baseline_for_splits
    from kerasdl.data import load_data
    from kerasdl.models.registry import get_model_entry

    config = common.train_config(model_name, source, epochs=None, sets=sets)
    splits = load_data(config.data, get_model_entry(model_name).modalities, config.train.seed)
    begin = time.perf_counter()
    baseline = baseline_for_splits(splits, seed=config.train.seed)
    return time.perf_counter() - begin, baseline


def _gradient_overhead(model_name, epochs):
    """Fits the default model on digits with kerasdl's default optimizer and the logger; returns its costs."""
    import keras
    import numpy as np

    from kerasdl.optim import make_optimizer, steps_per_epoch
    from kerasdl.data.digits import load_digits
    from kerasdl.data.pipeline import make_pipeline, normalization_statistics
    from kerasdl.gradients import GradientNormLogger
    from kerasdl.models.registry import DataFacts, get_model_entry

    entry = get_model_entry(model_name)
    config = common.train_config(model_name, None, epochs=epochs)
    train = config.train
    splits = load_digits(entry.modalities[0], seed=train.seed)
    mean, variance = normalization_statistics(splits.train, splits.modality)
    model = entry(DataFacts(splits.modality, splits.input_shape, len(splits.class_names), mean, variance))
    steps = steps_per_epoch(splits.train.size, train.batch_size)
    model.compile(
        optimizer=make_optimizer(train.optimizer, train.learning_rate, train.weight_decay, train.clipnorm, train.lr_schedule, train.warmup_epochs, epochs, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"], steps_per_execution=train.steps_per_execution,
    )
    train_data = make_pipeline(splits.train, train.batch_size, training=True, seed=train.seed)
    sample = make_pipeline(splits.train, train.batch_size, training=True, seed=train.seed, cache=False).take(2)
    with tempfile.TemporaryDirectory() as folder:
        logger = GradientNormLogger(sample, os.path.join(folder, "gradients.csv"), os.path.join(folder, "tensorboard"))
        measured = []

        class AfterLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                measured.append(logger.seconds)

        # TensorBoard as in every run (kerasdl.callbacks.make_callbacks), so that the summary
        # machinery's one-time start is not charged to the logger.
        callbacks = [keras.callbacks.TensorBoard(os.path.join(folder, "tensorboard")), logger, AfterLogger()]
        model.fit(train_data, validation_data=make_pipeline(splits.validation, train.batch_size, training=False), epochs=epochs, verbose=0, callbacks=callbacks)
    steady = float(np.median(np.diff([logger.setup_seconds] + measured)))
    return logger.seconds, logger.setup_seconds, logger.epoch_seconds, steady


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    arguments = parser.parse_args(argv)
    common.quiet_tensorflow()
    outcome = run(arguments.quick)
    print(json.dumps(outcome, indent=2))


if __name__ == "__main__":
    main()
