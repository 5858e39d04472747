"""Distribution strategies for training: one process, several GPUs, or several workers.

The training loop calls, in this order (see README, "Multi-worker training"):

1. `make_strategy(name, timeout_seconds)` first, before any other TensorFlow work:
   `MultiWorkerMirroredStrategy` must configure the collective runtime before the
   TensorFlow context starts, and it waits (up to the timeout) for every peer.
2. Data: batch every dataset with the *global* batch size
   (`scale_batch_and_learning_rate`) and pass it through `shard_by_data`, so that each
   worker takes its slice of every global batch.
3. `with strategy.scope():` build and compile the model (variables are mirrored).
4. `model.fit(dataset, ...)` as usual, with callbacks writing into
   `write_dir_for(path, info)` and `backup_and_restore(backup_dir, info)` for fault
   tolerance. Every worker runs the same calls (fit, evaluate, saving), since each of
   them takes part in collectives; only the chief's files are kept.
"""

import dataclasses
import json
import os
import shutil
import socket
import sys
import tempfile

# Keras 3 `fit` fails under MultiWorkerMirroredStrategy
# (https://github.com/keras-team/keras/issues/20585). `enable_multi_worker_fit` patches
# two private functions of the Keras TensorFlow trainer; it was checked against this
# range only, so other versions are refused until the patch is checked again.
KERAS_CHECKED_RANGE = ((3, 15), (3, 16))
KERAS_CHECKED_RANGE_TEXT = ">=3.15,<3.16"

STRATEGY_NAMES = ("auto", "default", "mirrored", "multi_worker")



@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """Where this process stands in the training cluster.

    Attributes:
        strategy: the resolved strategy name ("default", "mirrored" or "multi_worker").
        is_chief: True for the one worker whose files are kept (logs, checkpoints, model).
        num_workers: processes training together (1 unless multi-worker).
        num_replicas: model replicas in sync across all workers (devices x workers).
        task_type: "worker" or "chief" from TF_CONFIG; None outside a cluster.
        task_index: this task's index in its job; None outside a cluster.
    """

    strategy: str
    is_chief: bool = True
    num_workers: int = 1
    num_replicas: int = 1
    task_type: object = None
    task_index: object = None


