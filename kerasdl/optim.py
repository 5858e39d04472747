"""The optimizer and the learning-rate schedules, built from the training config.

Defaults are `kerasdl.config.TrainConfig`'s (read, never restated); the allowed optimizer
and schedule names are its rules.
"""

import math

import keras

from kerasdl.config import RULES, TrainConfig
from kerasdl.schedules import WarmupCosineDecay

OPTIMIZERS = RULES["train.optimizer"].choices
LR_SCHEDULES = RULES["train.lr_schedule"].choices


def make_optimizer(
    optimizer=TrainConfig.optimizer,
    learning_rate=TrainConfig.learning_rate,
    weight_decay=TrainConfig.weight_decay,
    clipnorm=TrainConfig.clipnorm,
    lr_schedule=TrainConfig.lr_schedule,
    warmup_epochs=TrainConfig.warmup_epochs,
    epochs=TrainConfig.epochs,
    steps_per_epoch=1,
):
    """Returns the optimizer; the "cosine" and "linear" schedules are built into its learning rate.

    Args:
        optimizer: "adam" or "adamw".
        learning_rate: the peak learning rate.
        weight_decay: decoupled weight decay (adamw only).
        clipnorm: clip each gradient to this norm; None disables clipping.
        lr_schedule: "cosine" puts a warmup + cosine decay schedule into the optimizer,
            "linear" a warmup + linear decay to zero (BERT's schedule); the others ("step",
            "plateau", "constant") use a constant rate that a callback may change.
        warmup_epochs: linear warmup length for "cosine" and "linear".
        epochs: the planned number of epochs (the decay length).
        steps_per_epoch: optimizer steps per epoch.

    Example:
    >>> make_optimizer("adamw", 1e-3, lr_schedule="cosine", epochs=10, steps_per_epoch=20)
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train.lr_schedule must be {', '.join(LR_SCHEDULES[:-1])} or {LR_SCHEDULES[-1]}, got {lr_schedule!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"train.optimizer must be {' or '.join(OPTIMIZERS)}, got {optimizer!r}")
    rate = learning_rate
    warmup_steps = max(0, warmup_epochs) * steps_per_epoch
    if lr_schedule == "linear":
        rate = WarmupLinearDecay(learning_rate, warmup_steps=warmup_steps, total_steps=max(1, epochs * steps_per_epoch))
    elif lr_schedule == "cosine":
        decay_steps = max(1, epochs * steps_per_epoch - warmup_steps)
        if warmup_steps:
            # Keras' CosineDecay without its ops.cond, which JAX compiles again on every eager
            # read of the rate (TensorBoard logs it each epoch).
            rate = WarmupCosineDecay(
                initial_learning_rate=learning_rate / 100, decay_steps=decay_steps,
                warmup_target=learning_rate, warmup_steps=warmup_steps, alpha=0.01,
            )
        else:
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.01)
    if optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay, clipnorm=clipnorm)
    return keras.optimizers.Adam(learning_rate=rate, clipnorm=clipnorm)


@keras.saving.register_keras_serializable(package="kerasdl")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak_learning_rate`, then linear decay to 0 at `total_steps`.

    Keras has cosine decay with warmup but no linear one; this is BERT's schedule.

    Args:
        peak_learning_rate: the rate reached at the end of the warmup.
        warmup_steps: optimizer steps of linear warmup.
        total_steps: the step at which the rate reaches zero.

    Example:
    >>> schedule = WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=100)
    >>> float(schedule(10))
    0.001
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps):
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = step / max(1, self.warmup_steps)
        decay = (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps)
        fraction = keras.ops.where(step < self.warmup_steps, warmup, decay)
        return self.peak_learning_rate * keras.ops.clip(fraction, 0.0, 1.0)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def step_decay(learning_rate, step_size=TrainConfig.step_size, gamma=TrainConfig.step_gamma):
    """The seed's StepLR as a function of the epoch: `lr * gamma ** (epoch // step_size)`.

    Example:
    >>> step_decay(0.1, step_size=7, gamma=0.1)(7)
    0.010000000000000002
    """

    def schedule(epoch, current_rate=None):
        return learning_rate * gamma ** (epoch // step_size)

    return schedule


def steps_per_epoch(num_examples, batch_size, drop_remainder=False):
    """Optimizer steps in one epoch of `num_examples` in batches of `batch_size` (at least 1).

    Example:
    >>> steps_per_epoch(1439, 64)
    23
    """
    steps = num_examples // batch_size if drop_remainder else math.ceil(num_examples / batch_size)
    return max(1, steps)


# The smallest batch `training_batch` makes of a small split: Wang et al. (2017), whose FCN
# and ResNet set the UCR references, train with min(n / 10, 16).
SMALL_SPLIT_MIN_BATCH = 16


def training_batch(batch_size, num_examples):
    """The training batch of a split of `num_examples`: `batch_size`, but at most a quarter of a small split.

    A split of fewer than four batches would take one or two steps a pass, near full-batch
    gradient descent: on GunPoint (45 series) the LSTM reached 0.83 test accuracy with the
    whole split as its batch against 0.98 with 16 (benchmarks/small_data.py). So the batch
    is at most a quarter of the split, but not below `SMALL_SPLIT_MIN_BATCH` (nor above the
    split), and a split repeated within an epoch never puts an example twice in one batch.

    Example:
    >>> training_batch(64, 45), training_batch(64, 90), training_batch(64, 10), training_batch(64, 1437)
    (16, 23, 10, 64)
    """
    return max(1, min(batch_size, num_examples, max(SMALL_SPLIT_MIN_BATCH, math.ceil(num_examples / 4))))


def passes_per_epoch(num_examples, batch_size, epochs, min_steps, drop_remainder=False):
    """Passes over the training split per epoch so that `epochs` epochs hold at least `min_steps` steps.

    One pass per epoch whenever the epochs already hold `min_steps` steps (every large set);
    a small set's epochs repeat the split instead of adding epochs, so that early stopping's
    patience, the validation passes and the history stay counted in `epochs`.

    Args:
        num_examples: examples in the training split.
        batch_size: the global batch.
        epochs: the planned epochs.
        min_steps: the smallest total number of optimizer steps; 0 for one pass per epoch.
        drop_remainder: whether the last partial batch of the (repeated) epoch is dropped.

    Example:
    >>> passes_per_epoch(720, 64, 20, 1000), passes_per_epoch(45, 64, 20, 1000), passes_per_epoch(50000, 64, 20, 1000)
    (5, 72, 1)
    """
    if min_steps <= 0 or epochs * steps_per_epoch(num_examples, batch_size, drop_remainder) >= min_steps:
        return 1
    steps_wanted = math.ceil(min_steps / epochs)
    return max(1, math.ceil(steps_wanted * batch_size / num_examples))


def steps_per_execution(configured, steps_in_epoch, multi_worker=False):
    """The steps per compiled call: `train.steps_per_execution`, capped at the steps of an epoch.

    Keras runs whole executions, so 16 steps per call on a 1-step epoch would report 16/1;
    capping keeps the speed gain wherever an epoch has more steps than that. Multi-worker
    runs use 1: the multi-worker fix (`kerasdl.distribute.keras_patch`) was checked with one
    step per call, and several fail inside Keras' distributed train function.

    Example:
    >>> steps_per_execution(16, 5), steps_per_execution(16, 23), steps_per_execution(16, 23, multi_worker=True)
    (5, 16, 1)
    """
    if multi_worker:
        return 1
    return max(1, min(configured, steps_in_epoch))
