"""One training run: `train_and_evaluate(config, workdir)`, in short named steps.

1. `start`: the Keras backend, seeds, determinism and the distribution strategy (first: a
   multi-worker strategy must exist before any other TensorFlow work);
2. `load_splits`: the data, then the model's per-modality defaults;
3. `data_facts`: what the builder needs, the global batch, the learning rate, the steps;
   then the classical baseline to beat (`kerasdl.quality`, `report.baseline`);
4. `build_and_compile`: the model under the strategy;
5. `make_pipelines`: tf.data for training, validation and test;
6. `open_run_dir`: a new run directory, or the unfinished one of this config to resume (locked);
7. `fit_phases` (`kerasdl.phases`): training, and fine-tuning for two-phase models; when
   the validation split is too small to trust, the epoch is first chosen by cross-validation
   and the model trains on train+validation (`kerasdl.selection`);
8. `evaluate` and 9. `write_artifacts` (`kerasdl.outputs`): the test split, then model, metrics and report.

`training/run.py` is the command line; tests, benchmarks and notebooks call the same code.

Over ~300 lines: the run's steps, listed above, read in order in one place; phases, outputs
and the run directory already live in their own modules.
"""

import contextlib
import dataclasses
import os
import shutil
import time
import warnings

import numpy as np
import yaml

from kerasdl import rundir
from kerasdl.config import ConfigError, default_config, fill_modality_defaults
from kerasdl.data import DataError, load_data
from kerasdl.data.pipeline import make_pipeline, normalization_statistics, take_examples, training_input
from kerasdl.models.registry import DataFacts, get_model_entry


@dataclasses.dataclass
class Run:
    """What the steps of one run hand each other."""

    config: object
    entry: object
    log: object
    fingerprint: str
    backend: str = None
    strategy: object = None
    cluster: object = None
    splits: object = None
    facts: object = None
    model: object = None
    train_model: object = None
    tokenizer: object = None
    global_batch: int = 0
    # The training batch: the global batch, smaller for a split of under four batches (kerasdl.optim.training_batch).
    train_batch: int = 0
    learning_rate: float = 0.0
    steps: int = 0
    # Passes over the training split in one epoch (more than 1 only under train.min_steps).
    passes_per_epoch: int = 1
    steps_per_execution: int = 1
    data: dict = dataclasses.field(default_factory=dict)
    run_dir: str = None
    write_dir: str = None
    completed_phases: list = dataclasses.field(default_factory=list)
    phases: list = dataclasses.field(default_factory=list)
    fit_seconds: float = 0.0
    examples_trained: int = 0
    # The class the test evaluation gave each test example (kerasdl.outputs, kerasdl.heldout).
    test_predictions: object = None
    raw_train: tuple = None  # A text run's raw (texts, labels): read once, for the vocabulary and the baseline.
    baseline: dict = None
    gradient_loggers: list = dataclasses.field(default_factory=list)
    # Callbacks the caller adds to every fit (e.g. kerasdl.tuning's time limit).
    extra_callbacks: list = dataclasses.field(default_factory=list)
    # The training pipeline's augmentation layers (None without augmentation).
    augmenter: object = None
    # The epochs chosen by cross-validation (kerasdl.selection); None trains train.epochs.
    selected_epochs: int = None

    @property
    def multi_worker(self):
        return self.cluster.num_workers > 1


