"""Shared helpers of the benchmarks: data paths, timing, training runs, result rows.

Every benchmark module returns a dict of this shape (checked by
`tests/benchmarks/test_plumbing.py`; `benchmarks.report` renders it):

    {"name": str, "seconds": float, "rows": [row, ...], "targets": [target, ...],
     "notes": [str, ...]}            # optionally "error": str, "raw": {...}

A row is one measurement quoted against a baseline measured in the same run:
`{"case", "metric", "value", "unit", "baseline_case", "baseline", "ratio", "higher_is_better"}`.
A target is `{"id", "description", "value", "threshold", "comparison", "met", "reason"}`,
built by `target()` from a measured value, never written by hand: `met` is None when the
measurement could not be made (`value` then None too). `reason` is the module's measured
explanation for a target not met or not measured (op counts, a time breakdown, the error
that stopped it), computed from its own measurements; None when nothing was measured, and
the report then says "no measured reason".
"""

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import provenance

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
# A toy run (tests) shrinks every size further than --quick.
TOY = os.environ.get("KERASDL_BENCH_TOY") == "1"
# Trained runs are shared between benchmarks and between invocations (accuracy trains,
# latency exports the same runs), keyed by code version, resolved config and data (`provenance.reused`).
RUNS_DIR_ENV = "KERASDL_BENCH_RUNS"


def data_path(*parts):
    """Returns `../shared/data/<parts>` as a string, or None if it is absent."""
    path = SHARED_DATA.joinpath(*parts).resolve()
    return str(path) if path.exists() else None


def row(case, metric, value, unit, baseline_case, baseline, higher_is_better=True):
    """One measurement beside its same-run baseline; `ratio` = value / baseline."""
    ratio = (value / baseline) if value is not None and baseline not in (None, 0) else None
    return {
        "case": case, "metric": metric, "value": _round(value), "unit": unit,
        "baseline_case": baseline_case, "baseline": _round(baseline), "ratio": _round(ratio),
        "higher_is_better": higher_is_better,
    }


def target(identifier, description, value, threshold, comparison, reason=None):
    """A pass/fail target computed from a measured `value`.

    Args:
        identifier: a stable id (the report and tests look targets up by it).
        description: what is measured and against what, e.g. "ORT / SavedModel latency, batch 1".
        value: the measured number, or None when it could not be measured.
        threshold: the bound `value` is held to.
        comparison: ">=" or "<=".
        reason: for a target that is not met (or not measured), why, computed from this run's
            measurements (e.g. "Loop nodes: 1, LSTM nodes: 0"); kept only then.

    Example:
        >>> target("t", "ratio", 0.61, 0.5, "<=", reason="tf2onnx emitted 1 Loop")["met"]
        False
    """
    if comparison not in (">=", "<="):
        raise ValueError(f"comparison must be '>=' or '<=', not {comparison!r}")
    met = None
    if value is not None:
        met = bool(value >= threshold) if comparison == ">=" else bool(value <= threshold)
    return {
        "id": identifier, "description": description, "value": _round(value), "threshold": threshold, "comparison": comparison,
        "met": met, "reason": None if met else reason,
    }


ROW_KEYS = ("case", "metric", "value", "unit", "baseline_case", "baseline", "ratio", "higher_is_better")
TARGET_KEYS = ("id", "description", "value", "threshold", "comparison", "met", "reason")


def check_result(outcome):
    """The ways `outcome` departs from the result shape above; an empty list when it conforms.

    Each target's `met` is recomputed from its value, threshold and comparison, so a result
    typed by hand (or computed by a different rule) is caught, not reported.
    """
    if not isinstance(outcome, dict):
        return [f"run() returned {type(outcome).__name__}, not the result dict"]
    problems = [f"missing key {key!r}" for key in ("name", "seconds", "rows", "targets", "notes") if key not in outcome]
    for item in outcome.get("rows", []):
        if set(item) != set(ROW_KEYS):
            problems.append(f"row {item.get('case')!r} has keys {sorted(item)}, expected {list(ROW_KEYS)}")
    for item in outcome.get("targets", []):
        if set(item) != set(TARGET_KEYS):
            problems.append(f"target {item.get('id')!r} has keys {sorted(item)}, expected {list(TARGET_KEYS)}")
            continue
        expected = target(item["id"], item["description"], item["value"], item["threshold"], item["comparison"])["met"]
        if item["met"] is not expected:
            problems.append(f"target {item['id']!r}: met={item['met']} but {item['value']} {item['comparison']} {item['threshold']} gives {expected}")
    return problems


