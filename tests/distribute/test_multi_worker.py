"""Multi-worker training with real processes on 127.0.0.1 (tests/distribute/worker.py).

Each test starts worker processes with their own TF_CONFIG on free loopback ports and
trains the MLP on scikit-learn digits with plain `model.fit`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "worker.py"
# A generous guard against a hang; the tests assert on results, never on durations.
PROCESS_LIMIT_SECONDS = 240


def start(arguments, tf_config=None):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO_ROOT))
    environment.pop("TF_CONFIG", None)
    if tf_config:
        environment["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, str(WORKER), *arguments], env=environment, cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def start_workers(ports, arguments):
    addresses = [f"127.0.0.1:{port}" for port in ports]
    return [
        start(["--strategy", "multi_worker", *arguments], {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        for index in range(len(ports))
    ]


def finish(process):
    try:
        stdout, stderr = process.communicate(timeout=PROCESS_LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"a worker did not finish:\n{stdout}\n{stderr[-3000:]}")
    return process.returncode, stdout, stderr


def first_epoch(stdout):
    return int(next(line for line in stdout.splitlines() if line.startswith("FIRST_EPOCH")).split()[1])


def load_weights(path):
    with np.load(path) as arrays:
        return [arrays[name] for name in arrays.files]


def test_two_workers_train_identically_and_match_one_process(tmp_path):
    output = tmp_path / "out"
    arguments = ["--output", str(output), "--backup", str(tmp_path / "backup"), "--epochs", "3"]
    workers = start_workers(free_ports(2), arguments)
    # The same global batch (2 x 32) in one process, for comparison.
    single = start(["--strategy", "default", "--output", str(tmp_path / "single"), "--epochs", "3"])
    results = [finish(process) for process in [*workers, single]]
    for returncode, stdout, stderr in results:
        assert returncode == 0, stderr[-3000:]
        assert "DONE" in stdout

    chief, other = (load_weights(output / f"weights-worker-{index}.npz") for index in (0, 1))
    alone = load_weights(tmp_path / "single" / "weights-single.npz")
    assert len(chief) == 4  # normalization mean/variance are not weights; 2 Dense kernels + biases
    for chief_weight, other_weight, alone_weight in zip(chief, other, alone):
        # Both workers apply the same all-reduced gradients: exactly the same weights.
        np.testing.assert_array_equal(chief_weight, other_weight)
        # One process with the same global batches differs only by float rounding
        # (mean of two half-batch means vs one mean): measured ~1e-7 after 24 steps.
        np.testing.assert_allclose(chief_weight, alone_weight, atol=1e-5)

    history = json.loads((output / "history-worker-0.json").read_text())
    history_alone = json.loads((tmp_path / "single" / "history-single.json").read_text())
    assert history == json.loads((output / "history-worker-1.json").read_text())
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    np.testing.assert_allclose(history["loss"], history_alone["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["evaluate"], history_alone["evaluate"], rtol=1e-5)
    # Only the chief's ModelCheckpoint file lands in the real directory; BackupAndRestore
    # removed its backup after the finished run.
    assert (output / "best.keras").is_file()
    assert not (tmp_path / "backup").exists()


def test_backup_and_restore_resumes_after_a_worker_is_killed(tmp_path):
    backup = tmp_path / "backup"
    metadata = backup / "training_metadata.json"
    arguments = ["--output", str(tmp_path / "out"), "--backup", str(backup), "--epochs", "6"]
    ports = free_ports(2)
    # A pause after each epoch leaves time to kill a worker in the middle of training.
    workers = start_workers(ports, [*arguments, "--epoch-sleep", "1.5"])
    deadline = time.monotonic() + PROCESS_LIMIT_SECONDS
    while time.monotonic() < deadline and all(process.poll() is None for process in workers):
        if metadata.exists() and json.loads(metadata.read_text())["epoch"] >= 2:
            break
        time.sleep(0.1)
    assert all(process.poll() is None for process in workers), "a worker ended before the kill"
    workers[1].send_signal(signal.SIGKILL)
    # The survivor's collectives fail once TF's coordination service misses the dead
    # worker's heartbeats; it must not finish training alone.
    returncode, stdout, _ = finish(workers[0])
    finish(workers[1])
    assert returncode != 0 and "DONE" not in stdout
    saved_epoch = json.loads(metadata.read_text())["epoch"]
    assert 2 <= saved_epoch < 6

    restarted = start_workers(ports, arguments)
    for returncode, stdout, stderr in [finish(process) for process in restarted]:
        assert returncode == 0, stderr[-3000:]
        assert first_epoch(stdout) == saved_epoch
        assert stdout.count("SAVED_EPOCH") == 6 - saved_epoch
    history = json.loads((tmp_path / "out" / "history-worker-0.json").read_text())
    assert history["first_epoch"] == saved_epoch and len(history["loss"]) == 6 - saved_epoch
    assert not backup.exists()


def test_worker_without_peers_fails_with_a_timeout_message(tmp_path):
    own_port, missing_port = free_ports(2)
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{own_port}", f"127.0.0.1:{missing_port}"]}, "task": {"type": "worker", "index": 0}}
    process = start(["--strategy", "multi_worker", "--timeout", "4", "--output", str(tmp_path)], tf_config)
    returncode, stdout, stderr = finish(process)
    assert returncode != 0
    assert "STRATEGY" not in stdout
    assert (
        f"error: worker 0 timed out after 4 s waiting for its peers (unreachable: worker 1 at 127.0.0.1:{missing_port}); "
        "start every worker listed in TF_CONFIG"
    ) in stderr


def test_readme_command_trains_on_two_workers_through_the_cli(tmp_path):
    """The README's instructions: `python -m training.run mlp --strategy multi_worker` twice."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "training.run", "mlp", "--strategy", "multi_worker", "--epochs", "2",
               "--output", str(tmp_path), "--set", "train.verbose=2"]
    workers = [
        subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(environment, TF_CONFIG=json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})),
        )
        for index in range(2)
    ]
    results = [finish(worker) for worker in workers]
    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
        assert "2 replicas: global batch 128, learning rate 0.002" in stdout
    # One run directory, written by the chief only, named after the config so both agree.
    (run_dir,) = (tmp_path / "mlp").iterdir()
    assert run_dir.name.startswith("multi-worker-")
    assert (run_dir / "model.keras").is_file() and (run_dir / "metrics.json").is_file()
    assert not (run_dir / "backup").exists() and not (run_dir / "RUNNING").exists()
    accuracies = {stdout.split("test accuracy: ")[1].split()[0] for _, stdout, _ in results}
    assert len(accuracies) == 1  # Both workers hold the same model.
