"""What each worker writes where: per-worker write directories, their cleanup, and the backup override.

Every worker runs the same saving code (saving reads synchronized variables, a collective
every worker joins), but only the chief's files are kept: the others write to temporary
directories that are removed when they finish (or at exit).
"""

import atexit
import json
import os
import shutil
import tempfile

# Temporary write directories of non-chief workers, removed by `cleanup_write_dir` or at exit.
_TEMPORARY_DIRS = []


def write_dir_for(path, info):
    """Returns where this worker writes what belongs at `path` (run dir, checkpoints, logs).

    The chief writes to `path` itself. Other workers must still run the same saving code
    (saving reads synchronized variables, which is a collective every worker joins), so
    they write to a fresh temporary directory of their own, removed by
    `cleanup_write_dir` (or at exit). This is the standard TF/Keras multi-worker pattern.

    Args:
        path: the real destination (a directory).
        info: the `ClusterInfo` from `make_strategy`.

    Example:
    >>> write_dir_for("runs/mlp/1", ClusterInfo(strategy="default"))
    'runs/mlp/1'
    """
    if info.is_chief:
        return path
    base = tempfile.mkdtemp(prefix=f"kerasdl-{info.task_type}-{info.task_index}-")
    _TEMPORARY_DIRS.append(base)
    return os.path.join(base, os.path.basename(os.path.normpath(path)) or "write")



def cleanup_write_dir(write_dir, path):
    """Removes a non-chief worker's temporary `write_dir`; does nothing when it is `path`.

    Args:
        write_dir: what `write_dir_for(path, info)` returned.
        path: the real destination passed to `write_dir_for`.

    Example:
    >>> cleanup_write_dir("runs/mlp/1", "runs/mlp/1")
    """
    if os.path.abspath(write_dir) == os.path.abspath(path):
        return
    for base in list(_TEMPORARY_DIRS):
        if os.path.abspath(write_dir).startswith(os.path.abspath(base) + os.sep) or os.path.abspath(write_dir) == os.path.abspath(base):
            shutil.rmtree(base, ignore_errors=True)
            _TEMPORARY_DIRS.remove(base)
            return
    shutil.rmtree(write_dir, ignore_errors=True)


def _remove_temporary_dirs():
    for base in _TEMPORARY_DIRS:
        shutil.rmtree(base, ignore_errors=True)


atexit.register(_remove_temporary_dirs)


def backup_and_restore(backup_dir, info, tracked=(), initial_state=None, **kwargs):
    """Returns a BackupAndRestore callback that is safe with several workers and keeps the best scores.

    Keras 3's `BackupAndRestore` lets every worker write the same files, which races on
    a shared directory and can leave a half-written file when a worker is killed. Here
    every worker *reads* `backup_dir` (which must be the same directory for all: a
    shared filesystem, or the same path on one machine, as the TF multi-worker guide
    asks), but only the chief's writes land there; the others write to a temporary
    directory (saving is a collective they must join). Files are written under a
    temporary name and renamed, so a kill leaves the previous complete backup.

    Keras' backup holds the weights and the epoch only, so a resumed EarlyStopping or
    ModelCheckpoint would forget its best score and `model.keras` would be the best since
    the restart. The `tracked` callbacks' state (`callback_state`) is saved in the same
    metadata file, with EarlyStopping's best weights beside it, and restored with the
    weights; so the resumed run continues as if it had never stopped.

    Args:
        backup_dir: the directory every worker can see.
        info: the `ClusterInfo` from `make_strategy`.
        tracked: callbacks whose state is saved and restored (EarlyStopping,
            ModelCheckpoint, ReduceLROnPlateau); they must come before this callback.
        initial_state: the state to give `tracked` when there is no backup yet (a second
            training phase that continues the first phase's best score), or None.
        **kwargs: `save_freq`, `double_checkpoint`, `delete_checkpoint`, as in Keras.

    Example:
    >>> callback = backup_and_restore("runs/mlp/1/backup", ClusterInfo(strategy="default"))
    """
    import keras

    # Named as Keras' class: it is Keras' callback with atomic, per-worker writes and tracked state.
    class BackupAndRestore(keras.callbacks.BackupAndRestore):
        def __init__(self):
            super().__init__(backup_dir, **kwargs)
            self._write_dir = write_dir_for(backup_dir, info)

        def _save_model(self):
            os.makedirs(self._write_dir, exist_ok=True)
            weights_path = os.path.join(self._write_dir, "latest.weights.h5")
            metadata_path = os.path.join(self._write_dir, "training_metadata.json")
            if self.double_checkpoint:
                for path in (weights_path, metadata_path):
                    if os.path.exists(path):
                        shutil.copyfile(path, f"{path}.bkp")
            partial_weights = os.path.join(self._write_dir, f"partial-{os.getpid()}.weights.h5")
            self.model.save_weights(partial_weights, overwrite=True)
            os.replace(partial_weights, weights_path)
            metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
            if tracked:
                metadata["callbacks"] = callback_state(tracked, self._write_dir)
            _write_json(metadata_path, metadata)
            if tracked:
                keep = {state.get("best_weights_file") for state in metadata["callbacks"].values()}
                for name in os.listdir(self._write_dir):
                    if name.startswith(BEST_WEIGHTS_PREFIX) and name not in keep:
                        os.remove(os.path.join(self._write_dir, name))

        def _load_model(self):
            super()._load_model()
            if not tracked:
                return
            state = initial_state
            if os.path.exists(self._training_metadata_path):
                with open(self._training_metadata_path) as handle:
                    state = json.load(handle).get("callbacks", initial_state)
            if state:
                restore_callback_state(tracked, state, self.backup_dir)

        def on_train_end(self, logs=None):
            if info.is_chief:
                super().on_train_end(logs)
            else:
                cleanup_write_dir(self._write_dir, backup_dir)

    return BackupAndRestore()