def _round(value):
    if value is None:
        return None
    return float(f"{float(value):.4g}")


def result(name, started, rows, targets, notes=()):
    return {"name": name, "seconds": round(time.time() - started, 1), "rows": rows, "targets": targets, "notes": list(notes)}


def median_time(function, repeats, warmup=1, min_seconds=0.0):
    """Median wall time of `function()` over `repeats` calls after `warmup` calls.

    With `min_seconds`, keeps repeating until that much time has passed (for
    sub-millisecond calls, where a handful of samples is noise).
    """
    for _ in range(warmup):
        function()
    samples = []
    started = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        function()
        samples.append(time.perf_counter() - begin)
        if len(samples) > 10000:
            break
    return statistics.median(samples)


def quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (all held open while choosing, so none repeats).

    Example:
    >>> rest_port, grpc_port = free_ports(2)
    """
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def run_python(code, timeout=1800, env=None, cwd=None):
    """Runs `code` in a fresh Python (`cwd`, default the repo root); returns the JSON it prints last.

    The child prints one line `BENCH_JSON {...}`; anything else is its log.
    """
    environment_variables = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO_ROOT))
    environment_variables.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=str(cwd or REPO_ROOT), env=environment_variables,
        capture_output=True, text=True, timeout=timeout,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"child exited {completed.returncode}: {' | '.join(tail)}")


def mnist_npz(folder, train=8000, test=2000, seed=0):
    """Writes the MNIST test IDX files as a seeded 8k/2k train/test .npz; returns its path."""
    import gzip

    images_path = data_path("mnist-test", "t10k-images-idx3-ubyte.gz")
    labels_path = data_path("mnist-test", "t10k-labels-idx1-ubyte.gz")
    if not images_path or not labels_path:
        return None
    with gzip.open(images_path) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(labels_path) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    train_index, test_index = order[:train], order[train : train + test]
    path = os.path.join(folder, f"mnist_{train}_{test}.npz")
    np.savez(
        path, x_train=images[train_index].astype(np.float32), y_train=labels[train_index],
        x_test=images[test_index].astype(np.float32), y_test=labels[test_index],
        class_names=np.array([str(index) for index in range(10)]),
    )
    return path


def cifar_arrays(count, seed=0):
    """Decodes `count` CIFAR-10 test JPEGs (stratified by a seeded shuffle) into float32 arrays."""
    from PIL import Image

    folder = data_path("cifar10-test-jpg")
    if not folder:
        return None, None, None
    class_names = sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)))
    files = [(os.path.join(folder, name, file), index) for index, name in enumerate(class_names) for file in sorted(os.listdir(os.path.join(folder, name)))]
    order = np.random.default_rng(seed).permutation(len(files))[:count]
    x = np.stack([np.asarray(Image.open(files[i][0]).convert("RGB"), dtype=np.float32) for i in order])
    y = np.array([files[i][1] for i in order], dtype=np.int64)
    return x, y, class_names


def train_config(model_name, data=None, epochs=1, batch_size=None, sets=(), output=None, weights=None):
    """Resolves a training config exactly as `python -m training.run` would."""
    from kerasdl.config import resolve_config

    flags = {"data": data, "epochs": epochs, "batch_size": batch_size}
    if weights is not None:
        flags["weights"] = weights
    config = resolve_config(model_name, sets=tuple(sets) + ("train.verbose=2",), flags=flags)
    config.output = output or tempfile.mkdtemp(prefix="kerasdl-bench-runs-")
    return config


def runs_folder():
    """The folder trained runs and their records go to: `$KERASDL_BENCH_RUNS`, or a new temporary one."""
    return os.environ.get(RUNS_DIR_ENV) or tempfile.mkdtemp(prefix="kerasdl-bench-runs-")


def train_in_child(arguments, backend):
    """Runs `train_in_this_process(*arguments)` in a fresh Python whose Keras uses `backend`; returns its summary."""
    spec = json.dumps(arguments)
    code = (
        "import json\n"
        "from benchmarks.common import train_in_this_process\n"
        f"print('BENCH_JSON ' + json.dumps(train_in_this_process(*json.loads({spec!r}))))\n"
    )
    return run_python(code, timeout=4 * 3600, env={"KERAS_BACKEND": backend})


def train_in_this_process(model_name, data, epochs, batch_size, sets, output, weights):
    """`trained_run`'s child: resolves the config as `training.run` does and trains it here; returns the summary."""
    from kerasdl.backend import select_backend_for

    config = train_config(model_name, data, epochs, batch_size, sets, output, weights)
    select_backend_for(config)
    from kerasdl.train import train_and_evaluate

    summary = train_and_evaluate(config, fresh=True, log=lambda line: None)
    return {"run_dir": str(summary["run_dir"])}