def read_tf_config(environ=None):
    """Returns the parsed `TF_CONFIG` (`{"cluster": ..., "task": ...}`), or None when unset.

    Args:
        environ: the environment to read; `os.environ` by default.

    Example:
    >>> read_tf_config({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'})["task"]
    {'type': 'worker', 'index': 0}
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); set it to {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, \"task\": {{\"type\": \"worker\", \"index\": N}}}}") from None
    cluster = tf_config.get("cluster") or {}
    task = tf_config.get("task") or {}
    if not isinstance(cluster, dict) or not all(isinstance(addresses, list) for addresses in cluster.values()):
        raise ValueError("TF_CONFIG 'cluster' must map job names to lists of host:port addresses, e.g. {\"worker\": [\"host0:2222\", \"host1:2222\"]}")
    if cluster:
        task_type, task_index = task.get("type"), task.get("index")
        if task_type not in cluster or not isinstance(task_index, int) or not 0 <= task_index < len(cluster[task_type]):
            raise ValueError(f"TF_CONFIG task {task!r} is not in the cluster {cluster!r}; set task.type to one of {sorted(cluster)} and task.index to this worker's position in that list")
    return {"cluster": cluster, "task": task}


def cluster_size(tf_config):
    """Number of training tasks (chief + workers) in a parsed TF_CONFIG; 0 for None."""
    if not tf_config:
        return 0
    return sum(len(tf_config["cluster"].get(job, [])) for job in ("chief", "worker"))


def is_chief_task(tf_config):
    """The chief is the "chief" task, or worker 0 when the cluster has no chief job."""
    if not tf_config or not tf_config["cluster"]:
        return True
    task_type, task_index = tf_config["task"].get("type"), tf_config["task"].get("index")
    if "chief" in tf_config["cluster"]:
        return task_type == "chief"
    return task_type == "worker" and task_index == 0


def make_strategy(name="auto", timeout_seconds=120):
    """Creates the distribution strategy named `name`; call it before any other TF work.

    `auto` picks `multi_worker` when TF_CONFIG names a cluster of more than one task,
    `mirrored` when several GPUs are visible, else `default` (one device). For
    `multi_worker` the call waits for every peer and then runs one all-reduce; a worker
    that cannot complete it within `timeout_seconds` gets one line on stderr naming the
    unreachable peers and is killed (SIGKILL, exit status 137 in a shell) by a watchdog
    process: a process stuck in the collective runtime holds the GIL, so no exception
    can reach it, and TensorFlow's preemption handler swallows SIGTERM. It also calls
    `enable_multi_worker_fit()`, so that plain `model.fit` works.

    Args:
        name: "auto", "default", "mirrored" or "multi_worker".
        timeout_seconds: how long a multi-worker process waits for its peers.

    Returns:
        `(strategy, info)`: a `tf.distribute.Strategy` and a `ClusterInfo`.

    Example:
    >>> strategy, info = make_strategy("default")
    >>> info.is_chief, info.num_replicas
    (True, 1)
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGY_NAMES)}")
    if not timeout_seconds or timeout_seconds <= 0:
        raise ValueError(f"strategy timeout must be a positive number of seconds, got {timeout_seconds!r}")
    tf_config = read_tf_config()
    import tensorflow as tf

    if name == "auto":
        # The cluster check comes first: listing *logical* devices would start the
        # TensorFlow context, after which MultiWorkerMirroredStrategy cannot be created.
        if cluster_size(tf_config) > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"

    if name == "default":
        return tf.distribute.get_strategy(), ClusterInfo(strategy="default")
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return strategy, ClusterInfo(strategy="mirrored", num_replicas=strategy.num_replicas_in_sync)

    if not tf_config or not tf_config["cluster"]:
        raise ValueError("strategy multi_worker needs TF_CONFIG naming the cluster and this task, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host0:2222\", \"host1:2222\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
    enable_multi_worker_fit()
    task = tf_config["task"]
    _configure_coordination_service(tf_config, timeout_seconds)
    watchdog = _start_peer_watchdog(tf_config, timeout_seconds)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        # One all-reduce over every replica is the barrier: it returns only when all
        # workers have joined the collective group.
        joined = strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
        if int(joined.numpy()) != strategy.num_replicas_in_sync:
            raise RuntimeError(f"the cluster barrier counted {joined.numpy()} replicas, expected {strategy.num_replicas_in_sync}")
    except RuntimeError as error:
        if "must be configured at program startup" in str(error) or "already been initialized" in str(error):
            raise ValueError("strategy multi_worker must be created before any other TensorFlow work; call kerasdl.distribute.make_strategy first") from None
        raise
    finally:
        watchdog.cancel()
    info = ClusterInfo(
        strategy="multi_worker",
        is_chief=is_chief_task(tf_config),
        num_workers=cluster_size(tf_config),
        num_replicas=strategy.num_replicas_in_sync,
        task_type=task["type"],
        task_index=task["index"],
    )
    return strategy, info


def _configure_coordination_service(tf_config, timeout_seconds):
    """Configures TF's coordination service as MultiWorkerMirroredStrategy would, with a deadline.

    The strategy sets the service up itself when none is configured, but with the
    default registration timeout (an hour), during which a non-leader worker whose
    leader never starts blocks inside C++. The same configuration with
    `cluster_register_timeout_in_ms` bounds that wait.
    """
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

    cluster_spec = multi_worker_util.normalize_cluster_spec(tf_config["cluster"])
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job))
        for job in ("chief", "worker")
        if job in cluster_spec.jobs
    ]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs,
        # Later than the watchdog, which gives the clearer message; this bounds the wait
        # even if the watchdog process could not run.
        cluster_register_timeout_in_ms=int((timeout_seconds + 30) * 1000),
    )


def _peer_addresses(tf_config):
    """Yields `(description, host, port)` for every task of the cluster but this one."""
    task = tf_config["task"]
    for job, addresses in sorted(tf_config["cluster"].items()):
        for index, address in enumerate(addresses):
            if (job, index) == (task["type"], task["index"]):
                continue
            host, _, port = address.rpartition(":")
            yield f"{job} {index} at {address}", host.strip("[]"), int(port)


