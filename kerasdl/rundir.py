"""The run directory: where a run lives, who owns it while it trains, and how far it got.

- A run being trained holds a lock, `RUNNING`: JSON with the config's fingerprint and the
  owner's PID, host and process start time. The same command finds an unfinished run of the
  same config and resumes it when its owner is gone, or refuses in one line while the owner
  lives (a second terminal, a cron job firing twice).
- `progress.json` records the finished phases (ResNet50: head, then fine-tuning; other
  models: one) with the weights at the end of each, so that a run killed in phase 2 resumes
  inside phase 2 instead of training phase 1 again, and one killed after its last epoch
  goes straight to its artifacts. (Keras' BackupAndRestore deletes its backup when a `fit`
  ends.)
- `history.csv` is cut back to the epochs the backup committed when a run resumes
  (`trim_history`), so that it holds each epoch once.

TensorFlow-free; the training loop is `kerasdl.train`.
"""

import csv
import datetime
import glob
import hashlib
import json
import os
import socket
import time

LOCK_FILE = "RUNNING"
PROGRESS_FILE = "progress.json"
HISTORY_FILE = "history.csv"


class RunInProgressError(Exception):
    """The same run is being trained by a live process (shown to the user in one line)."""

    user_error = True


def config_fingerprint(config):
    """A short hash of the resolved config: the same command resumes the same run.

    Example:
    >>> from kerasdl.config import Config
    >>> len(config_fingerprint(Config(model_name="mlp")))
    16
    """
    payload = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def new_run_dir(config):
    """A fresh `<output>/<model>/<timestamp>` path (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(config.output, config.model_name, stamp)
    suffix = 1
    while os.path.exists(run_dir):
        run_dir = os.path.join(config.output, config.model_name, f"{stamp}-{suffix}")
        suffix += 1
    return run_dir


def multi_worker_run_dir(config, fingerprint):
    """The run directory every worker of a cluster agrees on without talking: named after the config."""
    return os.path.join(config.output, config.model_name, f"multi-worker-{fingerprint}")


def find_resumable_run(config, fingerprint):
    """Returns the newest unfinished run directory of the same config whose owner is gone, or None.

    Raises:
        RunInProgressError: that run's owner is still training it.
    """
    for lock_path in sorted(glob.glob(os.path.join(config.output, config.model_name, "*", LOCK_FILE)), reverse=True):
        run_dir = os.path.dirname(lock_path)
        lock = read_lock(run_dir)
        if lock is None or lock.get("fingerprint") != fingerprint:
            continue
        if owner_alive(lock) and not _is_ours(lock):
            raise RunInProgressError(_busy_message(run_dir, lock))
        return run_dir
    return None


def _is_ours(lock):
    """This very process holds the lock (a run that failed and is started again in the same Python session)."""
    return lock.get("pid") == os.getpid() and lock.get("host") == socket.gethostname()


def read_lock(run_dir):
    """The lock of `run_dir` as a dict, or None when there is none (a marker of an older kerasdl holds only the fingerprint)."""
    return _load_lock(os.path.join(run_dir, LOCK_FILE))


def _load_lock(path):
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        lock = json.loads(text)
    except json.JSONDecodeError:
        lock = None
    return lock if isinstance(lock, dict) else {"fingerprint": text}


def process_running(pid):
    """Whether a process with this PID runs on this host (another user's counts).

    Example:
    >>> process_running(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # It exists, as another user's process.
    return True


def owner_alive(lock):
    """Whether the process named by `lock` is still running.

    On this host: the PID exists and started when the lock says (a reused PID is not the
    owner). On another host (a shared filesystem) there is no way to know, so the owner is
    taken to be alive; the message then says how to release the run by hand.
    """
    pid = lock.get("pid")
    if not isinstance(pid, int):
        return False  # An older marker without an owner: nobody can be running it.
    if lock.get("host") != socket.gethostname():
        return True
    if not process_running(pid):
        return False
    started = lock.get("process_start")
    return started is None or started == _process_start(pid)


def take_lock(run_dir, fingerprint, force=False):
    """Makes this process the owner of `run_dir`, taking over from a dead owner.

    Args:
        run_dir: the run directory (it exists).
        fingerprint: `config_fingerprint` of the run's config.
        force: take it whoever holds it (the chief of a multi-worker cluster, whose
            restarted pods may have new host names; the cluster itself refuses a twin).

    Raises:
        RunInProgressError: a live process owns it.
    """
    path = os.path.join(run_dir, LOCK_FILE)
    payload = json.dumps({
        "fingerprint": fingerprint, "pid": os.getpid(), "host": socket.gethostname(),
        "process_start": _process_start(os.getpid()), "started": datetime.datetime.now().isoformat(timespec="seconds"),
    })
    if force:
        partial = f"{path}.partial-{os.getpid()}"
        with open(partial, "w") as handle:
            handle.write(payload)
        os.replace(partial, path)
        return
    for _ in range(10):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            lock = read_lock(run_dir)
            if lock is not None and _is_ours(lock):
                return
            if lock is not None and owner_alive(lock):
                raise RunInProgressError(_busy_message(run_dir, lock)) from None
            # The owner is dead: move its lock aside. Of two processes taking over at once,
            # only one finds the dead owner's lock there; the other retries and sees a live owner.
            stale = f"{path}.stale-{os.getpid()}"
            try:
                os.rename(path, stale)
            except FileNotFoundError:
                continue
            if _load_lock(stale) != lock:
                os.rename(stale, path)  # A live owner's lock moved in meanwhile: put it back.
                continue
            os.remove(stale)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(payload)
        return
    raise RunInProgressError(f"{run_dir}: could not take its {LOCK_FILE} lock; another process keeps taking it")


def release_lock(run_dir):
    """Removes the lock: the run is finished."""
    try:
        os.remove(os.path.join(run_dir, LOCK_FILE))
    except FileNotFoundError:
        pass


def saved_epoch(backup_dir):
    """The epoch BackupAndRestore saved in `backup_dir`, or 0."""
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as handle:
        return int(json.load(handle).get("epoch", 0))


def trim_history(run_dir, epoch):
    """Keeps the rows of `history.csv` for epochs before `epoch` (where a resumed run starts); atomic.

    CSVLogger writes an epoch's row before BackupAndRestore commits the epoch, so a run
    killed in between (or while the row was being written) trains that epoch again and
    would append it twice, or after a torn line.

    Example:
    >>> trim_history("runs/mlp/20260101-000000", 3)  # rows of epochs 0, 1 and 2 stay
    """
    path = os.path.join(run_dir, HISTORY_FILE)
    if not os.path.isfile(path):
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, kept = rows[0], [row for row in rows[1:] if len(row) == len(rows[0]) and row[0].isdigit() and int(row[0]) < epoch]
    if len(kept) == len(rows) - 1:
        return
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w", newline="") as handle:
        csv.writer(handle).writerows([header] + kept)
    os.replace(partial, path)


def read_progress(run_dir):
    """`{"phases": [...]}`: the finished phases, each with its name, epochs, weights file and callback state."""
    try:
        with open(os.path.join(run_dir, PROGRESS_FILE)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"phases": []}


def record_phase(run_dir, phase, model):
    """Saves the weights at the end of a finished phase and appends the phase to `progress.json` (atomically)."""
    import numpy as np

    weights_file = f"phase-{phase['index']}.weights.npz"
    partial = os.path.join(run_dir, f"partial-{os.getpid()}.npz")
    np.savez(partial, *model.get_weights())
    os.replace(partial, os.path.join(run_dir, weights_file))
    progress = read_progress(run_dir)
    progress["phases"] = [done for done in progress["phases"] if done["index"] != phase["index"]] + [dict(phase, weights=weights_file)]
    partial = os.path.join(run_dir, f"{PROGRESS_FILE}.partial-{os.getpid()}")
    with open(partial, "w") as handle:
        json.dump(progress, handle, indent=2)
    os.replace(partial, os.path.join(run_dir, PROGRESS_FILE))


def restore_phase_weights(run_dir, phase, model):
    """Sets `model`'s weights to those saved at the end of `phase` (a `read_progress` entry)."""
    import numpy as np

    with np.load(os.path.join(run_dir, phase["weights"])) as arrays:
        model.set_weights([arrays[f"arr_{index}"] for index in range(len(arrays.files))])


def remove_progress(run_dir):
    """Removes what only a resume needs (`progress.json`, the phase weights) once the run is complete."""
    for path in [os.path.join(run_dir, PROGRESS_FILE)] + glob.glob(os.path.join(run_dir, "phase-*.weights.npz")):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _busy_message(run_dir, lock):
    owner = f"pid {lock.get('pid')} on {lock.get('host')}" + (f", started {lock['started']}" if lock.get("started") else "")
    remedy = "wait for it to finish, or add --fresh to start a separate run"
    if lock.get("host") != socket.gethostname():
        remedy += f" (if that process is gone, delete {os.path.join(run_dir, LOCK_FILE)})"
    return f"the same run is already being trained in {run_dir} ({owner}); {remedy}"


def _process_start(pid):
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
