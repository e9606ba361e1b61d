"""Load-testing a served model: N clients at a time, each sending its next request as soon as the last
is answered (a closed loop), for a bounded time and number of requests, at each concurrency level.

Every request is counted once: answered (by status), or failed without an answer (connection
refused or reset, timeout: "lost"). Latency percentiles are of the 200 answers; the batch sizes are
the ``batch_size`` each answer says it ran in, so the table shows what batches the server formed.
Levels run one after another with a pause between, so one level's stragglers do not count in the
next. The client runs threads in this process: on a small machine it shares the cores with the
server, as a real client on the same host would.
"""

from __future__ import annotations

import http.client
import json
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from deploylab.errors import DeployLabError

MAX_LEVEL = 256
MAX_SECONDS = 600.0
MAX_REQUESTS = 1_000_000
#: Seconds a client waits after a 429/503 before it sends again.
BACKOFF_S = 0.05


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an http URL; a URL without a path gets ``/predict``."""
    parts = urlsplit(str(url))
    if parts.scheme != "http" or not parts.hostname:
        raise DeployLabError(f"URL {url!r} must be http://HOST[:PORT][/predict] (https is not supported here)")
    try:
        port = parts.port or 80
    except ValueError:
        raise DeployLabError(f"URL {url!r} has a bad port") from None
    return parts.hostname, port, (parts.path.rstrip("/") or "/predict")


def request_body(path: str | Path) -> tuple[bytes, str]:
    """(body, content type) for a file to send: an image as its bytes, a .json as JSON, a .npy array
    as the JSON ``{"array", "shape"}`` the server takes."""
    path = Path(path)
    if not path.is_file():
        raise DeployLabError(f"input {str(path)!r} does not exist; give an image, a .npy or a .json file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        from deploylab.data.arrays import load_npy

        array = load_npy(path)
        return json.dumps({"array": array.ravel().tolist(), "shape": list(array.shape)}).encode(), "application/json"
    if suffix == ".json":
        return path.read_bytes(), "application/json"
    content = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(suffix, "application/octet-stream")
    return path.read_bytes(), content


@dataclass
class LevelResult:
    """One concurrency level: what came back, and how fast."""

    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # of 200 answers
    statuses: Counter = field(default_factory=Counter)
    batch_sizes: Counter = field(default_factory=Counter)
    lost: int = 0
    retry_after: set = field(default_factory=set)
    server_ms: dict = field(default_factory=dict)  # Server-Timing parts of 200 answers, e.g. "engine": [...]

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + self.lost

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        """Answers with status 200 per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile of the 200 answers' latencies; NaN without the samples to say it (p99
        needs 100, p90 20, as deploylab.bench reports percentiles)."""
        needed = 100 if q > 90 else 20 if q > 50 else 1
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) >= needed else math.nan

    @property
    def mean_batch(self) -> float:
        """The mean size of the batches the server ran: ``batch_sizes`` counts requests by the size of
        the batch each ran in, so a batch of n appears n times; requests / batches."""
        batches = sum(n / size for size, n in self.batch_sizes.items())
        return sum(self.batch_sizes.values()) / batches if batches else math.nan

    def breakdown(self) -> dict[str, float]:
        """Median ms per request in each part the server timed (preprocess, queue, engine), and the
        rest of the client's latency ("http": the proxy, routing, the network and the client)."""
        parts = {name: float(np.median(values)) for name, values in self.server_ms.items() if values}
        if parts and self.latencies_ms and all(len(v) == len(self.latencies_ms) for v in self.server_ms.values()):
            rest = np.array(self.latencies_ms) - np.sum([self.server_ms[n] for n in parts], axis=0)
            parts["http"] = float(np.median(rest))
        return parts

    def to_dict(self) -> dict:
        return {"concurrency": self.concurrency, "seconds": round(self.seconds, 3), "sent": self.sent,
                "ok": self.ok, "throughput": round(self.throughput, 2),
                "p50_ms": self.percentile(50), "p90_ms": self.percentile(90), "p99_ms": self.percentile(99),
                "mean_batch": self.mean_batch, "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "lost": self.lost,
                "retry_after": sorted(self.retry_after), "breakdown_ms": self.breakdown()}