def trained_run(model_name, data=None, epochs=1, batch_size=None, sets=(), weights=None, log=print):
    """Trains as `python -m training.run` would (a fresh process, the backend it picks), or reuses a run of the same code, resolved config and data.

    The reuse key (`provenance.reuse_key`) covers the code version (commit and uncommitted
    changes), the config exactly as `training.run` resolves it (output folder aside), a
    fingerprint of the data and the library versions, so a run made before a code change is
    never reused after it; nor are the files inside it (profiler traces, checkpoints).

    Returns `(run_dir, metrics)` where metrics is part of the run's metrics.json.
    """
    cache_root = runs_folder()
    config = train_config(model_name, data, epochs, batch_size, sets, os.path.join(cache_root, "runs"), weights)
    described = config.to_dict()
    described.pop("output", None)

    def train():
        from kerasdl.backend import resolve_backend

        # In a fresh process on the backend `training.run` would pick (train.backend=auto: the
        # registry's), since this process has imported Keras on TensorFlow already.
        backend = resolve_backend(config.train.backend, model_name, config.train.strategy, config.train.profile).name
        summary = train_in_child([model_name, data, epochs, batch_size, list(sets), config.output, weights], backend)
        metrics = json.loads(Path(summary["run_dir"], "metrics.json").read_text())
        metrics = {key: metrics[key] for key in ("test_accuracy", "test_loss", "wall_time_s", "fit_time_s", "examples_per_s", "epochs", "train_examples", "test_examples", "backend") if key in metrics}
        log(f"trained {model_name} on {backend}: test accuracy {metrics['test_accuracy']:.4f} in {metrics['wall_time_s']:.0f} s ({summary['run_dir']})")
        return {"run_dir": str(summary["run_dir"]), "metrics": metrics}

    record = provenance.reused(
        cache_root, model_name, provenance.reuse_key(described, data), train,
        still_valid=lambda value: Path(value["run_dir"], "metrics.json").is_file(), log=log,
    )
    return record["run_dir"], record["metrics"]


@contextlib.contextmanager
def temporary_folder(prefix="kerasdl-bench-"):
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def image_folder_of(count, folder, seed=0):
    """Builds `folder/<class>/*.jpg` with `count` symlinks into cifar10-test-jpg (stratified)."""
    source = data_path("cifar10-test-jpg")
    class_names = sorted(name for name in os.listdir(source) if os.path.isdir(os.path.join(source, name)))
    per_class = count // len(class_names)
    rng = np.random.default_rng(seed)
    for name in class_names:
        files = sorted(os.listdir(os.path.join(source, name)))
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for file in rng.permutation(files)[:per_class]:
            os.symlink(os.path.join(source, name, file), os.path.join(folder, name, file))
    return folder
