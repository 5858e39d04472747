"""Strategy choice for training: TF_CONFIG parsing, the strategy, batch/LR scaling and data sharding.

The training loop calls, in this order (see README, "Multi-worker training"):

1. `make_strategy(name, timeout_seconds)` first, before any other TensorFlow work:
   `MultiWorkerMirroredStrategy` must configure the collective runtime before the
   TensorFlow context starts, and it waits (up to the timeout) for every peer.
2. Data: batch every dataset with the *global* batch size
   (`scale_batch_and_learning_rate`) and pass it through `shard_by_data`, so that each
   worker takes its slice of every global batch.
3. `with strategy.scope():` build and compile the model (variables are mirrored).
4. `model.fit(dataset, ...)` as usual, with callbacks writing into
   `files.write_dir_for(path, info)` and `files.backup_and_restore(backup_dir, info)` for
   fault tolerance. Every worker runs the same calls (fit, evaluate, saving), since each of
   them takes part in collectives; only the chief's files are kept.

Imports no TensorFlow at module level, so the config can name `STRATEGY_NAMES` cheaply.
"""

import dataclasses
import json
import os

from kerasdl.distribute.keras_patch import enable_multi_worker_fit
from kerasdl.distribute.watchdog import start_peer_watchdog

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
    watchdog = start_peer_watchdog(tf_config, timeout_seconds)
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
