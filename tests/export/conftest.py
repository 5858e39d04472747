"""Tiny trained runs for the export tests: one run directory per model, built once per module.

Each fixture builds a small model with the real kerasdl builder, fits it for a
few epochs on separable synthetic data (so int8 has margins to keep), saves it
with `kerasdl.artifact.save_model` and writes the run-directory files export
reads (CONTRACTS.md §4): `model.keras`, `data/validation.npz|json`,
`data/calibration.npz|json`, `metrics.json`, `config.yaml`. `data/validation.*` is the layout of
runs written before `data/heldout.json`, which export still reads; runs of `training.run` keep
raw held-out files instead (`kerasdl.heldout`, exercised by tests/test_every_path.py).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CIFAR_JPG = SHARED_DATA / "cifar10-test-jpg"
SST2 = SHARED_DATA / "sst2"


def write_run(run_dir, model, metadata, validation, calibration, config=None):
    """Writes a run directory like `python -m training.run` does; returns its path."""
    from kerasdl.artifact import save_model

    run_dir = Path(run_dir)
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata, run_dir=str(run_dir))
    save_model(model, run_dir / "model.keras", metadata)
    if metadata["modality"] == "text":
        for stem, (x, y) in (("validation", validation), ("calibration", calibration)):
            (run_dir / "data" / f"{stem}.json").write_text(json.dumps({"x": list(x), "y": [int(v) for v in y]}))
    else:
        np.savez(run_dir / "data" / "validation.npz", x=validation[0], y=validation[1])
        np.savez(run_dir / "data" / "calibration.npz", x=calibration[0], y=calibration[1])
    (run_dir / "metrics.json").write_text(
        json.dumps({"test_accuracy": 0.9, "test_loss": 0.3, "per_class": {}, "wall_time_s": 1.0, "examples_per_s": 100.0})
    )
    (run_dir / "config.yaml").write_text(config or f"model: {metadata['model']}\nepochs: 3\n")
    return run_dir


def _fit(model, x, y, epochs, learning_rate=0.01, batch_size=32):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)


def _rising_or_falling(seed, count, steps, shortest, noise=0.0):
    """`(x [count, steps, 1], y)`: zero-padded ramps around 2.0 of random length, rising (1) or falling (0)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=count)
    x = np.zeros((count, steps, 1), "float32")
    for index in range(count):
        length = int(rng.integers(shortest, steps + 1))
        ramp = 2.0 + np.linspace(0, 1, length) * (1 if y[index] else -1)
        x[index, :length, 0] = ramp + rng.normal(0, noise, length) if noise else ramp
    return x, y


# The numeric recurrent and convolutional fixtures' metadata: one feature, rising vs falling.
def _series_metadata(model_name):
    return {"model": model_name, "modality": "sequence", "class_names": ["falling", "rising"],
            "input": {"shape": [None, 1], "dtype": "float32"}, "output": "logits"}


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory):
    """An MLP on 6 raw features (3 well-separated classes), with Normalization inside."""
    import keras

    from kerasdl.models import mlp

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, size=(3, 6)) + 50.0
    y = rng.integers(0, 3, size=300)
    x = (centers[y] + rng.normal(0, 1, size=(300, 6))).astype("float32")
    model = mlp(input_shape=(6,), num_classes=3, hidden_units=16,
                normalization_mean=x.mean(axis=0), normalization_variance=x.var(axis=0))
    _fit(model, x[:200], y[:200], epochs=15)
    metadata = {"model": "mlp", "modality": "features", "class_names": ["alpha", "beta", "gamma"],
                "input": {"shape": [6], "dtype": "float32"}, "output": "logits"}
    return write_run(tmp_path_factory.mktemp("mlp") / "run", model, metadata, (x[200:264], y[200:264]), (x[:200], y[:200]))