def unreachable_peers(tf_config, connect_timeout_seconds=1.0):
    """Lists the peers of a parsed TF_CONFIG that refuse a TCP connection right now.

    Args:
        tf_config: the result of `read_tf_config`.
        connect_timeout_seconds: how long each connection attempt may take.

    Example:
    >>> unreachable_peers({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}})
    ['worker 1 at 127.0.0.1:2']
    """
    unreachable = []
    for description, host, port in _peer_addresses(tf_config):
        try:
            with socket.create_connection((host, port), timeout=connect_timeout_seconds):
                pass
        except OSError:
            unreachable.append(description)
    return unreachable


def _start_peer_watchdog(tf_config, timeout_seconds):
    """Starts a watchdog process that ends this one with a clear line if the cluster never forms.

    It has to be a separate process: while a worker waits for its peers, TensorFlow
    blocks inside C++ holding the GIL, so no Python thread (or signal handler) of this
    process runs, and TensorFlow's preemption handler swallows SIGTERM. The watchdog
    waits on a pipe; `cancel()` (or this process dying) closes it, and silence for
    `timeout_seconds` makes the watchdog print the message and SIGKILL this process.
    """
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(
        [sys.executable, "-c", "from kerasdl.distribute import _watchdog_main; _watchdog_main()", str(os.getpid()), str(timeout_seconds), json.dumps(tf_config)],
        stdin=subprocess.PIPE,
        env=environment,
    )

    class Watchdog:
        def cancel(self):
            try:
                process.stdin.write(b"ok\n")
                process.stdin.close()
            except OSError:
                pass
            process.wait()

    return Watchdog()


def _watchdog_main():
    """The watchdog process: `python -c ... PARENT_PID TIMEOUT_SECONDS TF_CONFIG_JSON`."""
    import select
    import signal

    parent, timeout_seconds, tf_config = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
    ready, _, _ = select.select([sys.stdin], [], [], timeout_seconds)
    if ready:
        return
    task = tf_config["task"]
    missing = unreachable_peers(tf_config)
    peers = f"unreachable: {', '.join(missing)}" if missing else "all peers accept connections, but not all of them joined"
    sys.stderr.write(
        f"error: {task['type']} {task['index']} timed out after {timeout_seconds:g} s waiting for its peers ({peers}); "
        "start every worker listed in TF_CONFIG (same cluster, one task index each) or raise train.strategy_timeout_seconds\n"
    )
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)


def keras_version_checked(version=None):
    """True when `version` (the installed Keras by default) is in `KERAS_CHECKED_RANGE`."""
    if version is None:
        import keras

        version = keras.__version__
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(character for character in piece if character.isdigit())
        parts.append(int(digits or 0))
    low, high = KERAS_CHECKED_RANGE
    return low <= tuple(parts) < high


_ORIGINALS = {}


