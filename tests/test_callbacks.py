import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from kerasdl.callbacks import make_callbacks
from kerasdl.optim import WarmupLinearDecay, make_optimizer, step_decay
from kerasdl.schedules import WarmupCosineDecay


def test_warmup_linear_decay_rises_then_falls_to_zero():
    schedule = WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=110)
    rates = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(60)) == pytest.approx(5e-4)


def test_step_decay_is_the_seed_steplr():
    schedule = step_decay(0.1, step_size=7, gamma=0.1)
    assert [schedule(epoch) for epoch in (0, 6, 7, 14)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


@pytest.mark.parametrize("schedule, kind", [("cosine", WarmupCosineDecay), ("linear", WarmupLinearDecay)])
def test_optimizer_carries_the_schedule_and_clipping(schedule, kind):
    optimizer = make_optimizer("adamw", 1e-3, weight_decay=0.01, clipnorm=1.0, lr_schedule=schedule, epochs=4, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.clipnorm == 1.0 and optimizer.weight_decay == 0.01
    assert isinstance(optimizer._learning_rate, kind)
    with pytest.raises(ValueError, match="train.lr_schedule must be cosine, linear, step, plateau or constant"):
        make_optimizer("adam", 1e-3, lr_schedule="exponential")


def test_the_cosine_warmup_rate_is_keras_cosine_decay_without_cond():
    optimizer = make_optimizer("adamw", 1e-3, lr_schedule="cosine", warmup_epochs=1, epochs=4, steps_per_epoch=10)
    keras_schedule = keras.optimizers.schedules.CosineDecay(1e-5, decay_steps=30, warmup_target=1e-3, warmup_steps=10, alpha=0.01)
    steps = (0, 5, 10, 25, 40, 60)
    np.testing.assert_allclose([float(optimizer._learning_rate(step)) for step in steps], [float(keras_schedule(step)) for step in steps], rtol=1e-6)
    without_warmup = make_optimizer("adamw", 1e-3, lr_schedule="cosine", warmup_epochs=0, epochs=4, steps_per_epoch=10)
    assert float(without_warmup._learning_rate(0)) == pytest.approx(1e-3)


def test_standard_callbacks(tmp_path):
    callbacks = make_callbacks(str(tmp_path), lr_schedule="plateau", early_stopping_patience=3)
    kinds = {type(callback).__name__: callback for callback in callbacks}
    assert set(kinds) == {"InterruptCheck", "BackupAndRestore", "TerminateOnNaN", "EarlyStopping", "ModelCheckpoint", "CSVLogger", "TensorBoard", "ReduceLROnPlateau"}
    assert kinds["EarlyStopping"].restore_best_weights and kinds["EarlyStopping"].patience == 3 and kinds["EarlyStopping"].monitor == "val_loss"
    assert kinds["ModelCheckpoint"].save_best_only and kinds["ModelCheckpoint"].filepath.endswith("checkpoints/.pending-best-{epoch}.keras")  # best.keras once committed
    assert "LearningRateScheduler" in {type(callback).__name__ for callback in make_callbacks(str(tmp_path), lr_schedule="step")}
    assert type(callbacks[0]).__name__ == "InterruptCheck"  # Before the others see a batch it stops.


@pytest.fixture
def interrupt_handler():
    """kerasdl's Ctrl-C handler in place for one test; Python's own handler and a clear flag after it."""
    from kerasdl import console

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console.catch_interrupts()
    yield console
    signal.signal(signal.SIGINT, previous)
    console._interrupt["requested"] = False


class SwallowedInterrupt(keras.callbacks.Callback):
    """Presses Ctrl-C at one batch and swallows the KeyboardInterrupt, as TensorFlow's eager fast path does."""

    def __init__(self, batch):
        super().__init__()
        self.batch, self.swallowed, self.batches = batch, 0, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == self.batch:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # The handler runs here at the latest.
            except KeyboardInterrupt:
                self.swallowed += 1


def test_a_swallowed_ctrl_c_still_stops_the_fit_at_that_batch(interrupt_handler):
    from kerasdl.callbacks import InterruptCheck

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
    model.compile(optimizer="sgd", loss="mse")
    swallow = SwallowedInterrupt(batch=3)
    with pytest.raises(KeyboardInterrupt):
        model.fit(np.zeros((64, 2)), np.zeros((64, 1)), batch_size=8, epochs=5, callbacks=[swallow, InterruptCheck()], verbose=0)
    assert swallow.swallowed == 1 and swallow.batches == 3 and interrupt_handler.interrupt_requested()
    # Without the check, the same swallowed interrupt is lost: all 5 epochs of 8 batches run.
    interrupt_handler._interrupt["requested"] = False
    swallow = SwallowedInterrupt(batch=3)
    model.fit(np.zeros((64, 2)), np.zeros((64, 1)), batch_size=8, epochs=5, callbacks=[swallow], verbose=0)
    assert swallow.swallowed == 1 and swallow.batches == 40


def test_on_jax_the_check_keeps_keras_asynchronous_callbacks_and_still_stops_the_fit(repo_root):
    # JAX runs batch callbacks on Keras' callback thread when every one is async-safe; the
    # interrupt raised there must still end `fit` within a batch or two (of 400).
    code = """
import os
os.environ["KERAS_BACKEND"] = "jax"
import keras, numpy as np
from kerasdl import console
from kerasdl.callbacks import InterruptCheck
print("async", keras.callbacks.CallbackList([InterruptCheck()])._async_train)
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
model.compile(optimizer="sgd", loss="mse")
seen = []
class PressAtBatch3(keras.callbacks.Callback):
    async_safe = True
    def on_train_batch_end(self, batch, logs=None):
        seen.append(batch)
        if len(seen) == 3:
            console._interrupt["requested"] = True  # What the handler does when TensorFlow swallowed the raise.
try:
    model.fit(np.zeros((64, 2)), np.zeros((64, 1)), batch_size=8, epochs=50, callbacks=[PressAtBatch3(), InterruptCheck()], verbose=0)
    print("not interrupted after", len(seen))
except KeyboardInterrupt:
    print("interrupted after", len(seen))
"""
    completed = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[0] == "async True"
    assert lines[1].startswith("interrupted after ") and 3 <= int(lines[1].split()[-1]) <= 5, lines


def test_ctrl_c_stays_ignored_where_the_user_ignored_it():
    from kerasdl import console

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # As `nohup` or a background job leaves it.
    try:
        console.catch_interrupts()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_backup_keeps_the_best_scores_for_a_restart(tmp_path):
    """The backup saves EarlyStopping's and ModelCheckpoint's best with the weights; fresh callbacks get them back."""
    def build():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="logits")])
        model.compile(optimizer="adam", loss="mse")
        return model

    model = build()
    callbacks = make_callbacks(str(tmp_path), early_stopping_patience=9)
    kinds = {type(callback).__name__: callback for callback in callbacks}
    early_stopping, checkpoint, backup = kinds["EarlyStopping"], kinds["ModelCheckpoint"], callbacks[-1]
    best_weights = None
    for callback in callbacks:
        callback.set_model(model)
    for epoch, val_loss in enumerate([0.9, 0.4, 0.7]):
        model.set_weights([np.full(weight.shape, epoch, dtype="float32") for weight in model.get_weights()])
        if epoch == 1:
            best_weights = model.get_weights()
        for callback in (early_stopping, checkpoint, backup):
            callback.on_epoch_end(epoch, {"val_loss": val_loss, "loss": 1.0})
    assert sorted(name for name in (tmp_path / "backup").iterdir() if name.suffix == ".npz") == [tmp_path / "backup" / "best-weights-epoch-1.npz"]

    restarted = build()
    fresh = make_callbacks(str(tmp_path), early_stopping_patience=9)
    for callback in fresh:
        callback.set_model(restarted)
        callback.on_train_begin()
    fresh_early_stopping, fresh_checkpoint = (next(callback for callback in fresh if type(callback).__name__ == kind) for kind in ("EarlyStopping", "ModelCheckpoint"))
    assert fresh_early_stopping.best == pytest.approx(0.4) and fresh_early_stopping.best_epoch == 1 and fresh_early_stopping.wait == 1
    assert fresh_checkpoint.best == pytest.approx(0.4) and restarted._initial_epoch == 3
    for expected, actual in zip(best_weights, fresh_early_stopping.best_weights):
        np.testing.assert_array_equal(expected, actual)
