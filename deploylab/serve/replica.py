"""The Ray Serve replica behind ``deploylab serve``: one runner, its request reader and class names,
and the ``@serve.batch`` handler that gathers requests into batches; and the :class:`Gate` every
replica watches so that a stopping server drains. Imported only where Ray is (:mod:`deploylab.serve.app`
imports it when a server starts); Ray pickles the classes by reference.

Draining: Ray Serve's own shutdown cuts off requests still queued in its router (measured on
ray 2.60.0: of 48 requests in flight, the 16 a replica held were answered and 32 were disconnected).
So a stopping server first closes the gate: each replica, within :data:`GATE_POLL_S`, answers
requests that enter it afterwards with 503 and ``Retry-After``, finishes the ones it holds, and
reports how many it holds; the app is deleted once every replica holds none.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
import threading
import time
from pathlib import Path

import ray
from ray import serve

from deploylab.errors import DeployLabError
from deploylab.serve.requests import BadRequest

#: How often a replica reads the gate and reports what it holds.
GATE_POLL_S = 0.05
#: Serve batches that may wait for the engine at once (their samples are merged in the engine queue).
MAX_BATCHES_IN_LINE = 1024


@ray.remote(num_cpus=0)
class Gate:
    """Open while the server serves; closed when it stops. Replicas report their in-flight counts."""

    def __init__(self):
        self.closed = False
        self.holding: dict[str, int] = {}

    def close(self) -> None:
        self.closed = True

    def report(self, replica: str, in_flight: int, seen_closed: bool) -> bool:
        """A replica's count; kept only once the replica has seen the gate closed (from then on it
        takes no new request, so its count only falls). Returns whether the gate is closed."""
        if seen_closed:
            self.holding[replica] = in_flight
        return self.closed

    def drained(self, replicas: int) -> bool:
        """Every replica has seen the gate closed and holds no request."""
        return len(self.holding) >= replicas and not any(self.holding.values())


def _settle(future, result, error) -> None:
    if not future.done():  # a request whose client went away has been cancelled
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class ModelServer:
    """The replica: one runner, its request reader and class names, and the batching handler."""

    def __init__(self, config, gate=None):  # a deploylab.serve.app.ServeConfig, a Gate handle
        from deploylab.backends.registry import backend_for_artifact, make_runner, spec_for
        from deploylab.serve.requests import RequestReader, class_names, preprocessing_for_model, serving_batch

        backend = config.backend or backend_for_artifact(config.model)
        spec = spec_for(backend)
        options = spec.runner_options(threads=config.engine_threads) if spec.thread_option else {}
        if "spinning" in inspect.signature(spec.runner).parameters:
            # idle engine threads must not spin between batches: the proxy and the request handling
            # need those cores (measured with ONNX Runtime's default spinning on 2 cores: the replica
            # took 30 ms of CPU per image for a 6 ms engine call, and served 0.30 of the direct rate)
            options["spinning"] = config.spinning
        self.runner = make_runner(backend, config.model, **options).activate()
        if len(self.runner.inputs) != 1:
            raise DeployLabError(f"{config.model!r} has {len(self.runner.inputs)} inputs; the server feeds one")
        spec = self.runner.inputs[0]
        self.smallest = serving_batch(self.runner, config.max_batch)
        prep, self.preprocessing = preprocessing_for_model(config.model, spec)
        self.reader = RequestReader(spec, prep, config.max_body_bytes)
        self.output = self.runner.outputs[0].name
        width = self.runner.outputs[0].shape[-1] if self.runner.outputs[0].shape else None
        self.classes = class_names(config.model, width if isinstance(width, int) else None)
        self.config = config
        self.gate, self.closed, self.in_flight, self._watch = gate, False, 0, None
        self.replica_id = f"{os.getpid()}-{id(self)}"
        # The engine runs in its own thread, off the event loop, so requests keep arriving while a
        # batch computes; one thread: batches run one at a time (see _engine_loop).
        self._queue, self._queue_lock = collections.deque(), threading.Lock()
        self._queued = threading.Condition(self._queue_lock)
        self.predict_batch.set_max_batch_size(config.max_batch)
        self.predict_batch.set_batch_wait_timeout_s(config.batch_wait_ms / 1000)
        self._run([self.reader_example()])  # warm-up: the first call builds kernels
        threading.Thread(target=self._engine_loop, name="deploylab-engine", daemon=True).start()
        if gate is not None:
            # Serve runs the constructor on the replica's event loop: report from the start, so that a
            # replica that never had a request drains at once too
            try:
                self._watch = asyncio.get_running_loop().create_task(self._watch_gate())
            except RuntimeError:
                pass  # no running loop here: the first request starts the watcher

    def reader_example(self):
        import numpy as np

        from deploylab.serve.requests import sample_shape

        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in sample_shape(self.reader.spec))
        return np.zeros(shape, dtype=self.reader.spec.dtype)

    def _run(self, samples):
        from deploylab.serve.requests import stack_batch

        batch = stack_batch(samples, self.smallest)
        return self.runner.infer({self.reader.spec.name: batch})[self.output][: len(samples)]

    # max_batch_size and the wait are set per server in __init__. max_concurrent_batches: by default
    # (1) each batch holds Serve's semaphore until its answers are back (ray 2.60.0 serve/batching.py,
    # _process_sub_batches), so batches formed meanwhile wait outside, unmerged; with more, they all
    # reach the engine queue below, which merges them.
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005, max_concurrent_batches=MAX_BATCHES_IN_LINE)
    async def predict_batch(self, samples):
        """Answers for a batch of samples, each with (engine batch size, its start, its end). The
        samples join the engine's queue; the engine takes whatever is queued, up to max_batch."""
        from deploylab.serve.requests import answer

        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in samples]
        with self._queue_lock:
            self._queue.extend((sample, future, loop) for sample, future in zip(samples, futures))
            self._queued.notify()
        results = await asyncio.gather(*futures)
        return [(answer(row, self.classes, self.config.top_k, size), began, ended)
                for row, size, began, ended in results]

    def _engine_loop(self):
        """The engine thread: run everything queued (at most max_batch) as one batch, again and again.

        Ray Serve's ``@serve.batch`` forms the next batch while one runs (ray 2.60.0
        ``serve/batching.py``, ``_BatchQueue._process_batches``: ``wait_for_batch`` loops without
        waiting for the running batch), so under load its batches come out small and wait in line;
        merging what has queued here runs them as the one larger batch the engine can take."""
        while True:
            with self._queue_lock:
                while not self._queue:
                    self._queued.wait()
                taken = self._take_one_shape()
            began = time.perf_counter()
            try:
                scores, error = self._run([sample for sample, _, _ in taken]), None
            except Exception as exc:  # noqa: BLE001 - answered as a 500 by each request's handler
                scores, error = None, exc
            ended = time.perf_counter()
            for row, (_, future, loop) in enumerate(taken):
                try:
                    result = None if error else (scores[row], len(taken), began, ended)
                    loop.call_soon_threadsafe(_settle, future, result, error)
                except Exception:  # noqa: BLE001 - a closed loop (replica stopping): nobody waits any more
                    pass

    def _take_one_shape(self) -> list:
        """Up to max_batch queued samples of the first one's shape (inputs with free non-batch dims can
        differ per request, and one batch holds one shape); the others keep their place in the queue."""
        shape = self._queue[0][0].shape
        taken, kept = [], collections.deque()
        while self._queue and len(taken) < self.config.max_batch:
            item = self._queue.popleft()
            (taken if item[0].shape == shape else kept).append(item)
        self._queue.extendleft(reversed(kept))
        return taken

    def health(self) -> dict:
        return {"status": "ready", "model": Path(self.config.model).name, "backend": self.runner.backend,
                "input": self.reader.spec.describe(), "max_batch": self.config.max_batch,
                "batch_wait_ms": self.config.batch_wait_ms, "threads": self.config.engine_threads,
                "images": self.reader.prep is not None, "preprocessing": self.preprocessing}

    async def _watch_gate(self):
        while True:
            try:
                self.closed = await self.gate.report.remote(self.replica_id, self.in_flight, self.closed)
            except Exception:  # noqa: BLE001 - the gate is gone: the server is stopping
                self.closed = True
            await asyncio.sleep(GATE_POLL_S)

    async def __call__(self, request):
        if self.gate is not None and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_gate())
        if self.closed:
            from starlette.responses import JSONResponse

            return JSONResponse({"error": "the server is shutting down; retry later"}, status_code=503,
                                headers={"Retry-After": str(self.config.retry_after_s)})
        self.in_flight += 1
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request):
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/") or "/"
        routes = {"/health": "GET", "/predict": "POST"}
        if path not in routes:
            return JSONResponse({"error": f"no route {path!r}; use POST /predict or GET /health"}, status_code=404)
        if request.method != routes[path]:
            return JSONResponse({"error": f"{path} takes {routes[path]}, not {request.method}"}, status_code=405,
                                headers={"Allow": routes[path]})
        if path == "/health":
            return JSONResponse(self.health())
        try:
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.reader.max_body_bytes:
                raise BadRequest(413, f"request body of {int(declared):,} bytes is over the server's limit of "
                                      f"{self.reader.max_body_bytes:,}; send a smaller image")
            body = await request.body()
            received = time.perf_counter()
            # decoding and preprocessing off the event loop, which keeps accepting and batching meanwhile
            sample = await asyncio.to_thread(self.reader.read, body, request.headers.get("content-type", ""))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        try:
            queued = time.perf_counter()
            result, began, ended = await self.predict_batch(sample)
            # where the time went, in the standard Server-Timing header (ms): decoding and preprocessing,
            # waiting for the batch to form and start, the engine call of the whole batch
            timing = (f"preprocess;dur={(queued - received) * 1e3:.2f}, queue;dur={(began - queued) * 1e3:.2f}, "
                      f"engine;dur={(ended - began) * 1e3:.2f}")
            return JSONResponse(result, headers={"Server-Timing": timing})
        except Exception as exc:  # noqa: BLE001 - the engine failed on a batch: answer 500, keep serving
            from deploylab.text import first_line

            return JSONResponse({"error": f"inference failed: {type(exc).__name__}: {first_line(exc)}"},
                                status_code=500)
