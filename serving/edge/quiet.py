"""Importing TensorFlow without its start-up noise, for the SavedModel backend.

TensorFlow's C++ runtime prints a few lines while it starts, before any
logging setting can act on them (absl writes everything to stderr until
`absl::InitializeLog()` runs, so `TF_CPP_MIN_LOG_LEVEL` does not reach them):
the oneDNN notice, "Could not find cuda drivers", the CPU-instructions notice
and, on a machine without a GPU, `E0000 ... failed call to cuInit: ... (303)`,
which reads like a failure and is not one. They go to file descriptor 2
directly, so the only way to hide them is to point that descriptor at a file
while TensorFlow starts, then pass on every line except these known ones.
Anything else TensorFlow prints meanwhile (a real error) still reaches
stderr, and all of it does if the import itself fails.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

# The start-up lines of a CPU-only TensorFlow, by the source file and message that print them.
KNOWN_STARTUP_LINES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .*rebuild TensorFlow"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)"
    r"|Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory"
)


def import_tensorflow():
    """Imports TensorFlow (once), hiding its known start-up lines; returns the module.

    Example:
    >>> tf = import_tensorflow()
    """
    module = sys.modules.get("tensorflow")
    if module is not None and hasattr(module, "constant"):
        return module
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr(KNOWN_STARTUP_LINES):
        import tensorflow as tf

        # The CUDA probe (and its cuInit line) runs on first device use: do it here, inside the filter.
        tf.config.list_physical_devices()
    # The TF1 loader the backend falls back to logs deprecation notices through this logger.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return tf


@contextlib.contextmanager
def filtered_stderr(pattern):
    """Sends file descriptor 2 to a temporary file meanwhile, then writes back the lines `pattern` does not match.

    Example:
    >>> with filtered_stderr(re.compile("noise")):
    ...     os.write(2, b"noise\\nsignal\\n")
    signal
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # No usable stderr (a daemon): nothing to filter.
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = lines if failed else [line for line in lines if not pattern.search(line)]
            if kept:
                os.write(2, "".join(kept).encode("utf-8"))
