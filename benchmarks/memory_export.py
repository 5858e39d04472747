"""Peak RSS of `python -m export.run RUN --quantize int8` on a ResNet50 run, before and after
the export memory fixes of issue 15 (item 4), both measured in the same benchmark run.

"Before" is the code at `BEFORE_COMMIT`, in a temporary git worktree (removed afterwards, also
on failure); "after" is this checkout. Each trains its own run with its own `training.run`
(same command and data, `TRAINING`) and exports it with its own `export.run` (same flags), in
children whose working directory and PYTHONPATH are its checkout (checked: the children report
the files they imported). Each export child reports its own peak RSS (`VmHWM`).

The old export peaks at ~15 GB: it starts only once `MemAvailable` reaches `BEFORE_NEEDS_GIB`
(polled for up to `MEMORY_WAIT_S`), and an export child is killed if `MemAvailable` falls under
`KILL_BELOW_GIB`; either way a note says so and no number is written. Without git, or without
the commit (a shallow clone), the "before" row is skipped with a note, never invented.

Example:
>>> rows, targets, notes = [], [], []
>>> export_peak_rss(rows, targets, notes, floor={"max_rss_mb": 780.0})
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

# main just before the export memory fixes (commits 6abc950, 1b215af, merged in c164d08): the
# merge of the export formats registry. Its int8 export of a ResNet50 run peaked at ~15 GB.
BEFORE_COMMIT = "da56443"
# The bound on the current code's peak (issue 15, item 4).
PEAK_TARGET_MIB = 4096
# The fixes must at least halve the old peak; a change that gives back half of what they won
# fails here even while the absolute bound above still holds.
RATIO_TARGET = 0.5
# The old export's ~15 GB (14.1 GiB) plus room for the benchmark itself and the other workers.
BEFORE_NEEDS_GIB = 17.0
MEMORY_WAIT_S = 600
MEMORY_POLL_S = 10
# An export child is killed when the machine is this close to running out (it is shared).
KILL_BELOW_GIB = 1.0
# Seconds one training or one export may take on 2 busy cores (each takes 1-5 minutes).
CHILD_TIMEOUT_S = 900
MODEL = "resnet50"
# One epoch from scratch at 224x224 (the size the issue measured): memory, not accuracy, is measured.
TRAINING = ["--weights", "none", "--epochs", "1", "--set", "data.image_size=[224,224]", "--set", "model.image_size=224"]
# Default formats (SavedModel + ONNX) and int8; the accuracy gate is lifted so that a briefly
# trained model does not stop the export before every step whose memory is measured has run.
EXPORT = ["--max-accuracy-drop", "100"]
INT8 = ["--quantize", "int8"]

# Runs a module as `python -m <module> <arguments>` would, then prints its exit status, its own
# peak RSS (VmHWM, which covers the whole command, atexit handlers included; ru_maxrss would
# carry the parent's high-water mark across fork+exec) and the file the module was run from.
MODULE_CHILD = r"""
import importlib.util, json, os, runpy, sys
module, arguments = json.loads(%r)
sys.argv = [module, *arguments]
origin = importlib.util.find_spec(module).origin
status = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024.0
# To file descriptor 1 itself: the module may have closed sys.stdout.
os.write(1, ("\nBENCH_JSON " + json.dumps({"status": status, "max_rss_mb": peak, "module_file": origin}) + "\n").encode())
"""
# Prints the file each package resolves to in a fresh child (which checkout's code runs).
IMPORTS_CHILD = r"""
import importlib.util, json, sys
print("BENCH_JSON " + json.dumps({name: importlib.util.find_spec(name).origin for name in json.loads(%r)}))
"""


class CommitUnavailable(Exception):
    """The code to compare with cannot be checked out here (not a git checkout, or the commit is absent)."""


def available_gib(meminfo="/proc/meminfo"):
    """`MemAvailable` of `meminfo` in GiB."""
    with open(meminfo) as handle:
        return [int(line.split()[1]) for line in handle if line.startswith("MemAvailable:")][0] / 1024.0 ** 2


def wait_for_memory(needed_gib, wait_s=MEMORY_WAIT_S, poll_s=MEMORY_POLL_S, available=available_gib, sleep=time.sleep):
    """Polls `available()` (GiB) every `poll_s` until it reaches `needed_gib`, for at most `wait_s`; returns `(enough, last GiB seen)`.

    Example:
        >>> wait_for_memory(1.0, wait_s=0)
        (True, 21.7)
    """
    waited = 0.0
    while True:
        seen = available()
        if seen >= needed_gib:
            return True, seen
        if waited >= wait_s:
            return False, seen
        sleep(poll_s)
        waited += poll_s


def _git(root, *arguments):
    return subprocess.run(["git", *arguments], cwd=str(root), capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def checkout_at(commit, root=common.REPO_ROOT):
    """A detached git worktree of `root`'s repository at `commit`, removed on exit (also on failure).

    Args:
        commit: any name git resolves to a commit ("da56443", "HEAD~1").
        root: a folder of the repository.

    Raises:
        CommitUnavailable: `root` is not a git checkout, or the commit is not in it (a shallow clone).

    Example:
        >>> with checkout_at("HEAD~1") as folder:
        ...     print(open(os.path.join(folder, "README.md")).readline())
    """
    if shutil.which("git") is None:
        raise CommitUnavailable("git is not installed")
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise CommitUnavailable(f"{root} is not a git checkout")
    resolved = _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if resolved.returncode != 0:
        shallow = _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        raise CommitUnavailable(f"commit {commit} is not in this repository" + (" (a shallow clone)" if shallow else ""))
    parent = tempfile.mkdtemp(prefix="kerasdl-before-")
    folder = os.path.join(parent, "checkout")
    try:
        added = _git(root, "worktree", "add", "--detach", folder, resolved.stdout.strip())
        if added.returncode != 0:
            raise CommitUnavailable(f"git worktree add {commit} failed: {added.stderr.strip()[-300:]}")
        yield folder
    finally:
        _git(root, "worktree", "remove", "--force", folder)
        shutil.rmtree(parent, ignore_errors=True)
        _git(root, "worktree", "prune")


def _environment(checkout):
    # The checkout first on the path (the child's cwd is too): its packages, not this one's.
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(checkout))


def imported_from(checkout, packages=("kerasdl", "export", "training")):
    """The file each of `packages` is imported from by a child run in `checkout`; raises if one is not under it.

    Example:
        >>> imported_from(common.REPO_ROOT)["kerasdl"]
        '/work/wt-mem/kerasdl/__init__.py'
    """
    files = common.run_python(IMPORTS_CHILD % json.dumps(list(packages)), timeout=120, env={"PYTHONPATH": str(checkout)}, cwd=checkout)
    outside = {name: path for name, path in files.items() if not path or not Path(path).resolve().is_relative_to(Path(checkout).resolve())}
    if outside:
        raise RuntimeError(f"a child in {checkout} imported code from elsewhere: {outside}")
    return files


def module_peak_rss(module, arguments, timeout=3600, cwd=None, kill_below_gib=None, available=available_gib):
    """Runs `python -m module *arguments` in a fresh process; returns `{"status", "max_rss_mb", "module_file"}`.

    Args:
        module: the module run as `__main__`, e.g. "export.run".
        arguments: its command-line arguments.
        timeout: seconds before the child is killed (then `subprocess.TimeoutExpired`).
        cwd: the checkout whose code runs (default: this one); it is also the child's PYTHONPATH.
        kill_below_gib: when set, the child is killed as soon as `available()` falls under it;
            the result is then `{"status": None, "killed": why, "max_rss_mb": None}`.
        available: reads the machine's free memory in GiB.

    Example:
        >>> module_peak_rss("export.run", ["runs/resnet50/20261128-011800", "--quantize", "int8"])["max_rss_mb"]
    """
    checkout = str(cwd or common.REPO_ROOT)
    code = MODULE_CHILD % json.dumps([module, list(arguments)])
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        # Its own session, so that a kill reaches anything the module started too.
        child = subprocess.Popen([sys.executable, "-c", code], cwd=checkout, env=_environment(checkout), stdout=stdout, stderr=stderr, text=True, start_new_session=True)
        deadline, killed = time.monotonic() + timeout, None
        while child.poll() is None:
            if time.monotonic() > deadline:
                killed = "timeout"
            elif kill_below_gib is not None and available() < kill_below_gib:
                killed = f"MemAvailable fell under {kill_below_gib:g} GiB"
            if killed:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                break
            time.sleep(0.5)
        if killed == "timeout":
            raise subprocess.TimeoutExpired([module, *arguments], timeout)
        if killed:
            return {"status": None, "killed": f"killed: {killed}", "max_rss_mb": None}
        output, errors = (stream.seek(0) == 0 and stream.read() for stream in (stdout, stderr))
    for line in reversed(output.splitlines()):
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    tail = (errors or output).strip().splitlines()[-5:]
    raise RuntimeError(f"child exited {child.returncode}: {' | '.join(tail)}")


def train_with_cli(checkout, data, output, timeout=CHILD_TIMEOUT_S):
    """Runs that checkout's `python -m training.run resnet50 --data <data> --output <output> *TRAINING`; returns the run directory."""
    command = [sys.executable, "-m", "training.run", MODEL, "--data", str(data), "--output", str(output), *TRAINING]
    completed = subprocess.run(command, cwd=str(checkout), env=_environment(checkout), capture_output=True, text=True, timeout=timeout)
    for line in completed.stdout.splitlines():
        if line.startswith("run directory: "):
            return line[len("run directory: "):].strip()
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"training.run in {checkout} exited {completed.returncode}: {' | '.join(tail)}")


