"""Fault injection for `python -m export.run`: kill -9 at seeded random points of its write, then export again.

`kill_export` exports a run once (the reference, which measures the write window: from the
staging folder's appearance to the published version), then starts the same command once
per seed and kills it a seeded delay after its own staging folder appears. A thread
(`_VersionWatcher`) lists the model base path every few milliseconds as TF Serving does:
only integer-named folders are versions, and each one it sees must be complete
(`version_problems`: `saved_model.pb`, `variables/`, `assets.extra/model_card.json`,
`model.onnx` when asked). After the kills the next export must succeed and publish the
next version. The export is driven through its command line only, never its internals.

Example:
>>> report = kill_export("runs/mlp/20260101-000000", "/tmp/exports", seeds=[0, 1])
>>> report["partial_versions_seen"], report["next_export_status"]
(0, 0)
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.fault_injection import PROCESS_LIMIT_SECONDS, REPO_ROOT, environment, wait_exit


def kill_export(run_dir, base, seeds, formats=("savedmodel", "onnx"), name="model", log=print):
    """Exports `run_dir` once, then kills `export.run` at a seeded random point of its write per seed, then exports again.

    The reference export measures the write window: from the staging folder's appearance
    to the published version (writing, verifying, publishing every format). Each later
    export is killed a seeded delay after its own staging folder appears, uniform over 1.25
    times that window (the load on the machine varies: some kills land after the rename). While every export runs, a thread lists `base/name` every few
    milliseconds and checks each integer-named folder, as TF Serving would see it.

    Returns:
        `{"reference_seconds", "write_window_seconds", "kills": [{"seed", "after_staging_seconds", "killed",
        "exit_status", "staged_files", "published", "leftovers"}], "checks", "partial_versions_seen", "incomplete_after_kill",
        "next_export_status", "versions", "problems"}`.
    """
    base, problems = Path(base), []
    model_base = base / name
    command = [sys.executable, "-m", "export.run", str(run_dir), "--base", str(base), "--name", name, "--format", *formats]
    watcher = _VersionWatcher(model_base, formats)
    watcher.start()
    try:
        started = time.monotonic()
        watcher.reset()
        reference = subprocess.run(command, cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=PROCESS_LIMIT_SECONDS)
        duration = time.monotonic() - started
        window = (watcher.published_at or time.monotonic()) - (watcher.staged_at or started)  # Writing, verifying, publishing.
        if reference.returncode != 0:
            problems.append(f"the reference export exited {reference.returncode}: {reference.stderr[-1500:]}")
        kills, incomplete_after = [], []
        for seed in seeds:
            delay = float(np.random.default_rng(seed).uniform(0, 1.25 * window))
            watcher.reset()
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = _versions(model_base)
            staged = watcher.staged.wait(PROCESS_LIMIT_SECONDS) and process.poll() is None
            finished = not staged or wait_exit(process, delay)
            staged_files = sum(len(files) for _, _, files in os.walk(model_base / watcher.staging)) if staged else 0
            if not finished:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            time.sleep(0.05)  # One more look by the watcher at what the kill left.
            leftovers = sorted(entry.name for entry in model_base.iterdir() if not entry.name.isdigit()) if model_base.is_dir() else []
            for version in _versions(model_base):
                missing = version_problems(model_base / version, formats, deep=True)
                if missing:
                    incomplete_after.append(f"{version}: {missing}")
            published = [version for version in _versions(model_base) if version not in before]
            kills.append({"seed": seed, "after_staging_seconds": round(delay, 2), "killed": not finished, "exit_status": process.returncode,
                          "staged_files": staged_files, "published": published, "leftovers": leftovers})
            log(f"export (seed {seed}) {'killed' if not finished else 'ended by itself'} {delay:.1f} s into a {window:.1f} s write window, "
                f"{staged_files} files staged, published {published or 'nothing'}")
        before = _versions(model_base)
        final = subprocess.run(command, cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=PROCESS_LIMIT_SECONDS)
        after = _versions(model_base)
    finally:
        watcher.stop()
    new = [version for version in after if version not in before]
    if final.returncode != 0:
        problems.append(f"the export after the kills exited {final.returncode}: {final.stderr[-1500:]}")
    elif len(new) != 1 or version_problems(model_base / new[0], formats, deep=True):
        problems.append(f"the export after the kills published {new}")
    if watcher.partial:
        problems.append(f"partial versions visible: {watcher.partial[:5]}")
    if incomplete_after:
        problems.append(f"incomplete versions after a kill: {incomplete_after[:5]}")
    return {
        "reference_seconds": round(duration, 1), "write_window_seconds": round(window, 1), "kills": kills, "checks": watcher.checks,
        "partial_versions_seen": len(watcher.partial), "incomplete_after_kill": len(incomplete_after), "next_export_status": final.returncode,
        "versions": after, "problems": problems,
    }


def version_problems(folder, formats, deep=False):
    """What a version folder lacks to be complete for `formats`; empty when complete.

    Args:
        folder: `<base>/<name>/<version>`.
        formats: the formats the export was asked for.
        deep: also parse `saved_model.pb` and `model.onnx` (slower; the watcher checks presence).
    """
    folder = Path(folder)
    problems = []
    required = ["assets.extra/model_card.json"]
    if "savedmodel" in formats:
        required += ["saved_model.pb", "variables/variables.index"]
    if "onnx" in formats:
        required.append("model.onnx")
    for relative in required:
        path = folder / relative
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"{relative} missing")
    if "savedmodel" in formats and not list((folder / "variables").glob("variables.data-*")):
        problems.append("variables/variables.data-* missing")
    try:
        json.loads((folder / "assets.extra" / "model_card.json").read_text())
    except (OSError, ValueError):
        problems.append("assets.extra/model_card.json unreadable")
    if deep and not problems:
        from tensorflow.core.protobuf import saved_model_pb2

        try:
            if "savedmodel" in formats and not saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes()).meta_graphs:
                problems.append("saved_model.pb holds no graph")
            if "onnx" in formats:
                import onnx

                onnx.checker.check_model(str(folder / "model.onnx"))
        except Exception as error:  # Any parse failure is an incomplete file.
            problems.append(f"unreadable: {type(error).__name__}: {str(error)[:200]}")
    return problems


class _VersionWatcher:
    """A thread that lists a model base path as TF Serving does and checks every version it sees.

    It also notes when a new staging folder (`.tmp-*`) appears, and when a new version does.
    """

    def __init__(self, model_base, formats, interval=0.005):
        self.model_base, self.formats, self.interval = Path(model_base), formats, interval
        self.partial, self.checks = [], 0
        self.staged, self.staging, self.staged_at, self.published_at, self._known = threading.Event(), None, None, None, set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self):
        self._thread.start()

    def reset(self):
        """Starts watching for the next export's staging folder and version."""
        self._known = set(os.listdir(self.model_base)) if self.model_base.is_dir() else set()
        self.staging, self.staged_at, self.published_at = None, None, None
        self.staged.clear()

    def stop(self):
        self._done.set()
        self._thread.join()

    def _watch(self):
        while not self._done.is_set():
            try:
                entries = os.listdir(self.model_base)
            except FileNotFoundError:
                entries = []
            for entry in entries:
                if entry.startswith(".tmp-") and entry not in self._known and not self.staged.is_set():
                    self.staging, self.staged_at = entry, time.monotonic()
                    self.staged.set()
                if entry.isdigit() and os.path.isdir(self.model_base / entry):
                    self.checks += 1
                    if entry not in self._known and self.published_at is None:
                        self.published_at = time.monotonic()
                    missing = version_problems(self.model_base / entry, self.formats)
                    if missing and (self.model_base / entry).exists():  # Not a folder removed meanwhile.
                        self.partial.append(f"{entry}: {missing}")
            self._done.wait(self.interval)


def _versions(model_base):
    return sorted((entry.name for entry in Path(model_base).iterdir() if entry.name.isdigit() and entry.is_dir()), key=int) if Path(model_base).is_dir() else []