@dataclass
class LoadTestReport:
    url: str
    levels: list[LevelResult]

    def format(self) -> str:
        head = f"{'clients':>7} {'sent':>6} {'ok/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'batch':>5}  errors"
        lines = [f"load test of {self.url}", head]
        for r in self.levels:
            errors = {k: v for k, v in r.statuses.items() if k != 200}
            if r.lost:
                errors["lost"] = r.lost
            text = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items(), key=str)) or "none"
            lines.append(f"{r.concurrency:>7} {r.sent:>6} {r.throughput:>7.1f} {r.percentile(50):>7.1f} "
                         f"{r.percentile(90):>7.1f} {r.percentile(99):>7.1f} {r.mean_batch:>5.1f}  {text}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"url": self.url, "levels": [r.to_dict() for r in self.levels]}


def _server_timing(header: str | None) -> list[tuple[str, float]]:
    """``"engine;dur=12.5, queue;dur=1"`` -> ``[("engine", 12.5), ("queue", 1.0)]`` (the W3C
    Server-Timing syntax; parts without a duration are left out)."""
    parts = []
    for item in (header or "").split(","):
        name, _, params = item.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    parts.append((name, float(value)))
                except ValueError:
                    pass
    return parts


def _client(host, port, path, body, headers, deadline, budget, result, lock, timeout, backoff):
    connection = None
    while time.perf_counter() < deadline:
        with lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        if connection is None:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        t0 = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except Exception:  # noqa: BLE001 - refused, reset, timed out, a bad host name: no answer, counted once
            with lock:
                result.lost += 1
            connection.close()
            connection = None
            time.sleep(0.05)  # a refused connection would otherwise spin
            continue
        elapsed = (time.perf_counter() - t0) * 1000
        with lock:
            result.statuses[response.status] += 1
            if response.status == 200:
                result.latencies_ms.append(elapsed)
                for name, ms in _server_timing(response.getheader("Server-Timing")):
                    result.server_ms.setdefault(name, []).append(ms)
                try:
                    result.batch_sizes[int(json.loads(data)["batch_size"])] += 1
                except (ValueError, KeyError, TypeError):
                    pass
            elif response.getheader("Retry-After"):
                result.retry_after.add(response.getheader("Retry-After"))
        if response.status in (429, 503):
            time.sleep(backoff)  # retrying at once would only burn the cores a local client shares with the server
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def run_level(url: str, body: bytes, content_type: str, concurrency: int, seconds: float,
              max_requests: int | None = None, timeout: float = 60.0, backoff: float = BACKOFF_S) -> LevelResult:
    """``concurrency`` clients for ``seconds`` (or until ``max_requests`` are sent); every request
    sent is in the result once. A client answered 429/503 waits ``backoff`` seconds before its next
    request (not the whole ``Retry-After``: the load stays on)."""
    host, port, path = parse_url(url)
    if not 1 <= concurrency <= MAX_LEVEL:
        raise DeployLabError(f"concurrency must be from 1 to {MAX_LEVEL}, got {concurrency}")
    if not 0 < seconds <= MAX_SECONDS:
        raise DeployLabError(f"seconds must be above 0 and at most {MAX_SECONDS:g}, got {seconds}")
    budget = [min(max_requests or MAX_REQUESTS, MAX_REQUESTS)]
    result, lock = LevelResult(concurrency, 0.0), threading.Lock()
    headers = {"Content-Type": content_type, "Connection": "keep-alive"}
    start = time.perf_counter()
    threads = [threading.Thread(target=_client, daemon=True,
                                args=(host, port, path, body, headers, start + seconds, budget, result, lock, timeout,
                                      backoff))
               for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    return result


def load_test(url: str, input_path: str | Path, concurrency=(1, 4, 16), seconds: float = 10.0,
              max_requests: int | None = None, pause: float = 1.0, progress: bool = True) -> LoadTestReport:
    """Each concurrency level in turn against ``url`` with the file ``input_path`` as every request's
    body; ``pause`` seconds between levels."""
    body, content_type = request_body(input_path)
    levels = []
    for number, level in enumerate(concurrency):
        if number:
            time.sleep(pause)
        if progress:
            print(f"  {level} clients for {seconds:g} s ...", file=sys.stderr, flush=True)
        levels.append(run_level(url, body, content_type, level, seconds, max_requests))
    return LoadTestReport(url, levels)
