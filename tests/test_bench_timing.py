"""Timing method: statistics on known samples, percentiles only where the samples support
them, verdicts that tell a difference from noise, and the block method against engines'
spinning worker threads (``deploylab.bench.timing`` and ``deploylab.bench.contention``).

No test asserts an absolute time: timings are only checked for consistency (the
statistics derive from the samples) or as ratios measured in the same run.
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest

from deploylab.bench import BenchmarkResult, SweepResults, summarize_timings
from deploylab.errors import DeployLabError


# ---------------------------------------------------------------- statistics with known answers
def test_statistics_of_synthetic_samples():
    ms = np.arange(1, 101, dtype=np.float64)  # 1..100 ms, shuffled: order must not matter
    samples = np.random.default_rng(0).permutation(ms * 1e6).astype(np.int64)
    stats = summarize_timings("synthetic", samples, items_per_call=8)
    assert stats.median_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(np.percentile(ms, 90)) == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(np.percentile(ms, 99)) == pytest.approx(99.01)
    assert stats.min_ms == 1.0 and stats.mean_ms == pytest.approx(50.5)
    assert stats.stdev_ms == pytest.approx(statistics.pstdev(ms))
    assert (stats.q1_ms, stats.q3_ms) == (pytest.approx(25.75), pytest.approx(75.25))
    assert stats.spread == pytest.approx((75.25 - 25.75) / 50.5)
    assert "n=100" in stats.format() and "p90 90.1" in stats.format() and "p99 99" in stats.format()
    result = BenchmarkResult("r", "fake", 8, None, "fp32", stats)
    assert result.throughput_per_s == pytest.approx(8 * 1000 / 50.5)
    assert result.per_item_ms == pytest.approx(50.5 / 8)
    # async: throughput is what was measured over the rounds; per item follows from it.
    rounds = BenchmarkResult("r", "fake", 8, 2, "fp32", stats, mode="async", concurrency=4, throughput_per_s=400.0)
    assert rounds.per_item_ms == pytest.approx(2.5) and rounds.to_dict()["concurrency"] == 4
    assert BenchmarkResult.from_dict(rounds.to_dict()) == rounds
    with pytest.raises(DeployLabError, match="unknown benchmark mode 'batch'"):
        BenchmarkResult("r", "fake", 8, None, "fp32", stats, mode="batch")


@pytest.mark.parametrize("n, has_p90, has_p99", [(19, False, False), (20, True, False), (99, True, False),
                                                 (100, True, True)])
def test_percentiles_only_from_enough_samples(n, has_p90, has_p99):
    stats = summarize_timings("s", np.arange(1, n + 1) * 1_000_000)
    assert (stats.p90_ms is not None, stats.p99_ms is not None) == (has_p90, has_p99)
    assert ("p90" in stats.format(), "p99" in stats.format()) == (has_p90, has_p99)
    assert f"n={n}" in stats.format()


def _samples(center_ms: float, rel_spread: float, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (center_ms * (1 + rel_spread * rng.uniform(-1, 1, n)) * 1e6).astype(np.int64)


def test_compare_timings_tells_a_real_difference_from_noise():
    from deploylab.bench import compare_timings

    fast, slow = summarize_timings("ort", _samples(10, 0.05)), summarize_timings("eager", _samples(21, 0.05, seed=1))
    verdict = compare_timings(slow, fast)
    assert verdict.measurable and verdict.faster.label == "ort"
    assert verdict.ratio == pytest.approx(2.1, rel=0.05)
    assert verdict.sentence().startswith("ort is 2.") and "faster than eager" in verdict.sentence()
    # Medians 3 % apart with a 20 % spread: the difference is inside the noise.
    a, b = summarize_timings("a", _samples(10, 0.2)), summarize_timings("b", _samples(10.3, 0.2, seed=2))
    same = compare_timings(a, b)
    assert not same.measurable and same.sentence().startswith("no measurable difference between")
    # The same 3 % with a 0.5 % spread is measurable: the verdict follows the spread, not a fixed ratio.
    a, b = summarize_timings("a", _samples(10, 0.005)), summarize_timings("b", _samples(10.3, 0.005, seed=2))
    assert compare_timings(a, b).measurable
    assert compare_timings(fast, slow, "ONNX Runtime", "PyTorch").sentence().startswith("ONNX Runtime is 2.")


def _result(batch: int, per_item_ms: float, rel_spread: float, seed: int = 0) -> BenchmarkResult:
    stats = summarize_timings(f"r b{batch}", _samples(per_item_ms * batch, rel_spread, seed=seed), batch)
    return BenchmarkResult("r", "fake", batch, 2, "fp32", stats)


def test_batching_conclusion_follows_the_numbers():
    # 6.0 vs 5.9 ms per item with a 10 % spread: batch 4 is already as good as the best.
    gains = SweepResults([_result(1, 10.0, 0.02), _result(4, 6.0, 0.1, 1), _result(16, 5.9, 0.1, 2)], {}, "")
    text = gains.batching_conclusion("r")
    assert text.startswith("r: best batch 16") and "x batch 1's" in text, text
    rising = SweepResults([_result(1, 10.0, 0.01), _result(8, 6.0, 0.01, 1)], {}, "")
    assert rising.batching_conclusion("r").endswith("still rising at the largest batch measured (8)")
    assert "within the noise of the best from batch 4 on" in text, text
    flat = SweepResults([_result(1, 10.0, 0.2), _result(8, 9.8, 0.2, 1)], {}, "")
    assert flat.batching_conclusion("r").endswith("no measurable gain from batching on this machine")


# ---------------------------------------------------------------- cross-engine method
def _spinning_neighbour(spin_s: float = 0.05):
    """A call that returns at once but leaves threads burning every core for ``spin_s``
    afterwards, as an engine's spinning worker pool does."""
    import os

    def call():
        def spin(until):
            x = np.ones((256, 256))
            while time.perf_counter() < until:
                x @ x  # BLAS releases the GIL: this takes a core
        until = time.perf_counter() + spin_s
        for _ in range(os.cpu_count() or 2):
            threading.Thread(target=spin, args=(until,), daemon=True).start()

    return call


