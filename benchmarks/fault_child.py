"""`python -m benchmarks.fault_child ARGS`: `python -m training.run ARGS` that can stop at a named point, for kill -9.

The fault-injection harness (`benchmarks.fault_injection`) starts training through this
module. With `KERASDL_FAULT_POINT` set to one of `POINTS`, the process runs until it
reaches that point at epoch `KERASDL_FAULT_EPOCH` or later (0-based, as `history.csv`
counts), writes the file `KERASDL_FAULT_MARKER` (JSON: point, epoch, pid) and sleeps; the
harness sees the marker and sends SIGKILL, so the kill lands exactly there, however fast
or slow the machine. The hooks only pause: every byte on disk is the one training wrote.

Without `KERASDL_FAULT_POINT` nothing is patched and the command is `training.run`'s
(a kill at a random time needs no hook). In both cases the tiny two-phase model
`fault_two_phase` is registered: ResNet50's two-phase path (a frozen base, then
fine-tuning) at the cost of an MLP, so that a run of it killed in phase 2 can be resumed
by the same command.

Example:
    KERASDL_FAULT_POINT=mid-epoch KERASDL_FAULT_EPOCH=2 KERASDL_FAULT_MARKER=/tmp/m \\
        python -m benchmarks.fault_child mlp --epochs 5 --output runs
"""

import json
import os
import sys
import time

# Where a kill can be made to land (in the order training reaches them within an epoch).
POINTS = {
    "mid-epoch": "inside an epoch, after its first training step",
    "checkpoint-write": "inside ModelCheckpoint's write of the best model (metadata and config written, weights not yet)",
    "backup-write": "inside BackupAndRestore's write: the new weights written under a temporary name, not yet renamed",
    "backup-metadata": "inside BackupAndRestore's write: the new weights file in place, the metadata that commits the epoch not yet",
    "before-backup": "between epochs: the epoch's history row and best checkpoint written, its backup not yet",
    "epoch-start": "between epochs: the previous epoch backed up, the next one not started",
    "artifacts": "after training: model.keras written, metrics and report not yet",
}
TWO_PHASE_MODEL = "fault_two_phase"


def register_two_phase_model():
    """Registers `fault_two_phase`: a dense base frozen in phase 1 and fine-tuned in phase 2.

    Example:
    >>> register_two_phase_model()
    'fault_two_phase'
    """
    from kerasdl.models import registry

    registry._import_models()  # The shipped models first, so that this one is not the only entry.
    if TWO_PHASE_MODEL in registry._ENTRIES:
        return TWO_PHASE_MODEL

    def two_phase(input_shape, num_classes, width=16):
        import keras

        inputs = keras.Input(input_shape, name="features")
        hidden = keras.layers.Dense(width, activation="relu", name="base")(inputs)
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(hidden), name=TWO_PHASE_MODEL)

    def set_trainable_blocks(model, num_blocks):
        if not 0 <= num_blocks <= 1:
            raise ValueError(f"num_blocks must be between 0 and 1, got {num_blocks}")
        model.get_layer("base").trainable = bool(num_blocks)
        return ["base"][:num_blocks]

    def build(facts, **options):
        model = registry.call_builder(two_phase, options, input_shape=facts.input_shape, num_classes=facts.num_classes)
        set_trainable_blocks(model, 0)
        return model

    registry.register_model(TWO_PHASE_MODEL, modalities=("features",), builders=(two_phase,), set_trainable_blocks=set_trainable_blocks)(build)
    return TWO_PHASE_MODEL


class _Stop:
    """The pause at the point: writes the marker once, then sleeps until killed."""

    def __init__(self, point, epoch, marker):
        self.point, self.epoch, self.marker = point, epoch, marker
        self.current_epoch = -1

    def due(self):
        return self.current_epoch >= self.epoch

    def now(self, detail=""):
        partial = f"{self.marker}.partial"
        with open(partial, "w") as handle:
            json.dump({"point": self.point, "epoch": self.current_epoch, "pid": os.getpid(), "detail": detail}, handle)
        os.replace(partial, self.marker)
        while True:
            time.sleep(60)


def install(point, epoch, marker):
    """Patches this process so that it stops at `point` (a `POINTS` key) at epoch `epoch` or later."""
    import zipfile

    import keras

    from kerasdl import callbacks, outputs

    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}; choose one of: {', '.join(POINTS)}")
    stop = _Stop(point, epoch, marker)

    class Hook(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            stop.current_epoch = epoch
            if point == "epoch-start" and stop.due():
                stop.now()

        def on_train_batch_end(self, batch, logs=None):
            if point == "mid-epoch" and stop.due():
                stop.now(f"batch {batch}")

    class BeforeBackup(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if point == "before-backup" and stop.due():
                stop.now()

    original_make_callbacks = callbacks.make_callbacks

    def make_callbacks(*arguments, **options):
        made = original_make_callbacks(*arguments, **options)
        # BackupAndRestore is last (kerasdl.callbacks); the pause goes just before it.
        return [Hook(), *made[:-1], BeforeBackup(), made[-1]]

    callbacks.make_callbacks = make_callbacks

    if point == "checkpoint-write":
        original_writestr = zipfile.ZipFile.writestr

        def writestr(archive, name, data, *arguments, **options):
            target = os.path.basename(str(getattr(archive, "filename", "") or ""))
            if str(getattr(name, "filename", name)) == "model.weights.h5" and "best" in target and target.endswith(".keras") and stop.due():
                archive.fp.flush()  # What Keras has written so far reaches the file: a zip without its directory.
                stop.now(target)
            return original_writestr(archive, name, data, *arguments, **options)

        zipfile.ZipFile.writestr = writestr

    if point == "backup-write":
        original_save_weights = keras.Model.save_weights

        def save_weights(model, path, *arguments, **options):
            result = original_save_weights(model, path, *arguments, **options)
            if os.path.basename(str(path)).startswith("partial-") and stop.due():
                stop.now(str(path))
            return result

        keras.Model.save_weights = save_weights

    if point == "backup-metadata":
        from kerasdl.distribute import files

        original_write_json = files._write_json

        def write_json(path, value):
            if os.path.basename(path) == "training_metadata.json" and stop.due():
                stop.now(path)
            return original_write_json(path, value)

        files._write_json = write_json

    if point == "artifacts":
        original_save_examples = outputs.save_run_examples

        def save_examples(*arguments, **options):
            stop.now()
            return original_save_examples(*arguments, **options)

        outputs.save_run_examples = save_examples


def main(argv=None):
    """Registers the two-phase model, installs the requested pause, runs `training.run`; returns its status."""
    from kerasdl.console import quiet_startup

    quiet_startup()
    register_two_phase_model()
    point = os.environ.get("KERASDL_FAULT_POINT")
    if point:
        install(point, int(os.environ.get("KERASDL_FAULT_EPOCH", "0")), os.environ["KERASDL_FAULT_MARKER"])
    from training.run import main as training_main

    return training_main(argv)


if __name__ == "__main__":
    sys.exit(main())
