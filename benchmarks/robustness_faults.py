"""`benchmarks.run --only robustness`, fault injection: training and export killed with kill -9, then run again.

`run(quick)` kills training at every point `benchmarks.fault_child` knows (on the MLP, through
`python -m training.run`), in phase 2 of the tiny two-phase model, on each of two workers, and
in ResNet50's phase 2 (full runs, random weights, 200 CIFAR-10 images at 32x32); each time the
same command finishes the run (`benchmarks.fault_injection`). Then `python -m export.run` is
killed at seeded points of its write (`benchmarks.fault_export`). Every target is computed from
the counts: kills that landed, epochs lost, history rows duplicated or missing, saved models
that are not the best epoch, partial versions seen, failed next exports.

Example:
>>> from benchmarks import robustness_faults
>>> [target["met"] for target in robustness_faults.run(quick=True)["targets"]]
[True, True, True, True, True, True, True, True]
"""

import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.fault_child import TWO_PHASE_MODEL
from benchmarks.fault_export import kill_export
from benchmarks.fault_injection import LOSS_RTOL, Scenario, kill_training


def scenarios(quick):
    """The training scenarios of `run`: every kill point on the MLP; phase 2; two workers; ResNet50 (full runs only)."""
    every_point = [("mid-epoch", 1), ("checkpoint-write", 2), ("backup-write", 3), ("backup-metadata", 4), ("before-backup", 5),
                   ("epoch-start", 6), ("artifacts", 0)]
    quiet = ["--set", "train.warmup_epochs=0"]
    if quick:
        return [Scenario("mlp", ["mlp", "--epochs", "4", *quiet], [("mid-epoch", 1), ("checkpoint-write", 2), ("before-backup", 3)])]
    found = [
        Scenario("mlp", ["mlp", "--epochs", "8", *quiet], every_point),
        Scenario("two-phase", [TWO_PHASE_MODEL, "--epochs", "3", "--set", "finetune.blocks=1", "--set", "finetune.epochs=2",
                               "--set", "finetune.learning_rate=0.001", *quiet], [("mid-epoch", 1), ("before-backup", 3), ("mid-epoch", 4)]),
        Scenario("multi-worker", ["mlp", "--epochs", "4", "--strategy", "multi_worker", *quiet], [("mid-epoch", 1, 1), ("before-backup", 2, 0)], workers=2),
    ]
    cifar = common.data_path("cifar10-test-jpg")
    if cifar:
        # ResNet50 itself (random weights: ImageNet weights cannot be fetched here), 32x32, phase 2 = epochs 1-2.
        found.append(Scenario("resnet50", ["resnet50", "--weights", "none", "--data", cifar, "--set", "data.max_examples=200", "--epochs", "1",
                                           "--batch-size", "32", "--set", "finetune.blocks=1", "--set", "finetune.epochs=2",
                                           "--set", "augment.enabled=false", *quiet], [("mid-epoch", 2)]))
    return found


def run(quick):
    """The `benchmarks.robustness` part: every scenario killed and resumed, then export killed; targets from the counts."""
    started = time.time()
    training, notes = [], []
    with common.temporary_folder("kerasdl-fault-injection-") as folder:
        for scenario in scenarios(quick):
            scenario_folder = Path(folder) / scenario.name
            scenario_folder.mkdir()
            report = kill_training(scenario, scenario_folder)
            training.append(report)
            kills = ", ".join(f"{kill['point']}" + (f" (worker {kill['worker']})" if "worker" in kill else "") +
                              f" at epoch {kill['epoch']}: backup {kill['saved_epoch']}, resumed {kill['resumed_from']}" for kill in report["kills"])
            notes.append(f"{scenario.name}: {kills}; history epochs {report.get('history_epochs')}; model.keras val_loss "
                         f"{report.get('model_val_loss')} vs best {report.get('best_val_loss')}; problems {report['problems'] or 'none'}")
        exported = next((report for report in training if report.get("run_dir")), None)
        export = kill_export(exported["run_dir"], Path(folder) / "exports", seeds=range(2 if quick else 5)) if exported else None
    summary = summarize(training, export)
    notes += summary["notes"]
    result = common.result("robustness_faults", started, [], summary["targets"], notes)
    result["raw"] = {"training": training, "export": export}
    return result


def summarize(training, export):
    """Targets (and notes) computed from the reports of `kill_training` and `kill_export`."""
    planned = sum(len(report["kills"]) for report in training)
    landed = sum(kill["epoch"] is not None for report in training for kill in report["kills"])
    problems = [f"{report['scenario']}: {problem}" for report in training for problem in report["problems"]]
    lost = sum(report.get("lost_epochs", 0) for report in training)
    history = sum(len(report.get(key, [])) for report in training for key in ("duplicated_epochs", "missing_epochs", "incomplete_rows"))
    not_best = sum(
        1 for report in training for key in ("model_val_loss", "checkpoint_val_loss")
        if "best_val_loss" in report and (report[key] is None or not np.isclose(report[key], report["best_val_loss"], rtol=LOSS_RTOL, atol=0))
    )
    reason = "; ".join(problems)[:1000] or None
    targets = [
        common.target("fault-training-kills", "training kills that landed at their point (kill -9)", landed, planned, ">=", reason=reason),
        common.target("fault-training-lost-epochs", "epochs the backup held at a kill but the resumed run trained again", lost, 0, "<=", reason=reason),
        common.target("fault-training-history", "history.csv epochs duplicated, missing or torn after the resumes", history, 0, "<=", reason=reason),
        common.target("fault-training-best-model", "model.keras / checkpoints/best.keras files that are not the best epoch in history.csv", not_best, 0, "<=", reason=reason),
        common.target("fault-training-problems", "anything else wrong after a resume (a failed final run, files left behind)", len(problems), 0, "<=", reason=reason),
    ]
    notes = [f"training: {len(training)} scenarios, {landed} kills landed, {lost} lost epochs, {history} bad history rows, {not_best} saved models not the best"]
    if export is not None:
        killed = sum(kill["killed"] for kill in export["kills"])
        export_reason = "; ".join(export["problems"])[:1000] or None
        targets += [
            common.target("fault-export-partial-versions", "partial versions visible under integer names while or after export.run was killed",
                          export["partial_versions_seen"] + export["incomplete_after_kill"], 0, "<=", reason=export_reason),
            common.target("fault-export-next-export", "exports after the kills that failed", int(export["next_export_status"] != 0), 0, "<=", reason=export_reason),
            common.target("fault-export-kills", "export.run processes killed inside their write window", killed, 1, ">=",
                          reason=f"every export ended before its kill: {export['kills']}"),
        ]
        staging = max((len(kill["leftovers"]) for kill in export["kills"]), default=0)
        points = ", ".join(f"{kill['after_staging_seconds']} s: {kill['staged_files']} files staged" for kill in export["kills"])
        notes.append(f"export: {killed} of {len(export['kills'])} killed in a {export['write_window_seconds']} s write window ({points}); "
                     f"{export['checks']} checks of versions, {export['partial_versions_seen']} partial; versions after: {export['versions']}; "
                     f"{staging} hidden staging folders (.tmp-*) left by the kills, invisible to TF Serving")
    return {"targets": targets, "notes": notes}
