"""Serving a deployed model over HTTP on Ray Serve, with dynamic batching.

One Ray Serve deployment (:class:`ModelServer`) wraps any deploylab runner: ``POST /predict`` takes
image bytes (JPEG/PNG, preprocessed as the model file's metadata says) or JSON
``{"array": [...], "shape": [...]}`` of a preprocessed input, and answers
``{"top_k": [{"class", "index", "score"}, ...], "batch_size": n}``; ``GET /health`` answers once the
replica has built and warmed its engine. Requests are gathered into batches by ``@serve.batch``
(at most ``max_batch`` rows, waiting at most ``batch_wait_ms`` for a batch to fill), checked at start
against the batch sizes the engine was built for.

Flow control is Ray Serve's own (read in ray 2.60.0, ``serve/config.py`` ``BackpressureConfig`` and
``serve/api.py`` ``deployment``): a replica holds at most ``max_ongoing_requests`` requests, the
router queues at most ``max_queued_requests`` more, and beyond that the proxy answers 503 with a
``Retry-After`` header. Shutdown (``serve.shutdown()``) lets replicas finish the requests they hold,
up to ``graceful_shutdown_timeout_s``.

:class:`Server` starts Ray (locally, or on the cluster at ``address``), Serve's HTTP proxy on
``host:port`` (loopback by default), and the app; ``stop()`` drains and stops all of it.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.serve.ray_local import ray_module, start_ray
from deploylab.serve.requests import DEFAULT_MAX_BODY_BYTES, MAX_IMAGE_PIXELS

APP_NAME = "deploylab"
#: Seconds a replica may take to finish the requests it holds when the server stops.
DRAIN_SECONDS = 30.0
#: The server this process started and has not stopped (Serve runs one HTTP proxy per Ray instance).
_RUNNING: list = []


@dataclass(frozen=True)
class ServeConfig:
    """Everything a server is started with. ``max_ongoing`` (per replica) and ``max_queued`` (for the
    deployment) default to 2 x ``max_batch`` (at least 8) and 4 x ``max_batch`` x ``replicas`` (at least
    32); ``threads`` (engine threads per replica) defaults to this machine's cores shared between the
    replicas. ``spinning``: whether idle engine threads spin waiting for the next batch (ONNX Runtime's
    ``allow_spinning``; off by default: on a server, spinning takes the cores that the HTTP proxy and
    the request handling need)."""

    model: str
    backend: str | None = None
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    replicas: int = 1
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_ongoing: int | None = None
    max_queued: int | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    top_k: int = 5
    retry_after_s: int = 1
    spinning: bool = False
    address: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def engine_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.replicas)

    @property
    def ongoing_limit(self) -> int:
        return self.max_ongoing or max(2 * self.max_batch, 8)

    @property
    def queue_limit(self) -> int:
        return self.max_queued if self.max_queued is not None else max(32, 4 * self.max_batch * self.replicas)

    def checked(self) -> ServeConfig:
        """This config, after the checks that need no engine (each refusal names the value)."""
        model = Path(self.model)
        if not model.is_file():
            raise DeployLabError(f"model {self.model!r} does not exist; give an .onnx, .xml or .plan file")
        limits = {"max_batch": (self.max_batch, 1, 4096), "replicas": (self.replicas, 1, 64),
                  "port": (self.port, 1, 65535), "top_k": (self.top_k, 1, 1000),
                  "max_body_bytes": (self.max_body_bytes, 1, 2**31), "retry_after_s": (self.retry_after_s, 0, 3600)}
        for name, (value, low, high) in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise DeployLabError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        if not (math.isfinite(self.batch_wait_ms) and 0 <= self.batch_wait_ms <= 10_000):
            raise DeployLabError(f"batch wait must be from 0 to 10000 ms, got {self.batch_wait_ms!r}")
        if self.max_ongoing is not None and self.max_ongoing < self.max_batch:
            raise DeployLabError(f"max_ongoing {self.max_ongoing} is below max_batch {self.max_batch}: a replica "
                                 "could never hold a full batch; give at least max_batch")
        if self.max_queued is not None and (isinstance(self.max_queued, bool) or not isinstance(self.max_queued, int)
                                            or self.max_queued < 1):
            raise DeployLabError(f"max_queued must be an integer >= 1 (Ray Serve takes no smaller queue), "
                                 f"got {self.max_queued!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise DeployLabError(f"threads must be a positive integer (or None for the default), got {self.threads!r}")
        return replace(self, model=str(model.resolve()))


def _wait_for_cpus(ray, seconds: float = 10.0) -> None:
    """Wait until the stopped replicas' CPUs are free again, so work started next (a Ray Data job)
    does not queue for them."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0):
            return
        time.sleep(0.1)


