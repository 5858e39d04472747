"""Training throughput: our Keras training path against the seed's plain PyTorch loop.

For MLP (MNIST 28x28), CNN (CIFAR-10 32x32x3) and LSTM (GunPoint series, 150x1) both
sides train the same architecture on the same in-memory examples with the same batch
size, Adam-family optimizer and a validation pass per epoch, on the CPU:

- ours: `kerasdl.data.pipeline.make_pipeline` + the registry's model + the project's
  optimizer (AdamW, cosine schedule, clipnorm) + every standard callback
  (`kerasdl.callbacks.make_callbacks`: checkpoint, TensorBoard, CSV log, backup, ...).
  The target row is the path a default run takes: in a fresh process on the Keras backend
  the model's registry entry names (`train.backend=auto`), with the config's default
  steps per execution and `jit_compile` (Keras "auto": XLA on JAX). In the same process it
  is measured again with the tf.data feed (before `training_input` gave JAX arrays) and
  without callbacks (their per-epoch cost goes into the target's reason). The in-process
  TensorFlow rows (steps per execution 1 and 16) stay beside it;
- baseline: `for x, y in DataLoader(...)` with `torch.optim.Adam`, as the seed did.

Examples/s are taken over epochs 2..n on both sides: the first epoch (Keras tracing,
PyTorch allocator warm-up) is reported separately as `first_epoch_s`.
Augmentation is off on both sides (the seed loop had none).

Example:
>>> from benchmarks import training_throughput
>>> training_throughput.run(quick=True)["targets"][0]["met"]
"""

import json
import os
import time

import numpy as np

from benchmarks import common
from benchmarks.keras_fit import fit_epochs, steady_examples_per_s


# steps_per_execution for the tuned row: one tf.function call runs this many batches.
TUNED_STEPS = 16


# Variants of the default path, measured in the same fresh process: the default itself, the
# tf.data feed it replaced on JAX (before/after `training_input`), and no callbacks (what the
# standard callbacks cost per epoch: the PyTorch loop saves nothing).
VARIANTS = {"default": {}, "tf.data feed": {"array_feed": False}, "no callbacks": {"callbacks": False}}


def default_path_epochs(name, modality, arrays_path, input_shape, num_classes, batch_size, epochs):
    """`fit_epochs` as a default run trains, and its `VARIANTS`: in this (fresh) process, on the registry's backend.

    The caller sets `KERAS_BACKEND` before this process imports Keras (see `_default_path`).

    Returns:
        the default's `fit_epochs` result plus `backend` and `variants` (`{label: result}`).
    """
    from benchmarks.keras_fit import fit_epochs
    from kerasdl.config import TrainConfig
    from kerasdl.data.source import Split

    arrays = np.load(arrays_path)
    defaults = TrainConfig()
    results = {}
    for label, options in VARIANTS.items():
        results[label] = fit_epochs(
            name, modality, Split.from_arrays(arrays["xt"], arrays["yt"]), Split.from_arrays(arrays["xv"], arrays["yv"]), tuple(input_shape), num_classes,
            batch_size, epochs, steps_per_execution=defaults.steps_per_execution, jit_compile="auto" if defaults.jit_compile is None else defaults.jit_compile,
            **options,
        )
    import keras

    return dict(results["default"], backend=keras.backend.backend(), variants=results)


def _default_path(name, modality, xt, yt, xv, yv, input_shape, num_classes, batch_size, epochs):
    from kerasdl.models.registry import get_model_entry

    backend = get_model_entry(name).backend
    with common.temporary_folder("kerasdl-bench-throughput-") as folder:
        arrays_path = os.path.join(folder, "arrays.npz")
        np.savez(arrays_path, xt=xt, yt=yt, xv=xv, yv=yv)
        spec = json.dumps([name, modality, arrays_path, list(input_shape), int(num_classes), batch_size, epochs])
        code = (
            "import json\n"
            "from benchmarks.training_throughput import default_path_epochs\n"
            f"print('BENCH_JSON ' + json.dumps(default_path_epochs(*json.loads({spec!r}))))\n"
        )
        return common.run_python(code, env={"KERAS_BACKEND": backend})


