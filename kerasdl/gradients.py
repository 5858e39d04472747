"""Per-layer gradient norms during training, for the vanishing/exploding-gradient diagnosis.

Keras has no callback that logs gradients (TensorBoard's `histogram_freq` logs weights
only), so `GradientNormLogger` computes them itself: at the end of every few epochs it takes
a few fixed training batches, computes the loss gradient of every trainable variable
with the model's own compiled loss, groups the variables by layer (their Keras `path`
without the variable name) and writes one row per layer to `gradients.csv` and one
scalar per layer to TensorBoard. `kerasdl.report.diagnose_gradients` reads the file.

The gradient goes through `model.stateless_call`, so that a BatchNormalization layer in
training mode does not move its running statistics and sampling leaves the model as it
was. TensorFlow (GradientTape) and JAX (`jax.grad`) are supported; on another backend the
callback says so once and logs nothing.

Over ~300 lines: the callback, its sampling schedule (what it costs) and the compiled
gradient function of both backends are one measurement and change together.
"""

import csv
import math
import os
import time
import warnings

import keras
import numpy as np

from kerasdl.report import ALL_LAYERS, GRADIENT_COLUMNS, GRADIENTS_FILE

__all__ = ["ALL_LAYERS", "GRADIENTS_FILE", "GradientNormLogger", "sampling_interval"]


