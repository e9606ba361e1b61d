"""Timing method: warm-up, repeated timed calls with ``perf_counter_ns``, robust statistics.

Timings are only compared as ratios measured in the same process, never asserted as
absolute times: a laptop, a CI runner and a loaded machine differ by more than the
effects being measured. :func:`time_call` times one callable back to back,
:func:`time_interleaved` an A/B pair of one engine, :func:`time_blocks` several engines
(block by block, with pauses, the order rotating); :func:`compare_timings` says whether a
difference exceeds the spread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace

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


def rotating_rounds(conditions: Mapping[str, Callable[[], list[int]]], rounds: int, pause_s: float,
                     method: str, items_per_call: int | Mapping[str, int] = 1) -> dict[str, TimingStats]:
    """Run every condition once per round after ``pause_s`` seconds of idle time, the order
    rotating from round to round, and summarize each condition's samples.

    A condition is a callable that makes its calls and returns their durations in ns. Its
    median is the median of its per-round medians (slow drift in machine load moves whole
    rounds, not the ranking); min, quartiles and percentiles come from all its samples.
    ``method`` is recorded in every :class:`TimingStats`; ``items_per_call`` may differ
    per condition (a dict). The rounds of :func:`time_blocks` and of
    :func:`deploylab.bench.contention.measure_contention`.
    """
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
    return rotating_rounds(blocks, rounds, pause_s, method, items_per_call)
