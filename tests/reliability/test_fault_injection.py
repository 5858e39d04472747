"""Fault injection with real processes and kill -9 (issue 10): training and export survive a crash anywhere.

Training is killed (SIGKILL) at the points `benchmarks.fault_child` pauses at: mid-epoch,
inside the best-checkpoint write, between epochs before the epoch's backup, and in phase 2
of a two-phase model (ResNet50's path, on the tiny `fault_two_phase` model); and, with two
workers on this machine, mid-epoch on one worker. Each time the same command then finishes,
`history.csv` has each epoch once and `model.keras` (and `checkpoints/best.keras`) is the
best over all epochs: its loss on the validation split, recomputed here from the file,
equals the lowest `val_loss` in `history.csv`.

`export.run` is killed at seeded random points of its write while a thread checks every
integer-named folder under the model base path, as TF Serving would load it; the next
export then succeeds. `benchmarks.run --only robustness` runs more points and seeds.
"""

import pytest

from benchmarks.fault_export import kill_export, version_problems
from benchmarks.fault_injection import Scenario, check_run, kill_training

# Phase 1: epochs 0-2 (frozen base); phase 2: epochs 3-4 (fine-tuning). The last kill lands between
# epochs in phase 2: after epoch 3's history row and checkpoint, before its backup.
TWO_PHASE = ["fault_two_phase", "--epochs", "3", "--set", "finetune.blocks=1", "--set", "finetune.epochs=2",
             "--set", "finetune.learning_rate=0.001", "--set", "train.warmup_epochs=0"]
KILLS = [("mid-epoch", 1), ("checkpoint-write", 2), ("before-backup", 3)]


def assert_survived(report, kills):
    assert report["problems"] == [], report
    assert [kill["point"] for kill in report["kills"]] == [point for point, _ in kills]
    for kill, (point, epoch) in zip(report["kills"], kills):
        assert kill["epoch"] >= epoch, kill  # The kill landed where it was asked to.
        # The next launch resumed from the epoch the backup held at the kill: nothing lost.
        assert kill["resumed_from"] == kill["saved_epoch"], kill
    assert report["lost_epochs"] == 0 and report["duplicated_epochs"] == [] and report["missing_epochs"] == []
    assert report["model_val_loss"] == pytest.approx(report["best_val_loss"], rel=1e-4)
    assert report["checkpoint_val_loss"] == pytest.approx(report["best_val_loss"], rel=1e-4)
    assert report["leftovers"] == []


@pytest.fixture(scope="module")
def killed_two_phase_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-phase")
    return kill_training(Scenario("two-phase", TWO_PHASE, KILLS), folder, log=lambda line: None)


def test_training_killed_at_each_point_then_the_same_command_finishes(killed_two_phase_run):
    report = killed_two_phase_run
    assert_survived(report, KILLS)
    assert report["history_epochs"] == [0, 1, 2, 3, 4]
    saved = [kill["saved_epoch"] for kill in report["kills"]]
    # Mid-epoch 1: epoch 0 was backed up. Inside epoch 2's checkpoint write: epochs 0-1. Before
    # epoch 3's backup: phase 1 (epochs 0-2), recorded in progress.json, resumed inside phase 2.
    assert saved == [1, 2, 3], saved


def test_multi_worker_training_killed_on_one_worker(tmp_path):
    scenario = Scenario("multi-worker", ["mlp", "--epochs", "4", "--strategy", "multi_worker", "--set", "train.warmup_epochs=0"],
                        kills=[("mid-epoch", 2)], workers=2, killed_worker=1)
    report = kill_training(scenario, tmp_path, log=lambda line: None)
    assert_survived(report, scenario.kills)
    assert report["history_epochs"] == [0, 1, 2, 3] and report["kills"][0]["saved_epoch"] == 2
    # The survivor stopped on its own (TF's coordination service lost its peer); it did not finish alone.
    assert report["kills"][0]["note"].startswith("the surviving worker exited ") and "exited 0 " not in report["kills"][0]["note"]
    assert report["run_dir"].split("/")[-1].startswith("multi-worker-")


def test_check_run_finds_duplicated_epochs_and_a_model_that_is_not_the_best(killed_two_phase_run, tmp_path):
    """The oracle itself: a history row twice, and a model.keras other than the best, are reported."""
    import shutil
    from pathlib import Path

    run_dir = tmp_path / "run"
    shutil.copytree(killed_two_phase_run["run_dir"], run_dir)
    lines = (run_dir / "history.csv").read_text().splitlines(keepends=True)
    (run_dir / "history.csv").write_text("".join(lines[:3] + [lines[2]] + lines[3:]))
    shutil.copy(Path(run_dir / "checkpoints" / "best.keras"), run_dir / "model.keras")  # Still the best: only the history is wrong.
    found = check_run(run_dir)
    assert found["duplicated_epochs"] == [1] and found["problems"] == ["history.csv epochs [0, 1, 1, 2, 3, 4], expected [0, 1, 2, 3, 4]"]
    (run_dir / "history.csv").write_text("".join(lines))
    rows = [line.split(",") for line in lines]
    rows[1][-1] = "0.0001\n"  # A val_loss no saved model has.
    (run_dir / "history.csv").write_text("".join(",".join(row) for row in rows))
    problems = check_run(run_dir)["problems"]
    assert len(problems) == 2 and problems[0].startswith("model.keras has validation loss ") and problems[0].endswith("has 0.000100")


def test_export_killed_at_random_points_never_shows_a_partial_version(killed_two_phase_run, tmp_path):
    report = kill_export(killed_two_phase_run["run_dir"], tmp_path / "exports", seeds=[0, 1], log=lambda line: None)
    assert report["problems"] == [], report
    assert report["partial_versions_seen"] == 0 and report["incomplete_after_kill"] == 0 and report["checks"] > 0
    assert [kill["seed"] for kill in report["kills"]] == [0, 1]
    assert any(kill["killed"] for kill in report["kills"]), report["kills"]
    # Version 1 is the reference export's. A kill before the rename publishes nothing; one after it
    # (or an export that ended first) published a complete version. The next export is the next version.
    published = [version for kill in report["kills"] for version in kill["published"]]
    assert report["next_export_status"] == 0 and report["versions"] == [str(version) for version in range(1, 3 + len(published))]
    for version in report["versions"]:
        assert version_problems(tmp_path / "exports" / "model" / version, ("savedmodel", "onnx"), deep=True) == []
