"""A quiet, honest console for kerasdl's command lines.

- `quiet_startup()`: call it first in an entry point, before TensorFlow is imported. It sets
  TensorFlow's logging environment and filters the C++ start-up lines that no setting hides
  (see `STARTUP_NOISE`), so that a normal run prints only the run. Real errors still show.
- `run_cli(function)`: runs a command and turns what it raises into the exit status and
  the console output: a user mistake is one `error:` line (exit 2); an unexpected bug keeps
  its traceback and ends with one line saying it is a bug and how to report it (exit 1).
  Its Ctrl-C handler remembers the interrupt (`interrupt_requested`), so that the training
  loop raises it again where TensorFlow swallowed it (`kerasdl.callbacks.InterruptCheck`).

`KERASDL_DEBUG=1` turns both off: TensorFlow's full log, and a traceback for every error.
Imports nothing heavy, so `--help` stays fast.
"""

import atexit
import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import traceback

DEBUG_VARIABLE = "KERASDL_DEBUG"

# Lines TensorFlow writes to stderr that are notices, not failures. Most come while it loads and
# looks for a GPU, before its own logger starts: `TF_CPP_MIN_LOG_LEVEL` cannot hide them, because
# absl writes every message logged before `absl::InitializeLog()` straight to stderr (TF 2.21
# loads two libraries that each do). The others are logged at ERROR level, which the variable
# must keep showing. Each pattern is as narrow as its message, so real errors still show.
STARTUP_NOISE = (
    # absl's own notice that the lines above are written before its logger starts.
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    # oneDNN is on by default on x86 CPUs; the notice is about float round-off only.
    r"^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on",
    # No CUDA driver on a CPU machine: TensorFlow then runs on the CPU, as intended.
    r"^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers",
    # The same, said by the CUDA platform as an ERROR ("UNKNOWN ERROR (303)"), which a new user
    # reads as a failure although nothing failed.
    r"^E\d{4} [\d:. ]+\d+ cuda_(platform|executor|diagnostics)\.cc:\d+\] (failed call to cuInit|.*UNKNOWN ERROR \(303\))",
    # The pip build's note that it could use more CPU instructions (its next line is dropped too).
    r"^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] ",
    # oneDNN has no kernel for a dtype (bool, int64) on this CPU and TensorFlow uses its own,
    # logged as an ERROR although it is a fallback (the text models hit it).
    r"^E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_[A-Z0-9_]+ only on platforms with AVX-512\. Falling back to the default Eigen-based implementation",
    # TF 2.21's tf.data graph rewrite reads back its own ParallelMap node; the message itself
    # says the unknown attribute is ignored, and the pipeline runs as built.
    r"^E\d{4} [\d:. ]+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool ",
    # The LiteRT interpreter announces the CPU delegate it always uses (export's LiteRT check).
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
)
# The line that follows cpu_feature_guard's.
CONTINUATION = r"^To enable the following instructions"

# The filter runs in its own small process (no site packages): a thread in this process would
# lose what is still in the pipe when this process dies hard (a fatal signal, os._exit), which
# is exactly when the last lines matter. The process outlives this one, drains the pipe and
# exits when every writer has closed it; it ignores Ctrl-C, which is meant for the run.
_FILTER_SOURCE = r"""
import json, os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile("|".join("(?:%s)" % pattern for pattern in json.loads(sys.argv[1])).encode())
continuation = re.compile(sys.argv[2].encode())
output, pending, skip_next = sys.stdout.buffer, b"", False
while True:
    chunk = os.read(0, 65536)
    pending += chunk
    cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1 if chunk else len(pending)
    for line in pending[:cut].splitlines(keepends=True):
        dropped = bool(noise.match(line)) or (skip_next and bool(continuation.match(line)))
        skip_next = dropped and b"cpu_feature_guard" in line
        if not dropped:
            output.write(line)
    output.flush()
    pending = pending[cut:]
    if not chunk:
        break
"""

_filter = {}


def quiet_startup():
    """Sets TensorFlow's logging environment and filters its start-up noise from stderr.

    Call it before TensorFlow is imported (the environment is read once, at load). With
    `KERASDL_DEBUG=1` nothing is filtered. Calling it again does nothing.

    Example:
    >>> quiet_startup()
    """
    # INFO and WARNING of TensorFlow's C++ log, once its logger runs; ERROR and FATAL still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get(DEBUG_VARIABLE) or _filter:
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER_SOURCE, json.dumps(STARTUP_NOISE), CONTINUATION],
            stdin=subprocess.PIPE, stdout=original, start_new_session=True,
        )
    except OSError:
        return  # No filter: the run still works, only louder.
    os.dup2(process.stdin.fileno(), 2)
    process.stdin.close()
    _filter.update(process=process, original=original)
    atexit.register(_stop_filter)


