"""Fault injection for training with real processes and kill -9, then the same command again.

`kill_training(scenario, folder)`: a `Scenario` starts `python -m training.run` through
`benchmarks.fault_child`, which pauses at a named point (`fault_child.POINTS`: mid-epoch,
inside the best-checkpoint write, inside the backup write, between epochs before and
after the backup, while the artifacts are written) so that SIGKILL lands exactly there;
the next launch of the same command resumes (and may be killed at the next point); the
last one runs to the end unhooked: `python -m training.run` itself (the tiny two-phase model
goes through `fault_child`, which then only registers it). Then the run directory is
checked (`check_run`):

  - every launch resumed from the epoch the backup held at the kill (no epoch lost);
  - `history.csv` has each epoch once, every row complete;
  - `model.keras` is the best over all epochs: its loss on the validation split, computed
    here from the saved file, equals the lowest `val_loss` in `history.csv`; so does
    `checkpoints/best.keras`'s;
  - nothing of the crash is left (`RUNNING`, `backup/`, `progress.json`, temporary files).

Multi-worker scenarios start two workers on this machine (TF_CONFIG on loopback ports) and
kill one of them; the survivor must stop, not finish alone.

The export's kills are `benchmarks.fault_export`; the benchmark part is
`benchmarks.robustness_faults`; `tests/reliability/` runs the same functions on tiny configs.

Example:
>>> report = kill_training(Scenario("mlp", ["mlp", "--epochs", "4"], kills=[("mid-epoch", 1)]), "/tmp/faults")
>>> report["problems"]
[]
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.fault_child import TWO_PHASE_MODEL, register_two_phase_model

REPO_ROOT = Path(__file__).resolve().parents[1]
# A guard against a hang only; nothing asserts on durations.
PROCESS_LIMIT_SECONDS = 600
# How long the surviving worker of a killed multi-worker run may take to notice (TF's
# coordination service misses the dead worker's heartbeats) before the harness kills it too.
SURVIVOR_LIMIT_SECONDS = 120
# The saved model's validation loss against history.csv's: float32 sums in another order.
LOSS_RTOL = 1e-4


class Scenario:
    """One training command, the kills it suffers in order, and how many workers run it.

    Args:
        name: shown in reports.
        arguments: `training.run`'s arguments (the model first), the same for every launch.
        kills: `[(point, epoch), ...]`: launch i stops at `point` at epoch `epoch` or later and is killed;
            `(point, epoch, worker)` names the worker of a multi-worker run (0 is the chief).
        workers: 1, or 2 for a multi-worker run on loopback ports.
        killed_worker: which worker the hook and the kill go to when a kill names none.
    """

    def __init__(self, name, arguments, kills, workers=1, killed_worker=1):
        self.name, self.arguments, self.kills = name, list(arguments), list(kills)
        self.workers, self.killed_worker = workers, killed_worker


def kill_training(scenario, folder, log=print):
    """Runs `scenario` in `folder` (its output and logs); returns a report dict (see `check_run`).

    The report adds `kills`: for each kill the point, the epoch it landed at, the epoch the
    backup held then, and the epoch the next launch resumed from; `lost_epochs` adds up how
    far each resume fell short of the backup.
    """
    folder = Path(folder)
    output = folder / "runs"
    # The checkpoint is kept so that the harness can check it too (a completed run removes it by default).
    arguments = [*scenario.arguments, "--output", str(output), "--set", "train.verbose=2", "--set", "train.keep_checkpoint=true"]
    ports = common.free_ports(scenario.workers) if scenario.workers > 1 else None
    kills, problems = [], []
    for index, (point, epoch, *worker) in enumerate(scenario.kills):
        worker = worker[0] if worker else scenario.killed_worker
        marker = folder / f"marker-{index}.json"
        processes = _launch_all(arguments, folder, f"launch-{index}", ports, scenario, hook=(point, epoch, marker, worker))
        victim = processes[worker if scenario.workers > 1 else 0]
        reached = _wait_for(marker, victim)
        record = {"point": point, "epoch": None, "saved_epoch": None, "resumed_from": None, "note": ""}
        if scenario.workers > 1:
            record["worker"] = worker
        if reached is None:
            record["note"] = f"the process ended (status {victim.poll()}) before reaching {point}"
            _stop(processes)
            return {"scenario": scenario.name, "kills": kills + [record], "final_status": None, "problems": [f"kill {index} ({point}): {record['note']}"]}
        run_dir = _only_run_dir(output)
        record["epoch"], record["saved_epoch"] = reached["epoch"], _backed_up_epoch(run_dir)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        record["note"] = _wait_for_survivors(processes, victim)
        kills.append(record)
        log(f"{scenario.name}: killed {f'worker {worker} ' if scenario.workers > 1 else ''}at {point} (epoch {reached['epoch']}, "
            f"backup at epoch {record['saved_epoch']}) {record['note']}".rstrip())
    processes = _launch_all(arguments, folder, "final", ports, scenario, hook=None)
    statuses = [_finish(process) for process in processes]
    logs = [(folder / f"final-{worker}.log").read_text() for worker in range(len(processes))]
    for launch, record in enumerate(kills):
        text = (folder / f"launch-{launch + 1}-0.log").read_text() if launch + 1 < len(kills) else logs[0]
        record["resumed_from"] = _resumed_from(text)
    report = {"scenario": scenario.name, "kills": kills, "final_status": statuses, "problems": problems}
    if any(statuses):
        problems.append(f"the final launch exited {statuses}: {logs[0][-1500:]}")
        return report
    report.update(check_run(_only_run_dir(output)))
    report["problems"] = problems + report["problems"]
    report["lost_epochs"] = sum(max(0, (record["saved_epoch"] or 0) - (record["resumed_from"] or 0)) for record in kills) + len(report["missing_epochs"])
    for record in kills:
        if record["saved_epoch"] and record["resumed_from"] != record["saved_epoch"]:
            report["problems"].append(f"after the kill at {record['point']} the backup held epoch {record['saved_epoch']}, but the run resumed from {record['resumed_from']}")
    return report


def check_run(run_dir):
    """Checks a finished run directory; returns what it found and a list of `problems`.

    Returns:
        `{"run_dir", "history_epochs", "duplicated_epochs", "missing_epochs", "incomplete_rows",
        "best_val_loss", "model_val_loss", "checkpoint_val_loss", "leftovers", "problems"}`.
    """
    run_dir = Path(run_dir)
    problems = []
    with open(run_dir / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(row["epoch"]) for row in rows if (row.get("epoch") or "").isdigit()]
    incomplete = [index for index, row in enumerate(rows) if any(value in (None, "") for value in row.values()) or not (row.get("epoch") or "").isdigit()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = list(range(metrics["epochs"]))
    duplicated = sorted({epoch for epoch in epochs if epochs.count(epoch) > 1})
    missing = [epoch for epoch in expected if epoch not in epochs]
    if epochs != expected:
        problems.append(f"history.csv epochs {epochs}, expected {expected}")
    if incomplete:
        problems.append(f"history.csv rows {incomplete} are incomplete")
    best = min(float(row["val_loss"]) for row in rows if (row.get("val_loss") or "") not in ("", "NA"))
    model_loss, checkpoint_loss = validation_loss(run_dir, "model.keras"), validation_loss(run_dir, "checkpoints/best.keras")
    for name, loss in (("model.keras", model_loss), ("checkpoints/best.keras", checkpoint_loss)):
        if loss is None:
            problems.append(f"{name} cannot be loaded")
        elif not np.isclose(loss, best, rtol=LOSS_RTOL, atol=0):
            problems.append(f"{name} has validation loss {loss:.6f}, but the best epoch in history.csv has {best:.6f}")
    leftovers = sorted(
        str(path.relative_to(run_dir)) for path in run_dir.rglob("*")
        if path.name in ("RUNNING", "progress.json", "backup", "backup_finetune") or re.match(r"(partial-|\.partial-|\.pending-|\.tmp-)|.*\.(partial|tmp)(-\d+)?$", path.name)
    )
    if leftovers:
        problems.append(f"left behind: {leftovers}")
    return {
        "run_dir": str(run_dir), "history_epochs": epochs, "duplicated_epochs": duplicated, "missing_epochs": missing,
        "incomplete_rows": incomplete, "best_val_loss": best, "model_val_loss": model_loss, "checkpoint_val_loss": checkpoint_loss,
        "leftovers": leftovers, "problems": problems,
    }


def validation_loss(run_dir, name):
    """The mean cross-entropy of the model file `run_dir/name` over the run's validation split, or None if it does not load.

    The split is loaded again from the run's `config.yaml` (same data, same seed), so the
    number depends only on the saved weights.
    """
    from kerasdl.artifact import load_model
    from kerasdl.config import resolve_config
    from kerasdl.data import load_data
    from kerasdl.data.pipeline import take_examples
    from kerasdl.models.registry import get_model_entry

    register_two_phase_model()  # Its runs are checked like any other.
    try:
        model, _ = load_model(Path(run_dir) / name)
    except Exception:  # A truncated or half-written file: reported as "cannot be loaded".
        return None
    config_text = (Path(run_dir) / "config.yaml").read_text()
    model_name = re.search(r"^model_name: (\S+)", config_text, re.M).group(1)
    config = resolve_config(model_name, str(Path(run_dir) / "config.yaml"))
    splits = load_data(config.data, get_model_entry(model_name).modalities, config.train.seed)
    x, y = take_examples(splits.validation, splits.validation.size)
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(y)), y].mean())


# --- Processes ------------------------------------------------------------------------------


def environment(extra=None):
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    environment.pop("KERASDL_FAULT_POINT", None)
    environment.pop("TF_CONFIG", None)
    environment.update(extra or {})
    return environment


def _launch_all(arguments, folder, label, ports, scenario, hook):
    """Starts the scenario's processes (one, or one per worker); the hook goes to the killed one."""
    count = scenario.workers if ports else 1
    processes = []
    for worker in range(count):
        extra = {}
        if ports:
            addresses = [f"127.0.0.1:{port}" for port in ports]
            extra["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": worker}})
        if hook is not None and worker == (hook[3] if ports else 0):
            point, epoch, marker, _ = hook
            extra.update(KERASDL_FAULT_POINT=point, KERASDL_FAULT_EPOCH=str(epoch), KERASDL_FAULT_MARKER=str(marker))
        # Unhooked launches of a shipped model are `python -m training.run` itself.
        module = "benchmarks.fault_child" if hook is not None or arguments[0] == TWO_PHASE_MODEL else "training.run"
        log_file = open(Path(folder) / f"{label}-{worker}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", module, *arguments], cwd=REPO_ROOT, env=environment(extra),
            stdout=log_file, stderr=subprocess.STDOUT,
        ))
        log_file.close()
    return processes


