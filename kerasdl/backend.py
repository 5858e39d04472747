"""Choosing the Keras backend (TensorFlow or JAX) for a training run, before Keras is imported.

Keras 3 runs the same model code on TensorFlow or JAX and fixes its backend once,
from `KERAS_BACKEND`, when `keras` is first imported. Importing TensorFlow imports
Keras too, so the choice must come before either: `training.run` resolves the
config, calls `select_backend`, and only then imports `kerasdl.train`.

What stays on TensorFlow whatever the backend:
- tf.data: Keras accepts a `tf.data.Dataset` on every backend; under JAX it turns
  each batch into NumPy arrays (one host copy, overlapped by `prefetch`). A batch
  must therefore be dense and numeric (`check_feedable`): text is tokenized inside
  the pipeline (the entry's `pipeline_split`, or keras-hub's preprocessor, which
  keras-hub maps over the dataset itself), and Keras preprocessing layers run in
  `Dataset.map` inside a `keras.layers.Pipeline`, which switches them to TensorFlow
  there (a `keras.Sequential` does not). JAX keeps 32-bit integers unless x64 is
  enabled: int64 token ids and labels arrive as int32.
- Export: a `.keras` file is backend-agnostic; SavedModel, ONNX and LiteRT are
  written by `export.run` in its own process, under TensorFlow.
- Distribution: `MirroredStrategy` and `MultiWorkerMirroredStrategy` are
  tf.distribute, so those strategies train on TensorFlow.

The JAX backend also needs XLA compilation of the train step: with
`jit_compile=False` Keras runs JAX eagerly, op by op (the digits MLP: 61 ms a step
against 13 ms compiled, and 2 s with Keras' CosineDecay, whose `ops.cond` JAX then
compiles at every step; `kerasdl.schedules`); Keras' `jit_compile="auto"` compiles
on JAX and keeps TensorFlow on a CPU unchanged.

Example:
>>> choice = select_backend("auto", model_name="mlp")
>>> import keras
>>> keras.backend.backend() == choice.name
True
"""

import dataclasses
import importlib.util
import os
import sys

BACKENDS = ("tensorflow", "jax")
CHOICES = BACKENDS + ("auto",)
# Strategies that are tf.distribute objects: they exist only on the TensorFlow backend.
TENSORFLOW_STRATEGIES = ("mirrored", "multi_worker")
# Keras' TensorBoard callback profiles JAX only from this Python on (it warns and
# writes no trace below it); the TensorFlow profiler works on every supported Python.
JAX_PROFILING_PYTHON = (3, 12)
JAX_REQUIREMENT = "jax[cpu]==0.10.2"


class BackendError(ValueError):
    """A backend that cannot be used as asked (a user mistake, shown in one line)."""

    # kerasdl.console.run_cli prints errors marked so as one `error:` line (exit 2).
    user_error = True


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """The backend a run trains on, and why (for the run's log).

    Attributes:
        name: "tensorflow" or "jax".
        requested: what the config asked for ("tensorflow", "jax" or "auto").
        reason: one line saying why `name` was chosen.
    """

    name: str
    requested: str
    reason: str


def resolve_backend(requested="auto", model_name=None, strategy="auto", profile=False, environ=None):
    """Returns the `BackendChoice` for a run, without importing Keras or TensorFlow.

    `auto` takes the backend of the model's registry entry (`ModelEntry.backend`,
    set from `benchmarks/backends.py`), unless the run needs TensorFlow: a
    tf.distribute strategy (`mirrored`, `multi_worker`, or `auto` with a TF_CONFIG
    cluster of several tasks), or a profiler trace on a Python where Keras cannot
    profile JAX. Asking for `jax` explicitly in those cases is an error.

    Args:
        requested: "tensorflow", "jax" or "auto".
        model_name: the registry name; needed for "auto".
        strategy: `train.strategy` ("auto", "default", "mirrored", "multi_worker").
        profile: `train.profile` (a TensorBoard profiler trace is asked for).
        environ: the environment holding TF_CONFIG; `os.environ` by default.

    Raises:
        BackendError: an unknown name, JAX asked for where it cannot run, or JAX not installed.

    Example:
    >>> resolve_backend("jax", "mlp").name
    'jax'
    >>> resolve_backend("auto", "mlp", strategy="multi_worker").name
    'tensorflow'
    """
    if requested not in CHOICES:
        raise BackendError(f"train.backend must be one of {', '.join(CHOICES)}, got {requested!r}")
    needs_tensorflow = _tensorflow_requirement(strategy, profile, os.environ if environ is None else environ)
    if requested == "tensorflow":
        return BackendChoice("tensorflow", requested, "train.backend=tensorflow")
    if requested == "jax":
        if needs_tensorflow:
            raise BackendError(f"train.backend=jax cannot be used here: {needs_tensorflow}; set train.backend=tensorflow or auto")
        _require_jax()
        return BackendChoice("jax", requested, "train.backend=jax")
    if model_name is None:
        raise BackendError("train.backend=auto needs the model name, to read its registry entry")
    from kerasdl.models.registry import get_model_entry

    preferred = get_model_entry(model_name).backend
    if preferred not in BACKENDS:
        raise ValueError(f"the registry entry {model_name!r} names backend {preferred!r}; it must be one of {', '.join(BACKENDS)}")
    if preferred == "jax" and needs_tensorflow:
        return BackendChoice("tensorflow", requested, f"the registry entry of {model_name} says jax, but {needs_tensorflow}")
    if preferred == "jax":
        _require_jax()
    return BackendChoice(preferred, requested, f"the registry entry of {model_name} says {preferred}")


