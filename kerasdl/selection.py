"""Choosing the epoch by k-fold cross-validation when the validation split is too small to trust.

A validation split of 5 series (GunPoint at 10 %) or 10 (ECG200) cannot guide early
stopping: one example is 10-20 points of accuracy, and the run stops on noise. Below
`train.min_validation_examples`, `kerasdl.train` therefore does this instead:

1. the training and validation splits are pooled, and cut into `train.cross_validation_folds`
   stratified folds (scikit-learn's `StratifiedKFold`, seeded);
2. one model per fold trains on the other folds, all in step, epoch by epoch (each with the
   run's optimizer, schedule and `train.min_steps` lengthening), and after each epoch the
   validation loss and accuracy are averaged over the folds: every pooled example is
   validated once, so the curve rests on the whole pool. Early stopping (the run's
   patience) watches that mean curve, and the chosen epoch is its lowest loss;
3. the run's model then trains on the whole pool for exactly that many epochs (the
   schedule planned as for the folds), and each epoch's log gets the folds' mean scores
   as its `val_loss`/`val_accuracy` (`CrossValidatedScores`). Early stopping and the
   best-model checkpoint read them as usual, so early stopping's restore-best picks the
   chosen epoch, which is the last one trained: the saved model is the pool-trained model
   at the cross-validated best epoch, and `history.csv` shows the cross-validated curve.

The choice is saved in the run directory (`cross_validation.json`), so a resumed run does not
redo it. The vocabulary of a text model comes from the training split, as in any run, so the
folds see words (not labels) of their held-out part. Multi-worker runs keep the plain split.

Example:
>>> choice = cross_validate(run)   # inside kerasdl.train, when the validation split is small
>>> choice["epochs"], len(choice["curve"])
"""

import json
import os

import keras
import numpy as np

from kerasdl.callbacks import InterruptCheck
from kerasdl.console import hide_retracing_warnings
from kerasdl.data.pipeline import fit_arguments, make_pipeline, take_examples, training_input
from kerasdl.data.source import Split

RESULT_FILE = "cross_validation.json"


def needed(run):
    """Whether `run` chooses its epoch by cross-validation (a small validation split, one process, folds to make)."""
    train = run.config.train
    return (
        run.splits.validation.size < train.min_validation_examples
        and train.cross_validation_folds >= 2
        and not run.multi_worker
        and run.entry.set_trainable_blocks is None
    )


def apply(run):
    """Chooses the epoch (or reads the saved choice) and turns `run` into the pool-trained final fit.

    After it: `run.splits.train` is the pool, `run.data` trains on it without a validation
    split, `run.selected_epochs` is the chosen epoch, and `run.extra_callbacks` starts with
    the callback that logs the folds' scores.
    """
    from kerasdl import optim
    from kerasdl.train import compile_model

    path = os.path.join(run.run_dir, RESULT_FILE)
    pool_x, pool_y = _pool(run)
    if os.path.isfile(path):
        with open(path) as handle:
            choice = json.load(handle)
        run.log(f"cross-validation: epoch {choice['epochs']} chosen earlier ({path})")
    else:
        choice = cross_validate(run, pool_x, pool_y)
        partial = f"{path}.partial-{os.getpid()}"
        with open(partial, "w") as handle:
            json.dump(choice, handle, indent=2)
        os.replace(partial, path)
    pool = Split.from_arrays(pool_x, pool_y)
    run.splits.train = pool
    passes, steps = _steps(run, pool.size)
    run.passes_per_epoch, run.steps = passes, steps
    run.steps_per_execution = optim.steps_per_execution(run.config.train.steps_per_execution, steps)
    train = run.config.train
    with run.strategy.scope():
        # Fresh weights (the model has not trained) and a schedule for the pool's steps.
        keras.utils.set_random_seed(train.seed)
        compile_model(run, optim.make_optimizer(
            train.optimizer, run.learning_rate, train.weight_decay, train.clipnorm, train.lr_schedule, train.warmup_epochs, train.epochs, steps,
        ))
    run.data["train"] = _pipeline(run, pool, passes, training=True)
    run.data["validation"] = None
    run.selected_epochs = choice["epochs"]
    run.extra_callbacks.insert(0, CrossValidatedScores(choice["curve"]))
    run.log(
        f"training on all {pool.size} train+validation examples for the cross-validated {choice['epochs']} epochs "
        f"(val_loss/val_accuracy in the log are the {choice['folds']} folds' means)"
    )
    return choice