def _wait_for(marker, process):
    """Waits until `marker` appears (returns its JSON) or `process` ends (returns None)."""
    deadline = time.monotonic() + PROCESS_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if marker.exists():
            return json.loads(marker.read_text())
        if process.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def wait_exit(process, seconds):
    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _wait_for_survivors(processes, victim):
    """The other workers must stop on their own once a peer is killed; kills them after a limit and says so."""
    notes = []
    for process in processes:
        if process is victim:
            continue
        started = time.monotonic()
        if wait_exit(process, SURVIVOR_LIMIT_SECONDS):
            notes.append(f"the surviving worker exited {process.returncode} after {time.monotonic() - started:.0f} s")
        else:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            notes.append(f"the surviving worker was still running after {SURVIVOR_LIMIT_SECONDS} s and was killed")
    return "; ".join(notes)


def _finish(process):
    try:
        return process.wait(timeout=PROCESS_LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def _only_run_dir(output):
    (run_dir,) = [path for path in Path(output).glob("*/*") if path.is_dir()]
    return run_dir


def _backed_up_epoch(run_dir):
    """The epoch a restart would resume from now: the newest phase's backup, else the finished phases' epochs."""
    from kerasdl import rundir

    phases = rundir.read_progress(run_dir)["phases"]
    backup = "backup_finetune" if phases else "backup"
    return rundir.saved_epoch(os.path.join(run_dir, backup)) or sum(phase["epochs"] for phase in phases)


def _resumed_from(text):
    found = re.search(r"^resuming \S+(?: in phase \d+)? from epoch (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


