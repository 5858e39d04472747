"""Regression tests of the training command's robustness (issue 10, items 6-8).

- The top-level handler: user mistakes are one line, bugs keep their traceback.
- The progress bar counts real steps with several steps per call.
- Resume: a lock with an owner, phase 2 resumed inside phase 2, best scores kept across a restart.
Crashes are injected in process (a callback raising KeyboardInterrupt, as Ctrl-C would);
`test_training_run.py` kills a real process.
"""

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from kerasdl import rundir
from kerasdl.config import resolve_config
from training.run import main

QUIET = ["--set", "train.verbose=2", "--set", "train.warmup_epochs=0"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def only_run_dir(output, model):
    (run_dir,) = sorted((Path(output) / model).iterdir())
    return run_dir


def history_epochs(run_dir):
    with open(run_dir / "history.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


class CrashAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt when `epoch` begins (after the previous epoch was backed up)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def add_callbacks(monkeypatch, before=(), after=()):
    """Puts extra callbacks before (they see the logs first) and after kerasdl's own."""
    from kerasdl import callbacks

    original = callbacks.make_callbacks

    def patched(*arguments, **options):
        return [*before, *original(*arguments, **options), *after]

    monkeypatch.setattr(callbacks, "make_callbacks", patched)


# --- The top-level handler -------------------------------------------------------------------


def test_keras_version_guard_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}))
    monkeypatch.setattr(keras, "__version__", "3.16.1")
    assert main(["mlp", "--strategy", "multi_worker", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: kerasdl's multi-worker fit fix was checked with keras >=3.15,<3.16, but keras 3.16.1 is installed")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_path_errors_are_one_line_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["mlp", "--epochs", "1", "--output", str(blocker), *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {blocker}") and "not a directory" in err[0], err


def test_permission_error_is_one_line(monkeypatch, tmp_path, capsys):
    import kerasdl.train

    forbidden = str(tmp_path / "runs")

    def refuse(path, *arguments, **options):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(kerasdl.train.os, "makedirs", refuse)
    assert main(["mlp", "--epochs", "1", "--output", forbidden, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {forbidden}") and "permission denied" in err and err.count("\n") == 1, err


def test_a_bug_keeps_its_traceback_and_says_how_to_report_it(monkeypatch, tmp_path, capsys):
    import kerasdl.outputs

    def broken(run, started):
        return {}["test_accuracy"]

    monkeypatch.setattr(kerasdl.outputs, "evaluate", broken)
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path), *QUIET]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'test_accuracy'" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: this is a bug in kerasdl (KeyError") and "KERASDL_DEBUG=1" in last and "report" in last


def test_a_value_error_inside_keras_is_a_bug_not_a_user_error(monkeypatch, tmp_path, capsys):
    """Only kerasdl's own checks are user errors; a ValueError raised inside Keras keeps its traceback."""
    monkeypatch.setattr(keras.optimizers, "AdamW", lambda **options: keras.optimizers.get("no-such-optimizer"))
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path), *QUIET]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "keras/src/optimizers" in err and "this is a bug in kerasdl (ValueError" in err


def test_a_record_that_stops_decoding_is_named(monkeypatch, tmp_path, capsys):
    """A file that breaks after the data check (here: truncated once indexed) fails in one line naming it."""
    import kerasdl.train

    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (folder / label).mkdir(parents=True)
        for index in range(12):
            pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{index}.jpg", quality=90)
    victim = folder / "dogs" / "3.jpg"
    original = kerasdl.train.load_data

    def load_then_break(*arguments, **options):
        splits = original(*arguments, **options)
        victim.write_bytes(victim.read_bytes()[:40])  # A valid header, then nothing.
        return splits

    monkeypatch.setattr(kerasdl.train, "load_data", load_then_break)
    code = main(["cnn", "--data", str(folder), "--epochs", "1", "--batch-size", "8", "--output", str(tmp_path / "runs"), *QUIET])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {victim}: cannot be decoded (") and err.count("\n") == 1, err


def test_a_builder_rejecting_a_model_setting_is_one_line(tmp_path, capsys):
    """Keras refusing a `model.*` value the user set is the user's to fix, in one line naming the key."""
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path), "--set", "model.dropout_rate=2.0", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot build mlp with model.dropout_rate=2.0: Invalid value received for argument `rate`") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # Nothing half-written.


