"""The models under an export base path, their versions, and hot reload.

Layout (CONTRACTS.md section 5): `<base>/<name>/<version>/`, versions are
integer-named folders. A folder is a candidate version only when its name is
all digits and it holds the backend's model file, so half-written exports (the
export stage writes `.tmp-*` folders and renames them into place) and folders
still being filled are ignored. A version that fails to load is retried on the
next poll, which covers a folder that is still being copied in.

`<base>` may also be one model's base path (its children are version folders);
the model is then named after the folder.
"""

import json
import logging
import os
import threading
import time

from serving.edge.errors import InvalidInput, NotFound

LOGGER = logging.getLogger("serving.edge")

BACKENDS = ("auto", "onnx", "savedmodel")
# `--onnx-variant`: the file an ONNX version is served from (export writes model.int8.onnx with --quantize int8).
ONNX_VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def version_model_file(folder, backend):
    """Returns "onnx" or "savedmodel" for the backend that can serve `folder`, or None."""
    has_onnx = os.path.isfile(os.path.join(folder, "model.onnx"))
    has_savedmodel = any(os.path.isfile(os.path.join(folder, name)) for name in ("saved_model.pb", "saved_model.pbtxt"))
    if backend == "onnx":
        return "onnx" if has_onnx else None
    if backend == "savedmodel":
        return "savedmodel" if has_savedmodel else None
    return "onnx" if has_onnx else ("savedmodel" if has_savedmodel else None)


def onnx_model_file(folder, variant):
    """Returns `(file name, missing)`: the ONNX file to serve for `variant` ("fp32" or "int8").

    A version without `model.int8.onnx` (export leaves it out when int8 fails its accuracy
    gate, and the GRU has none) is served from `model.onnx`; `missing` is then True, so
    that the caller can say so.
    """
    wanted = ONNX_VARIANTS[variant]
    if os.path.isfile(os.path.join(folder, wanted)):
        return wanted, False
    return ONNX_VARIANTS["fp32"], True


def load_backend(folder, kind, threads=None, model_file=None):
    """Loads one version folder with the "onnx" or "savedmodel" backend (`model_file`: the ONNX file)."""
    if kind == "onnx":
        from serving.edge.backends.onnx import MODEL_FILE, OnnxBackend

        return OnnxBackend(folder, threads=threads, model_file=model_file or MODEL_FILE)
    from serving.edge.backends.savedmodel import SavedModelBackend

    return SavedModelBackend(folder, threads=threads)


