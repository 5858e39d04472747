"""Regression tests for what the kill -9 runs found (issue 10, "nothing lost or left half-written").

Each crash is injected in process, as a KeyboardInterrupt at the exact step (the real
SIGKILL runs are `test_fault_injection.py`); the same command is then run again:

1. `history.csv` held an epoch twice when a run was killed after the epoch's history row
   but before its backup (the epoch is trained again and its row appended again).
2. A run killed after its last epoch but before its artifacts trained again from epoch 0:
   Keras deletes the backup when `fit` ends, and only a phase that another followed was recorded.
3. `checkpoints/best.keras` was written in place: a kill inside the write left a broken file
   (or one of an epoch the resumed run never committed) that a later epoch might never replace.
4. The backup's weights were renamed into place before the metadata that names the epoch:
   a kill in between resumed one epoch early from weights one epoch ahead.
"""

import csv
import zipfile
from pathlib import Path

import keras
import numpy as np

from training.run import main

ARGUMENTS = ["mlp", "--epochs", "5", "--set", "train.keep_checkpoint=true", "--set", "train.verbose=2", "--set", "train.warmup_epochs=0", "--set", "train.early_stopping_patience=10"]


def run_dir_of(output):
    (run_dir,) = sorted((Path(output) / "mlp").iterdir())
    return run_dir


def history_epochs(run_dir):
    with open(run_dir / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def with_callbacks(monkeypatch, first=(), before_backup=()):
    """Adds callbacks to kerasdl's set: `first` before all (they see the logs first), `before_backup` just before BackupAndRestore (last)."""
    from kerasdl import callbacks

    original = callbacks.make_callbacks

    def patched(*arguments, **options):
        made = original(*arguments, **options)
        return [*first, *made[:-1], *before_backup, made[-1]]

    monkeypatch.setattr(callbacks, "make_callbacks", patched)


class Script(keras.callbacks.Callback):
    """Sets val_loss from a script (before EarlyStopping and ModelCheckpoint read it); keeps each epoch's weights."""

    def __init__(self, script, weights=None):
        super().__init__()
        self.script, self.weights = script, weights if weights is not None else {}

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.script[epoch]
        self.weights[epoch] = self.model.get_weights()


class Interrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of `epoch` (placed before BackupAndRestore: the epoch is not committed)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class FirstWeights(keras.callbacks.Callback):
    """Keeps the weights and the epoch a (resumed) fit starts from."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.seen is None:
            self.seen = (epoch, self.model.get_weights())


def test_history_holds_each_epoch_once_after_a_kill_before_the_backup(monkeypatch, tmp_path, capsys):
    arguments = [*ARGUMENTS, "--output", str(tmp_path)]
    with_callbacks(monkeypatch, before_backup=[Interrupt(epoch=2)])
    assert main(arguments) == 130
    run_dir = run_dir_of(tmp_path)
    assert history_epochs(run_dir) == [0, 1, 2]  # Epoch 2's row is written, its backup is not.
    monkeypatch.undo()
    assert main(arguments) == 0
    assert f"resuming {run_dir} from epoch 2" in capsys.readouterr().out
    assert history_epochs(run_dir) == [0, 1, 2, 3, 4]


def test_a_kill_after_the_last_epoch_does_not_train_again(monkeypatch, tmp_path, capsys):
    from kerasdl import outputs

    arguments = [*ARGUMENTS, "--output", str(tmp_path)]

    def interrupted(*arguments, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "save_run_examples", interrupted)  # model.keras is written; the rest is not.
    assert main(arguments) == 130
    run_dir = run_dir_of(tmp_path)
    capsys.readouterr()
    monkeypatch.undo()
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert f"resuming {run_dir} from epoch 5: every epoch is trained" in out
    assert "Epoch " not in out  # Keras trained nothing.
    assert history_epochs(run_dir) == [0, 1, 2, 3, 4]
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "RUNNING").exists() and not (run_dir / "progress.json").exists()


def test_best_checkpoint_is_never_half_written_nor_from_an_uncommitted_epoch(monkeypatch, tmp_path):
    arguments = [*ARGUMENTS, "--output", str(tmp_path)]
    first, weights = Script([1.0, 0.9, 0.8, 0.5, 0.4]), {}
    original = zipfile.ZipFile.writestr
    epoch = {"now": -1}

    class Epoch(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            epoch["now"] = index

    def writestr(archive, name, data, *rest, **options):
        if str(getattr(name, "filename", name)) == "model.weights.h5" and epoch["now"] == 3:
            raise KeyboardInterrupt  # Inside the best model's write: metadata and config are in, weights are not.
        return original(archive, name, data, *rest, **options)

    with_callbacks(monkeypatch, first=[first, Epoch()])
    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    assert main(arguments) == 130
    weights.update(first.weights)
    monkeypatch.undo()
    # After the restart epoch 3 is trained again and is no better than epoch 2 this time.
    with_callbacks(monkeypatch, first=[Script([1.0, 0.9, 0.8, 0.85, 0.9])])
    assert main(arguments) == 0
    run_dir = run_dir_of(tmp_path)
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    for expected, actual in zip(weights[2], best.get_weights()):
        np.testing.assert_array_equal(expected, actual)  # Epoch 2 (val_loss 0.8), committed before the kill.
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["best.keras"]


def test_backup_weights_and_epoch_are_committed_together(monkeypatch, tmp_path, capsys):
    from kerasdl.distribute import files

    arguments = [*ARGUMENTS, "--output", str(tmp_path)]
    script = Script([1.0, 0.9, 0.8, 0.7, 0.6])
    original = files._write_json

    def write_json(path, value):
        if path.endswith("training_metadata.json") and value["epoch"] == 3:
            raise KeyboardInterrupt  # Epoch 2's weights are on disk; the metadata still says epoch 2.
        return original(path, value)

    with_callbacks(monkeypatch, first=[script])
    monkeypatch.setattr(files, "_write_json", write_json)
    assert main(arguments) == 130
    monkeypatch.undo()
    start = FirstWeights()
    with_callbacks(monkeypatch, first=[Script(script.script)], before_backup=[start])
    assert main(arguments) == 0
    assert f"resuming {run_dir_of(tmp_path)} from epoch 2" in capsys.readouterr().out
    resumed_epoch, resumed_weights = start.seen
    assert resumed_epoch == 2
    for expected, actual in zip(script.weights[1], resumed_weights):
        np.testing.assert_array_equal(expected, actual)  # The weights at the end of epoch 1, not epoch 2's.


def test_trim_history_drops_uncommitted_and_torn_rows(tmp_path):
    from kerasdl.rundir import trim_history

    text = "epoch,loss,val_loss\r\n0,1.5,1.4\r\n1,1.2,1.1\r\n2,1.0,0.9\r\n3,0.8"
    (tmp_path / "history.csv").write_bytes(text.encode())
    trim_history(tmp_path, 2)
    # Kept byte for byte as CSVLogger writes (csv's excel dialect: CRLF).
    assert (tmp_path / "history.csv").read_bytes() == b"epoch,loss,val_loss\r\n0,1.5,1.4\r\n1,1.2,1.1\r\n"
    trim_history(tmp_path, 5)  # Nothing past the committed epochs: unchanged.
    assert (tmp_path / "history.csv").read_bytes() == b"epoch,loss,val_loss\r\n0,1.5,1.4\r\n1,1.2,1.1\r\n"
    trim_history(tmp_path / "absent", 1)  # A run without history yet.
