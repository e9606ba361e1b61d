"""Benchmark harness: statistics on known samples, runner benchmarks, sweeps and their files,
concurrency, the harness's own overhead, the plot and ``deploylab bench``.

No test asserts an absolute time: timings are only checked for consistency (the
statistics derive from the samples) or as ratios measured in the same run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest

from deploylab.backends.base import Runner, TensorSpec
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.bench import (
    CSV_COLUMNS,
    BenchmarkResult,
    SweepResults,
    batch_feed,
    benchmark_concurrent,
    benchmark_runner,
    harness_overhead_us,
    measure_harness_overhead,
    parse_sizes,
    summarize_timings,
    sweep,
)
from deploylab.cli import main
from deploylab.errors import DeployLabError



class FakeRunner(Runner):
    """No engine: ``y = 2 x``; records (thread, rows) per call; ``clone`` (``with_model``) makes clones."""

    backend = "fake"

    def __init__(self, shape=("batch", 3), delay: float = 0.0, name: str = "fake"):
        super().__init__(name)
        self.shape, self.delay, self.model_path = tuple(shape), delay, None
        self.calls: list[tuple[int, int]] = []
        self.clones: list[FakeRunner] = []

    def with_model(self, model_path):
        clone = FakeRunner(self.shape, self.delay, self.name)
        self.clones.append(clone)
        return clone

    def clone(self):
        return self.with_model(self.model_path)

    def _activate(self):
        pass

    def _describe(self):
        return ([TensorSpec("x", np.dtype(np.float32), self.shape)],
                [TensorSpec("y", np.dtype(np.float32), self.shape)])

    def _infer(self, feed):
        self.calls.append((threading.get_ident(), feed["x"].shape[0]))
        if self.delay:
            time.sleep(self.delay)
        return {"y": feed["x"] * 2}


@pytest.fixture(scope="module")
def lenet_sweep(lenet_ts_dynamic, lenet_ts11, lenet_ir):
    from deploylab.backends.openvino import OpenVinoRunner

    runners = {
        "ort": OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=1),
        "ov": OpenVinoRunner(lenet_ir, threads=1),
        "ort fixed": OnnxRuntimeRunner(lenet_ts11.path),
    }
    return sweep(runners, (1, 4, 32), repeats=5, warmup=1, concurrency=(2,), progress=False)


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


def test_parse_sizes():
    assert parse_sizes("1, 8,32,8") == (1, 8, 32)
    with pytest.raises(DeployLabError, match="--batch '1,x' must be comma-separated positive integers"):
        parse_sizes("1,x")
    with pytest.raises(DeployLabError, match="contains 0"):
        parse_sizes("0,4")


# ---------------------------------------------------------------- one runner
def test_benchmark_runner_counts_calls_and_feeds_the_batch():
    runner = FakeRunner()
    result = benchmark_runner(runner, 6, warmup=2, repeats=5)
    assert len(runner.calls) == 7 and {rows for _, rows in runner.calls} == {6}
    assert result.stats.repeats == 5 and result.stats.items_per_call == 6 and result.batch_size == 6
    assert (result.runner, result.backend, result.mode, result.concurrency) == ("fake", "fake", "sync", 1)
    assert (result.threads, result.precision) == (None, "fp32")
    assert result.throughput_per_s == pytest.approx(6 * 1000 / result.stats.median_ms)
    assert benchmark_runner(FakeRunner(), 1, warmup=0).stats.repeats == 20  # the default


def test_benchmark_runner_time_budget_and_unnamed_batch_dim():
    runner = FakeRunner(shape=(None, 3), delay=0.001)
    assert batch_feed(runner, 5)["x"].shape == (5, 3)
    result = benchmark_runner(runner, 5, warmup=0, seconds=0.03)
    assert result.stats.repeats == len(runner.calls) >= 3
    assert result.stats.min_ms >= 1.0  # every call slept 1 ms
    with pytest.raises(DeployLabError, match="seconds must be a positive number of seconds, got -1"):
        benchmark_runner(runner, 5, seconds=-1)


def test_seeded_batch_feed_is_reproducible(lenet_ts_dynamic):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path)
    a, b = batch_feed(runner, 3, seed=1), batch_feed(runner, 3, seed=1)
    assert a["input"].shape == (3, 1, 32, 32) and np.array_equal(a["input"], b["input"])
    assert not np.array_equal(a["input"], batch_feed(runner, 3, seed=2)["input"])


# ---------------------------------------------------------------- sweeps and files
def test_sweep_records_skipped_batches_with_reasons(lenet_sweep):
    measured = {(r.runner, r.batch_size, r.mode) for r in lenet_sweep.results}
    assert {(n, b) for n, b, m in measured if m == "sync"} == {
        ("ort", 1), ("ort", 4), ("ort", 32), ("ov", 1), ("ov", 4), ("ort fixed", 1)}
    reasons = {(s.runner, s.batch_size): s.reason for s in lenet_sweep.skipped}
    assert set(reasons) == {("ov", 32), ("ort fixed", 4), ("ort fixed", 32)}
    assert "[1, 16]" in reasons[("ov", 32)] and "not 32" in reasons[("ov", 32)]
    assert "fixed batch of 1" in reasons[("ort fixed", 4)]
    ov = next(r for r in lenet_sweep.results if r.runner == "ov")
    assert (ov.backend, ov.threads, ov.precision) in {("openvino", 1, "fp32")}
    assert lenet_sweep.environment["cpu_count"] >= 1 and "packages" in lenet_sweep.environment
    datetime.fromisoformat(lenet_sweep.timestamp)
    for name in ("ort", "ov", "ort fixed"):
        best = lenet_sweep.best_batch(name)
        top = max(lenet_sweep.for_runner(name), key=lambda r: r.throughput_per_s)
        assert best == top.batch_size
    assert lenet_sweep.best_batch("ort fixed") == 1
    with pytest.raises(DeployLabError, match="no sync results for runner 'trt'; runners measured: 'ort', 'ov'"):
        lenet_sweep.best_batch("trt")
    table = lenet_sweep.table()
    assert "skipped ov batch 32:" in table and "median ms" in table and "async" in table


def test_results_json_round_trip_and_csv_columns(lenet_sweep, tmp_path):
    path = lenet_sweep.to_json(tmp_path / "sweep.json")
    loaded = SweepResults.from_json(path)
    assert loaded.to_dict() == json.loads(path.read_text()) == lenet_sweep.to_dict()
    assert loaded.results == lenet_sweep.results and loaded.skipped == lenet_sweep.skipped
    assert loaded.table() == lenet_sweep.table()
    with open(lenet_sweep.to_csv(tmp_path / "sweep.csv"), newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS == (
        "runner", "backend", "batch", "mode", "concurrency", "n", "median_ms", "q1_ms", "q3_ms", "p90_ms",
        "p99_ms", "min_ms", "throughput_per_s", "per_item_ms", "threads", "spinning", "precision", "method")
    assert len(rows) == len(lenet_sweep.results)
    for row in rows:
        batch, median = int(row["batch"]), float(row["median_ms"])
        assert float(row["min_ms"]) <= float(row["q3_ms"]) and float(row["min_ms"]) <= median
        assert row["p90_ms"] == row["p99_ms"] == ""  # 6 samples per point support neither
        if row["mode"] == "sync":
            assert int(row["n"]) == 6 and row["method"].startswith("blocks: 3 rounds")
        assert float(row["per_item_ms"]) == pytest.approx(1000 / float(row["throughput_per_s"]))
        if row["mode"] == "sync":
            assert float(row["throughput_per_s"]) == pytest.approx(batch * 1000 / median)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DeployLabError, match="is not valid JSON"):
        SweepResults.from_json(tmp_path / "bad.json")
    with pytest.raises(DeployLabError, match="does not exist"):
        SweepResults.from_json(tmp_path / "missing.json")


def test_plot_sweep_has_three_log2_panels(lenet_sweep, tmp_path):
    from deploylab.plots import plot_sweep

    fig = plot_sweep(lenet_sweep, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    latency, throughput, per_item = fig.axes
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "batch size"
    # one line per runner (sync) plus the dashed concurrent lines of the two that ran async
    assert len(throughput.get_lines()) == 3 + 3
    labels = throughput.get_legend_handles_labels()[1]
    assert labels[:2] == ["ort", "ort (2 in flight)"] and "ort fixed" in labels


# ---------------------------------------------------------------- concurrency
def test_thread_pool_gives_each_worker_its_own_runner():
    runner = FakeRunner(delay=0.002)
    result = benchmark_concurrent(runner, 2, 3, total_items=60, rounds=5)
    assert (result.mode, result.concurrency, result.batch_size) == ("async", 3, 2)
    instances = [runner] + runner.clones
    assert len(instances) == 3
    threads = [{tid for tid, _ in r.calls} for r in instances]
    assert all(len(t) == 1 for t in threads) and len(set.union(*threads)) == 3  # one thread per runner
    assert sum(len(r.calls) for r in instances) == 3 + 30  # warm-up round + 60 items / batch 2
    assert result.stats.repeats == 5 and result.stats.items_per_call == 12
    # sleeps overlap across threads: the same fake, called one at a time, is much slower
    sequential = benchmark_runner(FakeRunner(delay=0.002), 2, warmup=0, repeats=10)
    assert result.throughput_per_s > 1.5 * sequential.throughput_per_s


def test_onnxruntime_threads_give_positive_throughput(lenet_ts_dynamic):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=1)
    result = benchmark_concurrent(runner, 4, 2, total_items=128)
    assert result.mode == "async" and result.concurrency == 2 and result.threads == 1
    assert 0 < result.throughput_per_s < math.inf
    assert result.stats.repeats * result.stats.items_per_call >= 128


def test_openvino_async_queue_gives_positive_throughput(lenet_ir, monkeypatch):
    from deploylab.backends.openvino import OpenVinoRunner

    runner = OpenVinoRunner(lenet_ir, hint="throughput")
    jobs = []
    original = runner.infer_async_queue

    def spy(feeds, jobs_=0, **kwargs):
        jobs.append(kwargs.get("jobs", jobs_))
        return original(feeds, jobs=kwargs.get("jobs", jobs_))

    monkeypatch.setattr(runner, "infer_async_queue", spy)
    result = benchmark_concurrent(runner, 4, 2, total_items=64, rounds=2)
    assert set(jobs) == {2} and len(jobs) == 1 + 2  # warm-up round + 2 timed rounds
    assert result.mode == "async" and result.concurrency == 2 and result.backend == "openvino"
    assert 0 < result.throughput_per_s < math.inf and result.precision in ("fp32", "bf16")
    with pytest.raises(DeployLabError, match=r"\[1, 16\]"):
        benchmark_concurrent(runner, 32, 2)
    with pytest.raises(DeployLabError, match="requests must be a positive integer, got 0"):
        benchmark_concurrent(runner, 4, 0)


# ---------------------------------------------------------------- the harness itself
def test_harness_overhead_is_positive_and_finite():
    overhead = harness_overhead_us(repeats=300)
    assert 0 < overhead < math.inf
    detail = measure_harness_overhead(repeats=300)
    # Runner.infer validates its input; a bare call does nothing: more work, more time.
    assert 0 < detail.noop_us < detail.empty_runner_us < math.inf


# ---------------------------------------------------------------- deploylab bench
def test_cli_bench_end_to_end(lenet_ts_dynamic, tmp_path, capsys):
    out, png = tmp_path / "res" / "lenet.json", tmp_path / "lenet.png"
    code = main(["bench", str(lenet_ts_dynamic.path), "--backends", "onnxruntime,openvino", "--batch", "1,4",
                 "--threads", "1", "--repeats", "3", "--out", str(out), "--plot", str(png)])
    printed = capsys.readouterr().out
    assert code == 0
    assert out.is_file() and out.with_suffix(".csv").is_file() and png.stat().st_size > 10_000
    loaded = SweepResults.from_json(out)
    assert {(r.runner, r.batch_size) for r in loaded.results} == {
        ("onnxruntime", 1), ("onnxruntime", 4), ("openvino", 1), ("openvino", 4)}
    assert {r.threads for r in loaded.results} == {1}
    assert "median ms" in printed and "items/s" in printed and str(out) in printed
    assert "onnxruntime: best batch" in printed and "openvino: best batch" in printed
    assert "note: thread counts" not in printed  # --threads 1 for both


def test_cli_bench_defaults_to_equal_explicit_threads(lenet_ts_dynamic, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["bench", str(lenet_ts_dynamic.path), "--backends", "onnxruntime,openvino", "--batch", "1",
                 "--repeats", "2", "--out", str(out)])
    assert code == 0 and "note: thread counts" not in capsys.readouterr().out
    assert {r.threads for r in SweepResults.from_json(out).results} == {os.cpu_count()}


def test_cli_bench_skips_out_of_bounds_batches_when_others_run(lenet_ir, capsys):
    code = main(["bench", str(lenet_ir), "--batch", "2,32", "--repeats", "2"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "skipped openvino batch 32" in printed and "[1, 16]" in printed


@pytest.mark.parametrize("argv, named", [
    (["--backends", "onnxruntime,tflite"], "'tflite'"),
    (["--batch", "1,eight"], "'1,eight'"),
    (["--batch", "0"], "contains 0"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--seconds", "-2"], "--seconds must be a positive number"),
])
def test_cli_bench_bad_input_exits_2_with_one_line(lenet_ts_dynamic, capsys, argv, named):
    code = main(["bench", str(lenet_ts_dynamic.path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and named in err[0] and err[0].startswith("deploylab bench: error:")


def test_cli_bench_refuses_when_no_backend_accepts_any_batch(lenet_ir, lenet_ts11, tmp_path, capsys):
    code = main(["bench", str(lenet_ir), "--batch", "32,64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no backend accepts batch size(s) 32,64" in err[0] and "[1, 16]" in err[0]
    code = main(["bench", str(lenet_ts11.path), "--backends", "onnxruntime,openvino", "--batch", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fixed batch of 1" in err[0]
    code = main(["bench", str(tmp_path / "missing.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.onnx" in err[0] and "does not exist" in err[0]


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


# ---------------------------------------------------------------- sample counts and verdicts
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


def test_sweep_table_names_the_machine_and_flags_unequal_threads(lenet_sweep):
    from deploylab.env import machine_line

    table = lenet_sweep.table()
    assert table.splitlines()[0].startswith(machine_line(lenet_sweep.environment))
    assert "VNNI:" in table.splitlines()[0] and "AMX:" in table.splitlines()[0]
    assert "note: thread counts are not explicit and equal" in table  # "ort fixed" runs on ORT's default
    assert all(r.spinning is True for r in lenet_sweep.results if r.backend == "onnxruntime")
    assert all(r.spinning is None for r in lenet_sweep.results if r.backend == "openvino")


def test_machine_line_reads_the_flags():
    from deploylab.env import machine_line

    env = {"cpu_model": "Test CPU", "cpu_count": 4,
           "cpu_flags": {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": True}}
    assert machine_line(env) == ("Test CPU, 4 logical CPUs; SIMD: AVX-512, VNNI: AVX-512, AMX: no, "
                                 "BF16: AVX-512")
    env["cpu_flags"] = {"avx2": True, "amx_tile": True, "amx_bf16": True, "amx_int8": True}
    assert machine_line(env).endswith("SIMD: AVX2, VNNI: no, AMX: bf16+int8, BF16: AMX")


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


def test_request_pool_keeps_the_order_and_uses_every_slot():
    from deploylab.bench import RequestPool

    runner = FakeRunner(delay=0.002)
    feeds = [{"x": np.full((1, 3), i, dtype=np.float32)} for i in range(12)]
    with RequestPool(runner, 3) as pool:
        outputs = pool.run(feeds)
    assert [float(o["y"][0, 0]) for o in outputs] == [2.0 * i for i in range(12)]
    clones = [runner, *runner.clones]
    assert len(clones) == 3 and all(c.calls for c in clones)  # one runner per slot, every slot used
    assert len({thread for c in clones for thread, _ in c.calls}) == 3
    assert sum(len(c.calls) for c in clones) == 12


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


def test_spin_park_time_rejects_bad_settings():
    from deploylab.bench import spin_park_time

    with pytest.raises(DeployLabError, match="pauses_ms must be non-negative milliseconds"):
        spin_park_time(lambda: None, lambda: None, pauses_ms=(0, -5))
    with pytest.raises(DeployLabError, match="samples must be a positive integer"):
        spin_park_time(lambda: None, lambda: None, samples=0)


class _SharedRunner(FakeRunner):
    """Cannot be re-made (``clone`` is the contract's default, None)."""

    def clone(self):
        return None


def test_request_pool_follows_the_runner_contract():
    """Clones where the runner can be re-made; one shared runner only where it is thread-safe;
    otherwise a clear refusal (the pool never guesses from a backend name)."""
    from deploylab.bench import RequestPool

    feeds = [{"x": np.full((1, 3), i, dtype=np.float32)} for i in range(6)]
    shared = _SharedRunner(delay=0.001)
    with pytest.raises(DeployLabError, match="cannot be shared by several threads and cannot be cloned"):
        RequestPool(shared, 2)
    with RequestPool(shared, 1) as pool:  # one request at a time needs no second runner
        assert len(pool.run(feeds)) == 6
    shared.thread_safe = True
    with RequestPool(shared, 3) as pool:
        outputs = pool.run(feeds)
    assert [float(o["y"][0, 0]) for o in outputs] == [2.0 * i for i in range(6)]
    assert len({thread for thread, _ in shared.calls[6:]}) > 1  # the one runner served several threads


def test_clones_keep_the_settings(lenet_ts_dynamic, tmp_path):
    from deploylab.backends.tensorrt import TensorRTRunner
    from deploylab.backends.torch_eager import TorchEagerRunner

    ort = OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=1)
    twin = ort.clone()
    assert twin is not ort and twin.model_path == ort.model_path and twin.intra_op_threads == 1
    trt = TensorRTRunner(tmp_path / "m.plan", profile_index=1, device=0)
    trt_twin = trt.clone()  # its own engine and context: one context serves one thread at a time
    assert trt_twin is not trt and (trt_twin.engine_path, trt_twin.profile_index) == (trt.engine_path, 1)
    assert not trt.thread_safe and TorchEagerRunner.thread_safe


def test_runner_settings_speak_one_vocabulary(lenet_ts_dynamic, lenet_ir):
    """Threads, precision and spinning read through the contract, not per-engine attribute names."""
    from deploylab.backends.base import RunnerSettings, precision_name
    from deploylab.backends.openvino import OpenVinoRunner
    from deploylab.backends.torch_eager import TorchEagerRunner

    assert OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=2, spinning=False).settings() == \
        RunnerSettings(2, "fp32", False)
    assert OpenVinoRunner(lenet_ir, threads=1, precision="fp32").settings() == RunnerSettings(1, "fp32", None)
    assert TorchEagerRunner(SimpleNamespace(name="m"), threads=1).settings() == RunnerSettings(1)
    assert FakeRunner().settings() == RunnerSettings()  # the engine's defaults, said so
    assert [precision_name(v) for v in ("f32", "BF16", "f16", None, "int8")] == ["fp32", "bf16", "fp16", "fp32", "int8"]
