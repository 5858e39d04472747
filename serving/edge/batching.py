"""Dynamic batching: concurrent requests for the same computation run as one batch.

Requests are queued by key: the backend instance (one model version), the
core computation, and each input's dtype and per-example shape, because only
tensors that agree on everything but the batch axis can be concatenated.

No idle wait (TF Serving's behaviour with `batch_timeout_micros: 0`, its
default): a request that finds its computation idle runs at once, in the
calling thread when it comes through `run` (no hop to another thread). While
a batch runs, the requests that arrive queue up; when it ends, one worker
thread per queue takes every queued request (up to `max_batch_size` rows),
runs the model once, and hands each request back exactly its own rows (by
offset, in queue order), so rows never mix between requests. So batches form
only while the model is busy, and a lone request never waits for company. A
positive `batch_timeout_s` restores a wait: every request then goes through
the worker, which keeps adding queued requests while the batch has room and
the oldest has waited less than `batch_timeout_s`. A request larger than
`max_batch_size` runs alone. One batch per queue runs at a time: ONNX Runtime
and TensorFlow already spread one run over every core.

Bounds: at most `max_queues` queues (and so worker threads) exist at once.
Inputs of many shapes (variable-length sequences) would otherwise start a
queue and a thread per length; once the bound is reached, a request whose
queue does not exist yet runs alone, unbatched. A worker that sits idle for a
while exits and its queue is dropped, so retired model versions and lengths
no longer sent leave nothing behind.

Isolation: when a batch of several requests fails, or returns outputs whose
first axis is not the batch's rows, every request of it is run again alone,
so a bad request (an undecodable image, an unparsable tf.Example) fails by
itself and the others get their answers.

This mirrors TF Serving's `BasicBatchScheduler` parameters (max_batch_size,
batch_timeout_micros) with one batch thread per queue.
"""

import collections
import concurrent.futures
import logging
import threading
import time

import numpy as np

LOGGER = logging.getLogger("serving.edge")
_IDLE_EXIT_S = 30.0
# One queue per model version x signature x input shape in active use; 32 covers a
# handful of models with a few shapes each, and bounds the worker threads.
DEFAULT_MAX_QUEUES = 32
# TF Serving's default batch_timeout_micros: a batch never waits for more requests.
DEFAULT_BATCH_TIMEOUT_S = 0.0


class _Task:
    __slots__ = ("inputs", "rows", "future")

    def __init__(self, inputs, rows):
        self.inputs = inputs
        self.rows = rows
        self.future = concurrent.futures.Future()


class _Queue:
    def __init__(self, run, label):
        self.run = run
        self.label = label
        self.tasks = collections.deque()
        self.condition = threading.Condition()
        self.worker = None
        self.rows = 0
        # A batch of this queue is running (in the worker or in a calling thread).
        self.busy = False