def comparison(before, after_plain, after_int8, floor, skipped=None):
    """The rows and targets of the export peaks (each `{"max_rss_mb", ...}`, or None when not measured).

    Args:
        before: the int8 export's peak at `BEFORE_COMMIT`.
        after_plain: this code's export peak with the default formats.
        after_int8: this code's export peak with `--quantize int8`.
        floor: the import-only child's peak.
        skipped: why a peak is None (the not-measured targets' reason).

    Example:
        >>> rows, targets = comparison({"max_rss_mb": 15000.0}, {"max_rss_mb": 2900.0}, {"max_rss_mb": 3100.0}, {"max_rss_mb": 780.0})
        >>> targets[1]["value"]
        0.2067
    """
    plain, now, old = ((item or {}).get("max_rss_mb") for item in (after_plain, after_int8, before))
    floor_case = "import tensorflow+keras+kerasdl only"
    plain_case, int8_case = f"{MODEL} export: python -m export.run", f"{MODEL} export: python -m export.run --quantize int8"
    before_case = f"{MODEL} export at {BEFORE_COMMIT} (before the export memory fixes): python -m export.run --quantize int8"
    rows = []
    if plain is not None:
        rows.append(common.row(plain_case, "peak RSS", plain, "MiB", floor_case, floor["max_rss_mb"], higher_is_better=False))
    if now is not None:
        rows.append(common.row(int8_case, "peak RSS", now, "MiB", f"{MODEL} export without --quantize", plain, higher_is_better=False))
    if old is not None:
        rows.append(common.row(before_case, "peak RSS", old, "MiB", floor_case, floor["max_rss_mb"], higher_is_better=False))
        if now is not None:
            rows.append(common.row(int8_case, f"peak RSS, after / before ({BEFORE_COMMIT})", now, "MiB", before_case, old, higher_is_better=False))

    def described(value):
        return f"{value:.0f} MiB" if value is not None else f"not measured ({skipped or 'see the notes'})"

    numbers = f"after (this code) {described(now)}, before ({BEFORE_COMMIT}) {described(old)}"
    ratio = now / old if now is not None and old is not None else None
    targets = [
        common.target("memory_export_int8_peak", f"{MODEL} export --quantize int8 peak RSS, MiB: {numbers}", now, PEAK_TARGET_MIB, "<=", reason=numbers),
        common.target("memory_export_int8_vs_before", f"{MODEL} export --quantize int8 peak RSS, after / before: {numbers}", ratio, RATIO_TARGET, "<=", reason=numbers),
    ]
    return rows, targets


