"""The standard callback set and the optimizer, built from the training config."""

import math
import os

import keras


def make_optimizer(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4, clipnorm=None, lr_schedule="cosine", warmup_epochs=1, epochs=20, steps_per_epoch=1):
    """Returns the optimizer; a cosine schedule with warmup is built into its learning rate.

    Args:
        optimizer: "adam" or "adamw".
        learning_rate: the peak learning rate.
        weight_decay: decoupled weight decay (adamw only).
        clipnorm: clip each gradient to this norm; None disables clipping.
        lr_schedule: "cosine" puts a warmup + cosine decay schedule into the optimizer,
            "linear" a warmup + linear decay to zero (BERT's schedule); the others ("step", "plateau", "constant") use a constant rate that a callback
            may change.
        warmup_epochs: linear warmup length for "cosine".
        epochs: the planned number of epochs (the cosine decay length).
        steps_per_epoch: batches per epoch.

    Example:
    >>> make_optimizer("adamw", 1e-3, lr_schedule="cosine", epochs=10, steps_per_epoch=20)
    """
    rate = learning_rate
    if lr_schedule == "linear":
        rate = WarmupLinearDecay(learning_rate, warmup_steps=max(0, warmup_epochs) * steps_per_epoch, total_steps=max(1, epochs * steps_per_epoch))
    elif lr_schedule == "cosine":
        warmup_steps = max(0, warmup_epochs) * steps_per_epoch
        decay_steps = max(1, epochs * steps_per_epoch - warmup_steps)
        if warmup_steps:
            rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=learning_rate / 100, decay_steps=decay_steps,
                warmup_target=learning_rate, warmup_steps=warmup_steps, alpha=0.01,
            )
        else:
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.01)
    elif lr_schedule not in ("step", "plateau", "constant"):
        raise ValueError(f"train.lr_schedule must be cosine, linear, step, plateau or constant, got {lr_schedule!r}")
    if optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay, clipnorm=clipnorm)
    if optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate, clipnorm=clipnorm)
    raise ValueError(f"train.optimizer must be adam or adamw, got {optimizer!r}")


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


def step_decay(learning_rate, step_size, gamma):
    """The seed's StepLR as a function of the epoch: `lr * gamma ** (epoch // step_size)`."""

    def schedule(epoch, current_rate=None):
        return learning_rate * gamma ** (epoch // step_size)

    return schedule


def make_callbacks(run_dir, lr_schedule="cosine", learning_rate=1e-3, step_size=7, step_gamma=0.1, plateau_factor=0.5, plateau_patience=2, early_stopping_patience=5, profile=False, backup=None, verbose=1):
    """Returns the standard callbacks, writing into `run_dir`.

    EarlyStopping on val_loss (restoring the best weights), ModelCheckpoint of the best
    model (`checkpoints/best.keras`), the LR callback for "step"/"plateau", TensorBoard
    (with a profiler trace of batches 5-10 when `profile`), CSVLogger (`history.csv`,
    appended so a resumed run keeps its earlier epochs), TerminateOnNaN, and
    BackupAndRestore (`backup/`, or the `backup` callback given, e.g. the multi-worker-safe
    one from `kerasdl.distribute.backup_and_restore`), so that a killed run started again
    resumes from the last completed epoch.

    Args:
        run_dir: the run directory.
        lr_schedule, learning_rate, step_size, step_gamma, plateau_factor, plateau_patience:
            the learning-rate policy (see `kerasdl.config.TrainConfig`).
        early_stopping_patience: epochs without a better val_loss before stopping.
        profile: record a profiler trace.
        backup: the BackupAndRestore callback to use instead of one writing `run_dir/backup`.
        verbose: messages from the LR callbacks.

    Example:
    >>> callbacks = make_callbacks("runs/cnn/20260101-000000")
    """
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    os.makedirs(checkpoint_dir, exist_ok=True)
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=early_stopping_patience, restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoint_dir, "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), profile_batch=(5, 10) if profile else 0),
    ]
    if lr_schedule == "step":
        callbacks.append(keras.callbacks.LearningRateScheduler(step_decay(learning_rate, step_size, step_gamma), verbose=0))
    elif lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=plateau_factor, patience=plateau_patience, verbose=verbose))
    # Last, so that an epoch counts as done only after its history row and checkpoint are
    # written: a run killed in between redoes that epoch rather than losing its row.
    callbacks.append(backup or keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"), delete_checkpoint=True))
    return callbacks


def steps_per_epoch(num_examples, batch_size):
    return max(1, math.ceil(num_examples / batch_size))