def test_decoder_errors_reaching_the_handler_are_one_line():
    import tensorflow as tf

    from kerasdl.console import user_error_message

    error = tf.errors.InvalidArgumentError(None, None, "jpeg::Uncompress failed. Invalid JPEG data or size.\n\t [[{{node DecodeJpeg}}]]")
    assert user_error_message(error).startswith("a data record could not be read (jpeg::Uncompress failed. Invalid JPEG data or size.)")
    assert user_error_message(tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2,3] vs. [3,2]")) is None


# --- The progress bar ------------------------------------------------------------------------


def progress_counts(text):
    return [(int(done), int(total)) for done, total in re.findall(r"(?<![\d.])(\d+)/(\d+) ", ANSI.sub("", text).replace("\r", "\n"))]


def test_progress_bar_never_counts_past_the_end(tmp_path, capsys):
    # 1,439 training digits in batches of 64: 23 steps, run 16 per call.
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path / "a"), "--set", "train.verbose=1"]) == 0
    counts = progress_counts(capsys.readouterr().out)
    assert counts and all(done <= total for done, total in counts), counts
    assert (23, 23) in counts and {total for _, total in counts} == {23}
    # Fewer steps per epoch than per call: a batch of 2,000 becomes a quarter of the 1,439
    # digits (optim.training_batch: 360), 4 steps, and steps per call are capped to 4
    # ("4/4", not "16/4").
    assert main(["mlp", "--epochs", "1", "--batch-size", "2000", "--output", str(tmp_path / "b"), "--set", "train.verbose=1"]) == 0
    counts = progress_counts(capsys.readouterr().out)
    assert counts and set(counts) == {(4, 4)}, counts


def test_steps_per_execution_is_capped_but_kept():
    from kerasdl.optim import steps_per_execution

    assert steps_per_execution(16, 23) == 16 and steps_per_execution(16, 3) == 3 and steps_per_execution(16, 23, multi_worker=True) == 1


# --- Resume ----------------------------------------------------------------------------------


def test_a_second_identical_command_refuses_while_the_owner_lives(tmp_path, capsys):
    arguments = ["mlp", "--epochs", "1", "--output", str(tmp_path), *QUIET]
    config = resolve_config("mlp", sets=["train.verbose=2", "train.warmup_epochs=0"], flags={"epochs": "1", "output": str(tmp_path)})
    run_dir = tmp_path / "mlp" / "20990101-000000"
    run_dir.mkdir(parents=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"fingerprint": rundir.config_fingerprint(config), "pid": owner.pid, "host": socket.gethostname(),
                "process_start": rundir._process_start(owner.pid), "started": "2099-01-01T00:00:00"}
        (run_dir / "RUNNING").write_text(json.dumps(lock))
        assert main(arguments) == 2
        err = capsys.readouterr().err
        assert err == f"error: the same run is already being trained in {run_dir} (pid {owner.pid} on {socket.gethostname()}, started 2099-01-01T00:00:00); wait for it to finish, or add --fresh to start a separate run\n"
        assert sorted(os.listdir(run_dir)) == ["RUNNING"]  # Refused before touching anything.
    finally:
        owner.kill()
        owner.wait()
    # The owner is gone: the same command takes the run over and finishes it.
    assert main(arguments) == 0
    assert only_run_dir(tmp_path, "mlp") == run_dir and (run_dir / "model.keras").is_file() and not (run_dir / "RUNNING").exists()


def test_the_lock_names_its_owner(monkeypatch, tmp_path):
    seen = {}
    add_callbacks(monkeypatch, after=[LockReader(seen, tmp_path)])
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path), *QUIET]) == 0
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["host"] == socket.gethostname() and len(seen["lock"]["fingerprint"]) == 16


class LockReader(keras.callbacks.Callback):
    def __init__(self, seen, output):
        super().__init__()
        self.seen, self.output = seen, output

    def on_epoch_end(self, epoch, logs=None):
        (lock_path,) = Path(self.output).glob("mlp/*/RUNNING")
        self.seen["lock"] = json.loads(lock_path.read_text())


