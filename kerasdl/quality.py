"""A run's quality measures (issue 12): the classical baseline, the gradient-norm log, and what the report says of them.

`kerasdl.train.train_and_evaluate` calls these three steps; each is switched by the
`report` config section (`--set report.baseline=false`, `--set report.gradients=false`):

1. `fit_baseline`: before the model is built, the classical baseline (`kerasdl.baseline`)
   is fitted on the run's train split and scored on its test split, and printed: the bar
   the network has to clear. Fitted first so that a failure leaves no half-written run.
2. `gradient_logger`: the `kerasdl.gradients.GradientNormLogger` of one fit phase, sampling
   the first training batches every few epochs (`kerasdl.gradients.sampling_interval`).
3. `findings_and_metrics`: the history's and the gradients' diagnosis, the model against
   the baseline ("kerasdl 0.812 vs baseline 0.795 (+1.7 points)"), the text statistics of
   Google's guide, and what the two measures cost, for `metrics.json` and `report.md`.
"""

import os
import time

from kerasdl import report

# Batches the gradient logger samples at each measurement, and the largest share of the
# training steps its measurements may add: two batches give the norm's spread; 2 % keeps the
# logger under 5 % of a default digits run with its one-time tracing (benchmarks/quality_costs.py).
GRADIENT_BATCHES = 2
GRADIENT_STEP_SHARE = 0.02


def fit_baseline(run):
    """Fits the classical baseline on `run.splits` (chief only); sets and returns `run.baseline` (None when off).

    Args:
        run: the `kerasdl.train.Run` after `data_facts` (a text run's raw texts are reused).

    Example:
    >>> fit_baseline(run)["test_accuracy"]
    0.9556
    """
    run.baseline = None
    if not run.config.report.baseline or not run.cluster.is_chief:
        return None
    from kerasdl.baseline import baseline_for_splits

    started = time.perf_counter()
    baseline = baseline_for_splits(run.splits, seed=run.config.train.seed, train=run.raw_train)
    baseline["total_seconds"] = time.perf_counter() - started
    used = "" if baseline["train_examples_used"] == baseline["train_examples"] else f" (on {baseline['train_examples_used']:,} of {baseline['train_examples']:,} training examples)"
    run.log(f"classical baseline: {baseline['description']}: test accuracy {baseline['test_accuracy']:.4f}{used}, {baseline['total_seconds']:.1f} s")
    run.baseline = baseline
    return baseline


def gradient_logger(run, phase):
    """The gradient-norm callback of one fit phase, or None (`report.gradients` off, a multi-worker run).

    It samples the first `GRADIENT_BATCHES` batches of the training split, in order and
    without augmentation (tokenized as the training model takes them), so every measurement
    sees the same examples.

    Args:
        run: the `kerasdl.train.Run` with its pipelines and run directory.
        phase: the phase being fitted (`kerasdl.phases.plan_phases`); each phase gets its own logger.

    Example:
    >>> gradient_logger(run, plan_phases(run)[0]).every
    5
    """
    if not run.config.report.gradients or run.multi_worker:
        return None
    from kerasdl.data.pipeline import make_pipeline
    from kerasdl.gradients import GradientNormLogger, sampling_interval

    sample = make_pipeline(run.splits.train, run.global_batch, training=False, cache=False, tokenizer=run.tokenizer).take(GRADIENT_BATCHES)
    logger = GradientNormLogger(
        sample, os.path.join(run.write_dir, report.GRADIENTS_FILE), os.path.join(run.write_dir, "tensorboard"),
        batches=GRADIENT_BATCHES, every=sampling_interval(run.steps, GRADIENT_BATCHES, GRADIENT_STEP_SHARE),
    )
    run.gradient_loggers.append(logger)
    return logger


def findings_and_metrics(run, metrics, history):
    """The diagnosis and the quality sections of `metrics.json` and `report.md`.

    Args:
        run: the finished `kerasdl.train.Run`.
        metrics: the test metrics (`kerasdl.outputs.evaluate`).
        history: `kerasdl.report.read_history` of the run's `history.csv`.

    Returns:
        `(findings, metrics keys, report keyword arguments)`: `findings` from the history
        (judged against the validation split's noise) and from `gradients.csv`; the keys
        `baseline`, `versus_baseline`, `text_statistics` and `gradient_log` (each when
        there is one); `baseline`, `comparison`, `text_stats` for `report.write_report`.

    Example:
    >>> findings, keys, arguments = findings_and_metrics(run, metrics, history)
    >>> keys["versus_baseline"]["line"]
    'kerasdl 0.961 vs baseline 0.956 (+0.6 points)'
    """
    findings = report.diagnose(history, len(run.splits.class_names), validation_examples=run.splits.validation.size or None)
    gradients = report.read_gradients(os.path.join(run.run_dir, report.GRADIENTS_FILE))
    findings += report.diagnose_gradients(gradients, history)
    baseline, comparison, text_stats = run.baseline, None, None
    if run.splits.modality == "text":
        from kerasdl.baseline import text_statistics

        text_stats = (baseline or {}).get("text_statistics") or text_statistics(run.facts.train_texts)
    if baseline is not None:
        from kerasdl.baseline import compare
        from kerasdl.phases import plan_phases

        planned = sum(phase["epochs_planned"] for phase in plan_phases(run))
        epochs = sum(phase["epochs"] for phase in run.phases)
        baseline["share_of_run"] = baseline["total_seconds"] / metrics["wall_time_s"] if metrics["wall_time_s"] else None
        comparison = compare(
            metrics["test_accuracy"], baseline, run.splits.modality, text_stats=text_stats,
            optimizer_steps=run.steps * epochs, stopped_early=epochs < planned,
            ngram_model=run.entry.text is not None and run.entry.text.tokenizer == "ngram_counts" and run.splits.modality == "text",
        )
        # The comparison's line ends the command's output (training.run); what to try when the
        # model does not win is said here, once.
        if comparison["verdict"] != "better":
            run.log(comparison["statement"])
    keys = report.baseline_metrics(baseline, comparison, text_stats)
    if run.gradient_loggers:
        seconds = sum(logger.seconds for logger in run.gradient_loggers)
        keys["gradient_log"] = {
            "file": report.GRADIENTS_FILE,
            "seconds": seconds,
            "share_of_fit": seconds / run.fit_seconds if run.fit_seconds else None,
            "every_epochs": [logger.every for logger in run.gradient_loggers],
            "measured_epochs": [epoch for logger in run.gradient_loggers for epoch in logger.measured_epochs],
            "batches": GRADIENT_BATCHES,
        }
    return findings, keys, {"baseline": baseline, "comparison": comparison, "text_stats": text_stats}