def train_and_evaluate(config, workdir=None, fresh=False, log=print, callbacks=()):
    """Trains `config.model_name` as configured and fills a run directory.

    Args:
        config: a resolved `kerasdl.config.Config` (`kerasdl.config.resolve_config`).
        workdir: the run directory; None picks the newest unfinished run of this config
            under `config.output` (resumed) or a new `<output>/<model>/<timestamp>/`.
        fresh: start a new run even if an unfinished one with this config exists.
        log: where progress lines go.
        callbacks: Keras callbacks added to every fit, after the standard ones.

    Returns:
        A summary dict: `run_dir`, `test_accuracy`, `test_loss`, `wall_time_s`, `initial_epoch`,
        and `versus_baseline` ("kerasdl 0.812 vs baseline 0.795 (+1.7 points)") with a baseline.

    Raises:
        rundir.RunInProgressError: a live process is training the same run.

    Example:
    >>> from kerasdl.config import resolve_config
    >>> summary = train_and_evaluate(resolve_config("mlp", flags={"epochs": 2}))
    """
    from kerasdl import outputs, phases, quality, selection

    started = time.time()
    run = Run(
        config=config, entry=get_model_entry(config.model_name), log=log, fingerprint=rundir.config_fingerprint(config), extra_callbacks=list(callbacks),
    )
    start(run)
    if workdir is None and not fresh and not run.multi_worker:
        rundir.find_resumable_run(config, run.fingerprint)  # Refuse at once while the owner lives.
    load_splits(run)
    # Every later step reads the examples (statistics, training, evaluation, saved examples).
    with naming_bad_records(run.splits):
        data_facts(run)
        quality.fit_baseline(run)
        build_and_compile(run)
        make_pipelines(run)
        initial_epoch = open_run_dir(run, workdir, fresh)
        if selection.needed(run):
            selection.apply(run)
        phases.fit_phases(run)
        metrics = outputs.evaluate(run, started)
        if run.cluster.is_chief:
            outputs.write_artifacts(run, metrics)
    summary = {"run_dir": run.run_dir, "test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"], "initial_epoch": initial_epoch}
    summary.update({"versus_baseline": metrics["versus_baseline"]["line"]} if "versus_baseline" in metrics else {})
    if not run.cluster.is_chief:
        from kerasdl import distribute

        distribute.cleanup_write_dir(run.write_dir, run.run_dir)
    summary["wall_time_s"] = time.time() - started
    return summary


def start(run):
    """Selects the Keras backend, seeds everything, makes kernels deterministic and creates the strategy."""
    from kerasdl.backend import select_backend_for

    train = run.config.train
    # training.run selects the backend before Keras is imported; a caller that imported Keras
    # itself gets it checked here (auto keeps it, an explicit other backend is an error).
    backend = select_backend_for(run.config)
    run.backend = backend.name
    run.log(f"backend: {backend.name} ({backend.reason})")
    if backend.name == "jax":
        # Token ids are int64 in the pipeline (the contract's dtype); JAX, with x64 off, keeps them
        # as int32 and warns in every text run. Vocabularies are far below 2**31: nothing is lost.
        warnings.filterwarnings("ignore", message="Explicitly requested dtype int64", category=UserWarning)
    import keras
    import tensorflow as tf

    from kerasdl import distribute

    keras.utils.set_random_seed(train.seed)
    # Deterministic kernels make a seeded run repeat its metrics on the same machine (TensorFlow
    # ops, tf.data's included; JAX on a CPU repeats a seeded run by itself).
    tf.config.experimental.enable_op_determinism()
    # Whole tracebacks: a bug report needs Keras' frames, and the command line tells kerasdl's
    # own checks from errors raised inside Keras by where they were raised (kerasdl.console).
    keras.config.disable_traceback_filtering()
    tf.debugging.disable_traceback_filtering()
    # tf.distribute strategies hold TensorFlow variables; a JAX run trains on one device
    # (select_backend keeps mirrored and multi-worker runs on TensorFlow).
    strategy = train.strategy if backend.name == "tensorflow" else "default"
    run.strategy, run.cluster = distribute.make_strategy(strategy, timeout_seconds=train.strategy_timeout_seconds)


def load_splits(run):
    """Loads the data; the model keys whose default depends on the modality get that default."""
    splits = load_data(run.config.data, run.entry.modalities, run.config.train.seed)
    run.log(f"data: {splits.description}")
    run.log(f"splits: {splits.train.size} train, {splits.validation.size} validation, {splits.test.size} test; {len(splits.class_names)} classes")
    fill_modality_defaults(run.config, splits.modality)
    run.splits = splits


