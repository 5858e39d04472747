"""What produced a benchmark number: the code version, the machine, and the keys of reused work.

A trained run (or any other result) is reused across `benchmarks.run` invocations only
under a key that covers everything it depends on: the code version (the git commit,
plus a hash of the uncommitted changes and untracked files when the tree is dirty),
the resolved training config, a fingerprint of the data, and the library versions.
Outside a git checkout there is no code version, and nothing is reused.

Example:
>>> from benchmarks import provenance
>>> provenance.code_version()["key"]          # e.g. 'da56443a1b2c' or 'da56443a1b2c-dirty-5e0f1c2d3a4b'
>>> provenance.reuse_key({"model": "mlp"}, data=None)
>>> provenance.reused("benchmarks/out/trained", "mlp", key, lambda: train())   # computed once per key
"""

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Libraries whose version can change a trained run or a timing; part of every reuse key.
KEY_PACKAGES = ("tensorflow", "keras", "keras-hub", "jax", "numpy", "onnx", "onnxruntime", "tf2onnx")
# Libraries listed in the report's environment (imported lazily, versions only).
REPORT_PACKAGES = KEY_PACKAGES + ("ai-edge-litert", "torch", "scikit-learn", "hypothesis")
# Environment variables that change what a run computes (backend, thread pools, oneDNN).
KEY_VARIABLES = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
# CPU flags that decide which kernels ONNX Runtime, oneDNN and XLA can use.
FLAG_PREFIXES = ("avx", "amx", "fma", "sse4", "vnni", "f16c", "bf16")
# The benchmark's output folders (set by `benchmarks.run`); untracked files there are results, not code.
OUTPUT_VARIABLES = ("KERASDL_BENCH_OUT", "KERASDL_BENCH_RUNS")


def _git(root, *arguments):
    return subprocess.run(["git", *arguments], cwd=str(root), capture_output=True, check=True, timeout=60).stdout


def _untracked_files(root, excluded):
    listing = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    names = sorted(name for name in listing.decode("utf-8", "surrogateescape").split("\0") if name)
    return [name for name in names if not any(Path(root, name).resolve().is_relative_to(folder) for folder in excluded)]


def _excluded_folders():
    """The benchmark's own output folders: what a run writes there is not code."""
    return tuple(sorted(str(Path(os.environ[name]).resolve()) for name in OUTPUT_VARIABLES if os.environ.get(name)))


def code_version(root=None):
    """The checkout's commit and whether (and how) it differs from that commit.

    Args:
        root: the repository folder; defaults to the one holding `benchmarks/`.

    Returns:
        `{"commit", "dirty", "changes_sha256", "key"}`. `changes_sha256` hashes `git diff HEAD`
        (staged and unstaged edits) and the paths and contents of untracked, non-ignored files
        (except those under the benchmark's own output folders, `KERASDL_BENCH_OUT` and
        `KERASDL_BENCH_RUNS`), so two different dirty trees get different keys. Every field is
        None outside a git checkout (or without git), and then nothing may be reused.
    """
    return dict(_code_version(str(Path(root or REPO_ROOT).resolve()), _excluded_folders()))


@functools.lru_cache(maxsize=8)
def _code_version(root, excluded):
    try:
        commit = _git(root, "rev-parse", "HEAD").decode().strip()
        changes = _git(root, "diff", "HEAD", "--binary")
        digest = hashlib.sha256(changes)
        dirty = bool(changes)
        for name in _untracked_files(root, excluded):
            dirty = True
            digest.update(b"\0untracked\0" + name.encode("utf-8", "surrogateescape") + b"\0")
            path = Path(root, name)
            if path.is_file():
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
    except (OSError, subprocess.SubprocessError):
        return tuple({"commit": None, "dirty": None, "changes_sha256": None, "key": None}.items())
    changes_sha256 = digest.hexdigest() if dirty else None
    key = commit[:12] + (f"-dirty-{changes_sha256[:12]}" if dirty else "")
    return tuple({"commit": commit, "dirty": dirty, "changes_sha256": changes_sha256, "key": key}.items())