def _victim():
    a = np.random.default_rng(0).random((384, 384))

    def call():  # about 5-10 ms of single-threaded BLAS
        for _ in range(4):
            a @ a

    return call


def test_block_method_is_not_fooled_by_a_spinning_neighbour():
    """Call by call, the victim runs while the neighbour's threads burn the cores; in blocks
    with pauses they have stopped before the victim's block starts."""
    from threadpoolctl import threadpool_limits

    from deploylab.bench import time_blocks, time_interleaved

    with threadpool_limits(1):  # the victim: one thread, CPU-bound
        victim, neighbour = _victim(), _spinning_neighbour()
        alone = [time_blocks({"victim": victim}, rounds=3, block=10, pause_s=0.05)["victim"].median_ms]
        interleaved = time_interleaved({"victim": victim, "neighbour": neighbour}, warmup=2, repeats=30)
        time.sleep(0.2)
        blocks = time_blocks({"victim": victim, "neighbour": neighbour}, rounds=4, block=15, pause_s=0.1)
        alone.append(time_blocks({"victim": victim}, rounds=3, block=10, pause_s=0.05)["victim"].median_ms)
    fooled, fair = interleaved["victim"].median_ms, blocks["victim"].median_ms
    assert fooled > 1.3 * fair, (fooled, fair, alone)
    assert fair < 1.3 * max(alone), (fair, alone)
    assert blocks["victim"].repeats == 60 and blocks["neighbour"].repeats == 60


def test_time_blocks_rejects_bad_settings():
    from deploylab.bench import time_blocks

    with pytest.raises(DeployLabError, match="rounds and block must be >= 1"):
        time_blocks({"f": lambda: None}, rounds=0)
    with pytest.raises(DeployLabError, match="pause_s"):
        time_blocks({"f": lambda: None}, pause_s=-1)


def test_measure_contention_separates_the_methods():
    from threadpoolctl import threadpool_limits

    from deploylab.bench import measure_contention

    with threadpool_limits(1):
        found = measure_contention(_victim(), {"spinner": _spinning_neighbour()}, rounds=3, calls=8, pause_s=0.1)
    assert list(found.stats) == ["alone", "interleaved with spinner", "blocks after spinner"]
    assert found.slowdown("interleaved with spinner") > 1.3, found.format()
    assert found.slowdown("blocks after spinner") < 1.3, found.format()
    assert found.verdict("interleaved with spinner").endswith("x the time alone")
    assert all(s.repeats == 24 for s in found.stats.values())
    with pytest.raises(DeployLabError, match="at least one neighbour"):
        measure_contention(_victim(), {})


def test_spin_park_time_sees_the_neighbour_and_its_end():
    """A neighbour that spins 50 ms after returning slows the victim after short pauses only."""
    from threadpoolctl import threadpool_limits

    from deploylab.bench import spin_park_time

    with threadpool_limits(1):
        victim, neighbour = _victim(), _spinning_neighbour()
        park = spin_park_time(neighbour, victim, pauses_ms=(0, 100), samples=8)
    slow_at_0, slow_at_100 = park.slowdown
    assert slow_at_0 > 1.3, park.format()
    assert slow_at_100 < 1.1 and park.park_ms == 100, park.format()
    assert "stop slowing the next call after a pause of 100 ms" in park.format()


def test_spin_park_time_rejects_bad_settings():
    from deploylab.bench import spin_park_time

    with pytest.raises(DeployLabError, match="pauses_ms must be non-negative milliseconds"):
        spin_park_time(lambda: None, lambda: None, pauses_ms=(0, -5))
    with pytest.raises(DeployLabError, match="samples must be a positive integer"):
        spin_park_time(lambda: None, lambda: None, samples=0)