def data_facts(run):
    """The builder's `DataFacts`; the global batch, learning rate, steps per epoch and per call."""
    from kerasdl import distribute, optim

    splits, train = run.splits, run.config.train
    mean, variance = normalization_statistics(splits.train, splits.modality)
    run.raw_train = take_examples(splits.train, splits.train.size) if splits.modality == "text" else None
    texts = run.raw_train[0] if run.raw_train is not None else None
    run.facts = DataFacts(splits.modality, splits.input_shape, len(splits.class_names), mean, variance, texts)
    # train.batch_size is per replica: the global batch and the learning rate grow with the
    # replicas (linear scaling, kept gentle by the warmup); one replica changes nothing.
    run.global_batch, run.learning_rate = distribute.scale_batch_and_learning_rate(train.batch_size, train.learning_rate, run.cluster.num_replicas)
    if run.cluster.num_replicas > 1:
        run.log(f"{run.cluster.num_replicas} replicas: global batch {run.global_batch}, learning rate {run.learning_rate:g}")
    run.train_batch = run.global_batch if run.multi_worker else optim.training_batch(run.global_batch, splits.train.size)
    if run.train_batch < run.global_batch:
        run.log(f"batches of {run.train_batch}: the {splits.train.size} training examples are under four batches of {run.global_batch}")
    run.passes_per_epoch = optim.passes_per_epoch(splits.train.size, run.train_batch, train.epochs, train.min_steps, drop_remainder=run.multi_worker)
    run.steps = optim.steps_per_epoch(splits.train.size * run.passes_per_epoch, run.train_batch, drop_remainder=run.multi_worker)
    if run.passes_per_epoch > 1:
        run.log(f"{run.passes_per_epoch} passes over the training split per epoch ({run.steps} steps), so that {train.epochs} epochs hold train.min_steps={train.min_steps} steps")
    run.steps_per_execution = optim.steps_per_execution(train.steps_per_execution, run.steps, run.multi_worker)
    if run.multi_worker and train.steps_per_execution != 1:
        run.log(f"multi-worker training runs one step per call (train.steps_per_execution={train.steps_per_execution} ignored)")


def build_and_compile(run):
    """Builds the model under the strategy and compiles what trains (the token-id part of a text model)."""
    from kerasdl import optim

    config, entry = run.config, run.entry
    with run.strategy.scope():
        run.model = _build_model(run)
        # A text model whose entry says so tokenizes in the tf.data pipeline and trains the
        # token-id part, which shares every weight with the string model that is saved and served.
        run.train_model, run.tokenizer = run.model, None
        if run.splits.modality == "text" and entry.text.pipeline_split is not None:
            run.train_model, run.tokenizer = entry.text.pipeline_split(run.model)
        train = config.train
        compile_model(run, optim.make_optimizer(
            train.optimizer, run.learning_rate, train.weight_decay, train.clipnorm, train.lr_schedule, train.warmup_epochs, train.epochs, run.steps,
        ))


def compile_model(run, optimizer):
    """Compiles the training model with `optimizer` (phase 2 compiles again with its own)."""
    import keras

    jit_compile = run.config.train.jit_compile
    if jit_compile is False and keras.backend.backend() == "jax":
        run.log("train.jit_compile=false runs the JAX backend op by op, many times slower; leave it unset to compile")
    compile_for_training(run.train_model, optimizer, run.steps_per_execution, jit_compile)


def compile_for_training(model, optimizer, steps_per_execution, jit_compile):
    """Compiles `model` as every kerasdl fit trains: logits, sparse labels, accuracy.

    Args:
        model: the model that trains (a text model's token-id part).
        optimizer: a Keras optimizer (`kerasdl.optim.make_optimizer`).
        steps_per_execution: training steps per compiled call.
        jit_compile: `train.jit_compile`; None is Keras' "auto" (XLA on JAX, which runs
            op by op without it; off on TensorFlow on a CPU).

    Example:
    >>> compile_for_training(model, optimizer, steps_per_execution=16, jit_compile=None)
    """
    import keras

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile="auto" if jit_compile is None else jit_compile,
    )


def make_pipelines(run):
    """The training input (`training_input`: arrays on JAX where they fit, else tf.data) and tf.data for validation and test.

    A text model's splits are all tokenized in the pipeline, the test split too.

    The evaluation runs the token-id part (`kerasdl.outputs.evaluate`): it shares every weight
    and the tokenizer with the saved string model, and a model taking strings cannot run on JAX.
    """
    from kerasdl import distribute
    from kerasdl.data.augment import make_augmenter

    config, splits = run.config, run.splits
    augmenter = None
    enabled = config.augment.enabled if config.augment.enabled is not None else splits.modality == "image"
    if enabled and splits.modality == "image":
        options = {key: value for key, value in dataclasses.asdict(config.augment).items() if key != "enabled"}
        if not splits.mirror_symmetric:
            options["flip"] = "none"
        augmenter = make_augmenter(seed=config.train.seed, image_shape=splits.input_shape, **options)
    run.augmenter = augmenter
    common = dict(seed=config.train.seed, cache=config.data.cache, cache_limit_mb=config.data.cache_limit_mb, shuffle_buffer=config.data.shuffle_buffer)
    train = training_input(
        splits.train, run.train_batch, augmenter=augmenter, drop_remainder=run.multi_worker, tokenizer=run.tokenizer,
        passes=run.passes_per_epoch, **common,
    )
    validation = make_pipeline(splits.validation, run.global_batch, training=False, tokenizer=run.tokenizer, **common)
    if run.multi_worker:
        train, validation = distribute.shard_by_data(train), distribute.shard_by_data(validation)
    run.data = {"train": train, "validation": validation, "test": make_pipeline(splits.test, run.global_batch, training=False, tokenizer=run.tokenizer, **common)}