def package_versions(packages=KEY_PACKAGES):
    """`{package: version}` from the installed distributions, without importing them."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def data_fingerprint(data):
    """A string that changes when the data a run reads changes.

    A file is hashed by content; a folder by the relative path, size and modification time
    of every file under it (symlinks followed), which is cheap for 10k JPEGs; anything else
    (None for built-in data, a TFDS name) stands for itself.
    """
    if data is None or not os.path.exists(str(data)):
        return json.dumps(data)
    digest = hashlib.sha256()
    path = Path(data)
    if path.is_file():
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return f"file:{digest.hexdigest()}"
    for folder, subfolders, files in os.walk(path, followlinks=True):
        subfolders.sort()
        for name in sorted(files):
            file = Path(folder, name)
            status = file.stat()
            digest.update(f"{file.relative_to(path)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return f"folder:{digest.hexdigest()}"


def reuse_key(config, data=None, root=None):
    """The key under which a result of `config` on `data` may be reused, or None (never reuse).

    Args:
        config: a JSON-serialisable description of the work (the resolved training config).
        data: the data path the work reads (fingerprinted with `data_fingerprint`).
        root: the repository (for the code version).
    """
    code = code_version(root)
    if code["key"] is None:
        return None
    payload = {
        "code": code["key"], "config": config, "data": data_fingerprint(data), "packages": package_versions(),
        "variables": {name: os.environ.get(name) for name in KEY_VARIABLES}, "python": sys.version.split()[0],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reused(folder, name, key, compute, still_valid=lambda value: True, log=print):
    """Returns the result recorded under `key` in `folder`, or computes and records it.

    Args:
        folder: where records live (`<folder>/<name>-<key>.json`).
        name: a readable prefix of the record's file name.
        key: `provenance.reuse_key(...)` of everything the result depends on; None means the
            code version is unknown, so the result is computed and not recorded.
        compute: `() -> JSON-serialisable value`.
        still_valid: `value -> bool`; a record whose files are gone is computed again.
        log: where "reusing ..." goes.

    Example:
        >>> reused("/tmp/cache", "square", reuse_key({"x": 3}), lambda: 9)
        9
    """
    if key is None:
        log(f"{name}: code version unknown (not a git checkout), so nothing is reused")
        return compute()
    record_path = Path(folder, f"{name}-{key}.json")
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = None
        if record and record.get("key") == key and still_valid(record["value"]):
            log(f"{name}: reusing the result recorded under key {key} (code {record.get('code_version')})")
            return record["value"]
    value = compute()
    os.makedirs(folder, exist_ok=True)
    record = {"key": key, "code_version": code_version()["key"], "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "value": value}
    temporary = record_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, default=str))
    os.replace(temporary, record_path)
    return value


def _memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine(cpuinfo="/proc/cpuinfo"):
    """CPU model and flags, core count, RAM (GiB) and load average, from /proc and os."""
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cpu_model": None, "cpu_flags": None, "cpu_flags_of_interest": [], "memory_gib": _memory_gib(),
            "load_average": list(os.getloadavg())}
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return info
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["cpu_model"] is None:
            info["cpu_model"] = value.strip()
        if key.strip() == "flags" and info["cpu_flags"] is None:
            flags = value.split()
            info["cpu_flags"] = " ".join(flags)
            info["cpu_flags_of_interest"] = sorted(flag for flag in flags if flag.startswith(FLAG_PREFIXES))
    return info


def environment():
    """Everything the report prints about where and with what the numbers were measured."""
    info = machine()
    info["versions"] = package_versions(REPORT_PACKAGES)
    info["code_version"] = code_version()
    info["variables"] = {name: os.environ[name] for name in KEY_VARIABLES if name in os.environ}
    return info