class GradientNormLogger(keras.callbacks.Callback):
    """Logs per-layer gradient norms of a few fixed training batches, every few epochs.

    `gradients.csv` columns: `epoch` (counted from 0, as in `history.csv`; -1 is the
    measurement before training, taken when the file does not exist yet), `layer`,
    `gradient_norm` (the mean over the sampled batches of the layer's gradient norm, all
    its variables together), `gradient_norm_max`, `weight_norm`, and `clipped_fraction`:
    the share of sampled batches in which the optimizer's `clipnorm` (any one variable of
    the layer) or `global_clipnorm` would have clipped; empty when the optimizer does not
    clip. The `(all layers)` row holds the global norm.

    Measured epochs: before training, the first epoch of the fit, every `every`-th epoch after it
    (epochs `every - 1`, `2 * every - 1`, ...) and the last epoch the fit runs (the planned
    last one, or the one after which EarlyStopping or TerminateOnNaN stops it: put the
    logger after them), so the diagnosis always sees the start and the end.
    `sampling_interval` picks `every` so that the sampled batches stay a small share of
    the training steps.

    The TensorBoard scalars of a measurement are written at the next epoch's end, after
    Keras' own TensorBoard callback: the summary machinery's one-time start (0.08 s,
    measured) is then paid once per process, by Keras, not again here.

    Args:
        sample_data: training batches `(x, y)` to sample: a `tf.data.Dataset` or a list.
            They are read once, at the start of training, and reused at every measurement,
            so that epochs are compared on the same examples.
        csv_path: where the rows go (appended, so that a resumed run keeps earlier epochs).
        log_dir: a TensorBoard folder for the `gradient_norm/<layer>` scalars; None skips them.
        batches: how many batches of `sample_data` to use.
        every: measure every this many epochs (1: every epoch).

    Attributes:
        seconds: time spent in this callback (reading batches, tracing, computing, writing).
        setup_seconds: the part of it spent at the start of training (reading the batches,
            tracing the gradient function, the measurement before training).
        epoch_seconds: time of the epochs it watched, without its own time.
        measured_epochs: the epochs it measured in this fit (-1: before training).

    Example:
    >>> logger = GradientNormLogger(train_data.take(2), "runs/mlp/x/gradients.csv", "runs/mlp/x/tensorboard", every=5)
    >>> model.fit(train_data, epochs=20, callbacks=[logger])
    >>> logger.measured_epochs
    [-1, 0, 4, 9, 14, 19]
    """

    def __init__(self, sample_data, csv_path, log_dir=None, batches=2, every=1):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.sample_data = sample_data
        self.csv_path = csv_path
        self.log_dir = log_dir
        self.batches = batches
        self.every = int(every)
        self.seconds = 0.0
        self.setup_seconds = 0.0
        self.epoch_seconds = 0.0
        self.measured_epochs = []
        self._samples = None
        self._gradient_function = None
        self._writer = None
        self._pending_scalars = []
        self._epoch_started = None
        self._first_epoch = None
        self._initial_values = None

    def on_train_begin(self, logs=None):
        started = time.perf_counter()
        self.measured_epochs, self._first_epoch, self._initial_values = [], None, None
        self._gradient_function = _gradient_function(self.model)
        if self._gradient_function is None:
            if self.model.trainable_variables:
                warnings.warn(f"gradient norms are logged on the TensorFlow and JAX backends only, not {keras.backend.backend()}; {self.csv_path} is not written", stacklevel=2)
        else:
            self._layers = _layer_groups(self.model.trainable_variables)
            if not os.path.isfile(self.csv_path):
                # A fresh run is measured before training too (epoch -1): the reference that
                # later growth or decay is judged against. The weights are kept now and measured
                # after the first epoch: run before Keras' own first step, tracing the gradient
                # function paid TensorFlow's one-time start (0.8 s on the digits MLP against
                # 0.15 s after it, measured), which the training step then no longer pays.
                self._initial_values = _current_values(self.model)
        self.setup_seconds += time.perf_counter() - started
        self.seconds += time.perf_counter() - started

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        if self._epoch_started is not None:
            self.epoch_seconds += started - self._epoch_started
        if self._gradient_function is None:
            return
        first = self._first_epoch is None
        if first:
            self._first_epoch = epoch
            self._samples = _first_batches(self.sample_data, self.batches, self.model)
        if self._samples:
            self._flush_scalars()
            if self._initial_values is not None:
                self._record(-1, self._initial_values)
                self._initial_values = None
            if self._due(epoch):
                self._record(epoch, _current_values(self.model))
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        if first:
            self.setup_seconds += elapsed

    def on_train_end(self, logs=None):
        started = time.perf_counter()
        self._flush_scalars()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.seconds += time.perf_counter() - started

    def _due(self, epoch):
        # The last epoch: the planned one, or one after which a callback earlier in the list
        # (EarlyStopping, TerminateOnNaN) stops the fit.
        last = epoch + 1 == (self.params or {}).get("epochs") or self.model.stop_training
        return epoch == self._first_epoch or (epoch + 1) % self.every == 0 or last

    def _record(self, epoch, values):
        rows = self._measure(epoch, values)
        self._write(rows)
        self.measured_epochs.append(epoch)

    def _measure(self, epoch, values):
        clipnorm, global_clipnorm = _clipping(self.model)
        variables = self.model.trainable_variables
        per_batch = []  # per batch: {layer: (norm, clipped)}
        for x, y in self._samples:
            gradient_squares, weight_squares = (np.asarray(value, dtype=np.float64) for value in self._gradient_function(*values, x, y))
            squares = [float(square) for square in gradient_squares]
            global_norm = math.sqrt(sum(squares))
            globally_clipped = global_clipnorm is not None and global_norm > global_clipnorm
            batch = {}
            for layer, indices in self._layers.items():
                norm = math.sqrt(sum(squares[index] for index in indices))
                clipped = globally_clipped or (clipnorm is not None and any(math.sqrt(squares[index]) > clipnorm for index in indices))
                batch[layer] = (norm, clipped)
            any_clipped = globally_clipped or (clipnorm is not None and any(math.sqrt(square) > clipnorm for square in squares))
            batch[ALL_LAYERS] = (global_norm, any_clipped)
            per_batch.append(batch)
        clipping = clipnorm is not None or global_clipnorm is not None
        rows = []
        for layer in list(self._layers) + [ALL_LAYERS]:
            norms = [batch[layer][0] for batch in per_batch]
            indices = self._layers.get(layer, range(len(variables)))
            rows.append({
                "epoch": epoch,
                "layer": layer,
                "gradient_norm": float(np.mean(norms)),
                "gradient_norm_max": float(np.max(norms)),
                "weight_norm": math.sqrt(sum(weight_squares[index] for index in indices)),
                "clipped_fraction": float(np.mean([batch[layer][1] for batch in per_batch])) if clipping else "",
            })
        return rows

    def _write(self, rows):
        folder = os.path.dirname(self.csv_path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        new_file = not os.path.isfile(self.csv_path) or os.path.getsize(self.csv_path) == 0
        with open(self.csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=GRADIENT_COLUMNS)
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
        if self.log_dir is not None:
            self._pending_scalars.extend(rows)

    def _flush_scalars(self):
        """Writes the pending rows to TensorBoard (see the class docstring for why not at once)."""
        if not self._pending_scalars:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "gradients"))
        with self._writer.as_default():
            for row in self._pending_scalars:
                # TensorBoard tag names allow no spaces or brackets.
                tag = "gradient_norm/" + ("all_layers" if row["layer"] == ALL_LAYERS else row["layer"])
                # Steps count from 0 before training, so epoch e is step e + 1.
                tf.summary.scalar(tag, row["gradient_norm"], step=row["epoch"] + 1)
        self._writer.flush()
        self._pending_scalars = []


