"""Shared fixtures: tiny data, the shared real datasets, and a CLI runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Quiet TensorFlow and keep every test on the CPU, in this process and in subprocesses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# This process trains on TensorFlow whatever a model's registry backend: training.run's
# select_backend would otherwise fix the backend of the whole test process at the first
# in-process run (Keras chooses once, at import). train.backend=auto keeps an imported
# backend; JAX runs are subprocesses (tests/training/test_jax_backend.py).
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras  # noqa: E402,F401  (after the environment above)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """`../shared/data`, or a skip when this checkout has no shared folder beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the shared real datasets sit beside the repository)")
    return SHARED_DATA


def run_cli(*arguments, timeout=600, cwd=None, env=None):
    """Runs `python -m <arguments>` from the repository root and returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", *arguments], cwd=cwd or REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def cli():
    """`cli("training.run", "mlp", ...)` runs a module's command line in a subprocess."""
    return run_cli
