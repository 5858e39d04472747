"""Dynamic batching: concurrent requests for the same computation run as one batch.

Requests are queued by key: the backend instance (one model version), the
core computation, and each input's dtype and per-example shape, because only
tensors that agree on everything but the batch axis can be concatenated. One
worker thread per key takes the oldest request, then keeps adding queued
requests while the batch has room (`max_batch_size` rows) and the oldest has
waited less than `batch_timeout_s`; it runs the model once and hands each
request back exactly its own rows (by offset, in queue order), so rows never
mix between requests. A request larger than `max_batch_size` runs alone.

This mirrors TF Serving's `BasicBatchScheduler` parameters (max_batch_size,
batch_timeout_micros); a worker that sits idle for a while exits and is
re-created on demand, so retired model versions leave no threads behind.
"""

import collections
import concurrent.futures
import threading
import time

import numpy as np

_IDLE_EXIT_S = 30.0


class _Task:
    __slots__ = ("inputs", "rows", "future")

    def __init__(self, inputs, rows):
        self.inputs = inputs
        self.rows = rows
        self.future = concurrent.futures.Future()


class _Queue:
    def __init__(self, run):
        self.run = run
        self.tasks = collections.deque()
        self.condition = threading.Condition()
        self.worker = None


class Batcher:
    """Combines concurrent `submit` calls into batches of at most `max_batch_size` rows.

    Args:
        max_batch_size: the most rows one model run receives.
        batch_timeout_s: how long the oldest queued request may wait for others.

    Example:
    >>> batcher = Batcher(max_batch_size=32, batch_timeout_s=0.002)
    >>> future = batcher.submit(("cnn", 1), backend_run, {"images": images})
    >>> future.result()["probabilities"].shape
    """

    def __init__(self, max_batch_size=32, batch_timeout_s=0.002):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.max_batch_size = int(max_batch_size)
        self.batch_timeout_s = float(batch_timeout_s)
        self._queues = {}
        self._lock = threading.Lock()
        self.batch_sizes = collections.Counter()

    def submit(self, key, run, inputs):
        """Queues `inputs` (name -> array, same batch size) for `run(inputs) -> {name: array}`.

        Returns a `concurrent.futures.Future` of this request's own output rows.
        """
        rows = len(next(iter(inputs.values())))
        full_key = (key, tuple(sorted((name, value.dtype.str, value.shape[1:]) for name, value in inputs.items())))
        task = _Task(inputs, rows)
        with self._lock:
            queue = self._queues.get(full_key)
            if queue is None:
                queue = self._queues[full_key] = _Queue(run)
            with queue.condition:
                queue.tasks.append(task)
                if queue.worker is None:
                    queue.worker = threading.Thread(target=self._work, args=(full_key, queue), daemon=True, name="batcher")
                    queue.worker.start()
                queue.condition.notify()
        return task.future

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
            self._run(queue.run, *batch)

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
            return batch, rows

    def _run(self, run, batch, rows):
        self.batch_sizes[rows] += 1
        try:
            if len(batch) == 1:
                inputs = batch[0].inputs
            else:
                inputs = {name: np.concatenate([task.inputs[name] for task in batch]) for name in batch[0].inputs}
            outputs = run(inputs)
        except BaseException as error:  # Every waiting request must learn of the failure.
            for task in batch:
                task.future.set_exception(error)
            return
        offset = 0
        for task in batch:
            task.future.set_result({name: value[offset : offset + task.rows] for name, value in outputs.items()})
            offset += task.rows
