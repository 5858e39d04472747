"""The standard callback set and the progress bar, built from the training config.

Defaults are `kerasdl.config.TrainConfig`'s (read, never restated). The optimizer and the
learning-rate schedules are `kerasdl.optim`.
"""

import glob
import os

import keras

from kerasdl.config import TrainConfig
from kerasdl.console import interrupt_requested
from kerasdl.optim import step_decay
from kerasdl.rundir import HISTORY_FILE

BEST_CHECKPOINT = "best.keras"
# ModelCheckpoint's file until its epoch is committed; Keras fills in the epoch (counted from 1).
PENDING_CHECKPOINT = ".pending-best-{epoch}.keras"


def make_callbacks(
    run_dir,
    lr_schedule=TrainConfig.lr_schedule,
    learning_rate=TrainConfig.learning_rate,
    step_size=TrainConfig.step_size,
    step_gamma=TrainConfig.step_gamma,
    plateau_factor=TrainConfig.plateau_factor,
    plateau_patience=TrainConfig.plateau_patience,
    early_stopping_patience=TrainConfig.early_stopping_patience,
    profile=TrainConfig.profile,
    backup_dir=None,
    cluster=None,
    initial_state=None,
    verbose=1,
):
    """Returns the standard callbacks, writing into `run_dir`.

    InterruptCheck first (a Ctrl-C that TensorFlow swallowed still stops the run),
    EarlyStopping on val_loss (restoring the best weights), ModelCheckpoint of the best
    model (`checkpoints/best.keras`), the LR callback for "step"/"plateau", TensorBoard
    (with a profiler trace of batches 5-10 when `profile`), CSVLogger (`history.csv`,
    appended so a resumed run keeps its earlier epochs), TerminateOnNaN, and
    BackupAndRestore (`kerasdl.distribute.backup_and_restore`: safe with several workers,
    and it saves and restores the best scores of EarlyStopping, ModelCheckpoint and
    ReduceLROnPlateau), so that a killed run started again resumes from the last completed
    epoch with the best model over all epochs.

    Args:
        run_dir: where this worker writes (the run directory, or a non-chief worker's
            temporary one).
        lr_schedule, learning_rate, step_size, step_gamma, plateau_factor, plateau_patience:
            the learning-rate policy (see `kerasdl.config.TrainConfig`).
        early_stopping_patience: epochs without a better val_loss before stopping.
        profile: record a profiler trace.
        backup_dir: the backup directory every worker reads; `run_dir/backup` by default.
        cluster: the `ClusterInfo` of `kerasdl.distribute.make_strategy`; one process by default.
        initial_state: the tracked callbacks' state when there is no backup yet (a second
            phase continuing the first one's best score; see `backup_and_restore`).
        verbose: messages from the LR callbacks.

    Example:
    >>> callbacks = make_callbacks("runs/cnn/20260101-000000")
    """
    from kerasdl import distribute

    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    os.makedirs(checkpoint_dir, exist_ok=True)
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=early_stopping_patience, restore_best_weights=True, verbose=1)
    # Written under an epoch's pending name, renamed to best.keras when BackupAndRestore commits
    # that epoch (`commit_checkpoint`): a kill never leaves half a file, nor an epoch's
    # checkpoint that the resumed run's history and best score do not know.
    checkpoint = keras.callbacks.ModelCheckpoint(os.path.join(checkpoint_dir, PENDING_CHECKPOINT), monitor="val_loss", save_best_only=True)
    callbacks = [
        InterruptCheck(),
        keras.callbacks.TerminateOnNaN(),
        early_stopping,
        checkpoint,
        keras.callbacks.CSVLogger(os.path.join(run_dir, HISTORY_FILE), append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), profile_batch=(5, 10) if profile else 0),
    ]
    tracked = [early_stopping, checkpoint]
    if lr_schedule == "step":
        callbacks.append(keras.callbacks.LearningRateScheduler(step_decay(learning_rate, step_size, step_gamma), verbose=0))
    elif lr_schedule == "plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=plateau_factor, patience=plateau_patience, verbose=verbose)
        callbacks.append(plateau)
        tracked.append(plateau)
    # Last, so that an epoch counts as done only after its history row, checkpoint and the
    # others' state are written: a run killed in between redoes that epoch rather than losing it.
    callbacks.append(distribute.backup_and_restore(
        backup_dir or os.path.join(run_dir, "backup"), cluster or distribute.ClusterInfo(strategy="default"),
        tracked=tracked, initial_state=initial_state, on_commit=lambda epoch: commit_checkpoint(checkpoint_dir, epoch),
    ))
    return callbacks


def commit_checkpoint(checkpoint_dir, epoch):
    """Makes `best.keras` the checkpoint of committed epoch `epoch` (1-based, as Keras names files), if one was written.

    Pending checkpoints of any other epoch belong to epochs that were never committed (a
    kill came between their write and their backup) and are removed.

    Example:
    >>> commit_checkpoint("runs/mlp/1/checkpoints", 3)  # .pending-best-3.keras -> best.keras
    """
    pending = os.path.join(checkpoint_dir, PENDING_CHECKPOINT.format(epoch=epoch))
    if os.path.exists(pending):
        os.replace(pending, os.path.join(checkpoint_dir, BEST_CHECKPOINT))
    for leftover in glob.glob(os.path.join(checkpoint_dir, PENDING_CHECKPOINT.format(epoch="*"))):
        os.remove(leftover)


def progress_bar(steps_per_epoch):
    """Returns Keras' progress bar, counting the real steps of an epoch of `steps_per_epoch`.

    With several steps per compiled call, Keras reports the last step of every call as if
    the call were full, so a 23-step epoch at 16 steps per call showed "32/23" (and a
    negative time left) before "23/23". This bar caps the count at the epoch's steps, and
    knows the total even when the dataset's length is unknown to Keras.

    Example:
    >>> model.fit(dataset, callbacks=[progress_bar(23)])
    """
    return StepCountingProgbar(steps_per_epoch)


class StepCountingProgbar(keras.callbacks.ProgbarLogger):
    """`keras.callbacks.ProgbarLogger` whose count never passes the steps of an epoch (see `progress_bar`).

    Args:
        steps_per_epoch: the optimizer steps in one training epoch.
    """

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch

    def set_params(self, params):
        super().set_params(params)
        if self.target is None:
            self.target = self.steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(min(batch, self.target - 1) if self.target else batch, logs)


class InterruptCheck(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the next batch once Ctrl-C was pressed, if it was lost.

    A Ctrl-C landing inside TensorFlow's eager fast path is swallowed there (see
    `kerasdl.console.catch_interrupts`); the handler remembers it, and this callback raises it
    again at the end of the next batch or epoch, so the command stops and says how to resume.
    Keras has no callback for this: a callback is the only hook inside `fit`'s loop.

    Example:
    >>> model.fit(dataset, callbacks=[InterruptCheck()])
    """

    # It only reads a flag, so Keras may run it on its callback thread (JAX): a KeyboardInterrupt
    # raised there reaches `fit` at the next batch, through the future Keras collects. Without
    # this, its batch hooks alone would turn off Keras' asynchronous dispatch and pull every
    # batch's logs to Python (a device sync per step) in fits with no other batch callback (the folds).
    async_safe = True

    def _check(self, *unused, **unused_keywords):
        if interrupt_requested():
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_predict_batch_end = on_epoch_end = _check
