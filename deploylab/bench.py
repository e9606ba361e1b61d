"""Timing method: warm-up, repeated timed calls with ``perf_counter_ns``, robust statistics.

Timings are only compared as ratios measured in the same process, never asserted as
absolute times: a laptop, a CI runner and a loaded machine differ by more than the
effects being measured.

On top of the timing loop: :func:`benchmark_runner` (one runner, one batch size),
:func:`benchmark_concurrent` (throughput with several requests in flight),
:func:`sweep` over runners and batch sizes into :class:`SweepResults` (JSON/CSV files
that carry the machine they were measured on), and :func:`harness_overhead_us`, the
harness's own cost per timed call.
"""

from __future__ import annotations

import csv
import json
import queue
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError


# A percentile is only printed when the samples can support it: the 90th needs at least
# 20 samples (two above it), the 99th at least 100. Below that they are None.
MIN_SAMPLES_P90 = 20
MIN_SAMPLES_P99 = 100


@dataclass
class TimingStats:
    """Per-call latency statistics in milliseconds over ``repeats`` timed calls.

    ``q1_ms``/``q3_ms`` are the quartiles (their distance, the IQR, is the spread);
    ``p90_ms`` is None below :data:`MIN_SAMPLES_P90` samples and ``p99_ms`` below
    :data:`MIN_SAMPLES_P99`. ``method`` says how the samples were taken (``"calls"``:
    back to back; ``"interleaved"``; ``"blocks ..."``: see :func:`time_blocks`).
    """

    label: str
    repeats: int
    median_ms: float
    mean_ms: float
    min_ms: float
    q1_ms: float
    q3_ms: float
    p90_ms: float | None
    p99_ms: float | None
    stdev_ms: float
    items_per_call: int = 1
    method: str = "calls"

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        return self.items_per_call * 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @property
    def spread(self) -> float:
        """IQR / median: how noisy the measurement was (0.05 = the middle half within 5 %)."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def upper_ms(self) -> float:
        """The upper end to draw or quote: p90 where the samples support it, else q3."""
        return self.p90_ms if self.p90_ms is not None else self.q3_ms

    def per_item(self) -> TimingStats:
        """The same statistics per item (times divided by ``items_per_call``), to compare a
        batch of 8 with single calls on equal terms."""
        k = max(1, self.items_per_call)
        scaled = {name: (value / k if name.endswith("_ms") and value is not None else value)
                  for name, value in asdict(self).items()}
        return TimingStats(**{**scaled, "items_per_call": 1})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["throughput_per_s"] = self.throughput
        return data

    def spread_text(self) -> str:
        """``"n=30, min 7.9, IQR 8.1-8.6, p90 9.0 ms"``: the sample count and the spread it supports."""
        text = f"n={self.repeats}, min {self.min_ms:.3g}, IQR {self.q1_ms:.3g}-{self.q3_ms:.3g}"
        if self.p90_ms is not None:
            text += f", p90 {self.p90_ms:.3g}"
        if self.p99_ms is not None:
            text += f", p99 {self.p99_ms:.3g}"
        return text + " ms"

    def format(self) -> str:
        return f"{self.label}: median {self.median_ms:.3f} ms ({self.spread_text()}), {self.throughput:.1f} items/s"


def summarize_timings(label: str, samples_ns: list[int] | np.ndarray, items_per_call: int = 1,
                      method: str = "calls") -> TimingStats:
    """Statistics of raw per-call durations in nanoseconds (percentiles only where n supports them)."""
    if len(samples_ns) == 0:
        raise DeployLabError(f"no timings for {label!r}: repeats must be at least 1")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    q1, median, q3 = np.percentile(ms, (25, 50, 75))
    return TimingStats(
        label=label,
        repeats=len(ms),
        median_ms=float(median),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        q1_ms=float(q1),
        q3_ms=float(q3),
        p90_ms=float(np.percentile(ms, 90)) if len(ms) >= MIN_SAMPLES_P90 else None,
        p99_ms=float(np.percentile(ms, 99)) if len(ms) >= MIN_SAMPLES_P99 else None,
        stdev_ms=float(statistics.pstdev(ms)) if len(ms) > 1 else 0.0,
        items_per_call=items_per_call,
        method=method,
    )


@dataclass
class TimingComparison:
    """Two timings side by side: ``ratio`` = slower median / faster median, and whether it is real.

    ``measurable`` is False when either median lies inside the other's interquartile
    range: the difference is then smaller than the noise of the measurement.
    """

    faster: TimingStats
    slower: TimingStats
    ratio: float
    measurable: bool

    def sentence(self, unit: str = "faster") -> str:
        """``"ort is 2.10x faster than eager"`` or ``"no measurable difference between ..."``."""
        a, b = self.faster.label, self.slower.label
        if not self.measurable:
            return (f"no measurable difference between {a} and {b} ({self.ratio:.2f}x, within the spread of "
                    f"the measurements)")
        return f"{a} is {self.ratio:.2f}x {unit} than {b}"


def compare_timings(a: TimingStats, b: TimingStats, a_label: str | None = None,
                    b_label: str | None = None) -> TimingComparison:
    """Which of two timings is faster, by how much, and whether the difference exceeds the spread.

    ``a_label``/``b_label`` name them in the sentence (default: their own labels).
    """
    from dataclasses import replace

    a = replace(a, label=a_label) if a_label else a
    b = replace(b, label=b_label) if b_label else b
    faster, slower = (a, b) if a.median_ms <= b.median_ms else (b, a)
    ratio = slower.median_ms / faster.median_ms if faster.median_ms > 0 else float("inf")
    within = (slower.q1_ms <= faster.median_ms <= slower.q3_ms) or (faster.q1_ms <= slower.median_ms <= faster.q3_ms)
    return TimingComparison(faster, slower, ratio, measurable=not within)


def time_call(
    fn: Callable[[], object],
    label: str = "call",
    warmup: int = 5,
    repeats: int = 50,
    min_seconds: float = 0.0,
    items_per_call: int = 1,
) -> TimingStats:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls (more if
    ``min_seconds`` has not elapsed), each measured with ``time.perf_counter_ns``."""
    if repeats < 1 or warmup < 0:
        raise DeployLabError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    return summarize_timings(label, _timed_calls(fn, warmup, repeats, min_seconds), items_per_call, method="calls")