# What a callback must remember across a restart, by Keras class name.
RESUMABLE_ATTRIBUTES = {
    "EarlyStopping": ("best", "best_epoch", "wait"),
    "ModelCheckpoint": ("best",),
    "ReduceLROnPlateau": ("best", "wait", "cooldown_counter"),
}
BEST_WEIGHTS_PREFIX = "best-weights-epoch-"


def callback_state(callbacks, folder):
    """Returns `{class name: state}` of `callbacks`; EarlyStopping's best weights go to `folder`.

    The best weights are written (atomically) only when they changed, as
    `best-weights-epoch-N.npz` (N = the best epoch), and the state names the file.

    Example:
    >>> callback_state([keras.callbacks.ModelCheckpoint("best.keras")], "backup")
    {'ModelCheckpoint': {'best': inf}}
    """
    import numpy as np

    states = {}
    for callback in callbacks:
        kind = _resumable_kind(callback)
        state = {name: _plain_number(getattr(callback, name, None)) for name in RESUMABLE_ATTRIBUTES[kind]}
        if kind == "EarlyStopping" and getattr(callback, "best_weights", None) is not None:
            name = f"{BEST_WEIGHTS_PREFIX}{callback.best_epoch}.npz"
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                partial = os.path.join(folder, f"partial-{os.getpid()}.npz")
                np.savez(partial, *callback.best_weights)
                os.replace(partial, path)
            state["best_weights_file"] = name
        states[kind] = state
    return states


def restore_callback_state(callbacks, states, folder):
    """Gives `callbacks` the state `callback_state` saved (best weights read from `folder`)."""
    import numpy as np

    for callback in callbacks:
        kind = _resumable_kind(callback)
        state = states.get(kind)
        if not state:
            continue
        for name in RESUMABLE_ATTRIBUTES[kind]:
            if state.get(name) is not None:
                setattr(callback, name, state[name])
        weights_file = state.get("best_weights_file")
        if state.get("best_weights") is not None and getattr(callback, "restore_best_weights", False):
            callback.best_weights = state["best_weights"]  # In memory: a phase continuing in the same process.
        elif weights_file and getattr(callback, "restore_best_weights", False):
            with np.load(os.path.join(folder, weights_file)) as arrays:
                callback.best_weights = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]


def _resumable_kind(callback):
    for klass in type(callback).__mro__:
        if klass.__name__ in RESUMABLE_ATTRIBUTES:
            return klass.__name__
    raise ValueError(f"{type(callback).__name__} has no resumable state; track one of {', '.join(RESUMABLE_ATTRIBUTES)}")


def _plain_number(value):
    """JSON-ready: NumPy scalars become Python numbers (inf stays inf, as JSON's Infinity)."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    return value.item() if hasattr(value, "item") else float(value)


def _write_json(path, value):
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w") as handle:
        json.dump(value, handle)
    os.replace(partial, path)
