"""In-process tests of kerasdl.distribute (multi-worker runs are in test_multi_worker.py)."""

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml

from kerasdl import distribute

REPO_ROOT = Path(__file__).resolve().parents[2]
TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}


def test_unknown_strategy_is_one_clear_line():
    with pytest.raises(ValueError) as error:
        distribute.make_strategy("horovod")
    assert str(error.value) == "unknown strategy 'horovod'; choose one of: auto, default, mirrored, multi_worker"


def test_default_and_auto_without_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    import tensorflow as tf

    strategy, info = distribute.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert info == distribute.ClusterInfo(strategy="default", is_chief=True, num_workers=1, num_replicas=1)
    # A one-task cluster is not multi-worker training; without GPUs auto is the default strategy.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}))
    _, info = distribute.make_strategy("auto")
    assert info.strategy == "default"


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy multi_worker needs TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    with pytest.raises(ValueError, match="positive number of seconds"):
        distribute.make_strategy("default", timeout_seconds=0)


def test_read_tf_config_rejects_bad_values():
    assert distribute.read_tf_config({}) is None
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.read_tf_config({"TF_CONFIG": "{cluster"})
    bad_task = dict(TWO_WORKERS, task={"type": "worker", "index": 2})
    with pytest.raises(ValueError, match="is not in the cluster"):
        distribute.read_tf_config({"TF_CONFIG": json.dumps(bad_task)})
    parsed = distribute.read_tf_config({"TF_CONFIG": json.dumps(TWO_WORKERS)})
    assert distribute.cluster_size(parsed) == 2


def test_chief_is_the_chief_task_or_worker_zero():
    assert not distribute.is_chief_task(TWO_WORKERS)
    assert distribute.is_chief_task(dict(TWO_WORKERS, task={"type": "worker", "index": 0}))
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
    assert not distribute.is_chief_task(with_chief)
    assert distribute.is_chief_task(dict(with_chief, task={"type": "chief", "index": 0}))
    assert distribute.cluster_size(with_chief) == 2


def test_unreachable_peers_names_only_closed_ports():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    open_port = listener.getsockname()[1]
    tf_config = {"cluster": {"worker": ["127.0.0.1:9", f"127.0.0.1:{open_port}", f"127.0.0.1:{closed_port}"]}, "task": {"type": "worker", "index": 0}}
    try:
        assert distribute.unreachable_peers(tf_config) == [f"worker 2 at 127.0.0.1:{closed_port}"]
    finally:
        listener.close()


def test_scale_batch_and_learning_rate():
    assert distribute.scale_batch_and_learning_rate(32, 1e-3, 4) == (128, 4e-3)
    assert distribute.scale_batch_and_learning_rate(32, 1e-3, 4, scale_learning_rate=False) == (128, 1e-3)
    assert distribute.scale_batch_and_learning_rate(64, 0.1, 1) == (64, 0.1)
    with pytest.raises(ValueError, match="batch size must be a positive integer"):
        distribute.scale_batch_and_learning_rate(0, 1e-3, 2)
    with pytest.raises(ValueError, match="number of replicas"):
        distribute.scale_batch_and_learning_rate(8, 1e-3, 0)


def test_keras_version_range_is_pinned(monkeypatch):
    import keras

    # The patch was checked against this range only; widening it needs a re-check.
    assert distribute.KERAS_CHECKED_RANGE == ((3, 15), (3, 16))
    assert distribute.KERAS_CHECKED_RANGE_TEXT == ">=3.15,<3.16"
    assert distribute.keras_version_checked(keras.__version__)
    assert distribute.keras_version_checked("3.15.0")
    assert not distribute.keras_version_checked("3.16.0")
    assert not distribute.keras_version_checked("3.14.2")
    assert not distribute.keras_version_checked("4.0.0")
    monkeypatch.setattr(keras, "__version__", "3.16.1")
    with pytest.raises(RuntimeError, match=r"checked with keras >=3.15,<3.16, but keras 3.16.1 is installed"):
        distribute.enable_multi_worker_fit()