def _train_and_export(checkout, data, folder, label, kinds, notes, needs_gib=None):
    """Trains and exports with the code in `checkout`; returns `{kind: peak or None}` for `kinds` ("plain", "int8").

    With `needs_gib`, each export waits for that much free memory first (`wait_for_memory`)
    and is not run, with a note, when it does not come.
    """
    files = imported_from(checkout)
    notes.append(f"{label}: children run in {checkout} import kerasdl from {files['kerasdl']}")
    run_dir = train_with_cli(checkout, data, os.path.join(folder, "runs"))
    notes.append(f"{label}: run {run_dir}")
    measured = dict.fromkeys(kinds)
    for kind in kinds:
        extra = INT8 if kind == "int8" else []
        flags = " ".join(extra) or "(default formats)"
        if needs_gib is not None:
            enough, seen = wait_for_memory(needs_gib)
            if not enough:
                notes.append(f"{label} export {flags}: not run, MemAvailable {seen:.1f} GiB < {needs_gib:g} GiB after waiting {MEMORY_WAIT_S} s")
                continue
        arguments = [run_dir, "--base", os.path.join(folder, f"exports-{kind}"), *EXPORT, *extra]
        result = module_peak_rss("export.run", arguments, timeout=CHILD_TIMEOUT_S, cwd=checkout, kill_below_gib=KILL_BELOW_GIB)
        if result.get("killed"):
            notes.append(f"{label} export {flags}: {result['killed']}; not measured")
            continue
        if not Path(result["module_file"]).resolve().is_relative_to(Path(checkout).resolve()):
            raise RuntimeError(f"{label}: export.run ran from {result['module_file']}, not from {checkout}")
        if result["status"] != 0:
            notes.append(f"{label} export {flags}: exit status {result['status']} (peak RSS measured to that point)")
        measured[kind] = result
    return measured