def cross_validate(run, pool_x, pool_y):
    """Trains one model per fold in step and returns the chosen epoch with the folds' mean curve.

    Returns:
        `{"epochs", "folds", "examples", "curve": [{"val_loss", "val_accuracy"} per epoch], "per_fold": [[val_loss...]...]}`.
    """
    from sklearn.model_selection import StratifiedKFold

    from kerasdl import optim
    from kerasdl.train import _build_model, compile_for_training

    hide_retracing_warnings()
    config = run.config
    train = config.train
    folds = min(train.cross_validation_folds, int(np.bincount(pool_y).min()))
    if folds < 2:
        folds = 2  # StratifiedKFold warns about rare classes and still splits.
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=train.seed)
    run.log(
        f"the validation split holds {run.splits.validation.size} examples (under train.min_validation_examples="
        f"{train.min_validation_examples}): choosing the epoch by {folds}-fold cross-validation on all {len(pool_y)} train+validation examples"
    )
    members = []
    for fold, (train_index, validation_index) in enumerate(splitter.split(np.zeros(len(pool_y)), pool_y)):
        fold_train = Split.from_arrays(pool_x[train_index], pool_y[train_index])
        fold_validation = Split.from_arrays(pool_x[validation_index], pool_y[validation_index])
        passes, steps = _steps(run, fold_train.size)
        keras.utils.set_random_seed(train.seed)
        with run.strategy.scope():
            model = _build_model(run)
            trained = model if run.tokenizer is None else run.entry.text.pipeline_split(model)[0]
            compile_for_training(
                trained,
                optim.make_optimizer(
                    train.optimizer, run.learning_rate, train.weight_decay, train.clipnorm, train.lr_schedule, train.warmup_epochs, train.epochs, steps,
                ),
                optim.steps_per_execution(train.steps_per_execution, steps), train.jit_compile,
            )
        members.append((trained, _pipeline(run, fold_train, passes, training=True), _pipeline(run, fold_validation, 1, training=False)))
    losses, accuracies, curve = [[] for _ in members], [[] for _ in members], []
    best_epoch, best_loss = 0, float("inf")
    for epoch in range(train.epochs):
        for index, (model, fold_train, fold_validation) in enumerate(members):
            history = model.fit(
                **fit_arguments(fold_train), validation_data=fold_validation, initial_epoch=epoch, epochs=epoch + 1, verbose=0,
                callbacks=[InterruptCheck()],
            )
            losses[index].append(float(history.history["val_loss"][-1]))
            accuracies[index].append(float(history.history["val_accuracy"][-1]))
        mean_loss = float(np.mean([fold[-1] for fold in losses]))
        curve.append({"val_loss": mean_loss, "val_accuracy": float(np.mean([fold[-1] for fold in accuracies]))})
        run.log(f"cross-validation epoch {epoch + 1}: mean val_loss {mean_loss:.4f}, val_accuracy {curve[-1]['val_accuracy']:.4f}")
        if not np.isfinite(mean_loss):
            break
        if mean_loss < best_loss:
            best_epoch, best_loss = epoch, mean_loss
        elif epoch - best_epoch >= train.early_stopping_patience:
            break
    chosen = best_epoch + 1
    run.log(f"cross-validation chose epoch {chosen} (mean val_loss {best_loss:.4f}, val_accuracy {curve[best_epoch]['val_accuracy']:.4f})")
    return {"epochs": chosen, "folds": folds, "examples": int(len(pool_y)), "curve": curve[:chosen], "per_fold": losses}


def _pool(run):
    """Every training and validation example in memory: `(x, y)` (x a list of strings for text)."""
    train_x, train_y = take_examples(run.splits.train, run.splits.train.size)
    validation_x, validation_y = take_examples(run.splits.validation, run.splits.validation.size)
    if isinstance(train_x, list):
        return np.asarray(train_x + validation_x, dtype=object), np.concatenate([train_y, validation_y])
    return np.concatenate([train_x, validation_x]), np.concatenate([train_y, validation_y])


def _steps(run, size):
    """`(passes per epoch, steps per epoch)` of a training split of `size` examples under `train.min_steps`."""
    from kerasdl import optim

    train = run.config.train
    batch = optim.training_batch(run.global_batch, size)
    passes = optim.passes_per_epoch(size, batch, train.epochs, train.min_steps)
    return passes, optim.steps_per_epoch(size * passes, batch)


def _pipeline(run, split, passes, training):
    from kerasdl import optim

    config = run.config
    batch = optim.training_batch(run.global_batch, split.size) if training else run.global_batch
    options = dict(seed=config.train.seed, cache=config.data.cache, cache_limit_mb=config.data.cache_limit_mb, shuffle_buffer=config.data.shuffle_buffer, tokenizer=run.tokenizer)
    if training:
        return training_input(split, batch, augmenter=run.augmenter, passes=passes, **options)
    return make_pipeline(split, batch, training=False, **options)


class CrossValidatedScores(keras.callbacks.Callback):
    """Puts the folds' mean `val_loss`/`val_accuracy` of each epoch into the final fit's logs.

    First in the callback list, so that early stopping, the checkpoint and the CSV log
    read the cross-validated scores as the epoch's validation scores.

    Args:
        curve: `[{"val_loss", "val_accuracy"}]` per epoch, as `cross_validate` returns it.
    """

    def __init__(self, curve):
        super().__init__()
        self.curve = list(curve)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and epoch < len(self.curve):
            logs.update(self.curve[epoch])