def sampling_interval(steps_per_epoch, batches, share):
    """Epochs between measurements so that the sampled batches stay under `share` of the training steps.

    A measurement costs about one training step per sampled batch (a forward and a backward
    pass, no update), so `batches` every `every` epochs of `steps_per_epoch` steps costs
    `batches / (every * steps_per_epoch)` of the training compute.

    Example:
    >>> sampling_interval(23, 2, 0.02)  # digits: 23 steps an epoch
    5
    >>> sampling_interval(3, 2, 0.02)  # GunPoint: 3 steps an epoch
    34
    """
    return max(1, math.ceil(batches / (share * max(1, steps_per_epoch))))


def _first_batches(sample_data, count, model):
    """The first `count` batches, preprocessed as `fit` would for a keras-hub task (strings to token ids)."""
    batches = []
    for x, y in sample_data:
        if hasattr(model, "preprocess_samples"):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(model.preprocess_samples(x, y))
        batches.append((x, y))
        if len(batches) >= count:
            break
    return batches


def _layer_groups(variables):
    """`{layer path: [variable indices]}` in the variables' order (input side first)."""
    groups = {}
    for index, variable in enumerate(variables):
        path = getattr(variable, "path", variable.name)
        groups.setdefault(path.rsplit("/", 1)[0] if "/" in path else path, []).append(index)
    return groups


def _clipping(model):
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "clipnorm", None), getattr(optimizer, "global_clipnorm", None)


def _current_values(model):
    """`(trainable values, non-trainable values)`: copies of the model's variables now, for the gradient function.

    Copies also for the current values: the gradient function then always receives tensors
    (never a variable), so it is traced once.
    """

    def copied(variables):
        return [keras.ops.copy(variable.value) for variable in variables]

    return copied(model.trainable_variables), copied(model.non_trainable_variables)


def _gradient_function(model):
    """`(trainable values, non-trainable values, x, y) -> (squared gradient norms, squared weight norms)`, one per trainable variable.

    None on a backend other than TensorFlow or JAX, or when nothing is trainable.

    The loss is the model's compiled loss (plus weight regularizers) in training mode,
    computed statelessly at the given values (`_current_values`: now, or kept from before
    training) so that no variable (BatchNormalization statistics, metrics) moves.
    The norms are taken in the compiled function, so only one number per variable leaves it.
    """
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if not variables:
        return None

    def loss_of(trainable_values, non_trainable_values, metrics_values, x, y):
        y_pred, _ = model.stateless_call(trainable_values, non_trainable_values, x, training=True)
        loss, _ = model.stateless_compute_loss(trainable_values, non_trainable_values, metrics_values, x=x, y=y, y_pred=y_pred, training=True)
        return loss

    if backend == "tensorflow":
        import tensorflow as tf

        # Without AutoGraph: Keras 3 layers need no Python-to-graph conversion (they run on
        # JAX too), and skipping it cut the first call on the digits MLP from 0.24 s to 0.06 s.
        @tf.function(reduce_retracing=True, autograph=False)
        def gradients(trainable_values, non_trainable_values, x, y):
            with tf.GradientTape() as tape:
                tape.watch(trainable_values)
                loss = loss_of(trainable_values, non_trainable_values, [variable.value for variable in model.metrics_variables], x, y)
            gradients = tape.gradient(loss, trainable_values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            # Embedding gradients arrive as IndexedSlices; the dense form sums repeated rows.
            gradient_squares = [tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(gradient), tf.float32))) for gradient in gradients]
            weight_squares = [tf.reduce_sum(tf.square(tf.cast(value, tf.float32))) for value in trainable_values]
            return tf.stack(gradient_squares), tf.stack(weight_squares)

        return gradients
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def squared_norms(*arguments):
            gradients = jax.grad(loss_of)(*arguments)
            return (
                jnp.stack([jnp.sum(jnp.square(gradient.astype("float32"))) for gradient in gradients]),
                jnp.stack([jnp.sum(jnp.square(value.astype("float32"))) for value in arguments[0]]),
            )

        compiled = jax.jit(squared_norms)

        def gradients(trainable_values, non_trainable_values, x, y):
            return compiled(
                trainable_values, non_trainable_values, [variable.value for variable in model.metrics_variables],
                keras.tree.map_structure(np.asarray, x), np.asarray(y),
            )

        return gradients
    return None