@pytest.fixture
def two_phase_model():
    """A tiny registered model with a fine-tuning hook: the two-phase path of ResNet50 at MLP cost (the fault harness's)."""
    from benchmarks.fault_child import register_two_phase_model
    from kerasdl.models import registry

    name = register_two_phase_model()
    yield name
    registry._ENTRIES.pop(name)


def test_killed_in_phase_two_resumes_inside_phase_two(two_phase_model, monkeypatch, tmp_path, capsys):
    """Keras deletes phase 1's backup when its fit ends; a run killed in phase 2 must not train phase 1 again (ResNet50's case)."""
    arguments = [
        two_phase_model, "--epochs", "1", "--output", str(tmp_path / "runs"),
        "--set", "finetune.blocks=1", "--set", "finetune.epochs=3", "--set", "finetune.learning_rate=0.001", *QUIET,
    ]
    add_callbacks(monkeypatch, after=[CrashAt(epoch=2)])  # Phase 1 is epoch 0; phase 2 epochs 1-3.
    assert main(arguments) == 130
    run_dir = only_run_dir(tmp_path / "runs", two_phase_model)
    assert json.loads((run_dir / "progress.json").read_text())["phases"][0]["epochs"] == 1
    assert json.loads((run_dir / "backup_finetune" / "training_metadata.json").read_text())["epoch"] == 2
    capsys.readouterr()

    monkeypatch.undo()
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert f"resuming {run_dir} in phase 2 from epoch 2" in out
    # Phase 1 is not trained again: Keras prints only phase 2's last epoch.
    assert "Epoch 1/1" not in out and "Epoch 2/4" not in out and "Epoch 3/4" in out
    assert history_epochs(run_dir) == [0, 1, 2, 3]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [phase["epochs"] for phase in metrics["phases"]] == [1, 3] and metrics["epochs"] == 4
    assert metrics["phases"][1]["trainable_parameters"] > metrics["phases"][0]["trainable_parameters"]
    # metrics.json and report.md agree on the epochs of both phases.
    assert "- Epochs run: 4" in (run_dir / "report.md").read_text()
    assert not (run_dir / "progress.json").exists() and not list(run_dir.glob("phase-*")) and not (run_dir / "RUNNING").exists()


def test_an_impossible_block_count_fails_before_training(two_phase_model, tmp_path, capsys):
    assert main([two_phase_model, "--epochs", "1", "--output", str(tmp_path), "--set", "finetune.blocks=5", *QUIET]) == 2
    assert capsys.readouterr().err == "error: finetune.blocks=5: num_blocks must be between 0 and 1, got 5\n"
    assert not any(tmp_path.iterdir())


class ScriptedValidationLoss(keras.callbacks.Callback):
    """Replaces val_loss by a script (before EarlyStopping and ModelCheckpoint read it) and keeps each epoch's weights."""

    def __init__(self, script, weights):
        super().__init__()
        self.script, self.weights = script, weights

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.script[epoch]
        self.weights[epoch] = self.model.get_weights()


def test_best_scores_survive_a_restart(monkeypatch, tmp_path):
    """EarlyStopping and ModelCheckpoint keep their best across a restart: model.keras is the best of all epochs."""
    script, weights = [1.0, 0.5, 0.9, 0.8, 0.7, 0.75], {}
    arguments = ["mlp", "--epochs", "6", "--output", str(tmp_path), "--set", "train.early_stopping_patience=10", "--set", "train.keep_checkpoint=true", *QUIET]
    add_callbacks(monkeypatch, before=[ScriptedValidationLoss(script, weights)], after=[CrashAt(epoch=3)])
    assert main(arguments) == 130
    monkeypatch.undo()
    add_callbacks(monkeypatch, before=[ScriptedValidationLoss(script, weights)])
    assert main(arguments) == 0
    run_dir = only_run_dir(tmp_path, "mlp")
    assert history_epochs(run_dir) == [0, 1, 2, 3, 4, 5]
    from kerasdl.artifact import load_model

    model, _ = load_model(run_dir / "model.keras")
    for expected, actual in zip(weights[1], model.get_weights()):
        np.testing.assert_array_equal(expected, actual)  # Epoch 1 (val_loss 0.5), from before the restart.
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    for expected, actual in zip(weights[1], best.get_weights()):
        np.testing.assert_array_equal(expected, actual)
