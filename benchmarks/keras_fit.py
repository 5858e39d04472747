"""Our training path on in-memory arrays, timed per epoch: the project's pipeline,
model entry, optimizer, compile options and callbacks, as `kerasdl.train.train_and_evaluate` uses them.

Shared by `training_throughput`, `levers` and `input_pipeline`; it exists so that one
option (a lever) can be changed at a time without going through the CLI.
"""

import os
import tempfile
import time

import numpy as np


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._started)

    return EpochTimer()


def build_model(model_name, modality, input_shape, num_classes, mean, variance, options=None):
    from kerasdl.models.registry import get_model_entry
    from kerasdl.models.registry import DataFacts

    entry = get_model_entry(model_name)
    return entry(DataFacts(modality, tuple(input_shape), num_classes, mean, variance, None), **(options or {}))


def fit_epochs(
    model_name, modality, train_split, validation_split, input_shape, num_classes, batch_size=64, epochs=3,
    augmenter=None, steps_per_execution=1, jit_compile=False, dataset_options=None, model_options=None,
    callbacks=True, train_dataset=None, array_feed=True,
):
    """Trains with the project's pipeline and callbacks; returns per-epoch seconds and more.

    The training split goes through `kerasdl.data.pipeline.training_input`, as in a run
    (arrays on JAX where they fit); `array_feed=False` keeps the tf.data pipeline
    (the feed before it, for the before/after rows).

    Returns:
        `{"epoch_seconds": [...], "train_examples": int, "steps_per_epoch": int}`.
    """
    import keras

    from kerasdl.callbacks import make_callbacks
    from kerasdl.optim import make_optimizer, steps_per_epoch
    from kerasdl.config import TrainConfig
    from kerasdl.data.pipeline import ArrayBatches, fit_arguments, make_pipeline, normalization_statistics, training_input

    defaults = TrainConfig()
    keras.utils.set_random_seed(defaults.seed)
    mean, variance = normalization_statistics(train_split, modality)
    if train_dataset is not None:
        train_data = train_dataset
    elif array_feed and dataset_options is None:
        train_data = training_input(train_split, batch_size, augmenter=augmenter)
    else:  # tf.data options need the tf.data pipeline.
        train_data = make_pipeline(train_split, batch_size, training=True, augmenter=augmenter)
    validation_data = make_pipeline(validation_split, batch_size, training=False)
    if dataset_options is not None:
        train_data = train_data.with_options(dataset_options)
        validation_data = validation_data.with_options(dataset_options)
    steps = steps_per_epoch(train_split.size, batch_size)
    model = build_model(model_name, modality, input_shape, num_classes, mean, variance, model_options)
    model.compile(
        optimizer=make_optimizer(defaults.optimizer, defaults.learning_rate, defaults.weight_decay, defaults.clipnorm,
                                 defaults.lr_schedule, defaults.warmup_epochs, epochs, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], steps_per_execution=steps_per_execution, jit_compile=jit_compile,
    )
    timer = epoch_timer()
    callback_list = [timer]
    with tempfile.TemporaryDirectory(prefix="kerasdl-bench-fit-") as run_dir:
        if callbacks:
            # Only the run folder is passed: the defaults are what a training run uses.
            callback_list = list(make_callbacks(run_dir)) + [timer]
        model.fit(**fit_arguments(train_data), validation_data=validation_data, epochs=epochs, callbacks=callback_list, verbose=0)
    feed = "arrays" if isinstance(train_data, ArrayBatches) else "tf.data"
    return {"epoch_seconds": timer.times, "train_examples": int(train_split.size), "steps_per_epoch": int(steps), "feed": feed}


def steady_examples_per_s(fit_result):
    """Examples/s over epochs 2..n (the first epoch traces and compiles)."""
    times = fit_result["epoch_seconds"][1:] or fit_result["epoch_seconds"]
    return fit_result["train_examples"] / float(np.median(times))
