"""Batching helpers: make_batches (ragged/pad/drop), unbatch, seeded feeds and batch-size bounds per runner.

Real engines run the shared LeNet exports (torchscript, opset 17 with a symbolic batch
dim; opset 11 with a fixed batch of 1) and an OpenVINO IR built from the dynamic export
with batch bounds [1, 16]. Everything else uses an engine-less runner.
"""

from __future__ import annotations

import numpy as np
import pytest

from deploylab.backends.base import Runner, TensorSpec
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.batching import Batch, batch_feed, batch_limits, check_batch_bounds, make_batches, unbatch
from deploylab.errors import DeployLabError



class ShapeRunner(Runner):
    """No engine: input ``x`` of the given shape and bounds, output ``y = 2 x``."""

    backend = "fake"

    def __init__(self, shape=("batch", 3), bounds=(), name="fake"):
        super().__init__(name)
        self.shape, self.bounds = tuple(shape), tuple(bounds)
        self.calls = 0

    def _activate(self):
        pass

    def _describe(self):
        return ([TensorSpec("x", np.dtype(np.float32), self.shape, self.bounds)],
                [TensorSpec("y", np.dtype(np.float32), self.shape, self.bounds)])

    def _infer(self, feed):
        self.calls += 1
        return {"y": feed["x"] * 2}


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(3).random((10, 1, 32, 32), dtype=np.float32)


# ---------------------------------------------------------------- make_batches
def test_ragged_batches_cover_every_sample_once_as_views(samples):
    batches = make_batches(samples, 4)
    assert [b.size for b in batches] == [4, 4, 2]
    assert [b.valid for b in batches] == [4, 4, 2] and [b.padding for b in batches] == [0, 0, 0]
    assert np.array_equal(np.concatenate([b.indices for b in batches]), np.arange(10))
    for b in batches:
        assert np.array_equal(b.array, samples[b.indices])
        assert np.shares_memory(b.array, samples)  # slices of the input, no copy


def test_pad_fills_the_last_batch_with_copies_of_the_last_sample(samples):
    batches = make_batches(samples, 4, last="pad")
    assert [b.size for b in batches] == [4, 4, 4]
    assert [b.valid for b in batches] == [4, 4, 2]
    last = batches[-1]
    assert list(last.indices) == [8, 9] and last.padding == 2
    assert np.array_equal(last.array[:2], samples[8:10])
    assert np.array_equal(last.array[2], samples[9]) and np.array_equal(last.array[3], samples[9])
    assert not np.shares_memory(last.array, samples)  # padding must not write into the input


def test_drop_leaves_out_the_partial_batch(samples):
    batches = make_batches(samples, 4, last="drop")
    assert [b.size for b in batches] == [4, 4] and [b.valid for b in batches] == [4, 4]
    assert np.array_equal(np.concatenate([b.indices for b in batches]), np.arange(8))
    # An exact multiple leaves nothing out whatever the mode.
    assert [b.size for b in make_batches(samples, 5, last="drop")] == [5, 5]
    assert [b.size for b in make_batches(samples, 5, last="pad")] == [5, 5]


def test_a_list_of_arrays_batches_like_the_stacked_array(samples):
    from_list = make_batches(list(samples), 3, last="pad")
    from_array = make_batches(samples, 3, last="pad")
    assert len(from_list) == len(from_array) == 4
    for a, b in zip(from_list, from_array):
        assert np.array_equal(a.array, b.array) and a.valid == b.valid
        assert np.array_equal(a.indices, b.indices)
    assert "valid=1" in repr(from_list[-1]) and "samples 9..9" in repr(from_list[-1])


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "4"])
def test_bad_batch_size_is_refused(samples, size):
    with pytest.raises(DeployLabError, match=r"batch_size must be a positive integer, got"):
        make_batches(samples, size)


def test_bad_samples_are_refused_naming_the_offender(samples):
    with pytest.raises(DeployLabError, match="empty"):
        make_batches(samples[:0], 4)
    with pytest.raises(DeployLabError, match="empty list"):
        make_batches([], 4)
    items = list(samples[:5])
    items[3] = np.zeros((1, 28, 28), np.float32)
    with pytest.raises(DeployLabError, match=r"sample 3 has shape \(1, 28, 28\), but sample 0 has shape \(1, 32, 32\)"):
        make_batches(items, 2)
    items[3] = samples[3].astype(np.float64)
    with pytest.raises(DeployLabError, match="sample 3 has dtype float64, but sample 0 has dtype float32"):
        make_batches(items, 2)
    with pytest.raises(DeployLabError, match="sample 1 is a list, not a numpy array"):
        make_batches([samples[0], [1, 2]], 2)
    with pytest.raises(DeployLabError, match="unknown last-batch mode 'wrap'; use one of ragged, pad, drop"):
        make_batches(samples, 4, last="wrap")
    with pytest.raises(DeployLabError, match="10 samples do not fill one batch of 16"):
        make_batches(samples, 16, last="drop")


