import numpy as np
import pytest

from kerasdl.config import DataConfig
from kerasdl.data import load_data
from kerasdl.data.augment import make_augmenter
from kerasdl.data.digits import load_digits
from kerasdl.data.npz import load_npz
from kerasdl.data.pipeline import ArrayBatches, fit_arguments, make_pipeline, normalization_statistics, split_arrays, training_input
from kerasdl.data.source import DataError, Split


def first_batch(dataset):
    return next(iter(dataset.as_numpy_iterator()))


def test_augmentation_changes_training_images_only():
    splits = load_digits("image", image_size=[16, 16])
    augmenter = make_augmenter(flip="horizontal", rotation=0.1, zoom=0.1, brightness=0.2, contrast=0.2)
    plain_train = first_batch(make_pipeline(splits.train, 32, training=False))
    augmented = first_batch(make_pipeline(splits.train, 32, training=True, augmenter=augmenter, shuffle_buffer=1))
    # With a shuffle buffer of 1 the order is kept, so the same images can be compared.
    np.testing.assert_array_equal(augmented[1], plain_train[1])
    assert np.abs(augmented[0] - plain_train[0]).mean() > 1.0
    assert augmented[0].min() >= 0.0 - 1e-3 and augmented[0].max() <= 255.0 + 1e-3
    validation_a = first_batch(make_pipeline(splits.validation, 32, training=False))
    validation_b = first_batch(make_pipeline(splits.validation, 32, training=False))
    np.testing.assert_array_equal(validation_a[0], validation_b[0])
    np.testing.assert_array_equal(validation_a[0], np.stack([x for x, _ in splits.validation.dataset.take(32).as_numpy_iterator()]))