def _timed_calls(fn: Callable[[], object], warmup: int, count: int, min_seconds: float = 0.0) -> list[int]:
    """``warmup`` untimed calls, then ``count`` timed ones (more until ``min_seconds``), in ns."""
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < count or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return samples


def _rotating_rounds(conditions: Mapping[str, Callable[[], list[int]]], rounds: int, pause_s: float,
                     method: str, items_per_call: int | Mapping[str, int] = 1) -> dict[str, TimingStats]:
    """Run every condition once per round after a pause, the order rotating from round to round;
    each condition's median is the median of its per-round medians, the rest from all samples."""
    keys = list(conditions)
    samples: dict[str, list[int]] = {k: [] for k in keys}
    medians: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            time.sleep(pause_s)
            got = conditions[key]()
            samples[key] += got
            medians[key].append(float(np.median(got)))
    results = {}
    for key in keys:
        items = items_per_call[key] if isinstance(items_per_call, Mapping) else items_per_call
        results[key] = summarize_timings(key, samples[key], items, method=method)
        results[key].median_ms = float(np.median(medians[key])) / 1e6
    return results


def time_interleaved(
    fns: dict[str, Callable[[], object]], warmup: int = 5, repeats: int = 50, items_per_call: int = 1
) -> dict[str, TimingStats]:
    """Time several callables in alternation (ABAB...), so drift in machine load hits all alike.

    Only for A/B pairs of the *same* engine (e.g. ``session.run`` vs IO binding on one
    session). Never across engines: an engine's worker threads keep spinning for a while
    after a call returns and take the cores from the next engine's call (ONNX Runtime's
    intra-op pool, OpenMP, OpenVINO's executor). Compare engines with :func:`time_blocks`.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[int]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn()
            samples[key].append(time.perf_counter_ns() - t0)
    return {k: summarize_timings(k, v, items_per_call, method="interleaved") for k, v in samples.items()}


# After a call, ONNX Runtime's and OpenMP's idle workers spin before they park. A pause this
# long between two engines' blocks lets them park. Measured with :func:`spin_park_time`
# (notebook 05, benchmarks/bench_peers.py --park): on a 2-core Xeon a spinning ORT session
# still slowed PyTorch eager 1.3x after a 20 ms pause and no longer after 50 ms; 0.2 s leaves
# a margin for slower machines.
DEFAULT_BLOCK_PAUSE_S = 0.2


def time_blocks(
    fns: dict[str, Callable[[], object]],
    rounds: int = 5,
    block: int = 20,
    warmup: int = 3,
    pause_s: float = DEFAULT_BLOCK_PAUSE_S,
    items_per_call: int | Mapping[str, int] = 1,
    min_block_seconds: float = 0.0,
) -> dict[str, TimingStats]:
    """The cross-engine method: engine by engine in blocks, with pauses, rounds rotating the order.

    Each round runs, for every callable in turn, ``pause_s`` of idle time (so the previous
    engine's spinning threads park), ``warmup`` untimed calls, then ``block`` timed calls
    (more until ``min_block_seconds`` have passed). The order rotates from round to round,
    so no callable always follows the same neighbour. The reported median is the median
    over rounds of the block medians (slow drift in machine load moves whole blocks, not
    the ranking); min, quartiles and percentiles come from all samples. ``items_per_call``
    may differ per callable (a dict), e.g. to compare one batch of 8 with 8 single calls.
    """
    if rounds < 1 or block < 1 or warmup < 0 or pause_s < 0 or min_block_seconds < 0:
        raise DeployLabError(f"rounds and block must be >= 1, warmup, pause_s and min_block_seconds >= 0; got "
                             f"rounds={rounds}, block={block}, warmup={warmup}, pause_s={pause_s}, "
                             f"min_block_seconds={min_block_seconds}")
    blocks = {key: (lambda fn=fn: _timed_calls(fn, warmup, block, min_block_seconds)) for key, fn in fns.items()}
    method = f"blocks: {rounds} rounds of >= {block} calls, {pause_s:g} s pause, rotating order"
    return _rotating_rounds(blocks, rounds, pause_s, method, items_per_call)


@dataclass
class Contention:
    """One engine's call timed alone, call by call next to other engines, and by the block method.

    ``stats`` maps each condition (``"alone"``, ``"interleaved with NAME"``, ``"blocks after NAME"``)
    to the victim's timings; medians are medians of the per-round medians (the conditions
    alternate round by round, so slow drift in machine load hits them all alike).
    """

    stats: dict[str, TimingStats]
    pause_s: float

    def slowdown(self, condition: str) -> float:
        return self.stats[condition].median_ms / self.stats["alone"].median_ms

    def format(self) -> str:
        width = max(len(k) for k in self.stats)
        return "\n".join(f"  {name:<{width}}  median {s.median_ms:7.2f} ms  ({s.spread_text()})  "
                         f"{self.slowdown(name):4.2f}x alone" for name, s in self.stats.items())

    def verdict(self, condition: str) -> str:
        """``"interleaved with X: 2.29x the time alone"``, or no measurable difference from alone."""
        found = compare_timings(self.stats[condition], self.stats["alone"])
        if not found.measurable:
            return (f"{condition}: no measurable difference from alone ({self.slowdown(condition):.2f}x, within "
                    f"the spread)")
        return f"{condition}: {self.slowdown(condition):.2f}x the time alone"


def measure_contention(
    victim: Callable[[], object],
    neighbours: Mapping[str, Callable[[], object]],
    rounds: int = 4,
    calls: int = 10,
    warmup: int = 2,
    pause_s: float = DEFAULT_BLOCK_PAUSE_S,
) -> Contention:
    """Time ``victim`` alone, interleaved call by call with each neighbour, and in blocks after each.

    Every round measures every condition once (``calls`` timed victim calls each, after a
    pause of ``pause_s``), in an order that rotates from round to round. "Interleaved"
    alternates one neighbour call and one timed victim call, the way a call-by-call
    benchmark of two engines does; "blocks" runs ``calls`` neighbour calls, pauses, then
    times the victim's block: the method of :func:`time_blocks`.
    """
    rounds, calls = _positive_int(rounds, "rounds"), _positive_int(calls, "calls")
    if not neighbours:
        raise DeployLabError("measure_contention needs at least one neighbour")

    def timed_victim(before_each=None) -> list[int]:
        out = []
        for _ in range(calls):
            if before_each is not None:
                before_each()
            t0 = time.perf_counter_ns()
            victim()
            out.append(time.perf_counter_ns() - t0)
        return out

    def alone() -> list[int]:
        for _ in range(warmup):
            victim()
        return timed_victim()

    def interleaved(neighbour) -> Callable[[], list[int]]:
        def run() -> list[int]:
            for _ in range(warmup):
                neighbour()
                victim()
            return timed_victim(before_each=neighbour)
        return run

    def blocks(neighbour) -> Callable[[], list[int]]:
        def run() -> list[int]:
            for _ in range(calls):
                neighbour()
            time.sleep(pause_s)
            for _ in range(warmup):
                victim()
            return timed_victim()
        return run

    conditions: dict[str, Callable[[], list[int]]] = {"alone": alone}
    for name, fn in neighbours.items():
        conditions[f"interleaved with {name}"] = interleaved(fn)
    for name, fn in neighbours.items():
        conditions[f"blocks after {name}"] = blocks(fn)
    method = f"{rounds} rounds of {calls} calls per condition, rotating order, {pause_s:g} s pauses"
    return Contention(_rotating_rounds(conditions, rounds, pause_s, method), pause_s)


@dataclass
class SpinParkTime:
    """How much a spinning neighbour slows the next call, by pause between them.

    ``with_ms[i]``: the victim's median right after the neighbour's call and a pause of
    ``pauses_ms[i]``; ``alone_ms[i]``: the same with no neighbour call (so the victim's own
    threads have been idle about as long). ``park_ms`` is the shortest pause from which
    on the slowdown stays under ``threshold`` (None if none did).
    """

    pauses_ms: list[float]
    with_ms: list[float]
    alone_ms: list[float]
    threshold: float
    samples_per_pause: int

    @property
    def slowdown(self) -> list[float]:
        return [w / a if a > 0 else float("inf") for w, a in zip(self.with_ms, self.alone_ms)]

    @property
    def park_ms(self) -> float | None:
        ratios = self.slowdown
        for i, pause in enumerate(self.pauses_ms):
            if all(x < self.threshold for x in ratios[i:]):
                return pause
        return None

    def format(self) -> str:
        lines = [f"pause after the neighbour   victim alone   after the neighbour   slowdown   "
                 f"(medians, n={self.samples_per_pause} each)"]
        lines += [f"  {pause:8.1f} ms               {alone:8.2f} ms     {with_:8.2f} ms          {x:5.2f}x"
                  for pause, alone, with_, x in zip(self.pauses_ms, self.alone_ms, self.with_ms, self.slowdown)]
        park = self.park_ms
        lines.append(f"the neighbour's threads stop slowing the next call after a pause of {park:g} ms "
                     f"(slowdown < {self.threshold:.2f}x from there on)" if park is not None
                     else f"no pause tried brought the slowdown under {self.threshold:.2f}x")
        return "\n".join(lines)


def spin_park_time(
    neighbour: Callable[[], object],
    victim: Callable[[], object],
    pauses_ms=(0, 1, 2, 5, 10, 50, 200),
    samples: int = 15,
    threshold: float = 1.1,
) -> SpinParkTime:
    """Measure how long after a call an engine's threads keep stealing cores from the next one.

    For each pause, ``samples`` times: call ``neighbour``, sleep the pause, time one call
    of ``victim``; then the same without the neighbour's call. Use a victim that needs all
    cores (e.g. PyTorch eager with ``threads`` = the core count) and a neighbour whose pool
    spins (ONNX Runtime's default). The pause :func:`time_blocks` uses must exceed ``park_ms``.
    """
    samples = _positive_int(samples, "samples")
    pauses = [float(p) for p in pauses_ms]
    if not pauses or min(pauses) < 0:
        raise DeployLabError(f"pauses_ms must be non-negative milliseconds, got {pauses_ms!r}")
    for _ in range(3):
        neighbour()
        victim()

    def victim_after(pause_ms: float, with_neighbour: bool) -> float:
        timed = []
        for _ in range(samples):
            if with_neighbour:
                neighbour()
            time.sleep(pause_ms / 1000.0)
            t0 = time.perf_counter_ns()
            victim()
            timed.append(time.perf_counter_ns() - t0)
        return float(np.median(timed)) / 1e6

    with_ms, alone_ms = [], []
    for pause in pauses:
        with_ms.append(victim_after(pause, with_neighbour=True))
        time.sleep(DEFAULT_BLOCK_PAUSE_S)
        alone_ms.append(victim_after(pause, with_neighbour=False))
    return SpinParkTime(pauses, with_ms, alone_ms, threshold, samples)


# ================================================================ runners: one batch size, a sweep, concurrency
# Everything below works on any deploylab Runner. Heavier imports (tqdm, the environment
# probe, the thread pool) happen inside the functions that need them.

BENCH_MODES = ("sync", "async")
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
DEFAULT_REPEATS = 20
# With a time budget but no repeat count, at least this many calls, so p90 means something.
MIN_REPEATS_WITH_BUDGET = 3
# Requests each worker handles per timed round of benchmark_concurrent: enough that the
# start and drain of a round are a small part of it.
REQUESTS_PER_WORKER_PER_ROUND = 8
CSV_COLUMNS = ("runner", "backend", "batch", "mode", "concurrency", "n", "median_ms", "q1_ms", "q3_ms", "p90_ms",
               "p99_ms", "min_ms", "throughput_per_s", "per_item_ms", "threads", "spinning", "precision", "method")
# Rounds per batch size in a sweep: every runner's block runs once per round, order rotating.
DEFAULT_SWEEP_ROUNDS = 3
# OpenVINO reports f32/bf16/f16; deploylab names precisions fp32/bf16/fp16 everywhere.


def _stats_from_dict(data: dict) -> TimingStats:
    fields = TimingStats.__dataclass_fields__
    known = {k: v for k, v in data.items() if k in fields}
    # Files written before quartiles were recorded: the median stands in for them.
    known.setdefault("q1_ms", known.get("median_ms"))
    known.setdefault("q3_ms", known.get("median_ms"))
    return TimingStats(**known)


@dataclass
class BenchmarkResult:
    """One measurement: a runner at one batch size, called synchronously or concurrently.

    ``stats`` are per-call latencies for ``mode="sync"`` (one ``infer`` of ``batch_size``
    items per call). For ``mode="async"`` (``concurrency`` requests in flight) they are
    the wall times of timed rounds of many requests, ``stats.items_per_call`` items each.
    ``throughput_per_s`` is items per second: batch_size * 1000 / median_ms for sync, all
    items / total wall time of the rounds for async. ``threads`` is what the runner was
    asked for (None = the engine's default); ``spinning`` whether its idle worker threads
    spin (ONNX Runtime's ``allow_spinning``; None where the runner does not say);
    ``precision`` what it computes in (fp32 unless the runner reports otherwise, as
    OpenVINO's ``inference_precision`` does).
    """

    runner: str
    backend: str
    batch_size: int
    threads: int | None
    precision: str
    stats: TimingStats
    mode: str = "sync"
    concurrency: int = 1
    throughput_per_s: float | None = None
    spinning: bool | None = None

    def __post_init__(self):
        if self.mode not in BENCH_MODES:
            raise DeployLabError(f"unknown benchmark mode {self.mode!r}; use one of {', '.join(BENCH_MODES)}")
        if self.throughput_per_s is None:
            self.throughput_per_s = self.stats.throughput

    @property
    def per_item_ms(self) -> float:
        """Milliseconds per item at the measured throughput (median_ms / batch_size for sync)."""
        return 1000.0 / self.throughput_per_s if self.throughput_per_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "runner": self.runner, "backend": self.backend, "batch_size": self.batch_size,
            "threads": self.threads, "precision": self.precision, "mode": self.mode,
            "concurrency": self.concurrency, "throughput_per_s": self.throughput_per_s,
            "per_item_ms": self.per_item_ms, "spinning": self.spinning, "stats": self.stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkResult:
        try:
            return cls(runner=data["runner"], backend=data["backend"], batch_size=int(data["batch_size"]),
                       threads=data.get("threads"), precision=data.get("precision", "fp32"),
                       stats=_stats_from_dict(data["stats"]), mode=data.get("mode", "sync"),
                       concurrency=int(data.get("concurrency", 1)), throughput_per_s=data.get("throughput_per_s"),
                       spinning=data.get("spinning"))
        except (KeyError, TypeError) as exc:
            raise DeployLabError(
                f"a benchmark result is missing or has a malformed field ({exc!r}): {data!r:.200}"
            ) from None

    def csv_row(self) -> dict:
        s = self.stats
        def blank(value):
            return "" if value is None else value

        return {"runner": self.runner, "backend": self.backend, "batch": self.batch_size, "mode": self.mode,
                "concurrency": self.concurrency, "n": s.repeats, "median_ms": s.median_ms, "q1_ms": s.q1_ms,
                "q3_ms": s.q3_ms, "p90_ms": blank(s.p90_ms), "p99_ms": blank(s.p99_ms), "min_ms": s.min_ms,
                "throughput_per_s": self.throughput_per_s, "per_item_ms": self.per_item_ms,
                "threads": blank(self.threads), "spinning": blank(self.spinning), "precision": self.precision,
                "method": s.method}

    def format(self) -> str:
        how = "sync" if self.mode == "sync" else f"async x{self.concurrency}"
        return (f"{self.runner} batch {self.batch_size} ({how}): median {self.stats.median_ms:.3f} ms "
                f"({self.stats.spread_text()}), {self.throughput_per_s:.1f} items/s, "
                f"{self.per_item_ms:.4f} ms/item")


@dataclass
class SkippedBatch:
    """A (runner, batch size) a sweep did not measure, and why."""

    runner: str
    backend: str
    batch_size: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DeployLabError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _positive_seconds(value, what: str = "seconds") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise DeployLabError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def parse_sizes(text: str, what: str = "--batch") -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``: positive integers, duplicates dropped, order kept."""
    sizes = []
    for part in str(text).split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise DeployLabError(f"{what} {text!r} must be comma-separated positive integers, e.g. 1,8,32") from None
        if value < 1:
            raise DeployLabError(f"{what} {text!r} contains {value}; sizes must be at least 1")
        if value not in sizes:
            sizes.append(value)
    return tuple(sizes)


def batch_feed(runner, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for ``runner`` with ``batch_size`` rows (see :func:`seeded_feed`).

    The batch dim is dim 0 of the runner's first input; every input that shares its
    symbolic name gets the same size. Other symbolic dims are 1.
    """
    from dataclasses import replace

    from deploylab.backends.base import seeded_feed

    specs = runner.inputs
    dim = specs[0].shape[0] if specs and specs[0].shape else None
    if isinstance(dim, str):
        return seeded_feed(specs, {dim: batch_size}, seed)
    if isinstance(dim, int) and dim >= 0:
        return seeded_feed(specs, {}, seed)
    # An unnamed dynamic dim: give it a name only this feed uses.
    specs = [replace(specs[0], shape=("__batch__",) + tuple(specs[0].shape[1:]))] + specs[1:]
    return seeded_feed(specs, {"__batch__": batch_size}, seed)


def benchmark_runner(
    runner,
    batch_size: int,
    *,
    warmup: int = 3,
    repeats: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    name: str | None = None,
) -> BenchmarkResult:
    """Latency of ``runner.infer`` on a seeded batch of ``batch_size`` (milliseconds per call).

    ``warmup`` untimed calls, then ``repeats`` timed calls, continuing until ``seconds``
    have passed if a time budget is given (with a budget and no ``repeats``, at least 3
    calls; with neither, 20 calls). The batch size is checked against the runner's
    bounds first (:func:`deploylab.batching.check_batch_bounds`). The timed call is the
    public ``infer``, input validation included: :func:`harness_overhead_us` says how much
    that and the clock reads add per call. ``name`` labels the result (default: runner.name).
    """
    from deploylab.batching import check_batch_bounds

    batch_size = _positive_int(batch_size, "batch_size")
    seconds = _positive_seconds(seconds)
    if repeats is None:
        repeats = MIN_REPEATS_WITH_BUDGET if seconds else DEFAULT_REPEATS
    repeats, warmup = _positive_int(repeats, "repeats"), int(warmup)
    check_batch_bounds(runner, batch_size)
    feed = batch_feed(runner, batch_size, seed)
    runner.check(feed)  # a bad feed fails here, not inside the timing loop
    label = name or runner.name
    stats = time_call(lambda: runner.infer(feed), label=f"{label} b{batch_size}", warmup=warmup, repeats=repeats,
                      min_seconds=seconds or 0.0, items_per_call=batch_size)
    settings = runner.settings()
    return BenchmarkResult(label, runner.backend, batch_size, settings.threads, settings.precision, stats,
                           spinning=settings.spinning)


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
        self.in_flight = _positive_int(in_flight, "in_flight")
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
    the summed round time.
    """
    from deploylab.batching import check_batch_bounds

    batch_size = _positive_int(batch_size, "batch_size")
    requests = _positive_int(requests, "requests")
    rounds = _positive_int(rounds, "rounds")
    seconds = _positive_seconds(seconds)
    if total_items is None and seconds is None:
        total_items = REQUESTS_PER_WORKER_PER_ROUND * requests * rounds * batch_size
    total_requests = None
    if total_items is not None:
        total_requests = -(-_positive_int(total_items, "total_items") // batch_size)
        per_round = -(-total_requests // rounds)
    else:
        per_round = REQUESTS_PER_WORKER_PER_ROUND * requests
    check_batch_bounds(runner, batch_size)
    feed = batch_feed(runner, batch_size, seed)
    runner.check(feed)
    label = name or runner.name

    samples: list[int] = []
    done = 0
    with RequestPool(runner, requests, runner_factory) as pool:
        for _ in range(max(0, int(warmup))):
            pool.run([feed] * requests)
        start = time.perf_counter()
        while (not samples or (total_requests is not None and done < total_requests)
               or (seconds is not None and time.perf_counter() - start < seconds)):
            t0 = time.perf_counter_ns()
            pool.run([feed] * per_round)
            samples.append(time.perf_counter_ns() - t0)
            done += per_round
    stats = summarize_timings(f"{label} b{batch_size} x{requests}", samples, per_round * batch_size)
    throughput = done * batch_size / (sum(samples) / 1e9)
    settings = runner.settings()
    return BenchmarkResult(label, runner.backend, batch_size, settings.threads, settings.precision,
                           stats, mode="async", concurrency=requests, throughput_per_s=throughput,
                           spinning=settings.spinning)


# ---------------------------------------------------------------- the harness's own cost
@dataclass
class HarnessOverhead:
    """Median microseconds per timed call of a no-op function and of an engine-less runner."""

    noop_us: float
    empty_runner_us: float

    @property
    def runner_layer_us(self) -> float:
        """What ``Runner.infer`` itself (input checks, dict handling) adds over a bare call."""
        return self.empty_runner_us - self.noop_us


def _empty_runner():
    from deploylab.backends.base import Runner, TensorSpec

    class EmptyRunner(Runner):
        """A runner with no engine: ``_infer`` hands back its (checked) inputs."""

        backend = "empty"

        def _activate(self) -> None:
            pass

        def _describe(self):
            spec = TensorSpec("input", np.dtype(np.float32), ("batch", 1, 32, 32))
            return [spec], [spec]

        def _infer(self, feed):
            return feed

    return EmptyRunner("empty")


def measure_harness_overhead(repeats: int = 2000, warmup: int = 50) -> HarnessOverhead:
    """Time a no-op function and an engine-less runner with the same loop, interleaved."""
    runner = _empty_runner()
    feed = batch_feed(runner, 1)
    stats = time_interleaved({"noop": lambda: None, "empty": lambda: runner.infer(feed)},
                             warmup=warmup, repeats=_positive_int(repeats, "repeats"))
    return HarnessOverhead(stats["noop"].median_ms * 1000.0, stats["empty"].median_ms * 1000.0)


def harness_overhead_us(repeats: int = 2000) -> float:
    """Microseconds the timing loop adds to every timed ``runner.infer`` call.

    Measured as the median timed call of a runner without an engine (its ``_infer``
    returns its input), i.e. the clock reads, the loop and ``Runner.infer``'s input
    checks; a no-op function is timed in alternation as the floor (see
    :func:`measure_harness_overhead` for both numbers). Compare it with the median of a
    fast model at batch 1 to know how much of that number is the harness.
    """
    return measure_harness_overhead(repeats).empty_runner_us


# ---------------------------------------------------------------- sweeps and their files
@dataclass
class SweepResults:
    """Results of a :func:`sweep`, with the machine they were measured on.

    ``environment`` is :func:`deploylab.env.collect_environment`'s dict, ``timestamp`` an
    ISO 8601 UTC time, ``settings`` the sweep's arguments, ``skipped`` every (runner,
    batch size) that was not measured with the reason.
    """

    results: list[BenchmarkResult]
    environment: dict
    timestamp: str
    skipped: list[SkippedBatch] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def runner_names(self) -> list[str]:
        """Runner names in the order they were first measured or skipped."""
        names: dict[str, None] = {}
        for item in [*self.results, *self.skipped]:
            names.setdefault(item.runner, None)
        return list(names)

    def for_runner(self, runner_name: str, mode: str | None = "sync") -> list[BenchmarkResult]:
        """Results of one runner (of one ``mode``; None for all), by batch size."""
        found = [r for r in self.results if r.runner == runner_name and (mode is None or r.mode == mode)]
        return sorted(found, key=lambda r: (r.mode != "sync", r.concurrency, r.batch_size))

    def best_batch(self, runner_name: str, mode: str = "sync") -> int:
        """The batch size with the highest throughput (items/s) for ``runner_name``."""
        found = self.for_runner(runner_name, mode)
        if not found:
            known = ", ".join(map(repr, self.runner_names)) or "none"
            raise DeployLabError(f"no {mode} results for runner {runner_name!r}; runners measured: {known}")
        return max(found, key=lambda r: r.throughput_per_s).batch_size

    def batching_conclusion(self, runner_name: str) -> str:
        """What batching gained for one runner, computed from this sweep's numbers.

        Compares the time per item at the best batch with the smallest batch measured
        (:func:`compare_timings` on per-item statistics, so a gain inside the noise is
        called that) and names the smallest batch already indistinguishable from the best.
        """
        found = self.for_runner(runner_name)
        best_size = self.best_batch(runner_name)
        by_size = {r.batch_size: r for r in found}
        base, best = by_size[min(by_size)], by_size[best_size]
        gain = best.throughput_per_s / base.throughput_per_s
        prefix = (f"{runner_name}: best batch {best_size}, {best.throughput_per_s:.1f} items/s, "
                  f"{gain:.2f}x batch {base.batch_size}'s {base.throughput_per_s:.1f} items/s")
        if best_size == base.batch_size or not compare_timings(best.stats.per_item(), base.stats.per_item()).measurable:
            return f"{prefix}: no measurable gain from batching on this machine"
        plateau = min(size for size, r in by_size.items()
                      if size == best_size or not compare_timings(r.stats.per_item(), best.stats.per_item()).measurable)
        if plateau == max(by_size):
            return f"{prefix}; throughput was still rising at the largest batch measured ({plateau})"
        return f"{prefix}; throughput is within the noise of the best from batch {plateau} on"

    # -- files
    def to_dict(self) -> dict:
        return {"timestamp": self.timestamp, "settings": self.settings, "environment": self.environment,
                "results": [r.to_dict() for r in self.results], "skipped": [s.to_dict() for s in self.skipped]}

    @classmethod
    def from_dict(cls, data: dict) -> SweepResults:
        if not isinstance(data, dict) or "results" not in data:
            raise DeployLabError("not a deploylab sweep: expected a JSON object with a 'results' list")
        try:
            skipped = [SkippedBatch(**s) for s in data.get("skipped", [])]
        except TypeError as exc:
            raise DeployLabError(f"malformed 'skipped' entry in sweep results: {exc}") from None
        return cls([BenchmarkResult.from_dict(r) for r in data["results"]], data.get("environment", {}),
                   data.get("timestamp", ""), skipped, data.get("settings", {}))

    def to_json(self, path: str | Path) -> Path:
        """Write everything (results, skipped batches, environment, settings) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> SweepResults:
        """Read a file written by :meth:`to_json`."""
        path = Path(path)
        if not path.is_file():
            raise DeployLabError(f"sweep results file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DeployLabError(f"{str(path)!r} is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def to_csv(self, path: str | Path) -> Path:
        """One row per result with :data:`CSV_COLUMNS` (times in ms, throughput in items/s)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for result in self.results:
                writer.writerow(result.csv_row())
        return path

    # -- reading
    def table(self) -> str:
        """An aligned text table under a line naming the machine: one line per result, ``*``
        on each runner's best batch, p90/p99 only where the sample count supports them, and
        a note when the runners' thread counts differ (the comparison is then not like for like)."""
        from deploylab.env import machine_line

        head = f"{machine_line(self.environment or {})}; measured {self.timestamp or 'at an unknown time'}"
        header = ("runner", "backend", "batch", "mode", "conc", "n", "median ms", "IQR ms", "p90 ms", "min ms",
                  "items/s", "ms/item", "threads", "spin", "precision", "best")
        best = {}
        for name in self.runner_names:
            if self.for_runner(name):
                best[name] = self.best_batch(name)
        rows = []
        order = {name: i for i, name in enumerate(self.runner_names)}
        for r in sorted(self.results, key=lambda r: (order[r.runner], r.mode != "sync", r.concurrency, r.batch_size)):
            s = r.stats
            rows.append((r.runner, r.backend, str(r.batch_size), r.mode, str(r.concurrency), str(s.repeats),
                         f"{s.median_ms:.3f}", f"{s.q1_ms:.2f}-{s.q3_ms:.2f}",
                         "-" if s.p90_ms is None else f"{s.p90_ms:.3f}", f"{s.min_ms:.3f}",
                         f"{r.throughput_per_s:.1f}", f"{r.per_item_ms:.4f}",
                         "default" if r.threads is None else str(r.threads),
                         "n/a" if r.spinning is None else ("on" if r.spinning else "off"), r.precision,
                         "*" if r.mode == "sync" and best.get(r.runner) == r.batch_size else ""))
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
        numeric = set(range(2, 12))

        def line(cells):
            return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines = [head, line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]
        if not rows:
            lines.append("(no results)")
        for s in self.skipped:
            lines.append(f"skipped {s.runner} batch {s.batch_size}: {s.reason}")
        methods = sorted({r.stats.method for r in self.results if r.mode == "sync"})
        if methods:
            lines.append("sync rows: " + "; ".join(methods) + f"; p90 needs n >= {MIN_SAMPLES_P90}")
        if any(r.mode == "async" for r in self.results):
            lines.append("async rows: n, median, IQR, min are wall times of rounds of many requests, not latencies")
        threads = {r.runner: r.threads for r in self.results}
        if len(set(threads.values())) > 1 or None in threads.values():
            listed = ", ".join(f"{k}: {'default' if v is None else v}" for k, v in threads.items())
            lines.append(f"note: thread counts are not explicit and equal ({listed}); give every runner the same "
                         f"threads for a like-for-like comparison")
        return "\n".join(lines)


def _named_runners(runners) -> dict:
    if isinstance(runners, Mapping):
        named = dict(runners)
    else:
        named = {}
        for runner in runners:
            if runner.name in named:
                raise DeployLabError(
                    f"two runners are named {runner.name!r}; pass a dict {{name: runner}} to tell them apart"
                )
            named[runner.name] = runner
    if not named:
        raise DeployLabError("no runners to benchmark")
    return named


def sweep(
    runners,
    batch_sizes=DEFAULT_BATCH_SIZES,
    *,
    warmup: int = 3,
    repeats: int | None = None,
    seconds: float | None = None,
    rounds: int = DEFAULT_SWEEP_ROUNDS,
    pause_s: float = DEFAULT_BLOCK_PAUSE_S,
    seed: int = 0,
    concurrency=(),
    progress: bool = True,
) -> SweepResults:
    """Benchmark every runner at every batch size, engines compared by the block method.

    ``runners``: a dict ``{name: runner}`` (the names label the results) or a list of
    runners (labelled by ``runner.name``). Batch sizes a runner does not accept (a fixed
    batch dim, or outside its bounds) are recorded in ``skipped`` with the reason.

    At each batch size the runners are timed with :func:`time_blocks`: ``rounds`` rounds,
    in each a pause of ``pause_s`` (spinning worker threads of the previous engine park),
    ``warmup`` untimed calls and a block of timed calls per runner, the order rotating.
    ``repeats`` timed calls per point in all (default 20, split over the rounds), or at
    least ``seconds`` per point. Each ``concurrency`` value c also measures
    :func:`benchmark_concurrent` with c requests, after a pause. Give every runner the
    same explicit threads: the table notes when they differ. ``progress`` shows a tqdm bar.
    """
    from datetime import datetime, timezone

    from tqdm.auto import tqdm

    from deploylab.batching import check_batch_bounds
    from deploylab.env import collect_environment

    named = _named_runners(runners)
    if isinstance(batch_sizes, (int, np.integer)):
        batch_sizes = (batch_sizes,)
    sizes = list(dict.fromkeys(_positive_int(b, "each batch size") for b in batch_sizes))
    levels = list(dict.fromkeys(_positive_int(c, "each concurrency") for c in concurrency))
    if not sizes:
        raise DeployLabError("batch_sizes is empty; give at least one batch size, e.g. (1, 8, 32)")
    seconds = _positive_seconds(seconds)
    rounds = _positive_int(rounds, "rounds")
    if repeats is None:
        repeats = MIN_REPEATS_WITH_BUDGET if seconds else DEFAULT_REPEATS
    repeats = _positive_int(repeats, "repeats")
    block = -(-repeats // rounds)
    for runner in named.values():
        runner.activate()  # a runner that cannot load fails here, not as a skipped batch
    plan: dict[int, list] = {size: [] for size in sizes}
    skipped = []
    for size in sizes:
        for name, runner in named.items():
            try:
                check_batch_bounds(runner, size)
            except DeployLabError as exc:
                skipped.append(SkippedBatch(name, runner.backend, size, str(exc)))
            else:
                feed = batch_feed(runner, size, seed)
                runner.check(feed)  # a bad feed fails here, not inside the timing loop
                plan[size].append((name, runner, feed))
    settings = {"batch_sizes": sizes, "warmup": warmup, "repeats": repeats, "seconds": seconds, "seed": seed,
                "rounds": rounds, "pause_s": pause_s, "concurrency": levels}
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results = []
    points = sum(len(group) for group in plan.values()) * (1 + len(levels))
    with tqdm(total=points, desc="benchmark", unit="point", disable=not progress) as bar:
        for size, group in plan.items():
            if not group:
                continue
            bar.set_postfix_str(f"batch {size}")
            fns = {name: (lambda r=runner, f=feed: r.infer(f)) for name, runner, feed in group}
            timings = time_blocks(fns, rounds=rounds, block=block, warmup=warmup, pause_s=pause_s,
                                  items_per_call=size, min_block_seconds=(seconds or 0.0) / rounds)
            for name, runner, _ in group:
                stats = timings[name]
                stats.label = f"{name} b{size}"
                how = runner.settings()
                results.append(BenchmarkResult(name, runner.backend, size, how.threads,
                                               how.precision, stats, spinning=how.spinning))
            bar.update(len(group))
            for name, runner, _ in group:
                for level in levels:
                    bar.set_postfix_str(f"{name} batch {size} x{level}")
                    time.sleep(pause_s)
                    results.append(benchmark_concurrent(runner, size, level, seconds=seconds, seed=seed, name=name))
                    bar.update()
    order = {name: i for i, name in enumerate(named)}
    results.sort(key=lambda r: (order[r.runner], r.mode != "sync", r.concurrency, r.batch_size))
    return SweepResults(results, collect_environment(), timestamp, skipped, settings)
