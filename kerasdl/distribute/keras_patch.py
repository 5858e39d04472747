"""The fix that lets plain Keras 3 `model.fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

Keras 3 `fit` fails under MultiWorkerMirroredStrategy
(https://github.com/keras-team/keras/issues/20585). `enable_multi_worker_fit` patches two
private functions of the Keras TensorFlow trainer; it was checked against
`KERAS_CHECKED_RANGE` only, so other versions are refused (`KerasVersionError`) until the
patch is checked again.
"""

KERAS_CHECKED_RANGE = ((3, 15), (3, 16))
KERAS_CHECKED_RANGE_TEXT = ">=3.15,<3.16"


class KerasVersionError(RuntimeError):
    """The installed Keras is outside the range the multi-worker fix was checked with (a setup error, not a bug)."""

    # The command line prints the message in one line (`kerasdl.console.user_error_message`).
    user_error = True


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
        KerasVersionError: (a RuntimeError) the installed Keras is outside `KERAS_CHECKED_RANGE`.

    Example:
    >>> enable_multi_worker_fit()
    """
    import keras

    if not keras_version_checked():
        raise KerasVersionError(
            f"kerasdl's multi-worker fit fix was checked with keras {KERAS_CHECKED_RANGE_TEXT}, but keras {keras.__version__} is installed; "
            "install keras 3.15.x or re-check kerasdl/distribute/keras_patch.py against keras-team/keras#20585"
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