def export_peak_rss(rows, targets, notes, floor):
    """Appends the before/after export rows, targets and notes (see the module docstring)."""
    data = common.data_path("hymenoptera")
    if common.TOY or not data:
        notes.append(f"{MODEL} export peak RSS: skipped ({'a toy run' if common.TOY else 'no ../shared/data/hymenoptera'})")
        return
    command = " ".join(["python -m training.run", MODEL, "--data", "<hymenoptera>", *TRAINING])
    notes.append(f"{MODEL} export peak RSS: each code version trains its own run (`{command}`) and exports it "
                 f"(`python -m export.run RUN {' '.join(EXPORT)}`, default formats, and with {' '.join(INT8)}) in children run in its own checkout")
    before, skipped = None, None
    with common.temporary_folder("kerasdl-bench-export-") as folder:
        after = _train_and_export(common.REPO_ROOT, data, os.path.join(folder, "after"), "after (this code)", ("plain", "int8"), notes)
        try:
            with checkout_at(BEFORE_COMMIT) as checkout:
                label = f"before ({BEFORE_COMMIT})"
                before = _train_and_export(checkout, data, os.path.join(folder, "before"), label, ("int8",), notes, BEFORE_NEEDS_GIB)["int8"]
        except CommitUnavailable as error:
            skipped = f"the before-row is skipped: {error}"
            notes.append(f"{MODEL} export at {BEFORE_COMMIT}: {skipped}")
        except Exception as error:  # Reported (the old code may fail under today's libraries); the after rows stand.
            skipped = f"{type(error).__name__}: {str(error)[:300]}"
            notes.append(f"{MODEL} export at {BEFORE_COMMIT}: {skipped}")
    new_rows, new_targets = comparison(before, after["plain"], after["int8"], floor, skipped)
    rows.extend(new_rows)
    targets.extend(new_targets)