def _check_batch(config: ServeConfig) -> None:
    """Refuse a max batch the engine was not built for (its bounds read from the artifact, no Ray)."""
    from deploylab.backends.registry import backend_for_artifact, make_runner, spec_for
    from deploylab.serve.requests import serving_batch

    backend = config.backend or backend_for_artifact(config.model)
    probe = make_runner(backend, config.model, **spec_for(backend).runner_options())
    serving_batch(probe, config.max_batch)
    probe.deactivate()


def _check_cpus(ray, config: ServeConfig) -> None:
    """Refuse replicas x threads beyond Ray's CPUs (the replicas would wait for CPUs for ever)."""
    cpus = ray.cluster_resources().get("CPU", 0)
    need = config.replicas * config.engine_threads
    if need > cpus:
        raise DeployLabError(f"{config.replicas} replicas x {config.engine_threads} threads need {need} CPUs, but Ray "
                             f"has {cpus:g}: give fewer --replicas or --threads (replicas x threads <= {cpus:g})")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the system's choice), for a server that needs one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _deployment(config: ServeConfig):
    """The Ray Serve deployment of :class:`ModelServer` with ``config``'s limits."""
    ray_module()
    from ray import serve
    from ray.serve.config import BackpressureConfig

    from deploylab.serve.replica import ModelServer

    return serve.deployment(
        ModelServer, name="ModelServer", num_replicas=config.replicas,
        max_ongoing_requests=config.ongoing_limit, max_queued_requests=config.queue_limit,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=config.retry_after_s),
        graceful_shutdown_timeout_s=DRAIN_SECONDS, graceful_shutdown_wait_loop_s=0.5,
        ray_actor_options={"num_cpus": config.engine_threads,
                           "runtime_env": {"env_vars": {"OPENCV_IO_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS)}}},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )


class Server:
    """A running service: ``Server(config).start()``, then ``url``/``predict_url``; ``stop()`` drains
    in-flight requests and stops the app, Serve and the Ray instance the start created.

    Also a context manager. ``keep_ray=True`` leaves Ray running after ``stop()`` for the next server
    (a notebook comparing settings starts Ray once)."""

    def __init__(self, config: ServeConfig, keep_ray: bool = False):
        self.config = config.checked()
        self.keep_ray = keep_ray
        self._started_ray = False
        self.running = False
        self.start_seconds = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self.config.port}"

    @property
    def predict_url(self) -> str:
        return f"{self.url}/predict"

    def start(self) -> Server:
        config = self.config
        _check_batch(config)  # refused here, before Ray starts, with the reason
        if _RUNNING and _RUNNING[0] is not self and _RUNNING[0].running:
            other = _RUNNING[0]
            raise DeployLabError(f"a server is already running in this process ({other.url}, "
                                 f"{Path(other.config.model).name}); Ray Serve runs one per Ray instance: "
                                 "stop it first")
        t0 = time.perf_counter()
        self._started_ray = start_ray(config.address) or self._started_ray
        ray = ray_module()
        from ray import serve

        try:
            _check_cpus(ray, config)
        except DeployLabError:
            self._stop_ray()
            raise
        if not _port_free(config.host, config.port):
            self._stop_ray()
            raise DeployLabError(f"port {config.port} on {config.host} is in use; pass another --port")
        import logging

        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # one INFO line per deploy otherwise
        serve.start(http_options={"host": config.host, "port": config.port},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
        try:
            from deploylab.serve.replica import Gate

            self._gate = Gate.remote()
            serve.run(_deployment(config).bind(config, self._gate), name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:  # the replica's constructor failed: say why in one line
            self.stop()
            from deploylab.text import first_line

            raise DeployLabError(f"the server did not start: {first_line(exc, limit=400)}") from exc
        self.running = True
        _RUNNING[:] = [self]
        self.start_seconds = time.perf_counter() - t0
        return self

    def reconfigure(self, **changes) -> Server:
        """The running app redeployed with ``changes`` to its config (max_batch, batch_wait_ms, limits,
        threads...; not host or port: Serve's HTTP proxy keeps those until it stops). The old
        replicas drain first; Ray and the proxy stay up, so this takes seconds, not a restart."""
        if not self.running:
            raise DeployLabError("the server is not running; start() it first")
        if {"host", "port", "address"} & set(changes):
            raise DeployLabError("host, port and address stay as started; stop() and start a new Server to change them")
        config = replace(self.config, **changes).checked()
        _check_batch(config)  # everything that can be refused is, before the drain
        ray = ray_module()
        _check_cpus(ray, config)
        from ray import serve

        from deploylab.serve.replica import Gate

        t0, previous = time.perf_counter(), self.config
        deployment = _deployment(config)
        self._drain()  # new arrivals get 503 + Retry-After until the new replicas are up
        try:
            self.config, self._gate = config, Gate.remote()
            serve.run(deployment.bind(config, self._gate), name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:  # the new replicas failed: bring the previous config back, say why
            from deploylab.text import first_line

            self.config, self._gate = previous, Gate.remote()
            serve.run(_deployment(previous).bind(previous, self._gate), name=APP_NAME, route_prefix="/",
                      blocking=False)
            raise DeployLabError(f"the new settings did not start ({first_line(exc, limit=300)}); the server "
                                 "runs its previous settings again") from exc
        self.start_seconds = time.perf_counter() - t0
        return self

    def _drain(self) -> None:
        """Close the gate and wait (at most :data:`DRAIN_SECONDS`) until no replica holds a request."""
        ray = ray_module()
        gate = getattr(self, "_gate", None)
        if gate is None:
            return
        ray.get(gate.close.remote())
        deadline, quiet = time.perf_counter() + DRAIN_SECONDS, 0
        while time.perf_counter() < deadline and quiet < 2:  # drained twice in a row: nothing was on its way
            quiet = quiet + 1 if ray.get(gate.drained.remote(self.config.replicas)) else 0
            time.sleep(0.05)
        ray.kill(gate)
        self._gate = None

    def _stop_ray(self) -> None:
        if self._started_ray and not self.keep_ray:
            ray_module().shutdown()
            self._started_ray = False

    def stop(self) -> None:
        """Drain and stop: replicas finish what they hold (up to :data:`DRAIN_SECONDS`), then Serve
        and, unless ``keep_ray``, the Ray instance :meth:`start` created."""
        ray = ray_module()
        if ray.is_initialized():
            from ray import serve

            if self.running:
                self._drain()
                serve.delete(APP_NAME, _blocking=True)
            serve.shutdown()
            _wait_for_cpus(ray)
        self.running = False
        if _RUNNING and _RUNNING[0] is self:
            _RUNNING.clear()
        self._stop_ray()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> dict:
        data = asdict(self.config)
        data.update(url=self.url, max_ongoing=self.config.ongoing_limit, max_queued=self.config.queue_limit,
                    threads=self.config.engine_threads)
        return data