def select_backend(requested="auto", model_name=None, strategy="auto", profile=False):
    """Resolves the backend (`resolve_backend`) and makes Keras use it; call it before importing Keras or TensorFlow.

    Sets `KERAS_BACKEND` for this process and its children. When Keras is already
    imported (a notebook, a test, a benchmark that trains in process), `auto` keeps
    its backend unless the run needs TensorFlow, and an explicit other backend is an
    error. Calling it again with the same outcome is harmless.

    Args:
        requested: "tensorflow", "jax" or "auto".
        model_name: the registry name; needed for "auto".
        strategy: `train.strategy`.
        profile: `train.profile`.

    Returns:
        The `BackendChoice`.

    Raises:
        BackendError: as `resolve_backend`, or Keras is already imported under a backend this run cannot use.

    Example:
    >>> select_backend("jax").name
    'jax'
    """
    choice = resolve_backend(requested, model_name, strategy, profile)
    loaded = loaded_backend()
    if loaded is not None and loaded != choice.name:
        needs_tensorflow = _tensorflow_requirement(strategy, profile, os.environ)
        if requested == "auto" and not (needs_tensorflow and loaded != "tensorflow"):
            return BackendChoice(loaded, requested, f"Keras is already imported with {loaded} in this process, and auto keeps it ({choice.reason})")
        raise BackendError(
            f"Keras is already imported with the {loaded} backend, so this run cannot train on {choice.name} "
            f"({choice.reason}); choose the backend before importing keras or tensorflow (importing TensorFlow imports Keras), "
            f"or start a new process with KERAS_BACKEND={choice.name}"
        )
    os.environ["KERAS_BACKEND"] = choice.name
    return choice


def select_backend_for(config):
    """`select_backend` for a resolved `kerasdl.config.Config` (its `train.backend`, model, strategy and profile).

    Args:
        config: a resolved `kerasdl.config.Config`.

    Returns:
        The `BackendChoice`.

    Example:
    >>> from kerasdl.config import resolve_config
    >>> select_backend_for(resolve_config("mlp", flags={"backend": "jax"})).name
    'jax'
    """
    train = config.train
    return select_backend(train.backend, config.model_name, strategy=train.strategy, profile=train.profile)


def loaded_backend():
    """Returns the backend of the Keras already imported in this process, or None when Keras is not imported.

    Example:
    >>> loaded_backend() in (None, "tensorflow", "jax")
    True
    """
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    return keras.config.backend()


def check_feedable(dataset, backend=None):
    """Raises a ValueError unless every batch of `dataset` can be fed to `backend` (default: Keras' own).

    On TensorFlow anything tf.data yields is accepted. On JAX Keras converts each
    batch to NumPy arrays: a string, ragged or sparse component fails inside
    `fit`/`predict` with an error that does not name it, so it is refused here.

    Args:
        dataset: a `tf.data.Dataset`.
        backend: "tensorflow" or "jax"; None asks the imported Keras.

    Example:
    >>> check_feedable(tf.data.Dataset.from_tensor_slices(["a film"]).batch(2), "jax")
    Traceback (most recent call last):
    ValueError: the jax backend takes dense numeric batches; this dataset yields string at x ...
    """
    import tensorflow as tf

    backend = backend or loaded_backend()
    if backend != "jax":
        return
    problems = []
    for path, spec in _batch_components(dataset.element_spec):
        if isinstance(spec, tf.RaggedTensorSpec):
            problems.append(f"ragged at {path}")
        elif isinstance(spec, tf.SparseTensorSpec):
            problems.append(f"sparse at {path}")
        elif isinstance(spec, tf.TensorSpec) and not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype.is_bool):
            problems.append(f"{spec.dtype.name} at {path}")
    if problems:
        raise ValueError(
            f"the {backend} backend takes dense numeric batches; this dataset yields {', '.join(problems)}: "
            "tokenize text inside the pipeline (the model entry's pipeline_split) or train on tensorflow"
        )


def _batch_components(element_spec):
    """Yields `(path, spec)` of every tensor of a batch, named x, y, sample_weight at the top."""
    if isinstance(element_spec, tuple):
        for index, item in enumerate(element_spec):
            yield from _nested_components(item, ("x", "y", "sample_weight")[index] if index < 3 else f"[{index}]")
    else:
        yield from _nested_components(element_spec, "x")


def _nested_components(spec, path):
    if isinstance(spec, (tuple, list)):
        for index, item in enumerate(spec):
            yield from _nested_components(item, f"{path}[{index}]")
    elif isinstance(spec, dict):
        for key, item in spec.items():
            yield from _nested_components(item, f"{path}[{key!r}]")
    else:
        yield path, spec


def _tensorflow_requirement(strategy, profile, environ):
    """Returns why the run must train on TensorFlow, or "" when JAX can do it."""
    if strategy in TENSORFLOW_STRATEGIES:
        return f"train.strategy={strategy} is a tf.distribute strategy, which exists only on tensorflow"
    if strategy == "auto":
        from kerasdl.distribute import cluster_size, read_tf_config

        if cluster_size(read_tf_config(environ)) > 1:
            return "TF_CONFIG names a multi-worker cluster, which trains with tf.distribute on tensorflow"
    if profile and sys.version_info < JAX_PROFILING_PYTHON:
        return f"train.profile needs tensorflow on Python {sys.version_info.major}.{sys.version_info.minor} (Keras profiles jax from Python 3.12)"
    return ""


def _require_jax():
    if importlib.util.find_spec("jax") is None:
        raise BackendError(f"train.backend=jax needs JAX, which is not installed: pip install '{JAX_REQUIREMENT}'")