class _RetracingFilter:
    """Drops TensorFlow's "triggered tf.function retracing" warning (see `hide_retracing_warnings`)."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def hide_retracing_warnings():
    """Hides TensorFlow's retracing warning where several models train in one process by design.

    Cross-validation folds and tuning trials each build a new model, whose train and predict
    functions are traced anew; TensorFlow counts those tracings together and warns about
    "excessive retracing" from the fifth on, which is expected there and not a problem.
    Other TensorFlow warnings still show.
    """
    import logging

    logger = logging.getLogger("tensorflow")
    if not any(isinstance(existing, _RetracingFilter) for existing in logger.filters):
        logger.addFilter(_RetracingFilter())


def _stop_filter():
    """Points stderr back at the terminal and lets the filter drain (at exit)."""
    if not _filter:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_filter["original"], 2)
    os.close(_filter["original"])
    try:
        _filter["process"].wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass  # A child process still holds the pipe; the filter ends with it.
    _filter.clear()


_interrupt = {"requested": False}


def _on_interrupt(signum, frame):
    """Python's own Ctrl-C handler (a KeyboardInterrupt), which also remembers that it fired."""
    _interrupt["requested"] = True
    raise KeyboardInterrupt


def catch_interrupts():
    """Makes Ctrl-C remembered as well as raised, for `interrupt_requested`.

    TensorFlow's eager fast path calls back into Python (a shape's `__len__`) and clears any
    error raised there, so a KeyboardInterrupt that lands in that moment is lost: the JAX
    backend pulls every tf.data batch eagerly, and 3 of 6 interrupts of a tuning run were lost
    before this. Leaves the handler alone where Ctrl-C is ignored (a job started with `nohup`
    or in the background) or handled by someone else, and outside the main thread.

    Example:
    >>> catch_interrupts()
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_interrupt)


def interrupt_requested():
    """True once Ctrl-C was pressed in this process (with `catch_interrupts` in place).

    Example:
    >>> interrupt_requested()
    False
    """
    return _interrupt["requested"]


def run_cli(function, interrupted_hint=None):
    """Runs `function()` and returns its exit status, reporting errors as described above.

    Args:
        function: the command's work; returns an exit status.
        interrupted_hint: what Ctrl-C should tell the user (e.g. how to resume).

    Example:
    >>> run_cli(lambda: 0)
    0
    """
    catch_interrupts()
    try:
        return function()
    except KeyboardInterrupt:
        print("interrupted" + (f": {interrupted_hint}" if interrupted_hint else ""), file=sys.stderr)
        return 130
    except Exception as error:
        message = user_error_message(error)
        if message is not None and not os.environ.get(DEBUG_VARIABLE):
            print(f"error: {message}", file=sys.stderr)
            return 2
        traceback.print_exc()
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return 2
        detail = _first_line(error)
        print(
            f"error: this is a bug in kerasdl ({type(error).__name__}{': ' + detail if detail else ''}); "
            f"rerun with {DEBUG_VARIABLE}=1 for TensorFlow's full log and report the command and its output",
            file=sys.stderr,
        )
        return 1


# Messages of TensorFlow's decoders and readers: a record the data pipeline could not read.
_BAD_RECORD = re.compile(
    r"Invalid JPEG|Corrupt JPEG|jpeg::Uncompress|Invalid PNG|Unknown image file format|decode_?image|Decode(Jpeg|Png|Image|Bmp|Gif)"
    r"|Input is empty|Premature end|truncated|Error while reading resource|Unable to decode",
    re.IGNORECASE,
)
# OS errors that a user fixes (a path, permissions, disk space), whatever raised them.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
_USER_OS_MESSAGE = re.compile(r"Permission denied|No space left|Read-only file system|errno = (13|28|30)\b")
_OWN_CODE = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package) + os.sep
    for package in ("kerasdl", "training", "export", "serving")
)


def user_error_message(error):
    """The one-line message for a mistake the user can fix, or None for a bug.

    User mistakes: `ConfigError`, `DataError`, any error marked `user_error = True` (a busy run,
    a Keras version outside the checked range), an OS error about a path, permissions or disk
    space, running out of memory, a data record TensorFlow cannot decode, and a ValueError that
    kerasdl's own checks raised. A ValueError raised inside Keras or TensorFlow is a bug.
    """
    from kerasdl.config_rules import ConfigError
    from kerasdl.data.source import DataError

    if isinstance(error, (ConfigError, DataError)) or getattr(error, "user_error", False):
        return _first_line(error)
    if isinstance(error, OSError) and (error.filename or error.errno in _USER_ERRNOS or _USER_OS_MESSAGE.search(str(error))):
        if error.filename and error.strerror:
            return f"{error.filename}: {error.strerror.lower()}"
        return _first_line(error)
    if isinstance(error, MemoryError):
        return "out of memory; lower --batch-size, data.cache_limit_mb or the model's size"
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and isinstance(error, tensorflow.errors.OpError):
        if isinstance(error, tensorflow.errors.ResourceExhaustedError):
            return f"out of memory in TensorFlow ({_first_line(error)[:200]}); lower --batch-size or the model's size"
        if _BAD_RECORD.search(str(error)):
            return f"a data record could not be read ({_first_line(error)[:300]}); check the data files, or set data.on_bad_file=skip"
        return None
    if isinstance(error, ValueError) and _raised_in_own_code(error):
        return _first_line(error)
    return None


def _raised_in_own_code(error):
    """Whether the innermost frame of `error`'s traceback is kerasdl's code (a deliberate check)."""
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return os.path.abspath(frame.tb_frame.f_code.co_filename).startswith(_OWN_CODE)


def _first_line(error):
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
