"""Distribution strategies for training: one process, several GPUs, or several workers.

One module per concern:
- `strategy`: TF_CONFIG parsing, the strategy choice, batch/learning-rate scaling, data sharding;
- `keras_patch`: the fix that lets Keras 3 `fit` run under MultiWorkerMirroredStrategy
  (keras-team/keras#20585), refused outside the Keras versions it was checked with;
- `watchdog`: the peer watchdog process that ends a worker whose cluster never forms;
- `files`: per-worker write directories, their cleanup, and the multi-worker-safe
  BackupAndRestore.

Everything is re-exported here, so `from kerasdl import distribute` then
`distribute.make_strategy(...)` keeps working. No module imports TensorFlow at import time.

Example:
>>> from kerasdl import distribute
>>> strategy, info = distribute.make_strategy("default")
"""

from kerasdl.distribute.files import backup_and_restore, cleanup_write_dir, write_dir_for
from kerasdl.distribute.keras_patch import (
    KERAS_CHECKED_RANGE,
    KERAS_CHECKED_RANGE_TEXT,
    KerasVersionError,
    disable_multi_worker_fit,
    enable_multi_worker_fit,
    keras_version_checked,
)
from kerasdl.distribute.strategy import (
    STRATEGY_NAMES,
    ClusterInfo,
    cluster_size,
    is_chief_task,
    make_strategy,
    read_tf_config,
    scale_batch_and_learning_rate,
    shard_by_data,
)
from kerasdl.distribute.watchdog import start_peer_watchdog, unreachable_peers

__all__ = [
    "KERAS_CHECKED_RANGE",
    "KERAS_CHECKED_RANGE_TEXT",
    "STRATEGY_NAMES",
    "ClusterInfo",
    "KerasVersionError",
    "backup_and_restore",
    "cleanup_write_dir",
    "cluster_size",
    "disable_multi_worker_fit",
    "enable_multi_worker_fit",
    "is_chief_task",
    "keras_version_checked",
    "make_strategy",
    "read_tf_config",
    "scale_batch_and_learning_rate",
    "shard_by_data",
    "start_peer_watchdog",
    "unreachable_peers",
    "write_dir_for",
]
