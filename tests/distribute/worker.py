"""One training process for the multi-worker tests (run as a subprocess).

It follows the order the training CLI uses: seed, `make_strategy` (before any other
TensorFlow work), data batched with the global batch and sharded by data, model built
and compiled under `strategy.scope()`, then plain `model.fit` with BackupAndRestore,
EarlyStopping, ModelCheckpoint and TensorBoard callbacks. It prints `FIRST_EPOCH n`
when fit starts an epoch for the first time, `SAVED_EPOCH n` after each epoch, and
saves the final weights and the loss history into `--output`.

Usage (TF_CONFIG set by the caller for multi-worker runs):
    python worker.py --strategy multi_worker --output OUT --backup BACKUP
"""

import argparse
import json
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--output", required=True)
    parser.add_argument("--backup", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--per-replica-batch", type=int, default=32)
    parser.add_argument("--epoch-sleep", type=float, default=0.0)
    arguments = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    from kerasdl import distribute
    from kerasdl.models.mlp import mlp

    keras.utils.set_random_seed(7)
    tf.config.experimental.enable_op_determinism()
    strategy, info = distribute.make_strategy(arguments.strategy, timeout_seconds=arguments.timeout)
    print(f"STRATEGY {json.dumps(info.__dict__)}", flush=True)

    # The 2-worker run and the single-process run both use a global batch of 64.
    replicas = info.num_replicas if arguments.strategy != "default" else 2
    global_batch, learning_rate = distribute.scale_batch_and_learning_rate(arguments.per_replica_batch, 0.01, replicas, scale_learning_rate=False)
    digits = load_digits()
    x = digits.data[: arguments.examples].astype("float32")
    y = digits.target[: arguments.examples].astype("int64")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=3).batch(global_batch, drop_remainder=True)
    validation = tf.data.Dataset.from_tensor_slices((x[:128], y[:128])).batch(global_batch)
    train, validation = distribute.shard_by_data(train), distribute.shard_by_data(validation)

    with strategy.scope():
        model = mlp(input_shape=(64,), num_classes=10, hidden_units=32, normalization_mean=x.mean(axis=0), normalization_variance=x.var(axis=0))
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    class Progress(keras.callbacks.Callback):
        first = None

        def on_epoch_begin(self, epoch, logs=None):
            if Progress.first is None:
                Progress.first = epoch
                print(f"FIRST_EPOCH {epoch}", flush=True)

        def on_epoch_end(self, epoch, logs=None):
            print(f"SAVED_EPOCH {epoch} loss={logs['loss']:.6f} val_loss={logs['val_loss']:.6f}", flush=True)
            time.sleep(arguments.epoch_sleep)

    os.makedirs(arguments.output, exist_ok=True)
    write_dir = distribute.write_dir_for(arguments.output, info)
    os.makedirs(write_dir, exist_ok=True)
    callbacks = [
        Progress(),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=False),
        keras.callbacks.ModelCheckpoint(os.path.join(write_dir, "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.TensorBoard(os.path.join(write_dir, "tensorboard")),
    ]
    if arguments.backup:
        # BackupAndRestore runs first so that the restored epoch is known to the others.
        callbacks.insert(0, distribute.backup_and_restore(arguments.backup, info))
    history = model.fit(train, validation_data=validation, epochs=arguments.epochs, callbacks=callbacks, verbose=0)
    test_loss, test_accuracy = model.evaluate(validation, verbose=0)

    # Every worker keeps its own weights file, to compare them across workers.
    suffix = f"{info.task_type}-{info.task_index}" if info.task_type else "single"
    np.savez(os.path.join(arguments.output, f"weights-{suffix}.npz"), *[np.asarray(weight) for weight in model.get_weights()])
    with open(os.path.join(arguments.output, f"history-{suffix}.json"), "w") as handle:
        json.dump({"loss": history.history["loss"], "first_epoch": Progress.first, "evaluate": [test_loss, test_accuracy]}, handle)
    distribute.cleanup_write_dir(write_dir, arguments.output)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