def test_patch_delegates_outside_multi_worker():
    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    original_reduce = tensorflow_trainer.reduce_per_replica
    distribute.enable_multi_worker_fit()
    try:
        assert tensorflow_trainer.reduce_per_replica is not original_reduce
        distribute.enable_multi_worker_fit()  # idempotent
        value = tf.constant(3.0)
        # Outside MultiWorkerMirroredStrategy the Keras original runs: a plain tensor passes through.
        assert tensorflow_trainer.reduce_per_replica(value, tf.distribute.get_strategy(), "auto") is value
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="logits")])
            model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        x = np.random.RandomState(0).rand(32, 4).astype("float32")
        y = np.arange(32) % 3
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    finally:
        distribute.disable_multi_worker_fit()
    assert tensorflow_trainer.reduce_per_replica is original_reduce


def test_write_dir_for_chief_and_other_workers(tmp_path):
    chief = distribute.ClusterInfo(strategy="multi_worker", is_chief=True, num_workers=2, task_type="worker", task_index=0)
    other = distribute.ClusterInfo(strategy="multi_worker", is_chief=False, num_workers=2, task_type="worker", task_index=1)
    run_dir = str(tmp_path / "run")
    assert distribute.write_dir_for(run_dir, chief) == run_dir
    temporary = distribute.write_dir_for(run_dir, other)
    assert not temporary.startswith(str(tmp_path)) and os.path.basename(temporary) == "run"
    os.makedirs(temporary)
    Path(temporary, "checkpoint.keras").write_text("x")
    distribute.cleanup_write_dir(temporary, run_dir)
    assert not os.path.exists(os.path.dirname(temporary))
    distribute.cleanup_write_dir(run_dir, run_dir)  # the chief's own directory stays


def test_backup_is_written_by_the_chief_only_and_restores(tmp_path):
    import keras

    def build():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="logits")])
        model.compile(optimizer="adam", loss="mse")
        return model

    backup_dir = str(tmp_path / "backup")
    other = distribute.ClusterInfo(strategy="multi_worker", is_chief=False, num_workers=2, task_type="worker", task_index=1)
    callback = distribute.backup_and_restore(backup_dir, other)
    model = build()
    callback.set_model(model)
    callback.on_epoch_end(0)
    assert not os.path.exists(backup_dir)  # another worker's copy goes to its own temporary dir
    assert os.path.exists(os.path.join(callback._write_dir, "weights-epoch-1-batch-0.weights.h5"))
    callback.on_train_end()
    assert not os.path.exists(callback._write_dir)

    chief = distribute.ClusterInfo(strategy="default")
    callback = distribute.backup_and_restore(backup_dir, chief)
    callback.set_model(model)
    callback.on_epoch_end(2)
    assert sorted(os.listdir(backup_dir)) == ["training_metadata.json", "weights-epoch-3-batch-0.weights.h5"]  # no partial files
    # The metadata names the epoch's weights file: writing it commits weights and epoch together.
    assert json.loads(Path(backup_dir, "training_metadata.json").read_text()) == {"epoch": 3, "batch": 0, "weights": "weights-epoch-3-batch-0.weights.h5"}

    # A fresh process (here: a fresh model) on any worker resumes from the chief's backup.
    restored = build()
    reader = distribute.backup_and_restore(backup_dir, other)
    reader.set_model(restored)
    reader.on_train_begin()
    assert restored._initial_epoch == 3
    for expected, actual in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_shard_by_data_sets_the_data_policy():
    import tensorflow as tf

    dataset = distribute.shard_by_data(tf.data.Dataset.range(8).batch(4))
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    assert [batch.tolist() for batch in dataset.as_numpy_iterator()] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_kubernetes_manifest_parses_and_sets_tf_config_per_pod():
    documents = list(yaml.safe_load_all((REPO_ROOT / "docs" / "k8s-multi-worker.yaml").read_text()))
    service, job = documents
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    container = pod["containers"][0]
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    assert environment["WORKERS"] == "2"
    script = container["args"][0]
    assert "$JOB_COMPLETION_INDEX" in script and "export TF_CONFIG=" in script
    assert "python -m training.run mlp --strategy multi_worker" in script
    assert container["ports"][0]["containerPort"] == service["spec"]["ports"][0]["port"]