def _datasets(quick):
    toy = common.TOY
    sets = {}
    with common.temporary_folder() as folder:
        path = common.mnist_npz(folder, train=8000, test=2000)
        if path:
            data = np.load(path)
            count = 600 if toy else (3000 if quick else 8000)
            sets["mlp"] = (data["x_train"][:count], data["y_train"][:count], (28, 28, 1), 10, "image")
    count = 300 if toy else (1500 if quick else 5000)
    x, y, _ = common.cifar_arrays(count + count // 10)
    if x is not None:
        sets["cnn"] = (x, y, (32, 32, 3), 10, "image")
    ucr = common.data_path("ucr")
    if ucr:
        from kerasdl.data.ucr import load_ucr

        splits = load_ucr(os.path.join(ucr, "GunPoint"), seed=0)
        from kerasdl.data.pipeline import take_examples

        parts = [take_examples(split, split.size) for split in (splits.train, splits.validation, splits.test)]
        series = np.concatenate([part[0] for part in parts]).astype(np.float32)
        labels = np.concatenate([part[1] for part in parts])
        repeat = 2 if toy else (5 if quick else 10)
        sets["lstm"] = (np.tile(series, (repeat, 1, 1)), np.tile(labels, repeat), series.shape[1:], int(labels.max()) + 1, "sequence")
    return sets


def _torch_model(name, input_shape, num_classes, mean, std):
    import torch
    from torch import nn

    mean_tensor = torch.tensor(np.asarray(mean, np.float32))
    std_tensor = torch.tensor(np.asarray(std, np.float32))

    class Normalize(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.register_buffer("mean", mean_tensor.reshape(shape))
            self.register_buffer("std", std_tensor.reshape(shape))

        def forward(self, x):
            return (x - self.mean) / self.std

    if name == "mlp":
        return nn.Sequential(Normalize((1, 1, 1, -1)), nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 128), nn.ReLU(), nn.Linear(128, num_classes))
    if name == "cnn":
        height, width, channels = input_shape
        return nn.Sequential(
            Normalize((1, -1, 1, 1)),
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Flatten(), nn.Linear(64 * ((height + 3) // 4) * ((width + 3) // 4), 512), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    class SequenceClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = Normalize((1, 1, -1))
            self.lstm = nn.LSTM(input_shape[-1], 64, batch_first=True)
            self.dropout = nn.Dropout(0.2)
            self.logits = nn.Linear(64, num_classes)

        def forward(self, x):
            _, (hidden, _) = self.lstm(self.normalize(x))
            return self.logits(self.dropout(hidden[-1]))

    return SequenceClassifier()


def torch_epochs(name, x, y, xv, yv, input_shape, num_classes, batch_size, epochs, threads=None):
    """The seed's loop: DataLoader, Adam, CrossEntropyLoss, a no-grad validation pass."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(42)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    axes = tuple(range(x.ndim - 1))
    mean, std = x.mean(axis=axes), np.sqrt(x.var(axis=axes) + 1e-7)
    to_torch = (lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))) if name == "cnn" else torch.from_numpy
    train_loader = DataLoader(TensorDataset(to_torch(x), torch.from_numpy(y)), batch_size=batch_size, shuffle=True)
    validation_loader = DataLoader(TensorDataset(to_torch(xv), torch.from_numpy(yv)), batch_size=batch_size)
    model = _torch_model(name, input_shape, num_classes, mean, std)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_function(model(inputs), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for inputs, labels in validation_loader:
                model(inputs)
        times.append(time.perf_counter() - started)
    return {"epoch_seconds": times, "train_examples": len(y)}


def run(quick):
    from kerasdl.config import TrainConfig
    from kerasdl.data.source import Split

    started = time.time()
    rows, targets, notes = [], [], []
    epochs = 2 if common.TOY else (3 if quick else 4)
    batch_size = 64
    try:
        import torch  # noqa: F401
    except ImportError:
        missing = "PyTorch (the baseline) is not installed: pip install -e '.[bench]' (torch, CPU build)"
        return common.result("training_throughput", started, rows, [common.target(f"train_{name}_vs_torch", f"{name}: kerasdl default path examples/s / PyTorch examples/s", None, 1.3, ">=", reason=missing) for name in ("mlp", "cnn", "lstm")],
                             [missing])
    for name, (x, y, input_shape, num_classes, modality) in _datasets(quick).items():
        validation = max(len(y) // 10, 1)
        xt, yt, xv, yv = x[validation:], y[validation:], x[:validation], y[:validation]
        # PyTorch's OpenMP threads spin-wait at barriers; when another process holds one of
        # the two cores, 2 threads can run far slower than 1. The baseline is the faster of
        # 1 and all threads, so that contention never flatters our side.
        candidates = [torch_epochs(name, xt, yt, xv, yv, input_shape, num_classes, batch_size, epochs, threads) for threads in sorted({1, os.cpu_count() or 1})]
        for threads, candidate in zip(sorted({1, os.cpu_count() or 1}), candidates):
            notes.append(f"{name}: pytorch with {threads} thread(s): {steady_examples_per_s(candidate):.0f} examples/s")
        baseline = max(candidates, key=steady_examples_per_s)
        ours = fit_epochs(name, modality, Split.from_arrays(xt, yt), Split.from_arrays(xv, yv), input_shape, num_classes, batch_size, epochs)
        torch_rate, keras_rate = steady_examples_per_s(baseline), steady_examples_per_s(ours)
        default = _default_path(name, modality, xt, yt, xv, yv, input_shape, num_classes, batch_size, epochs)
        default_rate = steady_examples_per_s(default)
        default_label = f"{name} kerasdl default path ({default['backend']}, steps_per_execution={TrainConfig().steps_per_execution})"
        rows.append(common.row(default_label, "examples/s", default_rate, "examples/s", f"{name} pytorch loop", torch_rate))
        rows.append(common.row(f"{name} kerasdl default path first epoch", "seconds", default["epoch_seconds"][0], "s", f"{name} pytorch first epoch", baseline["epoch_seconds"][0], higher_is_better=False))
        rows.append(common.row(f"{name} keras tensorflow (pipeline+callbacks)", "examples/s", keras_rate, "examples/s", f"{name} pytorch loop", torch_rate))
        rows.append(common.row(f"{name} keras first epoch", "seconds", ours["epoch_seconds"][0], "s", f"{name} pytorch first epoch", baseline["epoch_seconds"][0], higher_is_better=False))
        # The recommended lever (see `levers`): several steps per tf.function call.
        tuned = fit_epochs(name, modality, Split.from_arrays(xt, yt), Split.from_arrays(xv, yv), input_shape, num_classes, batch_size, epochs, steps_per_execution=TUNED_STEPS)
        tuned_rate = steady_examples_per_s(tuned)
        rows.append(common.row(f"{name} keras, steps_per_execution={TUNED_STEPS}", "examples/s", tuned_rate, "examples/s", f"{name} pytorch loop", torch_rate))
        variants = {label: steady_examples_per_s(result) for label, result in default["variants"].items()}
        feed_rate, bare_rate = variants["tf.data feed"], variants["no callbacks"]
        rows.append(common.row(f"{name} default path, feed: {default['feed']}", "examples/s", default_rate, "examples/s", f"{name} default path, feed: tf.data", feed_rate))
        rows.append(common.row(f"{name} default path, no callbacks", "examples/s", bare_rate, "examples/s", f"{name} pytorch loop", torch_rate))
        # The standard callbacks' cost per epoch (backup, checkpoint, TensorBoard, ...), from the two rates.
        epoch_examples = len(yt)
        callback_ms = 1000.0 * (epoch_examples / default_rate - epoch_examples / bare_rate)
        reason = (f"steady examples/s: the default path on {default['backend']} {default_rate:.0f} (feed: {default['feed']}; with the tf.data feed "
                  f"{feed_rate:.0f}; without callbacks {bare_rate:.0f}, so the callbacks cost {callback_ms:.0f} ms of each "
                  f"{1000.0 * epoch_examples / default_rate:.0f} ms epoch), PyTorch {torch_rate:.0f}; in-process TensorFlow "
                  f"{keras_rate:.0f}, with steps_per_execution={TUNED_STEPS} {tuned_rate:.0f}; first epoch default path {default['epoch_seconds'][0]:.2f} s "
                  f"vs PyTorch {baseline['epoch_seconds'][0]:.2f} s")
        targets.append(common.target(f"train_{name}_vs_torch", f"{name}: kerasdl default path examples/s / PyTorch examples/s", default_rate / torch_rate, 1.3, ">=", reason=reason))
        notes.append(f"{name}: {len(yt)} train + {len(yv)} validation examples, batch {batch_size}, {epochs} epochs; steady rate over epochs 2..{epochs}")
    return common.result("training_throughput", started, rows, targets, notes)
