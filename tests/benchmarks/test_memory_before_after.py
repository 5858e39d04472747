"""The before/after plumbing of the export memory benchmark (`benchmarks.memory_export`),
without training anything: an older commit checked out and run from its own folder (and
removed afterwards, also on failure), the skip note when the commit is absent, the memory
wait and the kill, and the rows and targets computed from the two peaks.
"""

import json
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks import common, memory_export


def _git(root, *arguments):
    return subprocess.run(["git", *arguments], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repository(tmp_path):
    """A repository whose module `probe_version` exits 3 at the first commit and 0 at the second."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "bench@example.com")
    _git(root, "config", "user.name", "bench")
    for status in (3, 0):
        (root / "probe_version.py").write_text(f"import sys\nprint('version with status {status}')\nsys.exit({status})\n")
        _git(root, "add", "-A")
        _git(root, "commit", "-qm", f"status {status}")
    return root


def _worktrees(root):
    return [line for line in _git(root, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def test_the_older_commit_runs_from_its_own_checkout_which_is_then_removed(repository):
    first = _git(repository, "rev-parse", "HEAD~1")
    with memory_export.checkout_at("HEAD~1", root=repository) as folder:
        assert _git(folder, "rev-parse", "HEAD") == first
        assert len(_worktrees(repository)) == 2
        old = memory_export.module_peak_rss("probe_version", [], timeout=60, cwd=folder)
        assert old["status"] == 3 and Path(old["module_file"]) == Path(folder, "probe_version.py")
        assert 1 < old["max_rss_mb"] < 200
        assert memory_export.imported_from(folder, ("probe_version",)) == {"probe_version": str(Path(folder, "probe_version.py"))}
        # A package found outside the checkout is refused, by name.
        with pytest.raises(RuntimeError, match="imported code from elsewhere: .*'json'"):
            memory_export.imported_from(folder, ("probe_version", "json"))
    assert not Path(folder).exists() and len(_worktrees(repository)) == 1
    new = memory_export.module_peak_rss("probe_version", [], timeout=60, cwd=repository)
    assert new["status"] == 0 and Path(new["module_file"]) == repository / "probe_version.py"


def test_the_checkout_is_removed_when_the_measurement_fails(repository):
    with pytest.raises(ZeroDivisionError):
        with memory_export.checkout_at("HEAD~1", root=repository) as folder:
            1 / 0
    assert not Path(folder).exists() and len(_worktrees(repository)) == 1


def test_an_absent_commit_or_no_git_checkout_is_unavailable(repository, tmp_path):
    with pytest.raises(memory_export.CommitUnavailable, match="^commit 0{40} is not in this repository$"):
        with memory_export.checkout_at("0" * 40, root=repository):
            pass
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(memory_export.CommitUnavailable, match=f"^{plain} is not a git checkout$"):
        with memory_export.checkout_at("HEAD", root=plain):
            pass
    first = _git(repository, "rev-parse", "HEAD~1")
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repository}", str(shallow)], check=True, capture_output=True)
    with pytest.raises(memory_export.CommitUnavailable, match=f"^commit {first} is not in this repository \\(a shallow clone\\)$"):
        with memory_export.checkout_at(first, root=shallow):
            pass
    assert len(_worktrees(shallow)) == 1


def test_the_before_row_is_skipped_with_a_note_when_the_commit_is_missing(monkeypatch, tmp_path):
    trained = []

    def fake_train_and_export(checkout, data, folder, label, kinds, notes, needs_gib=None):
        trained.append((str(checkout), label, kinds))
        return {"plain": {"status": 0, "max_rss_mb": 2900.0}, "int8": {"status": 0, "max_rss_mb": 3100.0}}

    monkeypatch.setattr(memory_export, "_train_and_export", fake_train_and_export)
    monkeypatch.setattr(memory_export, "BEFORE_COMMIT", "0" * 40)
    monkeypatch.setattr(common, "TOY", False)
    monkeypatch.setattr(common, "data_path", lambda *parts: str(tmp_path))
    rows, targets, notes = [], [], []
    memory_export.export_peak_rss(rows, targets, notes, floor={"max_rss_mb": 800.0})
    assert trained == [(str(common.REPO_ROOT), "after (this code)", ("plain", "int8"))]
    skipped = f"the before-row is skipped: commit {'0' * 40} is not in this repository"
    assert f"resnet50 export at {'0' * 40}: {skipped}" in notes
    assert [row["case"] for row in rows] == ["resnet50 export: python -m export.run", "resnet50 export: python -m export.run --quantize int8"]
    peak, ratio = targets
    assert peak["value"] == 3100.0 and peak["met"] is True
    assert ratio["value"] is None and ratio["met"] is None
    assert ratio["reason"] == f"after (this code) 3100 MiB, before ({'0' * 40}) not measured ({skipped})"


def test_rows_and_targets_are_computed_from_the_two_peaks():
    floor, plain = {"max_rss_mb": 800.0}, {"max_rss_mb": 2900.0}
    rows, targets = memory_export.comparison({"max_rss_mb": 15000.0}, plain, {"max_rss_mb": 3100.0}, floor)
    by_case = {(row["case"], row["metric"]): row for row in rows}
    before = by_case[("resnet50 export at da56443 (before the export memory fixes): python -m export.run --quantize int8", "peak RSS")]
    assert before["value"] == 15000.0 and before["baseline"] == 800.0 and before["ratio"] == 18.75
    versus = by_case[("resnet50 export: python -m export.run --quantize int8", "peak RSS, after / before (da56443)")]
    assert versus["value"] == 3100.0 and versus["baseline"] == 15000.0 and versus["ratio"] == 0.2067
    assert by_case[("resnet50 export: python -m export.run --quantize int8", "peak RSS")]["ratio"] == 1.069
    peak, ratio = targets
    assert (peak["id"], peak["value"], peak["threshold"], peak["met"]) == ("memory_export_int8_peak", 3100.0, 4096, True)
    assert (ratio["id"], ratio["value"], ratio["threshold"], ratio["met"]) == ("memory_export_int8_vs_before", 0.2067, 0.5, True)
    assert "after (this code) 3100 MiB, before (da56443) 15000 MiB" in peak["description"]
    # Not met: the reason carries both numbers.
    _, (peak, ratio) = memory_export.comparison({"max_rss_mb": 6000.0}, plain, {"max_rss_mb": 5000.0}, floor)
    assert peak["met"] is False and ratio["met"] is False and ratio["value"] == 0.8333
    assert peak["reason"] == ratio["reason"] == "after (this code) 5000 MiB, before (da56443) 6000 MiB"
    assert common.check_result(common.result("memory", time.time(), rows, targets)) == []


def test_the_old_export_waits_for_memory_and_gives_up_with_the_last_reading():
    readings, sleeps = iter([10.0, 12.0, 18.0]), []
    assert memory_export.wait_for_memory(17.0, wait_s=600, poll_s=10, available=lambda: next(readings), sleep=sleeps.append) == (True, 18.0)
    assert sleeps == [10, 10]
    sleeps.clear()
    assert memory_export.wait_for_memory(17.0, wait_s=30, poll_s=10, available=lambda: 9.5, sleep=sleeps.append) == (False, 9.5)
    assert sleeps == [10, 10, 10]
    assert memory_export.available_gib() > 0


def test_an_export_child_is_killed_when_memory_runs_out(tmp_path):
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(60)\n")
    started = time.monotonic()
    result = memory_export.module_peak_rss("sleeper", [], timeout=120, cwd=tmp_path, kill_below_gib=1.0, available=lambda: 0.5)
    assert result == {"status": None, "killed": "killed: MemAvailable fell under 1 GiB", "max_rss_mb": None}
    assert time.monotonic() - started < 30
    with pytest.raises(subprocess.TimeoutExpired):
        memory_export.module_peak_rss("sleeper", [], timeout=1, cwd=tmp_path)


def test_training_runs_the_checkouts_own_cli_and_returns_its_run_directory(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "training").mkdir(parents=True)
    (checkout / "training" / "__init__.py").write_text("")
    (checkout / "training" / "run.py").write_text(
        "import json, sys\nprint('data: 3 images')\nprint('run directory: ' + json.dumps(sys.argv[1:]))\n"
    )
    run_dir = memory_export.train_with_cli(checkout, "/data/hymenoptera", "/out", timeout=60)
    assert json.loads(run_dir) == ["resnet50", "--data", "/data/hymenoptera", "--output", "/out", "--weights", "none", "--epochs", "1",
                                   "--set", "data.image_size=[224,224]", "--set", "model.image_size=224"]
    (checkout / "training" / "run.py").write_text("import sys\nprint('error: no such model', file=sys.stderr)\nsys.exit(2)\n")
    with pytest.raises(RuntimeError, match="exited 2: error: no such model"):
        memory_export.train_with_cli(checkout, "/data", "/out", timeout=60)
