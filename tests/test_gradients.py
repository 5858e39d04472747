"""The gradient-norm callback and the vanishing/exploding diagnosis, on deliberately bad models.

Tiny budgets: sklearn digits, a few epochs each, models built directly with Keras.
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kerasdl.gradients import ALL_LAYERS, GRADIENTS_FILE, GradientNormLogger  # noqa: E402
from kerasdl.report import diagnose, diagnose_gradients, read_gradients, read_history  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(bunch.target))
    features = bunch.data[order].astype(np.float32)
    return features, bunch.target[order].astype(np.int64)


def _fit(model, optimizer, x, y, epochs, run_dir):
    """Fits like kerasdl.train (TerminateOnNaN, CSVLogger) with the logger; returns (history, gradients, logger)."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=0).batch(64)
    logger = GradientNormLogger(train.take(2), os.path.join(run_dir, GRADIENTS_FILE), os.path.join(run_dir, "tensorboard"))
    model.fit(
        train, epochs=epochs, verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN(), keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv")), logger],
    )
    return read_history(os.path.join(run_dir, "history.csv")), read_gradients(os.path.join(run_dir, GRADIENTS_FILE)), logger


def _dense_stack(depth, units, activation, name):
    inputs = keras.Input((64,), name="inputs")
    x = inputs
    for index in range(depth):
        x = keras.layers.Dense(units, activation=activation, name=f"{name}_{index}")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=name)


def _default_optimizer(epochs):
    from kerasdl.optim import make_optimizer

    # kerasdl's defaults (kerasdl.config.TrainConfig): adamw 1e-3, clipnorm 1.0, cosine with 1 warmup epoch.
    return make_optimizer("adamw", 1e-3, 1e-4, 1.0, "cosine", 1, epochs, 23)


def test_deep_sigmoid_mlp_is_diagnosed_as_vanishing(digits, tmp_path):
    x, y = digits
    history, gradients, _ = _fit(_dense_stack(10, 32, "sigmoid", "sigmoid"), keras.optimizers.SGD(0.01), x, y, 3, tmp_path)
    findings = diagnose_gradients(gradients, history)
    assert [finding["issue"] for finding in findings] == ["vanishing gradients"]
    finding = findings[0]
    # Already visible in the measurement before training (epoch 0 in findings).
    assert finding["epoch"] == 0 and "before training" in finding["evidence"]
    # The input-side layers are named, first layer first; the last hidden layers are not.
    assert finding["layers"][0] == "sigmoid_0" and "sigmoid_9" not in finding["layers"] and "logits" not in finding["layers"]
    assert "sigmoid_0" in finding["evidence"] and "logits" in finding["evidence"]
    for remedy in ("ReLU", "batch normalization", "residual connections", "initialization"):
        assert remedy in finding["remedy"]


def test_high_learning_rate_without_clipping_is_diagnosed_as_exploding(digits, tmp_path):
    x, y = digits
    history, gradients, _ = _fit(_dense_stack(3, 128, "relu", "hidden"), keras.optimizers.SGD(1.0), x, y, 3, tmp_path)
    findings = diagnose_gradients(gradients, history)
    assert findings and findings[0]["issue"] == "exploding gradients"
    assert findings[0]["epoch"] == 1 and "NaN" in findings[0]["evidence"]
    assert "clipping" in findings[0]["remedy"] and "lower learning rate" in findings[0]["remedy"]
    # The history's own diagnosis agrees: the loss became NaN in the first epoch.
    assert diagnose(history, 10)[0]["issue"] == "unstable"


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_default_models_on_digits_are_not_flagged(model_name, digits, tmp_path):
    from kerasdl.models.registry import DataFacts, get_model_entry

    x, y = digits
    if model_name == "cnn":
        # kerasdl.data.digits' image view: 8x8x1 pixels scaled to 0-255.
        x = x.reshape(-1, 8, 8, 1) * (255.0 / 16.0)
    flat = x.reshape(-1, x.shape[-1])
    facts = DataFacts("image" if model_name == "cnn" else "features", x.shape[1:], 10, flat.mean(axis=0), np.maximum(flat.var(axis=0), 1e-6))
    model = get_model_entry(model_name)(facts)
    history, gradients, _ = _fit(model, _default_optimizer(4), x, y, 4, tmp_path)
    assert history["accuracy"][-1] > 0.8
    assert diagnose_gradients(gradients, history) == []
    # Clipping (kerasdl's default clipnorm 1.0) was recorded for every epoch.
    assert all(value is not None for value in gradients[ALL_LAYERS]["clipped_fraction"])


