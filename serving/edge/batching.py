"""Dynamic batching: concurrent requests for the same computation run as one batch.

Requests are queued by key: the backend instance (one model version), the
core computation, and each input's dtype and per-example shape, because only
tensors that agree on everything but the batch axis can be concatenated. One
worker thread per queue takes the oldest request, then keeps adding queued
requests while the batch has room (`max_batch_size` rows) and the oldest has
waited less than `batch_timeout_s`; it runs the model once and hands each
request back exactly its own rows (by offset, in queue order), so rows never
mix between requests. A request larger than `max_batch_size` runs alone.

Bounds: at most `max_queues` queues (and so worker threads) exist at once.
Inputs of many shapes (variable-length sequences) would otherwise start a
queue and a thread per length; once the bound is reached, a request whose
queue does not exist yet runs alone in its own thread. A worker that sits
idle for a while exits and its queue is dropped, so retired model versions
and lengths no longer sent leave nothing behind.

Isolation: when a batch of several requests fails, or returns outputs whose
first axis is not the batch's rows, every request of it is run again alone,
so a bad request (an undecodable image, an unparsable tf.Example) fails by
itself and the others get their answers.

This mirrors TF Serving's `BasicBatchScheduler` parameters (max_batch_size,
batch_timeout_micros).
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


class Batcher:
    """Combines concurrent `submit` calls into batches of at most `max_batch_size` rows.

    Args:
        max_batch_size: the most rows one model run receives.
        batch_timeout_s: how long the oldest queued request may wait for others.
        max_queues: the most queues (one worker thread each) alive at once.
        on_batch: called as `on_batch(label, rows)` after each model run (metrics).

    Example:
    >>> batcher = Batcher(max_batch_size=32, batch_timeout_s=0.002)
    >>> future = batcher.submit(("cnn", 1), backend_run, {"images": images})
    >>> future.result()["probabilities"].shape
    """

    def __init__(self, max_batch_size=32, batch_timeout_s=0.002, max_queues=DEFAULT_MAX_QUEUES, on_batch=None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queues < 1:
            raise ValueError(f"max_queues must be at least 1, got {max_queues}")
        self.max_batch_size = int(max_batch_size)
        self.batch_timeout_s = float(batch_timeout_s)
        self.max_queues = int(max_queues)
        self.on_batch = on_batch
        self._queues = {}
        self._lock = threading.Lock()
        self.batch_sizes = collections.Counter()

    def submit(self, key, run, inputs, label=""):
        """Queues `inputs` (name -> array, same batch size) for `run(inputs) -> {name: array}`.

        `label` names the queue in `queued_rows()` (the model's name). Returns
        a `concurrent.futures.Future` of this request's own output rows.
        """
        rows = len(next(iter(inputs.values())))
        full_key = (key, tuple(sorted((name, value.dtype.str, value.shape[1:]) for name, value in inputs.items())))
        task = _Task(inputs, rows)
        with self._lock:
            queue = self._queues.get(full_key)
            if queue is None and len(self._queues) >= self.max_queues:
                queue = None
            elif queue is None:
                queue = self._queues[full_key] = _Queue(run, label)
            if queue is not None:
                with queue.condition:
                    queue.tasks.append(task)
                    queue.rows += rows
                    if queue.worker is None:
                        queue.worker = threading.Thread(target=self._work, args=(full_key, queue), daemon=True, name="batcher")
                        queue.worker.start()
                    queue.condition.notify()
                return task.future
        # Every queue is taken by other shapes: this request runs alone, now.
        self._run(run, label, [task], rows)
        return task.future

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
                # Idle: retire this queue. The batcher lock is taken before the
                # queue's (the order `submit` uses), so no request can be added to
                # a queue whose worker has left.
                with self._lock, queue.condition:
                    if queue.tasks:
                        continue
                    queue.worker = None
                    self._queues.pop(full_key, None)
                    return
            self._run(queue.run, queue.label, *batch)

    def _next_batch(self, queue):
        with queue.condition:
            if not queue.tasks:
                queue.condition.wait(_IDLE_EXIT_S)
            if not queue.tasks:
                return None
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
