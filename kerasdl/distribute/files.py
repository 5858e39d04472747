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


def backup_and_restore(backup_dir, info, **kwargs):
    """Returns a BackupAndRestore callback that is safe with several workers.

    Keras 3's `BackupAndRestore` lets every worker write the same files, which races on
    a shared directory and can leave a half-written file when a worker is killed. Here
    every worker *reads* `backup_dir` (which must be the same directory for all: a
    shared filesystem, or the same path on one machine, as the TF multi-worker guide
    asks), but only the chief's writes land there; the others write to a temporary
    directory (saving is a collective they must join). Files are written under a
    temporary name and renamed, so a kill leaves the previous complete backup.

    Args:
        backup_dir: the directory every worker can see.
        info: the `ClusterInfo` from `make_strategy`.
        **kwargs: `save_freq`, `double_checkpoint`, `delete_checkpoint`, as in Keras.

    Example:
    >>> callback = backup_and_restore("runs/mlp/1/backup", ClusterInfo(strategy="default"))
    """
    import keras

    class MultiWorkerBackupAndRestore(keras.callbacks.BackupAndRestore):
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
            partial_metadata = f"{metadata_path}.partial-{os.getpid()}"
            with open(partial_metadata, "w") as handle:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, handle)
            os.replace(partial_metadata, metadata_path)

        def on_train_end(self, logs=None):
            if info.is_chief:
                super().on_train_end(logs)
            else:
                cleanup_write_dir(self._write_dir, backup_dir)

    return MultiWorkerBackupAndRestore()
