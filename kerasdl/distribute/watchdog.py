"""The peer watchdog: ends a multi-worker process with one clear line when its cluster never forms."""

import json
import os
import socket
import sys


def _peer_addresses(tf_config):
    """Yields `(description, host, port)` for every task of the cluster but this one."""
    task = tf_config["task"]
    for job, addresses in sorted(tf_config["cluster"].items()):
        for index, address in enumerate(addresses):
            if (job, index) == (task["type"], task["index"]):
                continue
            host, _, port = address.rpartition(":")
            yield f"{job} {index} at {address}", host.strip("[]"), int(port)


def unreachable_peers(tf_config, connect_timeout_seconds=1.0):
    """Lists the peers of a parsed TF_CONFIG that refuse a TCP connection right now.

    Args:
        tf_config: the result of `read_tf_config`.
        connect_timeout_seconds: how long each connection attempt may take.

    Example:
    >>> unreachable_peers({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}})
    ['worker 1 at 127.0.0.1:2']
    """
    unreachable = []
    for description, host, port in _peer_addresses(tf_config):
        try:
            with socket.create_connection((host, port), timeout=connect_timeout_seconds):
                pass
        except OSError:
            unreachable.append(description)
    return unreachable


def start_peer_watchdog(tf_config, timeout_seconds):
    """Starts a watchdog process that ends this one with a clear line if the cluster never forms.

    It has to be a separate process: while a worker waits for its peers, TensorFlow
    blocks inside C++ holding the GIL, so no Python thread (or signal handler) of this
    process runs, and TensorFlow's preemption handler swallows SIGTERM. The watchdog
    waits on a pipe; `cancel()` (or this process dying) closes it, and silence for
    `timeout_seconds` makes the watchdog print the message and SIGKILL this process.
    """
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(
        [sys.executable, "-c", "from kerasdl.distribute.watchdog import main; main()", str(os.getpid()), str(timeout_seconds), json.dumps(tf_config)],
        stdin=subprocess.PIPE,
        env=environment,
    )

    class Watchdog:
        def cancel(self):
            try:
                process.stdin.write(b"ok\n")
                process.stdin.close()
            except OSError:
                pass
            process.wait()

    return Watchdog()


def main():
    """The watchdog process: `python -c ... PARENT_PID TIMEOUT_SECONDS TF_CONFIG_JSON`."""
    import select
    import signal

    parent, timeout_seconds, tf_config = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
    ready, _, _ = select.select([sys.stdin], [], [], timeout_seconds)
    if ready:
        return
    task = tf_config["task"]
    missing = unreachable_peers(tf_config)
    peers = f"unreachable: {', '.join(missing)}" if missing else "all peers accept connections, but not all of them joined"
    sys.stderr.write(
        f"error: {task['type']} {task['index']} timed out after {timeout_seconds:g} s waiting for its peers ({peers}); "
        "start every worker listed in TF_CONFIG (same cluster, one task index each) or raise train.strategy_timeout_seconds\n"
    )
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
