"""kerasdl.backend: choosing TensorFlow or JAX before Keras is imported.

The import order matters (Keras fixes its backend on first import, and importing
TensorFlow imports Keras), so every check that imports Keras runs in a fresh
Python; the resolution rules are checked in process, where nothing is imported.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kerasdl import backend
from kerasdl.backend import BackendError, resolve_backend

REPO_ROOT = Path(__file__).resolve().parents[1]
TWO_WORKERS = json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}})


def run_python(code, **environment):
    """Runs `code` in a fresh Python from the repository root; returns the CompletedProcess."""
    environ = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    environ.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO_ROOT), **environment)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=300)


def last_json(completed):
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


class FakeEntry:
    def __init__(self, backend_name):
        self.backend = backend_name


@pytest.fixture
def registry(monkeypatch):
    """Registry entries of a JAX-preferring and a TensorFlow-preferring model, without touching the real registry."""
    entries = {"dense": FakeEntry("jax"), "convolutional": FakeEntry("tensorflow"), "broken": FakeEntry("torch")}
    monkeypatch.setattr("kerasdl.models.registry.get_model_entry", entries.__getitem__)
    return entries


def test_explicit_backends_are_taken_as_asked():
    assert resolve_backend("tensorflow", "mlp") == backend.BackendChoice("tensorflow", "tensorflow", "train.backend=tensorflow")
    assert resolve_backend("jax", "mlp").name == "jax"


def test_auto_follows_the_registry_entry(registry):
    dense = resolve_backend("auto", "dense", environ={})
    assert (dense.name, dense.requested) == ("jax", "auto") and "dense says jax" in dense.reason
    assert resolve_backend("auto", "convolutional", environ={}).name == "tensorflow"


def test_auto_reads_every_real_entry_without_importing_keras():
    from kerasdl.models.registry import get_model_entry, model_names

    for name in model_names():
        assert resolve_backend("auto", name, environ={}).name == get_model_entry(name).backend


@pytest.mark.parametrize(
    "strategy, environ, reason",
    [
        ("multi_worker", {}, "train.strategy=multi_worker is a tf.distribute strategy"),
        ("mirrored", {}, "train.strategy=mirrored is a tf.distribute strategy"),
        ("auto", {"TF_CONFIG": TWO_WORKERS}, "TF_CONFIG names a multi-worker cluster"),
    ],
)
def test_tf_distribute_runs_stay_on_tensorflow(registry, strategy, environ, reason):
    choice = resolve_backend("auto", "dense", strategy=strategy, environ=environ)
    assert choice.name == "tensorflow" and reason in choice.reason
    with pytest.raises(BackendError, match=f"train.backend=jax cannot be used here: {reason}.*set train.backend=tensorflow or auto"):
        resolve_backend("jax", "dense", strategy=strategy, environ=environ)


def test_a_single_process_cluster_config_keeps_jax(registry):
    one_worker = json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}})
    assert resolve_backend("auto", "dense", strategy="auto", environ={"TF_CONFIG": one_worker}).name == "jax"


@pytest.mark.skipif(sys.version_info >= backend.JAX_PROFILING_PYTHON, reason="Keras profiles JAX from Python 3.12 on")
def test_a_profiled_run_goes_to_tensorflow_where_keras_cannot_profile_jax(registry):
    choice = resolve_backend("auto", "dense", profile=True, environ={})
    assert choice.name == "tensorflow" and "train.profile needs tensorflow on Python 3.11" in choice.reason
    with pytest.raises(BackendError, match="train.profile needs tensorflow"):
        resolve_backend("jax", "dense", profile=True, environ={})


def test_bad_names_and_missing_jax_are_one_line_errors(registry, monkeypatch):
    assert BackendError.user_error is True  # kerasdl.console.run_cli: one `error:` line, exit 2.
    with pytest.raises(BackendError, match=r"train.backend must be one of tensorflow, jax, auto, got 'torch'"):
        resolve_backend("torch", "dense")
    with pytest.raises(BackendError, match="needs the model name"):
        resolve_backend("auto")
    # A registry entry with an unknown backend is a bug in the registry, not a user mistake.
    with pytest.raises(ValueError, match="the registry entry 'broken' names backend 'torch'"):
        resolve_backend("auto", "broken", environ={})
    real_find_spec = backend.importlib.util.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None if name == "jax" else real_find_spec(name))
    with pytest.raises(BackendError, match=r"needs JAX, which is not installed: pip install 'jax\[cpu\]==0.10.2'"):
        resolve_backend("jax", "dense")
    with pytest.raises(BackendError, match="needs JAX"):
        resolve_backend("auto", "dense", environ={})


def test_select_jax_then_train_on_tf_data_and_keep_tensorflow():
    # The backend is chosen first; TensorFlow is imported after it, for tf.data, and
    # Keras trains a model on a tf.data dataset under JAX.
    completed = run_python("""
        import json, os
        from kerasdl.backend import select_backend, loaded_backend
        before = loaded_backend()
        choice = select_backend("jax")
        import numpy as np, tensorflow as tf, keras
        x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="logits")])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile="auto")
        history = model.fit(dataset, epochs=2, verbose=0)
        print(json.dumps({"before": before, "chosen": choice.name, "keras": keras.backend.backend(), "env": os.environ["KERAS_BACKEND"],
                          "tensorflow": tf.__version__, "jit": bool(model.jit_compile), "epochs": len(history.history["loss"]),
                          "again": select_backend("jax").name}))
    """, KERAS_BACKEND="tensorflow")
    result = last_json(completed)
    assert result["before"] is None and result["chosen"] == result["keras"] == result["env"] == result["again"] == "jax"
    assert result["tensorflow"].startswith("2.") and result["jit"] is True and result["epochs"] == 2


def test_keras_imported_under_another_backend_is_refused_unless_auto_can_keep_it():
    # Importing TensorFlow imports Keras with the backend of that moment.
    completed = run_python("""
        import json
        import tensorflow
        import kerasdl.models.registry as registry
        from kerasdl.backend import BackendError, loaded_backend, select_backend
        registry.get_model_entry = lambda name: type("Entry", (), {"backend": "jax"})()
        loaded = loaded_backend()
        try:
            select_backend("jax")
            message = None
        except BackendError as error:
            message = str(error)
        kept = select_backend("auto", "dense")
        print(json.dumps({"loaded": loaded, "message": message, "same": select_backend("tensorflow").name, "kept": [kept.name, kept.reason]}))
    """)
    result = last_json(completed)
    assert result["loaded"] == "tensorflow" and result["same"] == "tensorflow"
    assert result["message"].startswith("Keras is already imported with the tensorflow backend, so this run cannot train on jax")
    assert "start a new process with KERAS_BACKEND=jax" in result["message"]
    # In a process that already holds Keras (a notebook, a test), auto trains on what is there.
    assert result["kept"] == ["tensorflow", "Keras is already imported with tensorflow in this process, and auto keeps it (the registry entry of dense says jax)"]


def test_auto_cannot_keep_jax_for_a_run_that_needs_tensorflow():
    completed = run_python("""
        import json
        import keras
        import kerasdl.models.registry as registry
        from kerasdl.backend import BackendError, select_backend
        registry.get_model_entry = lambda name: type("Entry", (), {"backend": "tensorflow"})()
        kept = select_backend("auto", "convolutional")
        try:
            select_backend("auto", "convolutional", strategy="mirrored")
            message = None
        except BackendError as error:
            message = str(error)
        print(json.dumps({"kept": kept.name, "message": message}))
    """, KERAS_BACKEND="jax")
    result = last_json(completed)
    assert result["kept"] == "jax"
    assert result["message"].startswith("Keras is already imported with the jax backend, so this run cannot train on tensorflow")


def test_check_feedable_names_what_jax_cannot_take():
    import numpy as np
    import tensorflow as tf

    numbers = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3), "float32"), np.zeros(4, "int64"))).batch(2)
    backend.check_feedable(numbers, "jax")
    texts = tf.data.Dataset.from_tensor_slices((["a good film", "a bad one"], [1, 0])).batch(2)
    backend.check_feedable(texts, "tensorflow")
    with pytest.raises(ValueError, match=r"the jax backend takes dense numeric batches; this dataset yields string at x: tokenize"):
        backend.check_feedable(texts, "jax")
    ragged = tf.data.Dataset.from_tensor_slices(({"ids": tf.ragged.constant([[1, 2], [3]])}, [1, 0])).batch(2)
    with pytest.raises(ValueError, match=r"ragged at x\['ids'\]"):
        backend.check_feedable(ragged, "jax")
