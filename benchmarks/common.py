"""Shared helpers of the benchmarks: data paths, timing, training runs, result rows.

Every benchmark module returns a dict of this shape (checked by
`tests/benchmarks/test_quick.py`):

    {"name": str, "seconds": float, "rows": [row, ...], "targets": [target, ...],
     "notes": [str, ...]}

A row is one measurement quoted against a baseline measured in the same run:
`{"case", "metric", "value", "unit", "baseline_case", "baseline", "ratio"}`.
A target is `{"id", "description", "value", "threshold", "comparison", "met"}`
(`met` is None when the measurement could not be made; `value` then None too).
"""

import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
# A toy run (tests) shrinks every size further than --quick.
TOY = os.environ.get("KERASDL_BENCH_TOY") == "1"
# Trained runs are shared between benchmarks of one output folder (accuracy trains,
# latency exports the same runs), keyed by the resolved training settings.
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


def target(identifier, description, value, threshold, comparison):
    """A pass/fail target; `comparison` is ">=" or "<="."""
    met = None
    if value is not None:
        met = bool(value >= threshold) if comparison == ">=" else bool(value <= threshold)
    return {"id": identifier, "description": description, "value": _round(value), "threshold": threshold, "comparison": comparison, "met": met}


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


def environment():
    """CPU model, flags of interest, core count, library versions and load average."""
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and "cpu_model" not in info:
                info["cpu_model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and "cpu_flags" not in info:
                flags = line.split(":", 1)[1].split()
                info["cpu_flags_of_interest"] = sorted(flag for flag in flags if flag.startswith(("avx", "amx", "fma", "sse4", "vnni", "f16c")))
                info["cpu_flags"] = " ".join(flags)
    except OSError:
        pass
    versions = {}
    for package in ("tensorflow", "keras", "keras_hub", "onnx", "onnxruntime", "tf2onnx", "torch", "numpy"):
        try:
            module = __import__(package)
            versions[package] = getattr(module, "__version__", "?")
        except Exception as error:  # A missing optional library is reported, not fatal.
            versions[package] = f"not available ({type(error).__name__})"
    info["versions"] = versions
    info["load_average"] = os.getloadavg()
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def max_rss_mb():
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_python(code, timeout=1800, env=None):
    """Runs `code` in a fresh Python (repo root as cwd); returns the JSON it prints last.

    The child prints one line `BENCH_JSON {...}`; anything else is its log.
    """
    environment_variables = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO_ROOT))
    environment_variables.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=str(REPO_ROOT), env=environment_variables,
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


def trained_run(model_name, data=None, epochs=1, batch_size=None, sets=(), weights=None, log=print):
    """Trains with `kerasdl.train.train_and_evaluate` (or reuses an identical earlier run of this benchmark output).

    Returns `(run_dir, metrics)` where metrics is the run's metrics.json.
    """
    from kerasdl.train import train_and_evaluate

    key = hashlib.sha256(json.dumps([model_name, data, epochs, batch_size, list(sets), weights]).encode()).hexdigest()[:12]
    cache_root = os.environ.get(RUNS_DIR_ENV) or tempfile.mkdtemp(prefix="kerasdl-bench-runs-")
    cache_file = os.path.join(cache_root, f"{model_name}-{key}.json")
    if os.path.isfile(cache_file):
        cached = json.loads(Path(cache_file).read_text())
        if os.path.isdir(cached["run_dir"]):
            log(f"reusing {cached['run_dir']}")
            return cached["run_dir"], cached["metrics"]
    config = train_config(model_name, data, epochs, batch_size, sets, os.path.join(cache_root, "runs"), weights)
    summary = train_and_evaluate(config, fresh=True, log=lambda line: None)
    metrics = json.loads(Path(summary["run_dir"], "metrics.json").read_text())
    metrics = {key: metrics[key] for key in ("test_accuracy", "test_loss", "wall_time_s", "fit_time_s", "examples_per_s", "epochs", "train_examples", "test_examples") if key in metrics}
    os.makedirs(cache_root, exist_ok=True)
    Path(cache_file).write_text(json.dumps({"run_dir": summary["run_dir"], "metrics": metrics}))
    log(f"trained {model_name}: test accuracy {metrics['test_accuracy']:.4f} in {metrics['wall_time_s']:.0f} s ({summary['run_dir']})")
    return summary["run_dir"], metrics


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