def test_augmentation_runs_in_the_pipeline_under_jax_as_under_tensorflow(tmp_path):
    # Under JAX a keras.Sequential in Dataset.map fails ("Cannot convert a symbolic
    # tf.Tensor to a numpy array"); the augmenter must run on TensorFlow there, and the
    # same seeds give the same images on both backends. Each backend runs in a fresh
    # process: Keras' backend is process-wide, and a fresh process has a known RNG state.
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import os, sys
os.environ["KERAS_BACKEND"] = sys.argv[1]
import keras, numpy as np
from kerasdl.data.augment import make_augmenter
from kerasdl.data.digits import load_digits
from kerasdl.data.pipeline import make_pipeline
keras.utils.set_random_seed(7)
# As a run starts (kerasdl.train.start): without deterministic ops the parallel map draws the
# random transforms in thread order, and two processes differ.
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
splits = load_digits("image", image_size=[16, 16])
augmenter = make_augmenter(seed=3, translation=0.125)
batch = next(make_pipeline(splits.train, 32, training=True, augmenter=augmenter, shuffle_buffer=1).as_numpy_iterator())
np.save(sys.argv[2], batch[0])
print(keras.backend.backend())
"""
    root = Path(__file__).resolve().parents[2]
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(root))
    images = {}
    for backend in ("jax", "tensorflow"):
        path = tmp_path / f"{backend}.npy"
        completed = subprocess.run([sys.executable, "-c", code, backend, str(path)], cwd=root, env=environ, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert completed.stdout.split()[-1] == backend
        images[backend] = np.load(path)
    plain = first_batch(make_pipeline(load_digits("image", image_size=[16, 16]).train, 32, training=False))[0]
    assert np.abs(images["jax"] - plain).mean() > 1.0
    np.testing.assert_allclose(images["jax"], images["tensorflow"], atol=1e-3)


def test_jax_trains_from_the_split_held_as_arrays():
    x = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    y = np.arange(40) % 4
    batches = training_input(Split.from_arrays(x, y), 16, backend="jax")
    assert isinstance(batches, ArrayBatches) and batches.size == 40
    # Every example once, in the split's order: Keras shuffles them each epoch.
    np.testing.assert_array_equal(batches.x, x)
    np.testing.assert_array_equal(batches.y, y)
    assert batches.y.dtype == np.int64
    arguments = fit_arguments(batches)
    assert arguments["batch_size"] == 16 and arguments["shuffle"] is True and arguments["x"] is batches.x


def test_the_pipeline_stays_where_arrays_do_not_pay_or_cannot_be_made():
    import tensorflow as tf

    x, y = np.ones((20, 3), np.float32), np.zeros(20, np.int64)
    split = Split.from_arrays(x, y)
    streamed = Split(split.dataset, 20, in_memory=False, decode=lambda reference, label: (reference, label))
    texts = Split(tf.data.Dataset.from_tensor_slices((["a b", "c d"] * 10, y)), 20)
    cases = {
        "tensorflow": training_input(split, 8, backend="tensorflow"),
        "augmented": training_input(split, 8, augmenter=tf.keras.layers.Identity(), backend="jax"),
        "over the cache limit": training_input(split, 8, cache_limit_mb=0, backend="jax"),
        "streamed": training_input(streamed, 8, backend="jax"),
        "strings": training_input(texts, 8, backend="jax"),
        "sharded": training_input(split, 8, drop_remainder=True, backend="jax"),
        # Several passes an epoch: each pass shuffled on its own (see training_input).
        "repeated passes": training_input(split, 8, passes=2, backend="jax"),
    }
    for case, data in cases.items():
        assert isinstance(data, tf.data.Dataset), case
        assert fit_arguments(data) == {"x": data, "shuffle": False}, case
    assert split_arrays(split, limit_bytes=20 * 12) is not None and split_arrays(split, limit_bytes=20 * 12 - 1) is None


def test_text_arrays_are_tokenized_once_as_in_the_pipeline():
    import keras
    import tensorflow as tf

    texts = ["a good film", "a bad film", "good good", "bad"] * 5
    tokenizer = keras.layers.TextVectorization(output_sequence_length=4)
    tokenizer.adapt(texts)
    split = Split(tf.data.Dataset.from_tensor_slices((texts, np.arange(20) % 2)), 20)
    batches = training_input(split, 8, tokenizer=tokenizer, backend="jax")
    assert isinstance(batches, ArrayBatches) and batches.x.shape == (20, 4)
    np.testing.assert_array_equal(batches.x, np.asarray(tokenizer(texts)))
    pipeline_x = np.concatenate([x for x, _ in make_pipeline(split, 8, training=False, tokenizer=tokenizer).as_numpy_iterator()])
    np.testing.assert_array_equal(batches.x, pipeline_x)


def test_array_batches_train_repeatably_under_jax(tmp_path):
    # Keras shuffles arrays with NumPy's global generator: the run's seed must fix the order.
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, numpy as np\n"
        "from kerasdl.backend import select_backend\n"
        "select_backend('jax')\n"
        "import keras\n"
        "from kerasdl.data.pipeline import fit_arguments, training_input\n"
        "from kerasdl.data.source import Split\n"
        "x = np.random.default_rng(0).normal(size=(200, 6)).astype('float32'); y = (x[:, 0] > 0).astype('int64')\n"
        "def train(seed):\n"
        "    keras.utils.set_random_seed(seed)\n"
        "    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])\n"
        "    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
        "    batches = training_input(Split.from_arrays(x, y), 16)\n"
        "    assert type(batches).__name__ == 'ArrayBatches', batches\n"
        "    history = model.fit(**fit_arguments(batches), epochs=2, verbose=0)\n"
        "    return np.concatenate([w.ravel() for w in model.get_weights()]), history.history['loss']\n"
        "first, second, other = train(1), train(1), train(2)\n"
        "assert np.array_equal(first[0], second[0]) and first[1] == second[1], 'the same seed trained differently'\n"
        "assert not np.array_equal(first[0], other[0]), 'another seed trained identically: the order was not shuffled'\n"
        "assert first[1][1] < first[1][0], first[1]\n"
        "print('ok', keras.backend.backend())\n"
    )
    root = Path(__file__).resolve().parents[2]
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(root))
    completed = subprocess.run([sys.executable, "-c", code], cwd=root, env=environ, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split()[-2:] == ["ok", "jax"]


def test_splits_are_seeded_and_stratified():
    first, second = load_digits("features", seed=3), load_digits("features", seed=3)
    other = load_digits("features", seed=4)
    labels = lambda split: np.array([y for _, y in split.dataset.as_numpy_iterator()])  # noqa: E731
    np.testing.assert_array_equal(labels(first.test), labels(second.test))
    assert first.train.size + first.validation.size + first.test.size == 1797
    assert np.bincount(labels(first.test)).min() >= 17
    xs = lambda split: np.stack([x for x, _ in split.dataset.as_numpy_iterator()])  # noqa: E731
    assert not np.array_equal(xs(first.test), xs(other.test))


def test_normalization_is_learned_from_the_training_split():
    splits = load_digits("features")
    mean, variance = normalization_statistics(splits.train, "features")
    train = np.stack([x for x, _ in splits.train.dataset.as_numpy_iterator()])
    np.testing.assert_allclose(mean, train.mean(axis=0), rtol=1e-5, atol=1e-5)
    # Constant features (always-blank corner pixels) get variance 1, not 0.
    expected = np.where(train.var(axis=0) > 1e-12, train.var(axis=0), 1.0)
    np.testing.assert_allclose(variance, expected, rtol=1e-4)


def test_npz_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((10, 3)), y=np.zeros(9))
    with pytest.raises(DataError, match=r"bad.npz: x has 10 examples but y has 9"):
        load_npz(str(path), "features")
    x = np.random.default_rng(0).normal(size=(20, 3))
    x[7, 1] = np.nan
    np.savez(path, x=x, y=np.arange(20) % 2)
    with pytest.raises(DataError, match=r"bad.npz: features contain NaN \(first at example 7\)"):
        load_npz(str(path), "features")
    np.savez(path, x=np.ones((20, 3)), y=np.zeros(20))
    with pytest.raises(DataError, match=r"only one class"):
        load_npz(str(path), "features")


def test_npz_string_labels_become_class_names(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(40, 4)), y=np.array(["spam", "ham"] * 20))
    splits = load_npz(str(path), "features")
    assert splits.class_names == ["ham", "spam"] and splits.input_shape == (4,)


def test_tfds_offline_fails_in_one_line(tmp_path):
    from kerasdl.data.tfds import _TFDS_HOST, _reachable

    if _reachable(_TFDS_HOST):
        pytest.skip("this machine reaches TFDS, so the offline message cannot be shown")
    with pytest.raises(DataError) as raised:
        load_data(DataConfig(source="tfds:mnist", data_dir=str(tmp_path)), ("image",), seed=0)
    message = str(raised.value)
    assert "tfds:mnist is not in" in message and "--data-dir" in message and "\n" not in message
