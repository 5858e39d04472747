"""The fit phases of a run: training, then fine-tuning for a model with a fine-tuning hook (ResNet50).

Each phase is one `fit` with its own BackupAndRestore folder (`backup/`, `backup_finetune/`).
Every finished phase is recorded in the run directory (`kerasdl.rundir.record_phase`: its
epochs, its weights, its best scores), so that a run killed in phase 2 resumes inside
phase 2, and one killed after its last epoch only evaluates and writes its artifacts. Phase 2 continues phase 1's best score: its
EarlyStopping and ModelCheckpoint start from phase 1's best, so `model.keras` is the best
over all epochs of both phases.
"""

import os
import time

import numpy as np

from kerasdl import rundir
from kerasdl.data.pipeline import fit_arguments


def plan_phases(run):
    """The phases of `run`: `[{index, name, epochs_planned, learning_rate, lr_schedule, backup}]`."""
    config, entry = run.config, run.entry
    phases = [{
        "index": 1, "name": "train" if entry.set_trainable_blocks is None else "head (frozen base)",
        "epochs_planned": run.selected_epochs or config.train.epochs, "learning_rate": run.learning_rate, "lr_schedule": config.train.lr_schedule, "backup": "backup",
    }]
    if entry.set_trainable_blocks is not None and config.finetune.blocks > 0 and config.finetune.epochs > 0:
        phases.append({
            "index": 2, "name": f"fine-tune (top {config.finetune.blocks} blocks)", "epochs_planned": config.finetune.epochs,
            "learning_rate": config.finetune.learning_rate, "lr_schedule": "constant", "backup": "backup_finetune",
        })
    return phases


def fit_phases(run):
    """Runs (or, after a restart, skips and restores) each phase; fills `run.phases` for the report."""
    completed = {phase["index"]: phase for phase in run.completed_phases}
    planned = plan_phases(run)
    start_epoch, seed = 0, None
    run.examples_trained, run.phases = 0, []
    for phase in planned:
        if phase["index"] > 1:
            _enter_finetuning(run, phase)
        done = completed.get(phase["index"])
        if done is not None:
            rundir.restore_phase_weights(run.run_dir, done, run.train_model)
            epochs, state = done["epochs"], dict(done["callbacks"])
            state["EarlyStopping"] = dict(state["EarlyStopping"], best_weights_file=os.path.join(run.run_dir, done["weights"]))
        else:
            epochs, state = _fit(run, phase, start_epoch, seed)
            # The last phase too: Keras deletes the backup when a fit ends, and a run killed
            # before its artifacts are written must not train again from the first epoch.
            if run.cluster.is_chief:
                rundir.record_phase(run.run_dir, {"index": phase["index"], "name": phase["name"], "epochs": epochs, "callbacks": _without_weights(state)}, run.train_model)
        run.phases.append({
            "name": phase["name"], "epochs": epochs, "trainable_parameters": _trainable_parameters(run.model), "learning_rate": phase["learning_rate"],
        })
        start_epoch, seed = start_epoch + epochs, state
    return run.phases


def _fit(run, phase, start_epoch, seed):
    """One `fit`; returns `(epochs of this phase, the best scores at its end)` for the next phase to continue."""
    from kerasdl.callbacks import make_callbacks, progress_bar

    train = run.config.train
    callbacks = make_callbacks(
        run.write_dir, lr_schedule=phase["lr_schedule"], learning_rate=phase["learning_rate"], step_size=train.step_size,
        step_gamma=train.step_gamma, plateau_factor=train.plateau_factor, plateau_patience=train.plateau_patience,
        early_stopping_patience=train.early_stopping_patience, profile=train.profile,
        backup_dir=os.path.join(run.run_dir, phase["backup"]), cluster=run.cluster, initial_state=seed,
    )
    # The caller's callbacks go first: a callback that fills in the epoch's scores
    # (kerasdl.selection) must run before early stopping reads them; BackupAndRestore stays last.
    callbacks[0:0] = run.extra_callbacks

    from kerasdl.quality import gradient_logger

    logger = gradient_logger(run, phase)
    if logger is not None:
        # After EarlyStopping and TerminateOnNaN (it measures the epoch they end the fit on),
        # before BackupAndRestore (make_callbacks' last: an epoch is done once its rows are written).
        callbacks.insert(len(callbacks) - 1, logger)
    callbacks.append(progress_bar(run.steps))
    if phase["index"] > 1:
        run.log(f"phase {phase['index']}: {phase['name']}, {_trainable_parameters(run.model):,} trainable parameters")
    # Keras keeps the epoch a BackupAndRestore restored on the model, and would start the next
    # phase's fit there too.
    run.train_model._initial_epoch = None
    fit_started = time.time()
    history = run.train_model.fit(
        **fit_arguments(run.data["train"]), validation_data=run.data["validation"], epochs=start_epoch + phase["epochs_planned"],
        initial_epoch=start_epoch, callbacks=callbacks, verbose=train.verbose,
    )
    run.fit_seconds += time.time() - fit_started
    run.examples_trained += len(history.epoch) * run.splits.train.size * run.passes_per_epoch
    end = history.epoch[-1] + 1 if history.epoch else max(start_epoch, rundir.saved_epoch(os.path.join(run.run_dir, phase["backup"])))
    early_stopping, checkpoint = (next(callback for callback in callbacks if type(callback).__name__ == kind) for kind in ("EarlyStopping", "ModelCheckpoint"))
    state = {
        # The next phase starts counting patience afresh; its best to beat is this phase's best,
        # whose weights the model holds now (EarlyStopping restored them).
        "EarlyStopping": {"best": _number(early_stopping.best), "best_epoch": early_stopping.best_epoch, "wait": 0, "best_weights": run.train_model.get_weights()},
        "ModelCheckpoint": {"best": _number(checkpoint.best)},
    }
    return end - start_epoch, state


def _enter_finetuning(run, phase):
    """Unfreezes the top blocks and compiles again: Keras reads the trainable flags when it compiles."""
    from kerasdl import optim
    from kerasdl.train import compile_model

    config, train = run.config, run.config.train
    with run.strategy.scope():
        run.entry.set_trainable_blocks(run.model, config.finetune.blocks)
        compile_model(run, optim.make_optimizer(
            train.optimizer, phase["learning_rate"], train.weight_decay, train.clipnorm, "constant", 0, phase["epochs_planned"], run.steps,
        ))


def _without_weights(state):
    return {kind: {key: value for key, value in values.items() if key != "best_weights"} for kind, values in state.items()}


def _number(value):
    return None if value is None else float(value)


def _trainable_parameters(model):
    return int(sum(np.prod(variable.shape) for variable in model.trainable_weights))
