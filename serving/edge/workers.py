"""`--workers N`: several edge-server processes share one REST and one gRPC port (SO_REUSEPORT).

Python runs one thread of Python code at a time per process, so one server
process tops out near one core of request handling (JSON decoding, protobuf,
the event loop) however many cores the machine has. With `--workers N`,
`python -m serving.edge` becomes a supervisor: it checks the flags, reserves
the ports, and starts N copies of itself (`--worker-index i`). Each worker
loads its own models, polls the base path for new versions on its own, and
binds the same ports with SO_REUSEPORT, so the kernel spreads connections
over the workers. Without `--threads`, each worker's models get cores / N
intra-op threads, so that N processes do not oversubscribe the cores. When a worker exits, the supervisor stops the others and
exits with its status; SIGTERM or SIGINT stops them all.

Metrics: the workers write prometheus-client's multiprocess files into one
temporary folder (`PROMETHEUS_MULTIPROC_DIR`), so a scrape of
`/monitoring/prometheus/metrics` on any worker reports the counters and
histograms summed over all workers; the queue gauges are summed over the
live workers, each sampled when its batches start.

Linux only (SO_REUSEPORT with load balancing). README "Serving" says when to
use it.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1


def threads_per_worker(workers):
    """Intra-op threads per model in each of `workers` processes: the cores shared out (at least 1)."""
    return max(1, (os.cpu_count() or 1) // workers)


def rest_socket(host, port, reuse_port=False, what="REST"):
    """Returns a TCP socket bound to `host:port` for the REST server, not listening yet.

    The event loop starts listening when it starts serving: a connection made before then is
    refused (and retried by a readiness probe) instead of waiting unanswered in the backlog.

    Args:
        reuse_port: set SO_REUSEPORT, so that the other workers can bind the same port.

    Raises:
        OSError: the port cannot be bound (the message says which and why).
    """
    sock = _bound_socket(host, port, reuse_port, what)
    sock.setblocking(False)
    return sock


def reserve_port(host, port, what):
    """Binds (without listening) a SO_REUSEPORT socket on `host:port`; returns it.

    Its port (chosen by the kernel when `port` is 0) is the one every worker binds
    while the reservation is held; a port held by another program fails here, once.
    """
    return _bound_socket(host, port, True, what)


def _bound_socket(host, port, reuse_port, what):
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers needs SO_REUSEPORT (Linux); run one process instead")
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot bind the {what} port {host}:{port} ({error.strerror or error}); is it in use?") from None
    return sock


def supervise(argv, workers, host, rest_port, grpc_port, log):
    """Starts `workers` copies of `python -m serving.edge argv` on shared ports; returns the exit status.

    Args:
        argv: the command-line arguments given (without the program name).
        workers: how many worker processes.
        host, rest_port, grpc_port: the ports to share (`grpc_port` < 0: no gRPC).
        log: called with one JSON-ready dict when the workers start.
    """
    reservations = [reserve_port(host, rest_port, "REST")]
    rest_port = reservations[0].getsockname()[1]
    if grpc_port >= 0:
        reservations.append(reserve_port(host, grpc_port, "gRPC"))
        grpc_port = reservations[-1].getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="kerasdl-edge-metrics-")
    environment = dict(os.environ, **{METRICS_DIR_ENV: metrics_dir})
    children = []
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(workers):
            command = [sys.executable, "-m", "serving.edge", *argv, "--port", str(rest_port), "--grpc-port", str(grpc_port),
                       "--worker-index", str(index)]
            children.append(subprocess.Popen(command, env=environment, preexec_fn=_die_with_parent))
        log({"event": "workers", "count": workers, "pids": [child.pid for child in children],
             "rest": f"http://{host}:{rest_port}", "grpc": f"{host}:{grpc_port}" if grpc_port >= 0 else None,
             "metrics_dir": metrics_dir})
        status = 0
        while not stopping:
            ended = [child for child in children if child.poll() is not None]
            if ended:
                status = ended[0].returncode if ended[0].returncode > 0 else 1
                break
            time.sleep(0.2)
        return status
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=15)
            if child.poll() is None:
                child.kill()
                child.wait()
            _mark_dead(child.pid, metrics_dir)
        for number, handler in previous.items():
            signal.signal(number, handler)
        for reservation in reservations:
            reservation.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _mark_dead(pid, metrics_dir):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)


def _die_with_parent():
    """Asks Linux to end a worker when its supervisor dies (even by SIGKILL), so none is orphaned."""
    with contextlib.suppress(Exception):  # Best effort: other systems have no prctl.
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