class ModelRepository:
    """Loads every model version under `base_path` and keeps them current.

    Args:
        base_path: the export base path (`exports/`) or one model's base path.
        backend: "auto" (ONNX when `model.onnx` exists, else the SavedModel), "onnx" or "savedmodel".
        labels: `{model: {label: version}}` version labels.
        threads: ONNX Runtime intra-op threads per model.
        metrics: a `Metrics` that counts loads and failed loads (optional).
        onnx_variant: "fp32" serves `model.onnx`; "int8" serves `model.int8.onnx` of every
            version that has one and `model.onnx` (with one log line) of the others.

    Example:
    >>> repository = ModelRepository("exports/")
    >>> repository.scan()
    >>> version, backend = repository.resolve("cnn")
    """

    def __init__(self, base_path, backend="auto", labels=None, threads=None, metrics=None, onnx_variant="fp32"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if onnx_variant not in ONNX_VARIANTS:
            raise ValueError(f"--onnx-variant must be one of {', '.join(ONNX_VARIANTS)}, got {onnx_variant!r}")
        if backend == "savedmodel" and onnx_variant != "fp32":
            raise ValueError("--onnx-variant picks the ONNX file; --backend savedmodel serves no ONNX (use --backend onnx or auto)")
        self.onnx_variant = onnx_variant
        self.base_path = os.path.abspath(os.fspath(base_path))
        if not os.path.isdir(self.base_path):
            raise ValueError(f"export base path {self.base_path} is not a folder; export a model first (python -m export.run)")
        self.backend = backend
        self.labels = labels or {}
        self.threads = threads
        self.metrics = metrics
        self._models = {}  # name -> {version: backend}
        self._errors = {}  # (name, version) -> message of the last failed load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def model_folders(self):
        """Returns `{name: model base path}` for the models under the base path."""
        entries = _listdir(self.base_path)
        if any(entry.isdigit() for entry in entries):
            return {os.path.basename(self.base_path): self.base_path}
        return {
            entry: os.path.join(self.base_path, entry)
            for entry in entries
            if not entry.startswith(".") and os.path.isdir(os.path.join(self.base_path, entry))
        }

    def scan(self):
        """Loads new versions and drops removed ones; returns `(loaded, removed)` lists of (name, version)."""
        loaded, removed = [], []
        for name, folder in self.model_folders().items():
            on_disk = {}
            for entry in _listdir(folder):
                path = os.path.join(folder, entry)
                if entry.isdigit() and os.path.isdir(path):
                    kind = version_model_file(path, self.backend)
                    if kind is not None:
                        on_disk[int(entry)] = (path, kind)
            current = self._models.get(name, {})
            for version, (path, kind) in sorted(on_disk.items()):
                if version in current:
                    continue
                started = time.monotonic()
                model_file, missing = onnx_model_file(path, self.onnx_variant) if kind == "onnx" else (None, False)
                if missing and (name, version) not in self._errors:
                    LOGGER.warning(json.dumps({"event": "variant_missing", "model": name, "version": version,
                                               "wanted": ONNX_VARIANTS[self.onnx_variant], "serving": model_file}))
                try:
                    backend = load_backend(path, kind, self.threads, model_file)
                except Exception as error:  # A broken or half-copied version must not stop the server.
                    message = f"{type(error).__name__}: {error}".splitlines()[0]
                    if self.metrics is not None and self._errors.get((name, version)) is None:
                        self.metrics.load(path, False, time.monotonic() - started)
                    if self._errors.get((name, version)) != message:
                        LOGGER.warning(json.dumps({"event": "load_failed", "model": name, "version": version, "error": message}))
                    self._errors[(name, version)] = message
                    continue
                with self._lock:
                    self._models.setdefault(name, {})[version] = backend
                self._errors.pop((name, version), None)
                loaded.append((name, version))
                if self.metrics is not None:
                    self.metrics.load(path, True, time.monotonic() - started)
                LOGGER.info(
                    json.dumps(
                        {
                            "event": "model_loaded",
                            "model": name,
                            "version": version,
                            "backend": backend.kind,
                            "model_file": getattr(backend, "model_file", None),
                            "load_ms": round((time.monotonic() - started) * 1000, 1),
                        }
                    )
                )
            for version in sorted(set(current) - set(on_disk)):
                with self._lock:
                    self._models[name].pop(version, None)
                removed.append((name, version))
                LOGGER.info(json.dumps({"event": "model_unloaded", "model": name, "version": version}))
        return loaded, removed

    def start_polling(self, poll_seconds):
        """Rescans the base path every `poll_seconds` in a daemon thread (0 disables it)."""
        if not poll_seconds or poll_seconds <= 0:
            return

        def poll():
            while not self._stop.wait(poll_seconds):
                try:
                    self.scan()
                except Exception as error:  # Keep serving what is loaded.
                    LOGGER.warning(json.dumps({"event": "scan_failed", "error": str(error)}))

        self._thread = threading.Thread(target=poll, daemon=True, name="model-poller")
        self._thread.start()

    def stop(self):
        self._stop.set()

    def model_names(self):
        with self._lock:
            return sorted(name for name, versions in self._models.items() if versions)

    def serves(self, name):
        """Whether a version of model `name` is loaded (cheaper than `name in model_names()`)."""
        with self._lock:
            return bool(self._models.get(name))

    def versions(self, name):
        with self._lock:
            return sorted(self._models.get(name, {}))

    def resolve(self, name, version=None, label=None):
        """Returns `(version, backend)`: the given version, the labelled one, or the latest.

        Raises:
            NotFound: unknown model or version (the message lists what is served).
            InvalidInput: unknown label (TF Serving's INVALID_ARGUMENT).
        """
        with self._lock:
            versions = dict(self._models.get(name, {}))
        if not versions:
            served = ", ".join(self.model_names()) or "none"
            raise NotFound(f"Servable not found for request: Latest({name}); served models: {served}")
        if label is not None:
            labels = self.labels.get(name, {})
            if label not in labels:
                raise InvalidInput(f"Unrecognized servable version label: {label} for model {name}; labels: {', '.join(sorted(labels)) or 'none'}")
            version = labels[label]
        if version is None:
            version = max(versions)
        version = int(version)
        if version not in versions:
            listed = ", ".join(str(item) for item in sorted(versions))
            raise NotFound(f"Servable not found for request: Specific({name}, {version}); available versions: {listed}")
        return version, versions[version]

    def status(self, name, version=None, label=None):
        """Returns TF Serving's `model_version_status` list for `name` (one version or all)."""
        if version is not None or label is not None:
            version, _ = self.resolve(name, version, label)
            versions = [version]
        else:
            versions = self.versions(name)
            if not versions:
                self.resolve(name)  # Raises NotFound with the message.
        return [
            {"version": str(item), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for item in sorted(versions, reverse=True)
        ]


def _listdir(folder):
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []
