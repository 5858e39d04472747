"""One training run: data -> model -> fit (+ callbacks) -> evaluation -> run directory.

`training/run.py` is the command line; this module does the work, so that tests,
benchmarks and notebooks call the same code.
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time

import numpy as np
import yaml

from kerasdl import report
from kerasdl.artifact import save_model
from kerasdl.callbacks import make_callbacks, make_optimizer, steps_per_epoch
from kerasdl.data import load_data
from kerasdl.data.augment import make_augmenter
from kerasdl.data.pipeline import make_pipeline, normalization_statistics, take_examples
from kerasdl.heldout import save_run_examples
from kerasdl.models.registry import DataFacts, get_model_entry

RUNNING_MARKER = "RUNNING"


def config_fingerprint(config):
    """A short hash of the resolved config: the same command resumes the same run."""
    payload = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def find_resumable_run(config):
    """Returns the newest unfinished run directory of the same config, or None."""
    fingerprint = config_fingerprint(config)
    for marker in sorted(glob.glob(os.path.join(config.output, config.model_name, "*", RUNNING_MARKER)), reverse=True):
        with open(marker) as handle:
            if handle.read().strip() == fingerprint:
                return os.path.dirname(marker)
    return None


def new_run_dir(config):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(config.output, config.model_name, stamp)
    suffix = 1
    while os.path.exists(run_dir):
        run_dir = os.path.join(config.output, config.model_name, f"{stamp}-{suffix}")
        suffix += 1
    return run_dir


def run(config, fresh=False, log=print):
    """Trains `config.model_name` as configured and fills a run directory.

    Args:
        config: a resolved `kerasdl.config.Config`.
        fresh: start a new run even if an unfinished one with this config exists.
        log: where progress lines go.

    Returns:
        A summary dict: `run_dir`, `test_accuracy`, `test_loss`, `wall_time_s`, `initial_epoch`.

    Example:
    >>> from kerasdl.config import Config
    >>> summary = run(Config(model_name="mlp"))
    """
    import keras
    import tensorflow as tf

    started = time.time()
    entry = get_model_entry(config.model_name)
    train_config = config.train
    keras.utils.set_random_seed(train_config.seed)
    # Deterministic kernels make a seeded run repeat its metrics on the same machine.
    tf.config.experimental.enable_op_determinism()

    from kerasdl import distribute

    strategy, cluster = distribute.make_strategy(train_config.strategy, timeout_seconds=train_config.strategy_timeout_seconds)
    splits = load_data(config.data, entry.modalities, train_config.seed)
    log(f"data: {splits.description}")
    log(f"splits: {splits.train.size} train, {splits.validation.size} validation, {splits.test.size} test; {len(splits.class_names)} classes")

    multi_worker = cluster.num_workers > 1
    mean, variance = normalization_statistics(splits.train, splits.modality)
    train_texts = None
    if splits.modality == "text":
        train_texts, _ = take_examples(splits.train, splits.train.size)
    facts = DataFacts(splits.modality, splits.input_shape, len(splits.class_names), mean, variance, train_texts)

    augment_enabled = config.augment.enabled if config.augment.enabled is not None else splits.modality == "image"
    augmenter = None
    if augment_enabled and splits.modality == "image":
        options = dataclasses.asdict(config.augment)
        options.pop("enabled")
        if not splits.mirror_symmetric:
            options["flip"] = "none"
        augmenter = make_augmenter(seed=train_config.seed, **options)

    # train.batch_size is per replica: the global batch and the learning rate grow with the
    # replicas (linear scaling, kept gentle by the warmup); one replica changes nothing.
    global_batch, learning_rate = distribute.scale_batch_and_learning_rate(train_config.batch_size, train_config.learning_rate, cluster.num_replicas)
    if cluster.num_replicas > 1:
        log(f"{cluster.num_replicas} replicas: global batch {global_batch}, learning rate {learning_rate:g}")
    steps = steps_per_epoch(splits.train.size, global_batch)
    steps_per_execution = train_config.steps_per_execution
    if multi_worker and steps_per_execution != 1:
        # The multi-worker fix (kerasdl.distribute) was checked with one step per call;
        # several steps per call fail inside Keras' distributed train function.
        log(f"multi-worker training runs one step per call (train.steps_per_execution={steps_per_execution} ignored)")
        steps_per_execution = 1

    with strategy.scope():
        model = entry(facts, **config.model)
        # A text model whose entry says so tokenizes in the tf.data pipeline and trains the
        # token-id part, which shares every weight with the string model that is saved and served.
        train_model, tokenizer = model, None
        if splits.modality == "text" and entry.text.pipeline_split is not None:
            train_model, tokenizer = entry.text.pipeline_split(model)
        train_model.compile(
            optimizer=make_optimizer(
                train_config.optimizer, learning_rate, train_config.weight_decay, train_config.clipnorm,
                train_config.lr_schedule, train_config.warmup_epochs, train_config.epochs, steps,
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution,
            jit_compile=train_config.jit_compile,
        )
    pipeline = dict(seed=train_config.seed, cache=config.data.cache, cache_limit_mb=config.data.cache_limit_mb, shuffle_buffer=config.data.shuffle_buffer)
    train_data = make_pipeline(splits.train, global_batch, training=True, augmenter=augmenter, drop_remainder=multi_worker, tokenizer=tokenizer, **pipeline)
    validation_data = make_pipeline(splits.validation, global_batch, training=False, tokenizer=tokenizer, **pipeline)
    # The test split stays raw: the evaluation runs the saved (string-taking) model.
    test_data = make_pipeline(splits.test, global_batch, training=False, **pipeline)
    if multi_worker:
        train_data, validation_data = distribute.shard_by_data(train_data), distribute.shard_by_data(validation_data)

    # The run directory is made only now, once data and model are known to be good, so that
    # a bad input or an unavailable download leaves nothing half-written behind.
    if multi_worker:
        # Every worker must agree on one run directory without talking: name it after the config.
        run_dir = os.path.join(config.output, config.model_name, f"multi-worker-{config_fingerprint(config)}")
        if fresh and cluster.is_chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    else:
        run_dir = None if fresh else find_resumable_run(config)
    resumed_epoch = _saved_epoch(os.path.join(run_dir, "backup")) if run_dir else 0
    if resumed_epoch:
        log(f"resuming {run_dir} from epoch {resumed_epoch} (saved by BackupAndRestore)")
    run_dir = run_dir or new_run_dir(config)
    write_dir = distribute.write_dir_for(run_dir, cluster)
    os.makedirs(write_dir, exist_ok=True)
    if cluster.is_chief:
        with open(os.path.join(run_dir, "config.yaml"), "w") as handle:
            yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
        with open(os.path.join(run_dir, RUNNING_MARKER), "w") as handle:
            handle.write(config_fingerprint(config))

    phases = [_phase("train" if entry.set_trainable_blocks is None else "head (frozen base)", model, learning_rate)]
    log(f"model: {model.name}, {model.count_params():,} parameters ({phases[0]['trainable_parameters']:,} trainable); run directory: {run_dir}")

    callback_options = dict(
        lr_schedule=train_config.lr_schedule, learning_rate=learning_rate, step_size=train_config.step_size,
        step_gamma=train_config.step_gamma, plateau_factor=train_config.plateau_factor, plateau_patience=train_config.plateau_patience,
        early_stopping_patience=train_config.early_stopping_patience, profile=train_config.profile,
    )
    fit_started = time.time()
    history = train_model.fit(
        train_data, validation_data=validation_data, epochs=train_config.epochs,
        callbacks=make_callbacks(write_dir, backup=distribute.backup_and_restore(os.path.join(run_dir, "backup"), cluster), **callback_options),
        verbose=train_config.verbose,
        # The pipeline already shuffles (seeded); Keras ignores `shuffle` for datasets.
        shuffle=False,
    )
    epochs_run = len(history.history.get("loss", []))
    examples_trained = epochs_run * splits.train.size
    phases[0]["epochs"] = epochs_run

    if entry.set_trainable_blocks is not None and config.finetune.blocks > 0 and config.finetune.epochs > 0:
        # Phase 2: unfreeze the top blocks and continue at a much lower rate; recompiling
        # is required for the new trainable set to take effect.
        with strategy.scope():
            entry.set_trainable_blocks(model, config.finetune.blocks)
            train_model.compile(
                optimizer=make_optimizer(
                    train_config.optimizer, config.finetune.learning_rate, train_config.weight_decay, train_config.clipnorm,
                    "constant", 0, config.finetune.epochs, steps,
                ),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                steps_per_execution=steps_per_execution,
            )
        phases.append(_phase(f"fine-tune (top {config.finetune.blocks} blocks)", model, config.finetune.learning_rate))
        log(f"phase 2: fine-tuning the top {config.finetune.blocks} blocks, {phases[-1]['trainable_parameters']:,} trainable parameters")
        start_epoch = epochs_run
        finetune_history = train_model.fit(
            train_data, validation_data=validation_data, epochs=start_epoch + config.finetune.epochs, initial_epoch=start_epoch,
            callbacks=make_callbacks(write_dir, backup=distribute.backup_and_restore(os.path.join(run_dir, "backup_finetune"), cluster), **dict(callback_options, lr_schedule="constant")),
            verbose=train_config.verbose,
        )
        phases[-1]["epochs"] = len(finetune_history.history.get("loss", []))
        examples_trained += phases[-1]["epochs"] * splits.train.size
    fit_seconds = time.time() - fit_started

    # One pass over the test split for logits and labels. Multi-worker runs call the model
    # directly (local to each worker; Keras' multi-worker predict is unpatched); otherwise
    # `predict_on_batch`, so that keras-hub tasks apply their string preprocessor.
    logits, labels = [], []
    for x, y in test_data:
        logits.append(np.asarray(model(x, training=False) if multi_worker else model.predict_on_batch(x)))
        labels.append(np.asarray(y))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    test_loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)))
    metrics = report.classification_metrics(labels, logits, splits.class_names)
    metrics.update(
        test_loss=test_loss, wall_time_s=time.time() - started, fit_time_s=fit_seconds,
        examples_per_s=examples_trained / fit_seconds if fit_seconds else 0.0, epochs=epochs_run,
        train_examples=splits.train.size, test_examples=int(len(labels)),
    )
    summary = {"run_dir": run_dir, "test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"], "wall_time_s": metrics["wall_time_s"], "initial_epoch": resumed_epoch}
    if not cluster.is_chief:
        distribute.cleanup_write_dir(write_dir, run_dir)
        return summary

    metadata = {
        "model": config.model_name,
        "modality": splits.modality,
        "class_names": list(splits.class_names),
        "input": _input_spec(splits),
        "output": "logits",
        "run_dir": os.path.abspath(run_dir),
        "data": splits.description,
    }
    if splits.modality == "text":
        metadata["text"] = {"tokenizer": entry.text.tokenizer, "sequence_length": config.model.get("sequence_length")}
    save_model(model, os.path.join(run_dir, "model.keras"), metadata)
    if entry.save_extras is not None:
        entry.save_extras(model, run_dir)
    # Raw test examples (with the class this evaluation gave each) for export and the served
    # paths' checks, and training examples for int8 calibration (kerasdl.heldout).
    save_run_examples(run_dir, splits, logits.argmax(axis=-1))
    history_columns = report.read_history(os.path.join(run_dir, "history.csv"))
    findings = report.diagnose(history_columns, len(splits.class_names))
    metrics["diagnosis"] = findings
    metrics["phases"] = phases
    report.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    report.plot_learning_curves(history_columns, os.path.join(run_dir, "learning_curves.png"))
    report.plot_confusion_matrix(metrics["confusion_matrix"], splits.class_names, os.path.join(run_dir, "confusion_matrix.png"))
    report.write_report(run_dir, config.model_name, splits.description, metrics, history_columns, findings, phases if len(phases) > 1 else None)
    for leftover in ("backup", "backup_finetune"):
        shutil.rmtree(os.path.join(run_dir, leftover), ignore_errors=True)
    os.remove(os.path.join(run_dir, RUNNING_MARKER))
    summary["wall_time_s"] = time.time() - started
    return summary


def _phase(name, model, learning_rate):
    trainable = int(sum(np.prod(variable.shape) for variable in model.trainable_weights))
    return {"name": name, "epochs": 0, "trainable_parameters": trainable, "learning_rate": learning_rate}


def _saved_epoch(backup_dir):
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as handle:
        return int(json.load(handle).get("epoch", 0))


def _input_spec(splits):
    if splits.modality == "text":
        return {"shape": [], "dtype": "string"}
    spec = {"shape": list(splits.input_shape), "dtype": "float32"}
    if splits.modality == "sequence":
        # Series are zero-padded at the end; any length is accepted.
        spec["shape"][0] = None
        spec["padding_value"] = 0.0
    if splits.modality == "image":
        spec["value_range"] = [0, 255]
        # Raw decoded pixels of any size: the model resizes them to its own image_size inside.
        spec["image_size"] = spec["shape"][:2]
        spec["shape"] = [None, None, spec["shape"][2]]
    return spec

