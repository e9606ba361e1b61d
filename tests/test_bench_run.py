"""One runner at one batch size, many requests in flight, and the harness's own overhead
(``deploylab.bench.run`` and ``deploylab.bench.concurrency``), on an engine-less runner and
on real ONNX Runtime and OpenVINO runners.

No test asserts an absolute time: throughputs are compared as ratios measured in the same run.
"""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from deploylab.backends.base import Runner, TensorSpec
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.bench import (
    batch_feed,
    benchmark_concurrent,
    benchmark_runner,
    harness_overhead_us,
    measure_harness_overhead,
)
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


# ---------------------------------------------------------------- the harness itself
def test_harness_overhead_is_positive_and_finite():
    overhead = harness_overhead_us(repeats=300)
    assert 0 < overhead < math.inf
    detail = measure_harness_overhead(repeats=300)
    # Runner.infer validates its input; a bare call does nothing: more work, more time.
    assert 0 < detail.noop_us < detail.empty_runner_us < math.inf