def test_gradients_csv_and_tensorboard_hold_one_row_per_layer_and_epoch(digits, tmp_path):
    x, y = digits
    _, gradients, logger = _fit(_dense_stack(2, 16, "relu", "hidden"), keras.optimizers.Adam(1e-3), x[:256], y[:256], 2, tmp_path)
    with open(tmp_path / GRADIENTS_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Before training (epoch -1), then after each epoch.
    assert [row["layer"] for row in rows] == ["hidden_0", "hidden_1", "logits", ALL_LAYERS] * 3
    assert [row["epoch"] for row in rows] == ["-1"] * 4 + ["0"] * 4 + ["1"] * 4
    # No clipping configured: the clipped column is empty.
    assert all(row["clipped_fraction"] == "" for row in rows)
    for position in range(3):
        layer_norms = [gradients[layer]["gradient_norm"][position] for layer in ("hidden_0", "hidden_1", "logits")]
        # Each batch's global norm is the root of the layers' squares; the means obey it within the batch spread.
        assert all(norm > 0 for norm in layer_norms)
        assert gradients[ALL_LAYERS]["gradient_norm"][position] == pytest.approx(np.sqrt(np.sum(np.square(layer_norms))), rel=0.2)
    assert gradients["hidden_0"]["weight_norm"][0] > 0
    events = [name for name in os.listdir(tmp_path / "tensorboard" / "gradients") if name.startswith("events.out")]
    assert events
    assert logger.seconds > 0 and logger.epoch_seconds > 0


def test_sampling_leaves_batch_norm_statistics_and_weights_alone(digits, tmp_path):
    x, y = digits
    inputs = keras.Input((64,))
    hidden = keras.layers.BatchNormalization(name="batch_norm")(keras.layers.Dense(16, name="dense")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [np.array(variable.numpy()) for variable in model.variables]
    logger = GradientNormLogger([(x[:64], y[:64])], str(tmp_path / GRADIENTS_FILE))
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    logger.on_epoch_end(0)
    after = [np.array(variable.numpy()) for variable in model.variables]
    assert all(np.array_equal(first, second) for first, second in zip(before, after))
    assert read_gradients(str(tmp_path / GRADIENTS_FILE))["batch_norm"]["gradient_norm"][0] > 0


def test_other_backends_fail_soft_with_a_note(digits, tmp_path, monkeypatch):
    x, y = digits
    model = _dense_stack(1, 8, "relu", "hidden")
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    logger = GradientNormLogger([(x[:64], y[:64])], str(tmp_path / GRADIENTS_FILE))
    logger.set_model(model)
    with pytest.warns(UserWarning, match="TensorFlow and JAX backends only, not torch"):
        logger.on_train_begin()
    logger.on_epoch_end(0)
    assert not (tmp_path / GRADIENTS_FILE).exists()


def test_a_model_with_nothing_trainable_logs_nothing(digits, tmp_path):
    x, y = digits
    model = _dense_stack(1, 8, "relu", "hidden")
    model.trainable = False
    logger = GradientNormLogger([(x[:64], y[:64])], str(tmp_path / GRADIENTS_FILE))
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_end(0)
    assert not (tmp_path / GRADIENTS_FILE).exists()


def test_jax_backend_logs_the_same_columns(tmp_path):
    pytest.importorskip("jax")
    code = f"""
import numpy as np, keras
from kerasdl.gradients import GradientNormLogger
from kerasdl.report import read_gradients
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x, y = rng.normal(size=(128, 8)).astype("float32"), rng.integers(0, 2, 128)
inputs = keras.Input((8,))
model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(keras.layers.Dense(4, activation="relu", name="hidden")(inputs)))
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=2, verbose=0, callbacks=[GradientNormLogger([(x[:64], y[:64])], {str(tmp_path / GRADIENTS_FILE)!r})])
gradients = read_gradients({str(tmp_path / GRADIENTS_FILE)!r})
print(list(gradients), gradients["hidden"]["epoch"], all(v > 0 for v in gradients["hidden"]["gradient_norm"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "['hidden', 'logits', '(all layers)'] [-1, 0, 1] True"
