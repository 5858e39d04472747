"""report.md, which ties a run's artifacts together, and the baseline's lines in it and in metrics.json."""

import os

from kerasdl.report.gradient_diagnosis import GRADIENTS_FILE


def write_report(run_dir, model_name, description, metrics, history, findings, phases=None, baseline=None, comparison=None, text_stats=None, checkpoint_kept=False):
    """Writes report.md, which ties the run's artifacts together.

    Args:
        run_dir: the run directory.
        model_name, description: the model's name and the data's description line.
        metrics: `metrics.json`'s content.
        history: `read_history`'s result.
        findings: `diagnose` (+ `diagnose_gradients`) findings.
        phases: the training phases, when there were several.
        baseline, comparison: `kerasdl.baseline.fit_baseline`'s and `compare`'s results, or None.
        text_stats: `kerasdl.baseline.text_statistics` of the training texts, or None.
        checkpoint_kept: whether `checkpoints/best.keras` stays (`train.keep_checkpoint`).

    Example:
    >>> write_report("runs/mlp/x", "mlp", "digits", metrics, history, findings, baseline=baseline, comparison=comparison)
    """
    lines = [
        f"# {model_name} run",
        "",
        f"- Data: {description}",
        f"- Test accuracy: **{metrics['test_accuracy']:.4f}**, test loss {metrics['test_loss']:.4f}",
        f"- Wall time: {metrics['wall_time_s']:.1f} s, {metrics['examples_per_s']:.0f} training examples/s",
        f"- Epochs run: {len(history.get('loss', []))}",
    ]
    if comparison is not None:
        lines.append(f"- Against a classical baseline: {comparison['line']}")
    lines += [
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
    ]
    lines += baseline_section(baseline, comparison, text_stats)
    if phases:
        lines += ["## Phases", "", "| phase | epochs | trainable parameters | learning rate |", "|---|---|---|---|"]
        lines += [f"| {phase['name']} | {phase['epochs']} | {phase['trainable_parameters']:,} | {phase['learning_rate']:g} |" for phase in phases]
        lines.append("")
    lines += ["## Diagnosis", ""]
    if findings:
        for finding in findings:
            lines.append(f"- **{finding['issue']}** (epoch {finding['epoch']}): {finding['evidence']}. Remedies: {finding['remedy']}.")
    else:
        checked = " or vanishing/exploding gradients in gradients.csv" if os.path.isfile(os.path.join(run_dir, GRADIENTS_FILE)) else ""
        lines.append(f"- No overfitting, underfitting or unstable training detected in the history{checked}.")
    lines += ["", "## Per-class results", "", "| class | precision | recall | support |", "|---|---|---|---|"]
    for name, values in metrics["per_class"].items():
        lines.append(f"| {name} | {values['precision']:.3f} | {values['recall']:.3f} | {values['support']} |")
    gradients = ", `gradients.csv`" if os.path.isfile(os.path.join(run_dir, GRADIENTS_FILE)) else ""
    checkpoint = ", `checkpoints/best.keras`" if checkpoint_kept else ""
    lines += ["", f"Files: `config.yaml`, `model.keras`{checkpoint}, `history.csv`{gradients}, `metrics.json`, `tensorboard/`.", ""]
    with open(os.path.join(run_dir, "report.md"), "w") as handle:
        handle.write("\n".join(lines))


def baseline_section(baseline=None, comparison=None, text_stats=None):
    """report.md's lines on the classical baseline and, for text, the guide's ratio; [] when there is neither.

    Example:
    >>> baseline_section(baseline, compare(0.812, baseline, "image"))[2]
    '- kerasdl 0.812 vs baseline 0.795 (+1.7 points)'
    """
    lines = []
    if comparison is not None and baseline is not None:
        lines += ["## Against a classical baseline", "", f"- {comparison['line']}", f"- {comparison['statement']}"]
        used = f"{baseline['train_examples_used']:,} of {baseline['train_examples']:,}" if baseline["train_examples_used"] < baseline["train_examples"] else f"all {baseline['train_examples']:,}"
        unconverged = ", stopped at its iteration cap before converging" if not baseline.get("converged", True) else ""
        lines.append(f"- Baseline: {baseline['description']}, fitted on {used} training examples and scored on the same {baseline['test_examples']:,} test examples in {baseline['seconds']:.1f} s{unconverged}.")
        if comparison["suggestions"]:
            lines.append("- What to try:")
            lines += [f"  - {suggestion}" for suggestion in comparison["suggestions"]]
        lines.append("")
    if text_stats is not None:
        lines += ["## Text: which model suits this data", "", f"- {text_stats['reason']}.", f"- Recommended by the guide: **{text_stats['recommended_model']}**.", ""]
    return lines


def baseline_metrics(baseline=None, comparison=None, text_stats=None):
    """The `metrics.json` keys for the baseline: `baseline`, `versus_baseline` and `text_statistics` (each when given).

    Example:
    >>> metrics.update(baseline_metrics(baseline, comparison))
    >>> metrics["versus_baseline"]["line"]
    'kerasdl 0.812 vs baseline 0.795 (+1.7 points)'
    """
    keys = {}
    if baseline is not None:
        keys["baseline"] = {key: value for key, value in baseline.items() if key != "text_statistics"}
    if comparison is not None:
        keys["versus_baseline"] = dict(comparison)
    if text_stats is not None:
        keys["text_statistics"] = dict(text_stats)
    return keys