# ---------------------------------------------------------------- unbatch
@pytest.mark.parametrize("last", ["ragged", "pad"])
def test_unbatch_round_trip_equals_running_the_whole_set(lenet_ts_dynamic, samples, last):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path)
    whole = runner.infer({"input": samples})["output"]
    batches = make_batches(samples, 4, last=last)
    outputs = [runner.infer({"input": b.array}) for b in batches]
    stitched = unbatch(outputs, batches)
    assert list(stitched) == ["output"] and stitched["output"].shape == whole.shape == (10, 10)
    np.testing.assert_allclose(stitched["output"], whole, rtol=1e-5, atol=1e-5)
    # Plain arrays stitch the same way.
    np.testing.assert_array_equal(unbatch([o["output"] for o in outputs], batches), stitched["output"])


def test_unbatch_with_drop_keeps_the_batched_samples_in_order(samples):
    runner = ShapeRunner(shape=("batch", 1, 32, 32))
    batches = make_batches(samples, 3, last="drop")
    out = unbatch([{"y": b.array * 2} for b in batches], batches)["y"]
    np.testing.assert_array_equal(out, samples[:9] * 2)
    assert runner.calls == 0


def test_unbatch_refuses_mismatched_outputs(samples):
    batches = make_batches(samples, 4, last="pad")
    with pytest.raises(DeployLabError, match="2 outputs for 3 batches"):
        unbatch([b.array for b in batches[:2]], batches)
    with pytest.raises(DeployLabError, match="output of batch 2 has shape 2x1x32x32, but the batch had 4 rows"):
        unbatch([b.array for b in batches[:2]] + [batches[2].array[:2]], batches)
    with pytest.raises(DeployLabError, match=r"output of batch 1 has names \['z'\], batch 0 had \['y'\]"):
        unbatch([{"y": batches[0].array}, {"z": batches[1].array}, {"y": batches[2].array}], batches)


# ---------------------------------------------------------------- seeded feeds
def test_seeded_batch_feed_is_reproducible(lenet_ts_dynamic):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path)
    a, b = batch_feed(runner, 3, seed=1), batch_feed(runner, 3, seed=1)
    assert a["input"].shape == (3, 1, 32, 32) and np.array_equal(a["input"], b["input"])
    assert not np.array_equal(a["input"], batch_feed(runner, 3, seed=2)["input"])


# ---------------------------------------------------------------- bounds, before the engine
def test_limits_read_from_the_input_description():
    assert batch_limits(ShapeRunner(("batch", 3))) == (1, None)
    assert batch_limits(ShapeRunner((None, 3))) == (1, None)
    assert batch_limits(ShapeRunner((4, 3))) == (4, 4)
    assert batch_limits(ShapeRunner(("batch", 3), (("batch", 2, 8),))) == (2, 8)
    runner = ShapeRunner(("batch", 3), (("batch", 2, 8),))
    check_batch_bounds(runner, 8)
    check_batch_bounds(runner, Batch(np.zeros((2, 3), np.float32), 1, np.arange(1)))
    with pytest.raises(DeployLabError, match=r"'x' has batch = 1, outside the \[2, 8\] .* batch sizes 2 to 8, not 1"):
        check_batch_bounds(runner, 1)
    with pytest.raises(DeployLabError, match="batch size must be a positive integer, got 0"):
        check_batch_bounds(runner, 0)


def test_bounds_are_worded_as_the_input_check_words_them():
    """A batch size refused before any feed exists reads as the feed check's refusal."""
    from deploylab.backends.base import check_feed

    runner = ShapeRunner(("batch", 3), (("batch", 2, 8),))
    with pytest.raises(DeployLabError) as before_the_feed:
        check_batch_bounds(runner, 9)
    with pytest.raises(DeployLabError) as from_the_feed:
        check_feed(runner.inputs, {"x": np.zeros((9, 3), np.float32)})
    assert str(before_the_feed.value) == f"fake: {from_the_feed.value}"
    assert "'x' has batch = 9, outside the [2, 8]" in str(from_the_feed.value)
    assert "rebuild it with a wider range or use batch sizes 2 to 8, not 9" in str(from_the_feed.value)


def test_fixed_batch_onnx_refuses_batch_4_naming_the_fixed_1(lenet_ts11):
    runner = OnnxRuntimeRunner(lenet_ts11.path)
    check_batch_bounds(runner, 1)
    with pytest.raises(DeployLabError) as info:
        check_batch_bounds(runner, 4)
    message = str(info.value)
    assert "fixed batch of 1" in message and "not 4" in message and "dynamic_batch=True" in message
    with pytest.raises(DeployLabError, match="fixed batch of 1"):
        check_batch_bounds(runner, make_batches(np.zeros((4, 1, 32, 32), np.float32), 4)[0])


def test_openvino_bounds_refuse_batch_32_before_the_engine(lenet_ir, monkeypatch):
    from deploylab.backends.openvino import OpenVinoRunner

    runner = OpenVinoRunner(lenet_ir)
    assert batch_limits(runner) == (1, 16)
    check_batch_bounds(runner, 16)

    def engine_must_not_run(feed):
        raise AssertionError("the engine was called")

    monkeypatch.setattr(runner, "_infer", engine_must_not_run)
    with pytest.raises(DeployLabError) as info:
        check_batch_bounds(runner, 32)
    message = str(info.value)
    assert "not 32" in message and "[1, 16]" in message and "1 to 16" in message
    from deploylab.bench import benchmark_runner

    with pytest.raises(DeployLabError, match=r"\[1, 16\]"):
        benchmark_runner(runner, 32, repeats=1)
