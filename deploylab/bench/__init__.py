"""Benchmarking: the timing method, runners at one batch size or many in flight, sweeps, results files.

One module per role, bottom to top:

- :mod:`~deploylab.bench.timing`: warm-up, timed calls, robust statistics, the block method
  that compares engines (:func:`time_blocks`), :func:`compare_timings`;
- :mod:`~deploylab.bench.contention`: how much one engine's threads slow another's calls
  (:func:`measure_contention`, :func:`spin_park_time`), the evidence for the block method;
- :mod:`~deploylab.bench.results`: :class:`BenchmarkResult`, :class:`SkippedBatch`,
  :class:`SweepResults` with their JSON and CSV files and the table;
- :mod:`~deploylab.bench.run`: a checked :class:`BenchPoint` (batch bounds checked once,
  by :func:`prepare_point`), :func:`benchmark_runner`, the harness's own overhead;
- :mod:`~deploylab.bench.concurrency`: :class:`RequestPool`, :func:`benchmark_concurrent`;
- :mod:`~deploylab.bench.sweeps`: :func:`plan_sweep`, :func:`run_sweep`, :func:`sweep`.

Timings are only compared as ratios measured in the same process, never asserted as
absolute times. The names below are importable from ``deploylab.bench`` directly;
``batch_feed`` lives in :mod:`deploylab.batching` and is re-exported here.
"""

from deploylab.batching import batch_feed
from deploylab.bench.concurrency import (
    REQUESTS_PER_WORKER_PER_ROUND,
    RequestPool,
    benchmark_concurrent,
    benchmark_point_concurrent,
)
from deploylab.bench.contention import Contention, SpinParkTime, measure_contention, spin_park_time
from deploylab.bench.results import BENCH_MODES, CSV_COLUMNS, BenchmarkResult, SkippedBatch, SweepResults
from deploylab.bench.run import (
    DEFAULT_REPEATS,
    MIN_REPEATS_WITH_BUDGET,
    BenchPoint,
    HarnessOverhead,
    benchmark_point,
    benchmark_runner,
    harness_overhead_us,
    measure_harness_overhead,
    prepare_point,
)
from deploylab.bench.sweeps import DEFAULT_BATCH_SIZES, DEFAULT_SWEEP_ROUNDS, SweepPlan, plan_sweep, run_sweep, sweep
from deploylab.bench.timing import (
    DEFAULT_BLOCK_PAUSE_S,
    MIN_SAMPLES_P90,
    MIN_SAMPLES_P99,
    TimingComparison,
    TimingStats,
    compare_timings,
    rotating_rounds,
    summarize_timings,
    time_blocks,
    time_call,
    time_interleaved,
)

__all__ = [
    "BENCH_MODES", "CSV_COLUMNS", "DEFAULT_BATCH_SIZES", "DEFAULT_BLOCK_PAUSE_S", "DEFAULT_REPEATS",
    "DEFAULT_SWEEP_ROUNDS", "MIN_REPEATS_WITH_BUDGET", "MIN_SAMPLES_P90", "MIN_SAMPLES_P99",
    "REQUESTS_PER_WORKER_PER_ROUND", "BenchPoint", "BenchmarkResult", "Contention", "HarnessOverhead", "RequestPool",
    "SkippedBatch", "SpinParkTime", "SweepPlan", "SweepResults", "TimingComparison", "TimingStats", "batch_feed",
    "benchmark_concurrent", "benchmark_point", "benchmark_point_concurrent", "benchmark_runner", "compare_timings",
    "harness_overhead_us", "measure_contention", "measure_harness_overhead", "plan_sweep", "prepare_point",
    "rotating_rounds", "run_sweep", "spin_park_time", "summarize_timings", "sweep", "time_blocks", "time_call",
    "time_interleaved",
]
