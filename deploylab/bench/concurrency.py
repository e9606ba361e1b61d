"""Many requests in flight: a pool that runs them, and the throughput it reaches.

:class:`RequestPool` keeps ``in_flight`` requests running through the runner contract
(its own request queue where it has one, else one thread per clone, or one thread-safe
runner shared); :func:`benchmark_concurrent` times rounds of requests through it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from deploylab.bench.checks import positive_int, positive_seconds
from deploylab.bench.results import BenchmarkResult
from deploylab.bench.run import BenchPoint, prepare_point
from deploylab.bench.timing import summarize_timings
from deploylab.errors import DeployLabError

# Requests each worker handles per timed round of benchmark_concurrent: enough that the
# start and drain of a round are a small part of it.
REQUESTS_PER_WORKER_PER_ROUND = 8


class RequestPool:
    """Run many inference requests with ``in_flight`` of them running at once.

    - a runner with its own request queue (``runner.queues_requests``: OpenVINO's
      ``AsyncInferQueue``), through ``runner.infer_queued(feeds, in_flight)``. Build an
      OpenVINO runner with ``hint="throughput"`` so the CPU plugin splits its cores into
      streams; with the latency hint one stream takes all cores and extra requests mostly wait.
    - any other runner: ``in_flight`` threads, each with its own runner (``runner_factory()``,
      or ``runner.clone()``: ONNX Runtime on the same file, TensorRT on the same plan), else
      all threads share ``runner`` if it is ``thread_safe`` (PyTorch eager). ONNX Runtime's
      ``run`` releases the GIL, so the threads really run in parallel; mind that each
      session also has its own intra-op thread pool (set ``intra_op_threads``).

    ``run(feeds)`` returns the outputs in the order of ``feeds``. Use it as a context
    manager (or call ``close()``) to stop the threads and release the extra runners.
    """

    def __init__(self, runner, in_flight: int, runner_factory: Callable[[], object] | None = None):
        self.runner = runner
        self.in_flight = positive_int(in_flight, "in_flight")
        self._pool = None
        self._workers: list = []
        if runner.queues_requests:
            return
        from concurrent.futures import ThreadPoolExecutor

        if runner_factory is not None:
            workers = [runner_factory() for _ in range(self.in_flight)]
        else:
            clones = [runner.clone() for _ in range(self.in_flight - 1)]
            if all(c is not None for c in clones):
                workers = [runner, *clones]
            elif runner.thread_safe:
                workers = [runner] * self.in_flight
            else:
                raise DeployLabError(
                    f"{runner.name} cannot be shared by several threads and cannot be cloned; pass "
                    "runner_factory= that builds one runner per thread"
                )
        self._workers = workers
        for worker in workers:
            worker.activate()
        # Each pool thread takes one runner for its lifetime; a barrier makes the pool start
        # all its threads now. In run() every thread pulls requests from a shared index
        # until none are left, so the threads stay busy until the last request.
        self._local, unclaimed = threading.local(), queue.SimpleQueue()
        for worker in workers:
            unclaimed.put(worker)

        def claim_runner() -> None:
            self._local.runner = unclaimed.get_nowait()

        self._pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="deploylab-requests",
                                        initializer=claim_runner)
        barrier = threading.Barrier(self.in_flight)
        for future in [self._pool.submit(barrier.wait, 60) for _ in range(self.in_flight)]:
            future.result()

    def run(self, feeds: list[Mapping[str, object]]) -> list[dict[str, np.ndarray]]:
        """Outputs of every feed, ``in_flight`` requests at a time, in the order of ``feeds``."""
        feeds = list(feeds)
        if self._pool is None:
            return self.runner.infer_queued(feeds, self.in_flight)
        results: list = [None] * len(feeds)
        lock, next_index = threading.Lock(), [0]

        def work() -> None:
            own = self._local.runner
            while True:
                with lock:
                    index = next_index[0]
                    if index >= len(feeds):
                        return
                    next_index[0] += 1
                results[index] = own.infer(feeds[index])

        for future in [self._pool.submit(work) for _ in range(self.in_flight)]:
            future.result()
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for worker in self._workers:
            if worker is not self.runner:
                worker.deactivate()
        self._workers = []

    def __enter__(self) -> RequestPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def benchmark_point_concurrent(
    point: BenchPoint,
    requests: int,
    *,
    total_items: int | None = None,
    seconds: float | None = None,
    rounds: int = 5,
    warmup: int = 1,
    runner_factory: Callable[[], object] | None = None,
) -> BenchmarkResult:
    """Throughput of one checked point with ``requests`` in flight (see :func:`benchmark_concurrent`)."""
    batch_size = point.batch_size
    requests = positive_int(requests, "requests")
    rounds = positive_int(rounds, "rounds")
    seconds = positive_seconds(seconds)
    if total_items is None and seconds is None:
        total_items = REQUESTS_PER_WORKER_PER_ROUND * requests * rounds * batch_size
    total_requests = None
    if total_items is not None:
        total_requests = -(-positive_int(total_items, "total_items") // batch_size)
        per_round = -(-total_requests // rounds)
    else:
        per_round = REQUESTS_PER_WORKER_PER_ROUND * requests
    feed = point.feed

    samples: list[int] = []
    done = 0
    with RequestPool(point.runner, requests, runner_factory) as pool:
        for _ in range(max(0, int(warmup))):
            pool.run([feed] * requests)
        start = time.perf_counter()
        while (not samples or (total_requests is not None and done < total_requests)
               or (seconds is not None and time.perf_counter() - start < seconds)):
            t0 = time.perf_counter_ns()
            pool.run([feed] * per_round)
            samples.append(time.perf_counter_ns() - t0)
            done += per_round
    stats = summarize_timings(f"{point.label} x{requests}", samples, per_round * batch_size)
    throughput = done * batch_size / (sum(samples) / 1e9)
    return point.result(stats, mode="async", concurrency=requests, throughput_per_s=throughput)


def benchmark_concurrent(
    runner,
    batch_size: int,
    requests: int,
    *,
    total_items: int | None = None,
    seconds: float | None = None,
    rounds: int = 5,
    warmup: int = 1,
    seed: int = 0,
    name: str | None = None,
    runner_factory: Callable[[], object] | None = None,
) -> BenchmarkResult:
    """Throughput (items/s) with ``requests`` inferences of ``batch_size`` in flight at once.

    Requests run in a :class:`RequestPool` (OpenVINO's ``AsyncInferQueue``, else one
    thread and one runner per request in flight). The work is a fixed number of items
    (``total_items``, rounded up to whole requests; default ``8 * requests * rounds``
    requests) split into ``rounds`` timed rounds, or rounds of ``8 * requests`` requests
    until ``seconds`` have passed (given both, whichever takes longer). ``warmup`` untimed
    rounds of ``requests`` requests come first. Returns a ``mode="async"`` result whose
    ``stats`` are the round wall times and whose ``throughput_per_s`` is all items over
    the summed round time. The batch size is checked against the runner's bounds first
    (:func:`deploylab.bench.run.prepare_point`).
    """
    point = prepare_point(runner, batch_size, seed=seed, name=name)
    return benchmark_point_concurrent(point, requests, total_items=total_items, seconds=seconds, rounds=rounds,
                                      warmup=warmup, runner_factory=runner_factory)
