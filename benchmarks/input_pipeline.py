"""The tf.data image-folder pipeline against the same examples held in memory.

CNN on `../shared/data/cifar10-test-jpg` (JPEG decode + augmentation), training
epochs 2..n timed (epoch 1 decodes and fills the cache, reported separately):

- `folder (default: cache + augment)`: `make_pipeline` exactly as `kerasdl.train.train_and_evaluate`
  builds it: decode in parallel, cache decoded images, shuffle, batch, augment, prefetch;
- `folder, no cache + augment`: decoding every epoch (what a set too large to cache costs);
- `in memory + augment`: the decoded arrays, augmented as in training;
- baseline `in memory, no augmentation`: the decoded arrays through `from_tensor_slices`.

Input-only throughput iterates the training dataset alone (no model). Whether a
training step is input-bound is measured twice: by timing the wait for each batch in a
manual training loop, and from the profiler trace that `--profile` writes
(`IteratorGetNext` time as a share of the traced steps).

Example:
>>> from benchmarks import input_pipeline
>>> input_pipeline.run(quick=True)["targets"]
"""

import glob
import os
import time

import numpy as np

from benchmarks import common
from benchmarks.keras_fit import fit_epochs, steady_examples_per_s


def _iterate(dataset):
    started = time.perf_counter()
    count = 0
    for x, _ in dataset:
        count += int(x.shape[0])
    return count / (time.perf_counter() - started)


def input_wait_share(model, dataset, steps):
    """Share of a manual training loop's time spent waiting for the next batch."""
    iterator = iter(dataset)
    x, y = next(iterator)
    model.train_on_batch(x, y)  # Traces the step; not timed.
    waiting = computing = 0.0
    for _ in range(steps):
        begin = time.perf_counter()
        try:
            x, y = next(iterator)
        except StopIteration:
            break
        middle = time.perf_counter()
        model.train_on_batch(x, y)
        end = time.perf_counter()
        waiting += middle - begin
        computing += end - middle
    return waiting / (waiting + computing) if waiting + computing else None