def cifar_images(count, per_class=None):
    """Returns `(pixels float32 [N, 32, 32, 3], labels, paths)` of real CIFAR-10 JPEGs, decoded with Pillow."""
    from PIL import Image

    classes = sorted(entry.name for entry in CIFAR_JPG.iterdir() if entry.is_dir())
    per_class = per_class or max(1, count // len(classes))
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = sorted((CIFAR_JPG / name).glob("*.jpg"))[:per_class]
        paths += files
        labels += [index] * len(files)
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype="float32") for path in paths])
    return pixels, np.asarray(labels), paths, classes


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory):
    """A tiny CNN on real 32x32 CIFAR-10 JPEGs (10 classes), with Normalization inside."""
    if not CIFAR_JPG.is_dir():
        pytest.skip(f"{CIFAR_JPG} is absent (shared datasets not mounted)")
    import keras

    from kerasdl.models import cnn

    keras.utils.set_random_seed(0)
    pixels, labels, _, classes = cifar_images(200, per_class=20)
    model = cnn(input_shape=(32, 32, 3), num_classes=10, filters=(8,), dense_units=16, dropout_rate=0.0,
                normalization_mean=pixels.mean(axis=(0, 1, 2)), normalization_variance=pixels.var(axis=(0, 1, 2)))
    _fit(model, pixels, labels, epochs=3, learning_rate=0.001)
    metadata = {"model": "cnn", "modality": "image", "class_names": classes,
                "input": {"shape": [None, None, 3], "image_size": [32, 32], "dtype": "float32", "value_range": [0, 255]},
                "output": "logits"}
    order = np.random.default_rng(0).permutation(len(labels))
    # Labels for the held-out examples are the float model's own predictions, so
    # that int8 accuracy is measured against a model with 100 % "accuracy".
    validation = pixels[order[:32]]
    predicted = np.asarray(model.predict(validation, verbose=0)).argmax(axis=-1)
    return write_run(tmp_path_factory.mktemp("cnn") / "run", model, metadata, (validation, predicted),
                     (pixels[order[32:96]], labels[order[32:96]]))


@pytest.fixture(scope="session")
def lstm_run(tmp_path_factory):
    """A tiny LSTM on zero-padded sequences of variable length (2 classes: rising vs falling)."""
    import keras

    from kerasdl.models.lstm import lstm

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    count, steps = 160, 12
    y = rng.integers(0, 2, size=count)
    x = np.zeros((count, steps, 2), "float32")
    for index in range(count):
        length = int(rng.integers(4, steps + 1))
        ramp = np.linspace(0, 1, length) * (1 if y[index] else -1)
        x[index, :length, 0] = ramp + 2.0 + rng.normal(0, 0.05, length)
        x[index, :length, 1] = 1.0 + rng.normal(0, 0.05, length)
    model = lstm(input_shape=(None, 2), num_classes=2, hidden_size=8, dropout_rate=0.0,
                 normalization_mean=[2.0, 1.0], normalization_variance=[0.3, 0.01])
    _fit(model, x[:128], y[:128], epochs=4)
    metadata = {"model": "lstm", "modality": "sequence", "class_names": ["falling", "rising"],
                "input": {"shape": [None, 2], "dtype": "float32"}, "output": "logits"}
    return write_run(tmp_path_factory.mktemp("lstm") / "run", model, metadata, (x[128:], y[128:]), (x[:128], y[:128]))


@pytest.fixture(scope="session")
def gru_run(tmp_path_factory):
    """A tiny numeric GRU on zero-padded series of variable length (2 classes: rising vs falling)."""
    import keras

    from kerasdl.models.gru import gru

    keras.utils.set_random_seed(0)
    x, y = _rising_or_falling(seed=1, count=96, steps=10, shortest=3)
    model = gru(input_shape=(None, 1), num_classes=2, hidden_size=8, dropout_rate=0.0,
                normalization_mean=[2.0], normalization_variance=[0.2])
    _fit(model, x[:64], y[:64], epochs=3)
    return write_run(tmp_path_factory.mktemp("gru") / "run", model, _series_metadata("gru"), (x[64:], y[64:]), (x[:64], y[:64]))


@pytest.fixture(scope="session")
def fcn_run(tmp_path_factory):
    """A tiny FCN (convolutions, masked pooling) on zero-padded series of variable length (rising vs falling)."""
    import keras

    from kerasdl.models.fcn import fcn

    keras.utils.set_random_seed(0)
    x, y = _rising_or_falling(seed=2, count=96, steps=12, shortest=4, noise=0.05)
    model = fcn(input_shape=(None, 1), num_classes=2, filters=(8, 16, 8))
    _fit(model, x[:64], y[:64], epochs=5, batch_size=16)
    return write_run(tmp_path_factory.mktemp("fcn") / "run", model, _series_metadata("fcn"), (x[64:], y[64:]), (x[:64], y[:64]))


def sst2_lines(split, count):
    """Returns `(sentences, labels)`: the first `count` lines of a real SST-2 file."""
    sentences, labels = [], []
    with open(SST2 / f"{split}.tsv", encoding="utf-8") as handle:
        next(handle)  # header: label<TAB>sentence
        for line in handle:
            label, sentence = line.rstrip("\n").split("\t", 1)
            sentences.append(sentence)
            labels.append(int(label))
            if len(sentences) == count:
                break
    return sentences, np.asarray(labels)


