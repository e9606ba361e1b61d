"""One runner at one batch size: a checked point, its latency, and the harness's own cost.

A :class:`BenchPoint` is a runner with a seeded feed it accepts. :func:`prepare_point`
checks the batch size against the runner's bounds and builds the feed, once; the
functions that take a point (:func:`benchmark_point` here,
:func:`deploylab.bench.concurrency.benchmark_point_concurrent`, the sweep) trust it and do
not check again. :func:`benchmark_runner` is both steps for a direct call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deploylab.batching import batch_feed, check_batch_bounds
from deploylab.bench.checks import positive_int, positive_seconds
from deploylab.bench.results import BenchmarkResult
from deploylab.bench.timing import TimingStats, time_call, time_interleaved

DEFAULT_REPEATS = 20
# With a time budget but no repeat count, at least this many calls, so p90 means something.
MIN_REPEATS_WITH_BUDGET = 3


@dataclass(frozen=True)
class BenchPoint:
    """A runner at one batch size, ready to time: ``feed`` has ``batch_size`` rows and
    passed the runner's input check. ``name`` labels its results (default: runner.name).

    Make one with :func:`prepare_point` (bounds checked first), or with
    :meth:`for_checked_size` where the batch bounds were already checked.
    """

    name: str
    runner: object
    batch_size: int
    feed: dict[str, np.ndarray]

    @classmethod
    def for_checked_size(cls, runner, batch_size: int, seed: int = 0, name: str | None = None) -> BenchPoint:
        """The point of a batch size already checked against the runner's bounds: a seeded
        feed (:func:`deploylab.batching.batch_feed`), validated here, not inside a timing loop."""
        feed = batch_feed(runner, batch_size, seed)
        runner.check(feed)
        return cls(name or runner.name, runner, int(batch_size), feed)

    @property
    def label(self) -> str:
        """``"ort b8"``: the name and the batch size, as timings are labelled."""
        return f"{self.name} b{self.batch_size}"

    def call(self) -> Callable[[], dict[str, np.ndarray]]:
        """The call to time: the runner's public ``infer`` on the point's feed (input checks included)."""
        runner, feed = self.runner, self.feed
        return lambda: runner.infer(feed)

    def result(self, stats: TimingStats, **measured) -> BenchmarkResult:
        """A :class:`BenchmarkResult` of this point, with the runner's settings (threads,
        precision, spinning); ``measured`` adds the async fields (mode, concurrency, throughput)."""
        how = self.runner.settings()
        return BenchmarkResult(self.name, self.runner.backend, self.batch_size, how.threads, how.precision, stats,
                               spinning=how.spinning, **measured)


def prepare_point(runner, batch_size: int, *, seed: int = 0, name: str | None = None) -> BenchPoint:
    """Check ``batch_size`` against the runner's bounds, then build its seeded, validated feed.

    Raises :func:`deploylab.batching.check_batch_bounds`'s error (naming the runner's
    range and the fix) before any engine sees the batch.
    """
    batch_size = positive_int(batch_size, "batch_size")
    check_batch_bounds(runner, batch_size)
    return BenchPoint.for_checked_size(runner, batch_size, seed, name)


def default_repeats(repeats: int | None, seconds: float | None) -> int:
    """The timed calls per point: ``repeats``, else 3 with a time budget, else 20."""
    if repeats is None:
        repeats = MIN_REPEATS_WITH_BUDGET if seconds else DEFAULT_REPEATS
    return positive_int(repeats, "repeats")


def benchmark_point(
    point: BenchPoint, *, warmup: int = 3, repeats: int | None = None, seconds: float | None = None
) -> BenchmarkResult:
    """Latency of one checked point, milliseconds per call (see :func:`benchmark_runner`)."""
    seconds = positive_seconds(seconds)
    repeats, warmup = default_repeats(repeats, seconds), int(warmup)
    stats = time_call(point.call(), label=point.label, warmup=warmup, repeats=repeats, min_seconds=seconds or 0.0,
                      items_per_call=point.batch_size)
    return point.result(stats)


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
    bounds first (:func:`prepare_point`). The timed call is the public ``infer``, input
    validation included: :func:`harness_overhead_us` says how much that and the clock
    reads add per call. ``name`` labels the result (default: runner.name).
    """
    point = prepare_point(runner, batch_size, seed=seed, name=name)
    return benchmark_point(point, warmup=warmup, repeats=repeats, seconds=seconds)


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
                             warmup=warmup, repeats=positive_int(repeats, "repeats"))
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