def enable_multi_worker_fit():
    """Lets plain Keras 3 `model.fit`/`evaluate` run under MultiWorkerMirroredStrategy.

    Keras 3.15's TensorFlow trainer fails under MultiWorkerMirroredStrategy
    (https://github.com/keras-team/keras/issues/20585) in two places:

    1. `_maybe_symbolic_build` takes the first distributed batch and calls
       `strategy.reduce("MEAN", batch)` to get something to build the model from; that
       cannot convert the batch (and would be a needless cross-worker all-reduce of
       data). Building only needs shapes and dtypes, so the patch builds from the
       dataset's element spec (one replica's part) instead.
    2. `reduce_per_replica` (for the logs each step returns) calls
       `strategy.reduce("MEAN", value, axis=0)` on the scalar metric values, which fails
       with "Invalid reduction dimension 0 for input with 0 dimensions". The logs need
       the mean over replicas, which is `axis=None`: the same result the single-worker
       path computes with `tf.reduce_mean(local_results, axis=0)`, and the same value on
       every worker, so callbacks (EarlyStopping, ModelCheckpoint) decide alike.

    The patched functions hand everything else (other strategies, "concat" for predict,
    "sum") to the Keras originals unchanged, so the patch is process-wide but has no
    effect outside multi-worker training. Calling it again does nothing.

    Raises:
        RuntimeError: the installed Keras is outside `KERAS_CHECKED_RANGE`.

    Example:
    >>> enable_multi_worker_fit()
    """
    import keras

    if not keras_version_checked():
        raise RuntimeError(
            f"kerasdl's multi-worker fit fix was checked with keras {KERAS_CHECKED_RANGE_TEXT}, but keras {keras.__version__} is installed; "
            "install keras 3.15.x or re-check kerasdl/distribute.py against keras-team/keras#20585"
        )
    if _ORIGINALS:
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer
    from tensorflow.python.distribute import values as distribute_values

    original_build = tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tensorflow_trainer.reduce_per_replica

    def in_multi_worker_mode(strategy):
        return tensorflow_trainer._collective_all_reduce_multi_worker(strategy)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is None or self._distribute_strategy is None or not in_multi_worker_mode(self.distribute_strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        # Shapes and dtypes come from the element spec, without drawing a batch: an
        # extra iterator would also advance a seeded `shuffle` by one epoch, so the run
        # would no longer see the batches of a single-process run.
        element_spec = getattr(getattr(iterator, "_distributed_dataset", None), "element_spec", None)
        if element_spec is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        local_spec = tf.nest.map_structure(
            lambda spec: spec._value_specs[0] if isinstance(spec, distribute_values.PerReplicaSpec) else spec, element_spec
        )
        return original_build(self, data_batch=local_spec)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and in_multi_worker_mode(strategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original_reduce(values, strategy, reduction)

    _ORIGINALS["build"] = original_build
    _ORIGINALS["reduce"] = original_reduce
    tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tensorflow_trainer.reduce_per_replica = reduce_per_replica


def disable_multi_worker_fit():
    """Restores the Keras originals patched by `enable_multi_worker_fit` (for tests)."""
    if not _ORIGINALS:
        return
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINALS.pop("build")
    tensorflow_trainer.reduce_per_replica = _ORIGINALS.pop("reduce")


def write_dir_for(path, info):
    """Returns where this worker writes what belongs at `path` (run dir, checkpoints, logs).

    The chief writes to `path` itself. Other workers must still run the same saving code
    (saving reads synchronized variables, which is a collective every worker joins), so
    they write to a fresh temporary directory of their own, removed by
    `cleanup_write_dir` (or at exit). This is the standard TF/Keras multi-worker pattern.

    Args:
        path: the real destination (a directory).
        info: the `ClusterInfo` from `make_strategy`.

    Example:
    >>> write_dir_for("runs/mlp/1", ClusterInfo(strategy="default"))
    'runs/mlp/1'
    """
    if info.is_chief:
        return path
    base = tempfile.mkdtemp(prefix=f"kerasdl-{info.task_type}-{info.task_index}-")
    _TEMPORARY_DIRS.append(base)
    return os.path.join(base, os.path.basename(os.path.normpath(path)) or "write")


_TEMPORARY_DIRS = []


def cleanup_write_dir(write_dir, path):
    """Removes a non-chief worker's temporary `write_dir`; does nothing when it is `path`.

    Args:
        write_dir: what `write_dir_for(path, info)` returned.
        path: the real destination passed to `write_dir_for`.

    Example:
    >>> cleanup_write_dir("runs/mlp/1", "runs/mlp/1")
    """
    if os.path.abspath(write_dir) == os.path.abspath(path):
        return
    for base in list(_TEMPORARY_DIRS):
        if os.path.abspath(write_dir).startswith(os.path.abspath(base) + os.sep) or os.path.abspath(write_dir) == os.path.abspath(base):
            shutil.rmtree(base, ignore_errors=True)
            _TEMPORARY_DIRS.remove(base)
            return
    shutil.rmtree(write_dir, ignore_errors=True)


def _remove_temporary_dirs():
    for base in _TEMPORARY_DIRS:
        shutil.rmtree(base, ignore_errors=True)


import atexit  # noqa: E402  (registered next to the list it cleans)

atexit.register(_remove_temporary_dirs)


def scale_batch_and_learning_rate(batch_size, learning_rate, num_replicas, scale_learning_rate=True):
    """Returns `(global_batch_size, learning_rate)` for `num_replicas` replicas in sync.

    The rule: `batch_size` is what ONE replica processes per step (one worker = one
    replica on a CPU machine), so the global batch fed to `fit` is
    `batch_size * num_replicas`; each worker then sees its `batch_size` slice. With
    `scale_learning_rate` the rate grows linearly with the replicas (Goyal et al., 2017,
    "Accurate, Large Minibatch SGD"): the gradient is a mean over a batch N times larger,
    so N times the rate keeps the progress per example about the same; pair it with a
    warmup (the default config has one epoch). Without it the run reproduces a
    single-process run with the same global batch exactly (up to float rounding).

    Args:
        batch_size: examples per replica per step.
        learning_rate: the rate tuned for one replica with `batch_size`.
        num_replicas: `strategy.num_replicas_in_sync` (`ClusterInfo.num_replicas`).
        scale_learning_rate: scale the rate linearly with `num_replicas`.

    Example:
    >>> scale_batch_and_learning_rate(32, 1e-3, num_replicas=2)
    (64, 0.002)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    if not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"number of replicas must be a positive integer, got {num_replicas!r}")
    if learning_rate <= 0:
        raise ValueError(f"learning rate must be positive, got {learning_rate!r}")
    scale = num_replicas if scale_learning_rate else 1
    return batch_size * num_replicas, learning_rate * scale


def shard_by_data(dataset):
    """Sets `AutoShardPolicy.DATA` on a dataset batched with the global batch size.

    Every worker reads the whole (identically seeded) pipeline and keeps its slice of
    each global batch, so the global batches - and the training result - match a
    single-process run with the same global batch. The default AUTO policy would shard
    TFRecord sources by FILE, which changes the batches and fails when there are fewer
    files than workers.

    Args:
        dataset: a `tf.data.Dataset` of global batches.

    Example:
    >>> import tensorflow as tf
    >>> dataset = shard_by_data(tf.data.Dataset.range(8).batch(4))
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def backup_and_restore(backup_dir, info, **kwargs):
    """Returns a BackupAndRestore callback that is safe with several workers.

    Keras 3's `BackupAndRestore` lets every worker write the same files, which races on
    a shared directory and can leave a half-written file when a worker is killed. Here
    every worker *reads* `backup_dir` (which must be the same directory for all: a
    shared filesystem, or the same path on one machine, as the TF multi-worker guide
    asks), but only the chief's writes land there; the others write to a temporary
    directory (saving is a collective they must join). Files are written under a
    temporary name and renamed, so a kill leaves the previous complete backup.

    Args:
        backup_dir: the directory every worker can see.
        info: the `ClusterInfo` from `make_strategy`.
        **kwargs: `save_freq`, `double_checkpoint`, `delete_checkpoint`, as in Keras.

    Example:
    >>> callback = backup_and_restore("runs/mlp/1/backup", ClusterInfo(strategy="default"))
    """
    import keras

    class MultiWorkerBackupAndRestore(keras.callbacks.BackupAndRestore):
        def __init__(self):
            super().__init__(backup_dir, **kwargs)
            self._write_dir = write_dir_for(backup_dir, info)

        def _save_model(self):
            os.makedirs(self._write_dir, exist_ok=True)
            weights_path = os.path.join(self._write_dir, "latest.weights.h5")
            metadata_path = os.path.join(self._write_dir, "training_metadata.json")
            if self.double_checkpoint:
                for path in (weights_path, metadata_path):
                    if os.path.exists(path):
                        shutil.copyfile(path, f"{path}.bkp")
            partial_weights = os.path.join(self._write_dir, f"partial-{os.getpid()}.weights.h5")
            self.model.save_weights(partial_weights, overwrite=True)
            os.replace(partial_weights, weights_path)
            partial_metadata = f"{metadata_path}.partial-{os.getpid()}"
            with open(partial_metadata, "w") as handle:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, handle)
            os.replace(partial_metadata, metadata_path)

        def on_train_end(self, logs=None):
            if info.is_chief:
                super().on_train_end(logs)
            else:
                cleanup_write_dir(self._write_dir, backup_dir)

    return MultiWorkerBackupAndRestore()