@pytest.fixture(scope="session")
def text_lstm_run(tmp_path_factory):
    """A tiny text LSTM (TextVectorization inside) on real SST-2 sentences."""
    if not SST2.is_dir():
        pytest.skip(f"{SST2} is absent (shared datasets not mounted)")
    import keras

    from kerasdl.models.lstm import text_lstm
    from kerasdl.models.recurrent import build_text_vocabulary

    keras.utils.set_random_seed(0)
    train_x, train_y = sst2_lines("train", 256)
    dev_x, dev_y = sst2_lines("dev", 32)
    vocabulary = build_text_vocabulary(train_x, max_tokens=500)
    model = text_lstm(num_classes=2, vocabulary=vocabulary, sequence_length=24, embedding_dim=8,
                      hidden_size=8, dropout_rate=0.0)
    _fit(model, np.asarray(train_x, dtype=object), train_y, epochs=2)
    # The registry's "lstm" entry builds the text LSTM for text data, so the metadata says "lstm".
    metadata = {"model": "lstm", "modality": "text", "class_names": ["negative", "positive"],
                "input": {"shape": [], "dtype": "string"}, "output": "logits",
                "text": {"tokenizer": "text_vectorization", "sequence_length": 24}}
    return write_run(tmp_path_factory.mktemp("text_lstm") / "run", model, metadata, (dev_x, dev_y),
                     (train_x[:64], train_y[:64]))


def _export(run_dir, base, **options):
    from export.run import export_model

    return export_model(run_dir, base=base, log=lambda line: None, **options)


@pytest.fixture(scope="session")
def mlp_export(mlp_run, tmp_path_factory):
    """The MLP exported to SavedModel + ONNX + int8 (dynamic) under a fresh base path."""
    return _export(mlp_run, tmp_path_factory.mktemp("mlp_exports"), quantize="int8")


@pytest.fixture(scope="session")
def cnn_export(cnn_run, tmp_path_factory):
    """The CNN exported to SavedModel (+ image_bytes) + ONNX + int8 (static QDQ)."""
    return _export(cnn_run, tmp_path_factory.mktemp("cnn_exports"), quantize="int8", max_accuracy_drop=100.0)


@pytest.fixture(scope="session")
def lstm_export(lstm_run, tmp_path_factory):
    """The numeric LSTM exported to SavedModel + ONNX (dynamic time axis)."""
    return _export(lstm_run, tmp_path_factory.mktemp("lstm_exports"))


@pytest.fixture(scope="session")
def text_lstm_export(text_lstm_run, tmp_path_factory):
    """The text LSTM: SavedModel on strings, ONNX on token ids + tokenizer/, int8 (dynamic)."""
    return _export(text_lstm_run, tmp_path_factory.mktemp("text_lstm_exports"), quantize="int8", max_accuracy_drop=100.0)


def keras_reference(run_dir, inputs):
    """Returns softmax(logits) of the run's Keras model on `inputs`."""
    from export.verify import keras_probabilities
    from kerasdl.artifact import load_model

    model, metadata = load_model(Path(run_dir) / "model.keras")
    return keras_probabilities(model, inputs, metadata)


@pytest.fixture(scope="session")
def helpers():
    """The helper functions above, for test modules (conftest modules are not importable by name)."""
    import types

    return types.SimpleNamespace(
        keras_reference=keras_reference, cifar_images=cifar_images, sst2_lines=sst2_lines, write_run=write_run,
        CIFAR_JPG=CIFAR_JPG, SST2=SST2,
    )


@pytest.fixture(scope="session")
def bert_run(tmp_path_factory):
    """A tiny from-scratch BERT (keras-hub, preprocessor attached) with a WordPiece vocabulary from SST-2."""
    if not SST2.is_dir():
        pytest.skip(f"{SST2} is absent (shared datasets not mounted)")
    import keras

    from kerasdl.models.bert import bert, build_wordpiece_vocabulary

    keras.utils.set_random_seed(0)
    train_x, train_y = sst2_lines("train", 256)
    dev_x, dev_y = sst2_lines("dev", 16)
    vocabulary = build_wordpiece_vocabulary(train_x, vocabulary_size=400)
    model = bert(num_classes=2, vocabulary=vocabulary, sequence_length=24, num_layers=1, num_heads=2,
                 hidden_dim=16, intermediate_dim=32, dropout_rate=0.0)
    metadata = {"model": "bert", "modality": "text", "class_names": ["negative", "positive"],
                "input": {"shape": [], "dtype": "string"}, "output": "logits",
                "text": {"tokenizer": "bert", "sequence_length": 24}}
    return write_run(tmp_path_factory.mktemp("bert") / "run", model, metadata, (dev_x, dev_y),
                     (train_x[:32], train_y[:32]))


@pytest.fixture(scope="session")
def bert_export(bert_run, tmp_path_factory):
    """The BERT: SavedModel on strings (preprocessor in-graph), ONNX on token features + tokenizer/."""
    return _export(bert_run, tmp_path_factory.mktemp("bert_exports"), quantize="int8", max_accuracy_drop=100.0)