class Batcher:
    """Combines concurrent requests into batches of at most `max_batch_size` rows.

    Args:
        max_batch_size: the most rows one model run receives.
        batch_timeout_s: how long a batch may wait for more requests; 0 (the
            default) runs what is there as soon as the model is free.
        max_queues: the most queues (one worker thread each) alive at once.
        on_batch: called as `on_batch(label, rows)` before each model run (metrics).

    Example:
    >>> batcher = Batcher(max_batch_size=32)
    >>> batcher.run(("cnn", 1), backend_run, {"images": images})["probabilities"].shape
    >>> future = batcher.submit(("cnn", 1), backend_run, {"images": images})
    """

    def __init__(self, max_batch_size=32, batch_timeout_s=DEFAULT_BATCH_TIMEOUT_S, max_queues=DEFAULT_MAX_QUEUES, on_batch=None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queues < 1:
            raise ValueError(f"max_queues must be at least 1, got {max_queues}")
        if batch_timeout_s < 0:
            raise ValueError(f"batch_timeout_s must not be negative, got {batch_timeout_s}")
        self.max_batch_size = int(max_batch_size)
        self.batch_timeout_s = float(batch_timeout_s)
        self.max_queues = int(max_queues)
        self.on_batch = on_batch
        self._queues = {}
        self._lock = threading.Lock()
        self.batch_sizes = collections.Counter()

    def run(self, key, run, inputs, label=""):
        """Runs `run(inputs) -> {name: array}` batched with concurrent requests; returns this request's rows.

        When the computation is idle (and `batch_timeout_s` is 0) it runs now,
        in this thread; otherwise this thread waits for the batch it joins.
        """
        return self._enqueue(key, run, inputs, label, run_here_if_idle=self.batch_timeout_s <= 0).result()

    def submit(self, key, run, inputs, label=""):
        """Queues `inputs` (name -> array, same batch size) for `run(inputs) -> {name: array}`.

        `label` names the queue in `queued_rows()` (the model's name). Returns
        a `concurrent.futures.Future` of this request's own output rows; the
        worker thread runs it, so this call never runs the model itself.
        """
        return self._enqueue(key, run, inputs, label, run_here_if_idle=False)

    def _enqueue(self, key, run, inputs, label, run_here_if_idle):
        rows = len(next(iter(inputs.values())))
        full_key = (key, tuple(sorted((name, value.dtype.str, value.shape[1:]) for name, value in inputs.items())))
        task = _Task(inputs, rows)
        with self._lock:
            queue = self._queues.get(full_key)
            if queue is None and len(self._queues) < self.max_queues:
                queue = self._queues[full_key] = _Queue(run, label)
            if queue is not None:
                with queue.condition:
                    if run_here_if_idle and not queue.busy and not queue.tasks:
                        queue.busy = True
                    else:
                        queue.tasks.append(task)
                        queue.rows += rows
                        if queue.worker is None:
                            queue.worker = threading.Thread(target=self._work, args=(full_key, queue), daemon=True, name="batcher")
                            queue.worker.start()
                        queue.condition.notify()
                        return task.future
        if queue is None:
            # Every queue is taken by other shapes: this request runs alone, now.
            self._run(run, label, [task], rows)
            return task.future
        try:
            self._run(run, label, [task], rows)
        finally:
            self._release(full_key, queue)
        return task.future

    def _release(self, full_key, queue):
        """Ends a run made in a calling thread: the worker takes what queued meanwhile."""
        with self._lock, queue.condition:
            queue.busy = False
            if queue.tasks:
                queue.condition.notify()
            elif queue.worker is None:
                self._queues.pop(full_key, None)

    def queued_rows(self):
        """Returns `{label: rows waiting}` over the live queues (the queue depth)."""
        depth = collections.Counter()
        with self._lock:
            for queue in self._queues.values():
                depth[queue.label] += queue.rows
        return dict(depth)

    def queue_count(self):
        with self._lock:
            return len(self._queues)

    def _work(self, full_key, queue):
        while True:
            batch = self._next_batch(queue)
            if batch is None:
                # Idle: retire this worker, and the queue unless a calling thread runs it now.
                # The batcher lock is taken before the queue's (the order `_enqueue` uses),
                # so no request can be added to a queue whose worker has left.
                with self._lock, queue.condition:
                    if queue.tasks:
                        continue
                    queue.worker = None
                    if not queue.busy:
                        self._queues.pop(full_key, None)
                    return
            try:
                self._run(queue.run, queue.label, *batch)
            finally:
                with queue.condition:
                    queue.busy = False

    def _next_batch(self, queue):
        with queue.condition:
            idle_until = time.monotonic() + _IDLE_EXIT_S
            # Wait for a request, and for a run made in a calling thread to end.
            while not queue.tasks or queue.busy:
                remaining = idle_until - time.monotonic()
                if remaining <= 0 and not queue.tasks:
                    return None
                queue.condition.wait(remaining if remaining > 0 else _IDLE_EXIT_S)
            batch = [queue.tasks.popleft()]
            rows = batch[0].rows
            deadline = time.monotonic() + self.batch_timeout_s
            while rows < self.max_batch_size:
                if queue.tasks:
                    if rows + queue.tasks[0].rows > self.max_batch_size:
                        break
                    task = queue.tasks.popleft()
                    batch.append(task)
                    rows += task.rows
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                queue.condition.wait(remaining)
            queue.rows -= rows
            queue.busy = True
            return batch, rows

    def _run(self, run, label, batch, rows):
        self.batch_sizes[rows] += 1
        if self.on_batch is not None:
            self.on_batch(label, rows)
        if len(batch) > 1:
            try:
                inputs = {name: np.concatenate([task.inputs[name] for task in batch]) for name in batch[0].inputs}
                outputs = run(inputs)
            except Exception as error:  # Find the request(s) at fault: each runs again alone below.
                LOGGER.debug("batch of %d requests failed (%s); running them one by one", len(batch), error)
                outputs = None
            if outputs is not None and all(np.ndim(value) >= 1 and len(value) == rows for value in outputs.values()):
                offset = 0
                for task in batch:
                    task.future.set_result({name: value[offset : offset + task.rows] for name, value in outputs.items()})
                    offset += task.rows
                return
        for task in batch:
            try:
                task.future.set_result(run(task.inputs))
            except BaseException as error:  # The waiting request must learn of its failure.
                task.future.set_exception(error)
