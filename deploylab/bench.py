"""Timing method: warm-up, repeated timed calls with ``perf_counter_ns``, robust statistics.

Timings are only compared as ratios measured in the same process, never asserted as
absolute times: a laptop, a CI runner and a loaded machine differ by more than the
effects being measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from deploylab.errors import DeployLabError


@dataclass
class TimingStats:
    """Per-call latency statistics in milliseconds over ``repeats`` timed calls."""

    label: str
    repeats: int
    median_ms: float
    mean_ms: float
    min_ms: float
    p90_ms: float
    p99_ms: float
    stdev_ms: float
    items_per_call: int = 1

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        return self.items_per_call * 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    @property
    def spread(self) -> float:
        """(p90 - min) / median: how noisy the measurement was."""
        return (self.p90_ms - self.min_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["throughput_per_s"] = self.throughput
        return data

    def format(self) -> str:
        return (f"{self.label}: median {self.median_ms:.3f} ms (p90 {self.p90_ms:.3f}, min {self.min_ms:.3f}, "
                f"n={self.repeats}), {self.throughput:.1f} items/s")


def summarize_timings(label: str, samples_ns: list[int] | np.ndarray, items_per_call: int = 1) -> TimingStats:
    """Statistics of raw per-call durations in nanoseconds."""
    if len(samples_ns) == 0:
        raise DeployLabError(f"no timings for {label!r}: repeats must be at least 1")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return TimingStats(
        label=label,
        repeats=len(ms),
        median_ms=float(np.median(ms)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        stdev_ms=float(statistics.pstdev(ms)) if len(ms) > 1 else 0.0,
        items_per_call=items_per_call,
    )


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
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return summarize_timings(label, samples, items_per_call)


def time_interleaved(
    fns: dict[str, Callable[[], object]], warmup: int = 5, repeats: int = 50, items_per_call: int = 1
) -> dict[str, TimingStats]:
    """Time several callables in alternation (ABAB...), so drift in machine load hits all alike.

    This is the method for ratios: both sides see the same background load.
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
    return {k: summarize_timings(k, v, items_per_call) for k, v in samples.items()}