def profile_input_share(run_dir):
    """Reads the `--profile` trace (xplane.pb) of a run: IteratorGetNext time / traced step time."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = glob.glob(os.path.join(run_dir, "tensorboard", "**", "*.xplane.pb"), recursive=True)
    if not files:
        return None, "no xplane.pb trace in the run's tensorboard/"
    if len(files) > 1:
        # One fresh run writes one trace; more means the folder was reused, and the traces may
        # come from different code. Refuse rather than read an arbitrary one.
        return None, f"{len(files)} xplane.pb traces in {run_dir}/tensorboard (expected the one of this run)"
    space = xplane_pb2.XSpace()
    with open(files[0], "rb") as handle:
        space.ParseFromString(handle.read())
    # On the host plane, the Python thread's `multi_step_on_iterator` events are the traced
    # training steps; `IteratorGetNextOp::DoCompute` (on the tf.data get-next thread) is the
    # time a step blocked for its batch, i.e. the prefetch buffer was empty.
    iterator_ps, step_ps, names = 0, 0, set()
    for plane in space.planes:
        metadata = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = metadata.get(event.metadata_id, "")
                if name == "IteratorGetNextOp::DoCompute":
                    iterator_ps += event.duration_ps
                    names.add(name)
                elif name in ("multi_step_on_iterator", "one_step_on_iterator"):
                    step_ps += event.duration_ps
                    names.add(name)
    if not step_ps:
        return None, f"no step events found in the trace ({len(space.planes)} planes)"
    return iterator_ps / step_ps, f"trace {os.path.relpath(files[0], run_dir)}: {iterator_ps / 1e9:.1f} ms in IteratorGetNext of {step_ps / 1e9:.1f} ms of traced steps (first epoch: decoding, cache being filled)"


def run(quick):
    from kerasdl.config import DataConfig
    from kerasdl.data import load_data
    from kerasdl.data.augment import make_augmenter
    from kerasdl.data.pipeline import make_pipeline, take_examples
    from kerasdl.data.source import Split

    started = time.time()
    rows, targets, notes = [], [], []
    folder = common.data_path("cifar10-test-jpg")
    if not folder:
        return common.result("input_pipeline", started, rows, [common.target("input_pipeline_ratio", "CNN epoch time: image-folder pipeline / in-memory (epochs 2..n)", None, 1.1, "<=", reason="../shared/data/cifar10-test-jpg is absent")], ["cifar10-test-jpg is absent"])
    examples = 400 if common.TOY else (2000 if quick else 8000)
    epochs = 2 if common.TOY else 3
    splits = load_data(DataConfig(source=folder, max_examples=examples, validation_fraction=0.1, test_fraction=0.1), ("image",), 42)
    x, y = take_examples(splits.train, splits.train.size)
    xv, yv = take_examples(splits.validation, splits.validation.size)
    memory_train, memory_validation = Split.from_arrays(x, y), Split.from_arrays(xv, yv)
    shape, classes = splits.input_shape, len(splits.class_names)

    def augmenter():
        return make_augmenter(seed=42)

    variants = {
        "in memory, no augmentation": (memory_train, memory_validation, None, None),
        "in memory + augment": (memory_train, memory_validation, augmenter(), None),
        "folder (default: cache + augment)": (splits.train, splits.validation, None, make_pipeline(splits.train, 64, training=True, augmenter=augmenter())),
        "folder, no cache + augment": (splits.train, splits.validation, None, make_pipeline(splits.train, 64, training=True, augmenter=augmenter(), cache=False)),
    }
    rates, first = {}, {}
    for label, (train, validation, augment, dataset) in variants.items():
        result = fit_epochs("cnn", "image", train, validation, shape, classes, 64, epochs, augmenter=augment, train_dataset=dataset)
        rates[label] = steady_examples_per_s(result)
        first[label] = result["epoch_seconds"][0]
    base_label = "in memory, no augmentation"
    for label, rate in rates.items():
        # Epoch time ratio = baseline rate / rate.
        rows.append(common.row(f"cnn epoch, {label}", "epoch time", splits.train.size / rate, "s", f"cnn epoch, {base_label}", splits.train.size / rates[base_label], higher_is_better=False))
    rows.append(common.row("cnn first epoch, folder (decode + fill cache)", "epoch time", first["folder (default: cache + augment)"], "s", f"cnn first epoch, {base_label}", first[base_label], higher_is_better=False))
    ratio = rates[base_label] / rates["folder (default: cache + augment)"]
    reason = (f"epoch time vs in memory without augmentation: in memory with the same augmentation {rates[base_label] / rates['in memory + augment']:.2f}x, "
              f"folder (cache + augment) {ratio:.2f}x, folder without cache {rates[base_label] / rates['folder, no cache + augment']:.2f}x; "
              f"so the folder itself costs {rates['in memory + augment'] / rates['folder (default: cache + augment)']:.2f}x the same augmented in-memory epoch")
    targets.append(common.target("input_pipeline_ratio", "CNN epoch time: image-folder pipeline / in-memory (epochs 2..n)", ratio, 1.1, "<=", reason=reason))
    notes.append(f"{splits.train.size} train / {splits.validation.size} validation CIFAR-10 JPEGs, batch 64, {epochs} epochs; augmentation = kerasdl.data.augment.make_augmenter defaults")
    notes.append(f"augmentation alone costs {rates[base_label] / rates['in memory + augment']:.2f}x the in-memory epoch; decoding every epoch (no cache) {rates[base_label] / rates['folder, no cache + augment']:.2f}x")

    # Input-only throughput: the dataset alone, no model.
    input_rates = {}
    cached = make_pipeline(splits.train, 64, training=True, augmenter=augmenter())
    _iterate(cached)  # Fills the cache.
    input_rates["folder cached + augment (epoch 2)"] = _iterate(cached)
    input_rates["folder decode + augment (no cache)"] = _iterate(make_pipeline(splits.train, 64, training=True, augmenter=augmenter(), cache=False))
    input_rates["folder decode only (no cache, no augment)"] = _iterate(make_pipeline(splits.train, 64, training=True, cache=False))
    input_rates["in memory, no augmentation"] = _iterate(make_pipeline(memory_train, 64, training=True))
    for label, rate in input_rates.items():
        rows.append(common.row(f"input only: {label}", "examples/s", rate, "examples/s", "cnn training, in memory (examples/s)", rates[base_label]))

    # Is training input-bound? (a) manual loop, batch wait share.
    import keras

    from benchmarks.keras_fit import build_model
    from kerasdl.data.pipeline import normalization_statistics

    mean, variance = normalization_statistics(splits.train, "image")
    model = build_model("cnn", "image", shape, classes, mean, variance)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = make_pipeline(splits.train, 64, training=True, augmenter=augmenter()).repeat()
    share = input_wait_share(model, dataset, 15 if quick else 60)
    rows.append(common.row("manual loop: waiting for input", "share of step time", share, "fraction", "5% threshold", 0.05, higher_is_better=False))
    targets.append(common.target("cnn_not_input_bound_loop", "CNN training from the JPEG folder: input wait share of step time (manual loop, steady state)", share, 0.05, "<=",
                                 reason=None if share is None else f"the manual loop waited {100 * share:.1f}% of its step time for the next batch"))
    # (b) the profiler trace of `training.run cnn --profile`.
    if not common.TOY:
        try:
            run_dir, _ = common.trained_run("cnn", folder, 1, 64, ("data.max_examples=1500", "train.profile=true"), log=lambda line: None)
            trace_share, detail = profile_input_share(run_dir)
            notes.append(f"profiler (training.run cnn --profile, batches 5-10): IteratorGetNext / step time = {trace_share if trace_share is None else round(trace_share, 4)}; {detail}")
            if trace_share is not None:
                rows.append(common.row("profiler trace: IteratorGetNext", "share of step time", trace_share, "fraction", "5% threshold", 0.05, higher_is_better=False))
        except Exception as error:
            notes.append(f"profiler trace not read: {type(error).__name__}: {str(error)[:200]}")
    return common.result("input_pipeline", started, rows, targets, notes)