def open_run_dir(run, workdir, fresh):
    """Creates (or finds, to resume) the run directory, takes its lock and writes `config.yaml`; returns the resumed epoch.

    Made only now, once data and model are known to be good, so that a bad input or an
    unavailable download leaves nothing half-written behind.
    """
    from kerasdl import distribute, phases

    config, cluster = run.config, run.cluster
    if run.multi_worker:
        run_dir = workdir or rundir.multi_worker_run_dir(config, run.fingerprint)
        if fresh and cluster.is_chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    else:
        run_dir = workdir or (None if fresh else rundir.find_resumable_run(config, run.fingerprint)) or rundir.new_run_dir(config)
    run.run_dir, run.write_dir = run_dir, distribute.write_dir_for(run_dir, cluster)
    os.makedirs(run.write_dir, exist_ok=True)
    if cluster.is_chief:
        # Workers of one cluster share the directory by design; the chief's lock only marks it unfinished.
        rundir.take_lock(run_dir, run.fingerprint, force=run.multi_worker)
        with open(os.path.join(run_dir, "config.yaml"), "w") as handle:
            yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
    trainable = int(sum(np.prod(variable.shape) for variable in run.model.trainable_weights))
    run.log(f"model: {run.model.name}, {run.model.count_params():,} parameters ({trainable:,} trainable); run directory: {run_dir}")
    run.completed_phases = rundir.read_progress(run_dir)["phases"]
    backup = "backup_finetune" if run.completed_phases else "backup"
    epoch = rundir.saved_epoch(os.path.join(run_dir, backup)) or sum(phase["epochs"] for phase in run.completed_phases)
    if cluster.is_chief:
        rundir.trim_history(run_dir, epoch)  # Rows of epochs that were not committed are trained again.
    if len(run.completed_phases) == len(phases.plan_phases(run)):
        run.log(f"resuming {run_dir} from epoch {epoch}: every epoch is trained; evaluating and writing the artifacts")
    elif epoch:
        where = f" in phase {len(run.completed_phases) + 1}" if run.completed_phases else ""
        run.log(f"resuming {run_dir}{where} from epoch {epoch} (saved by BackupAndRestore)")
    return epoch


def _build_model(run):
    """Builds the model; a builder that rejects the user's `model.*` settings is a one-line ConfigError."""
    config = run.config
    try:
        model = run.entry(run.facts, **config.model)
    except (ValueError, TypeError) as error:
        defaults = fill_modality_defaults(default_config(config.model_name), run.splits.modality).model
        changed = {key: value for key, value in config.model.items() if value != defaults.get(key)}
        if not changed:
            raise
        settings = ", ".join(f"model.{key}={value!r}" for key, value in changed.items())
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot build {config.model_name} with {settings}: {detail}") from error
    if run.entry.set_trainable_blocks is not None and config.finetune.blocks > 0:
        # Checked now rather than after the first phase: an impossible block count fails at once.
        try:
            run.entry.set_trainable_blocks(model, config.finetune.blocks)
        except ValueError as error:
            raise ConfigError(f"finetune.blocks={config.finetune.blocks}: {error}") from None
        run.entry.set_trainable_blocks(model, 0)
    return model


@contextlib.contextmanager
def naming_bad_records(splits):
    """Turns a TensorFlow error from a record the pipeline cannot decode into a DataError naming the file.

    The data sources check files before training; this catches what a check missed (or a
    file that changed since), finds the file by decoding each record of the streamed splits
    again, and re-raises anything else unchanged (a bug keeps its traceback).
    """
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        for split in (splits.train, splits.validation, splits.test):
            path = find_undecodable(split)
            if path is not None:
                detail = str(error).strip().splitlines()[0][:200]
                raise DataError(f"{path}: cannot be decoded ({detail}); remove or replace the file") from error
        raise


def find_undecodable(split):
    """Returns the first reference (a file path) of a streamed split that does not decode, or None."""
    import tensorflow as tf

    if split.decode is None:
        return None
    for reference, label in split.dataset:
        try:
            split.decode(reference, label)
        except tf.errors.OpError:
            value = reference.numpy()
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None
