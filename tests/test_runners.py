"""The runner contract: input checks, seeded inputs, the ONNX Runtime runner, IO binding, torch eager.

Every model here is tiny or exported once per module with the fast torchscript exporter;
the shared LeNet exports from conftest are read-only (copied before any modification).
"""

from __future__ import annotations

import logging
import re

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from deploylab.backends.base import TensorSpec, check_feed, seeded_feed
from deploylab.backends.onnxruntime import (
    OnnxRuntimeRunner,
    save_optimized_model,
)
from deploylab.backends.registry import BACKENDS, make_runner, parse_backends
from deploylab.backends.torch_eager import TorchEagerRunner
from deploylab.batching import predict
from deploylab.compare import compare_runners
from deploylab.errors import DeployLabError

F32 = np.dtype(np.float32)


# ---------------------------------------------------------------- helpers and fixtures
def _save_onnx(graph, path, opset: int = 17):
    """Save a hand-built graph with an IR version every recent onnxruntime reads; checked first."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def two_input_add(tmp_path_factory):
    """out = a + b, both inputs float32["batch", 4]: the symbolic dim is shared."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["out"])],
        "two_input_add",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
    )
    return _save_onnx(graph, tmp_path_factory.mktemp("add") / "add.onnx")


@pytest.fixture(scope="module")
def unresolvable_output(tmp_path_factory):
    """x float32["batch", 4] -> relu: ["batch", 4] (resolvable) and flat: ["n_out"] (not resolvable).

    ``n_out`` names no input dim, so IO binding cannot preallocate ``flat`` and must let
    ONNX Runtime allocate it; ``relu`` is preallocated. Both paths meet in one run.
    """
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["relu"]),
         helper.make_node("Reshape", ["x", "minus_one"], ["flat"])],
        "unresolvable_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["n_out"])],
        initializer=[helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])],
    )
    return _save_onnx(graph, tmp_path_factory.mktemp("unresolvable") / "unresolvable.onnx")


class _SmallConvNet(nn.Module):
    """Conv+BN+ReLU, Conv+ReLU, pool, linear: enough for ORT's Conv+Activation fusion."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def small_convnet_onnx(tmp_path_factory):
    from deploylab.export import export_onnx

    torch.manual_seed(0)
    model = _SmallConvNet().eval()
    with torch.no_grad():  # non-trivial BN so the folded weights matter
        bn = model.features[1]
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("convnet") / "convnet.onnx"
    export_onnx(model, (torch.rand(1, 3, 16, 16),), path, exporter="torchscript", opset=17,
                dynamic_batch=True)
    return path


@pytest.fixture(scope="module")
def lenet_runner(lenet_ts_dynamic):
    return OnnxRuntimeRunner(lenet_ts_dynamic.path)


@pytest.fixture
def capture_deploylab_log():
    """Records of the ``deploylab`` logger (propagate=False, so caplog cannot see them)."""
    records: list[logging.LogRecord] = []

    class _ListHandler(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _ListHandler(logging.DEBUG)
    logger = logging.getLogger("deploylab")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _lenet_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 32, 32), dtype=np.float32)


SPECS = [TensorSpec("image", F32, ("batch", 3, 8, 8)), TensorSpec("ids", np.dtype(np.int64), ("batch", 5))]


def _good_feed(batch: int = 2) -> dict[str, np.ndarray]:
    return {"image": np.zeros((batch, 3, 8, 8), np.float32), "ids": np.zeros((batch, 5), np.int64)}


# ---------------------------------------------------------------- check_feed
def test_check_feed_accepts_a_good_feed_and_makes_it_contiguous():
    feed = _good_feed()
    feed["image"] = np.zeros((2, 8, 8, 3), np.float32).transpose(0, 3, 1, 2)  # a non-contiguous view
    assert not feed["image"].flags.c_contiguous
    checked = check_feed(SPECS, feed)
    assert set(checked) == {"image", "ids"}
    assert checked["image"].flags.c_contiguous and checked["image"].shape == (2, 3, 8, 8)


def test_missing_input_is_named():
    feed = _good_feed()
    del feed["ids"]
    with pytest.raises(DeployLabError, match=r"missing input\(s\) 'ids'") as info:
        check_feed(SPECS, feed)
    assert "image: float32[batchx3x8x8]" in str(info.value)  # says what the model takes


def test_extra_input_is_named():
    feed = _good_feed()
    feed["mask"] = np.zeros((2, 5), np.int64)
    with pytest.raises(DeployLabError, match=r"unknown input\(s\) 'mask'"):
        check_feed(SPECS, feed)


def test_torch_tensor_instead_of_numpy_suggests_numpy():
    feed = _good_feed()
    feed["image"] = torch.zeros(2, 3, 8, 8)
    with pytest.raises(DeployLabError) as info:
        check_feed(SPECS, feed)
    message = str(info.value)
    assert "'image' is a Tensor, not a numpy array" in message
    assert ".numpy()" in message


def test_list_instead_of_numpy_has_no_torch_hint():
    feed = _good_feed()
    feed["ids"] = [[0] * 5] * 2
    with pytest.raises(DeployLabError, match=r"'ids' is a list, not a numpy array") as info:
        check_feed(SPECS, feed)
    assert ".numpy()" not in str(info.value)


def test_wrong_dtype_names_both_dtypes():
    feed = _good_feed()
    feed["image"] = feed["image"].astype(np.float64)
    with pytest.raises(DeployLabError) as info:
        check_feed(SPECS, feed)
    message = str(info.value)
    assert "'image' has dtype float64" in message and "expects float32" in message
    assert "astype(np.float32)" in message


def test_wrong_rank():
    feed = _good_feed()
    feed["image"] = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(DeployLabError, match=r"'image' has shape 3x8x8 \(rank 3\).*expects rank 4"):
        check_feed(SPECS, feed)


def test_wrong_fixed_dim_names_index_and_size():
    feed = _good_feed()
    feed["image"] = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(DeployLabError, match=r"'image' has shape 2x1x8x8, but dim 1 must be 3"):
        check_feed(SPECS, feed)


def test_symbolic_dim_must_agree_across_inputs(two_input_add):
    runner = OnnxRuntimeRunner(two_input_add)
    a, b = np.ones((2, 4), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(DeployLabError) as info:
        runner.infer({"a": a, "b": b})
    message = str(info.value)
    assert "'batch' is 2 in input 'a' but 3 in input 'b'" in message
    # the same batch in both is fine, and the engine really adds
    out = runner.infer({"a": a, "b": 2 * a})["out"]
    np.testing.assert_array_equal(out, np.full((2, 4), 3, np.float32))


def test_bounds_are_enforced():
    specs = [TensorSpec("x", F32, ("batch", 4), bounds=(("batch", 1, 8),))]
    assert check_feed(specs, {"x": np.zeros((8, 4), np.float32)})["x"].shape == (8, 4)
    assert check_feed(specs, {"x": np.zeros((1, 4), np.float32)})["x"].shape == (1, 4)
    with pytest.raises(DeployLabError, match=r"'x' has batch = 9, outside the \[1, 8\]"):
        check_feed(specs, {"x": np.zeros((9, 4), np.float32)})


def test_feed_must_be_a_dict():
    with pytest.raises(DeployLabError, match=r"dict of \{name: array\}, got ndarray; expected names: image, ids"):
        check_feed(SPECS, np.zeros((2, 3, 8, 8), np.float32))


def test_runner_infer_checks_before_the_engine(lenet_runner):
    with pytest.raises(DeployLabError, match=r"missing input\(s\) 'input'"):
        lenet_runner.infer({"x": _lenet_images(1)})
    with pytest.raises(DeployLabError, match=r"dim 2 must be 32"):
        lenet_runner.infer({"input": np.zeros((1, 1, 28, 28), np.float32)})
    with pytest.raises(DeployLabError, match=r"got list"):
        lenet_runner.infer([_lenet_images(1)])
    with pytest.raises(DeployLabError, match=r"\.numpy\(\)"):
        lenet_runner({"input": torch.zeros(1, 1, 32, 32)})


# ---------------------------------------------------------------- seeded_feed
def test_seeded_feed_is_deterministic_per_seed():
    a, b = seeded_feed(SPECS, {"batch": 3}, seed=7), seeded_feed(SPECS, {"batch": 3}, seed=7)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    c = seeded_feed(SPECS, {"batch": 3}, seed=8)
    assert not np.array_equal(a["image"], c["image"])


def test_seeded_feed_honours_dims_and_dtypes():
    specs = [
        TensorSpec("f32", F32, ("batch", 3, "h")),
        TensorSpec("f16", np.dtype(np.float16), (2, None)),
        TensorSpec("i64", np.dtype(np.int64), ("batch", 50)),
        TensorSpec("flag", np.dtype(np.bool_), ("other",)),
    ]
    feed = seeded_feed(specs, {"batch": 4, "h": 5}, seed=0)
    assert feed["f32"].shape == (4, 3, 5) and feed["f32"].dtype == np.float32
    assert feed["f16"].shape == (2, 1) and feed["f16"].dtype == np.float16  # unknown dim -> 1
    assert feed["i64"].shape == (4, 50) and feed["i64"].dtype == np.int64
    assert feed["flag"].shape == (1,) and feed["flag"].dtype == np.bool_  # unnamed symbol -> 1
    assert 0.0 <= feed["f32"].min() and feed["f32"].max() < 1.0
    assert feed["i64"].min() >= 0 and feed["i64"].max() <= 9
    assert len(np.unique(feed["i64"])) > 1
    # a seeded feed passes the check of the specs it was made from
    check_feed(specs, feed)


# ---------------------------------------------------------------- OnnxRuntimeRunner
def test_describe_shows_symbolic_batch(lenet_runner):
    text = lenet_runner.describe()
    assert "input: float32[batchx1x32x32]" in text
    assert "output: float32[batchx10]" in text
    assert text.splitlines()[0] == f"onnxruntime:{lenet_runner.model_path.name} (onnxruntime)"


def test_specs(lenet_runner):
    (inp,), (out,) = lenet_runner.inputs, lenet_runner.outputs
    assert inp == TensorSpec("input", F32, ("batch", 1, 32, 32))
    assert out == TensorSpec("output", F32, ("batch", 10))
    assert lenet_runner.input_names == ["input"] and lenet_runner.output_names == ["output"]


def test_fixed_batch_export_has_int_dims(lenet_ts11):
    runner = OnnxRuntimeRunner(lenet_ts11.path)
    assert runner.inputs[0].shape == (1, 1, 32, 32)
    with pytest.raises(DeployLabError, match=r"dim 0 must be 1"):
        runner.infer({"input": _lenet_images(2)})


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_torch_eager(lenet_runner, lenet_bundle, batch):
    feed = {"input": _lenet_images(batch, seed=batch)}
    got = lenet_runner.infer(feed)["output"]
    want = TorchEagerRunner(lenet_bundle).infer(feed)["output"]
    assert got.shape == want.shape == (batch, 10)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_cuda_request_falls_back_to_cpu_and_says_so(lenet_ts_dynamic, capture_deploylab_log):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: there is nothing to fall back from")
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, providers=["cuda", "cpu"])
    assert runner.providers == ["CPUExecutionProvider"]
    assert len(runner.fallbacks) == 1
    note = runner.fallbacks[0]
    assert "CUDAExecutionProvider" in note and "CPUExecutionProvider instead" in note
    assert "onnxruntime-gpu" in note
    logged = [r.getMessage() for r in capture_deploylab_log]
    assert note in logged
    # and it still runs
    assert runner.infer({"input": _lenet_images(2)})["output"].shape == (2, 10)


def test_provider_aliases_and_default(lenet_ts_dynamic):
    assert OnnxRuntimeRunner(lenet_ts_dynamic.path).providers == ["CPUExecutionProvider"]
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, providers=["CPU"])
    assert runner.providers == ["CPUExecutionProvider"] and runner.fallbacks == []


def test_unknown_provider_name(lenet_ts_dynamic):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, providers=["warp"])
    with pytest.raises(DeployLabError, match=r"unknown ONNX Runtime provider 'warp'") as info:
        runner.activate()
    assert "cuda" in str(info.value)  # lists the aliases


def test_session_options_do_not_change_results(lenet_ts_dynamic, lenet_runner):
    feed = {"input": _lenet_images(3, seed=11)}
    tuned = OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=1, inter_op_threads=1,
                              optimization="disabled")
    np.testing.assert_allclose(tuned.infer(feed)["output"], lenet_runner.infer(feed)["output"],
                               atol=1e-5, rtol=0)
    opts = tuned.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"optimization": "fast"}, r"unknown graph optimization level 'fast'; use one of disabled, basic"),
        ({"intra_op_threads": -1}, r"intra_op_threads must be a non-negative integer.*got -1"),
        ({"inter_op_threads": 1.5}, r"inter_op_threads must be a non-negative integer.*got 1.5"),
    ],
)
def test_bad_session_options_fail_at_construction(tmp_path, kwargs, pattern):
    # the file does not even exist: the options are checked where they are written
    with pytest.raises(DeployLabError, match=pattern):
        OnnxRuntimeRunner(tmp_path / "never_read.onnx", **kwargs)


def test_corrupt_file_fails_at_first_use_naming_the_path(garbage_file):
    path = garbage_file("corrupt.onnx")
    runner = OnnxRuntimeRunner(path)  # construction is lazy
    with pytest.raises(DeployLabError) as info:
        runner.activate()
    assert str(path) in str(info.value)


def test_truncated_file_fails_naming_the_path(lenet_ts_dynamic, tmp_path):
    path = tmp_path / "truncated.onnx"
    data = lenet_ts_dynamic.path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    runner = OnnxRuntimeRunner(path)
    with pytest.raises(DeployLabError) as info:
        runner.infer({"input": _lenet_images(1)})
    assert str(path) in str(info.value)


def test_missing_file_fails_at_first_use(tmp_path):
    runner = OnnxRuntimeRunner(tmp_path / "absent.onnx")
    with pytest.raises(DeployLabError, match="does not exist"):
        runner.inputs


def test_with_model_keeps_settings(lenet_ts_dynamic, lenet_ts11):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=1, optimization="basic")
    other = runner.with_model(lenet_ts11.path)
    assert other.model_path == lenet_ts11.path
    assert (other.intra_op_threads, other.optimization) == (1, "basic")
    assert other.inputs[0].shape == (1, 1, 32, 32)


# ---------------------------------------------------------------- save_optimized_model
def test_save_optimized_model_extended(small_convnet_onnx, tmp_path):
    out = save_optimized_model(small_convnet_onnx, tmp_path / "sub" / "opt.onnx", "extended")
    assert out == tmp_path / "sub" / "opt.onnx" and out.is_file()
    original, optimized = onnx.load(str(small_convnet_onnx)), onnx.load(str(out))
    onnx.checker.check_model(optimized)
    assert len(optimized.graph.node) < len(original.graph.node)
    ops = [(n.domain, n.op_type) for n in optimized.graph.node]
    assert ("com.microsoft", "FusedConv") in ops
    assert all(op != "Relu" for _, op in ops)  # every Relu went into a Conv
    feed = {"input": np.random.default_rng(3).random((2, 3, 16, 16), dtype=np.float32)}
    want = OnnxRuntimeRunner(small_convnet_onnx, optimization="disabled").infer(feed)["output"]
    got = OnnxRuntimeRunner(out, optimization="disabled").infer(feed)["output"]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("level", ["all", "layout"])
def test_save_optimized_model_refuses_hardware_specific_levels(small_convnet_onnx, tmp_path, level):
    out = tmp_path / f"{level}.onnx"
    with pytest.raises(DeployLabError) as info:
        save_optimized_model(small_convnet_onnx, out, level)
    message = str(info.value)
    assert repr(level) in message
    assert "hardware-specific layout" in message and "'extended'" in message
    assert not out.exists()


# ---------------------------------------------------------------- CPU IO binding
@pytest.mark.parametrize("batch", [1, 3])
def test_cpu_iobinding_equals_infer_bit_for_bit(lenet_runner, batch):
    feed = {"input": _lenet_images(batch, seed=20 + batch)}
    bound = lenet_runner.run_with_iobinding(feed)
    plain = lenet_runner.infer(feed)
    assert list(bound) == ["output"] and bound["output"].shape == (batch, 10)
    assert np.array_equal(bound["output"], plain["output"])


def test_cpu_binding_update_then_run(lenet_runner):
    first, second = {"input": _lenet_images(2, 1)}, {"input": _lenet_images(2, 2)}
    binding = lenet_runner.bind_cpu(first)
    out1 = binding.run()["output"]
    assert np.array_equal(out1, lenet_runner.infer(first)["output"])
    binding.update(second)
    out2 = binding.run()["output"]
    assert np.array_equal(out2, lenet_runner.infer(second)["output"])
    assert not np.array_equal(out1, out2)
    # results are copies: a caller modifying them cannot corrupt the next run
    out2[:] = 0
    assert np.array_equal(binding.run()["output"], lenet_runner.infer(second)["output"])


def test_cpu_binding_keeps_its_own_copy_of_the_feed(lenet_runner):
    x = _lenet_images(1, 5)
    binding = lenet_runner.bind_cpu({"input": x})
    want = lenet_runner.infer({"input": x.copy()})["output"]
    x[:] = 0  # the caller reuses its buffer
    assert np.array_equal(binding.run()["output"], want)


def test_cpu_binding_update_with_another_shape_fails(lenet_runner):
    binding = lenet_runner.bind_cpu({"input": _lenet_images(2)})
    with pytest.raises(DeployLabError, match=r"create a new binding for a new shape") as info:
        binding.update({"input": _lenet_images(3)})
    assert "(3, 1, 32, 32)" in str(info.value) and "(2, 1, 32, 32)" in str(info.value)
    with pytest.raises(DeployLabError, match="dtype float64"):
        binding.update({"input": _lenet_images(2).astype(np.float64)})


def test_cpu_binding_with_unresolvable_output_shape(unresolvable_output):
    runner = OnnxRuntimeRunner(unresolvable_output)
    assert runner._output_shapes({"x": (3, 4)}) == {"relu": (3, 4), "flat": None}
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    binding = runner.bind_cpu({"x": x})
    assert binding.outputs["flat"] is None and binding.outputs["relu"].shape == (3, 4)
    got, want = binding.run(), runner.infer({"x": x})
    assert set(got) == set(want) == {"relu", "flat"}
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert got["flat"].shape == (12,)
    np.testing.assert_array_equal(got["relu"], np.maximum(x, 0))
    # the ORT-allocated output follows an update too
    y = -x
    binding.update({"x": y})
    again = binding.run()
    np.testing.assert_array_equal(again["flat"], y.ravel())
    np.testing.assert_array_equal(again["relu"], np.maximum(y, 0))


def test_cuda_iobinding_without_cuda_names_onnxruntime_gpu(lenet_runner):
    # lenet_runner asked for the default (CPU only), so this holds on a GPU machine too
    assert lenet_runner.providers == ["CPUExecutionProvider"]
    with pytest.raises(DeployLabError, match="onnxruntime-gpu") as info:
        lenet_runner.run_cuda_iobinding({"input": torch.rand(1, 1, 32, 32)})
    assert "CPUExecutionProvider" in str(info.value)


@pytest.mark.skipif(
    not (torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()),
    reason="no NVIDIA GPU / onnxruntime-gpu",
)
def test_cuda_iobinding_matches_cpu(lenet_ts_dynamic, lenet_runner):
    runner = OnnxRuntimeRunner(lenet_ts_dynamic.path, providers=["cuda", "cpu"])
    assert runner.providers[0] == "CUDAExecutionProvider"
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    want = lenet_runner.infer({"input": x.numpy()})["output"]

    out = runner.run_cuda_iobinding({"input": x.to("cuda")})
    assert set(out) == {"output"}
    tensor = out["output"]
    assert isinstance(tensor, torch.Tensor) and tensor.is_cuda and tuple(tensor.shape) == (3, 10)
    # CUDA convolutions may use TF32: close, not bit-equal
    np.testing.assert_allclose(tensor.cpu().numpy(), want, atol=2e-3, rtol=1e-2)

    copied = runner.run_cuda_iobinding({"input": x.to("cuda")}, copy_to_cpu=True)
    assert isinstance(copied["output"], np.ndarray)
    np.testing.assert_allclose(copied["output"], want, atol=2e-3, rtol=1e-2)

    with pytest.raises(DeployLabError, match=r"dim 1 must be 1"):
        runner.run_cuda_iobinding({"input": torch.rand(1, 3, 32, 32, device="cuda")})


# ---------------------------------------------------------------- torch eager
@pytest.fixture(scope="module")
def mmcls_ts_onnx(mmcls_bundle, tmp_path_factory):
    from deploylab.export import export_bundle

    return export_bundle(mmcls_bundle, tmp_path_factory.mktemp("mmcls_ts") / "mmcls.onnx",
                         exporter="torchscript", opset=11).path


def test_torch_eager_mmcls_gives_probabilities_matching_the_export(mmcls_bundle, mmcls_ts_onnx):
    reference = TorchEagerRunner(mmcls_bundle)
    assert reference.inputs[0].shape == ("batch", 3, 224, 224)
    assert reference.outputs[0].shape == ("batch", 1000)
    feed = seeded_feed(reference.inputs, {"batch": 1}, seed=4)
    probs = reference.infer(feed)["output"]
    assert probs.shape == (1, 1000) and probs.min() >= 0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    report = compare_runners(reference, OnnxRuntimeRunner(mmcls_ts_onnx), atol=1e-5, rtol=0)
    assert report.passed, report.format()
    assert len(report.comparisons) == 1
    assert report.comparisons[0].max_abs_error <= 1e-5


def test_torch_eager_threads_are_restored(lenet_bundle):
    before = torch.get_num_threads()
    runner = TorchEagerRunner(lenet_bundle, threads=1)
    out = runner.infer({"input": _lenet_images(2)})["output"]
    assert out.shape == (2, 10) and torch.get_num_threads() == before


# ---------------------------------------------------------------- batching.predict
def test_predict_logits_fixed_and_dynamic_batch_agree(lenet_ts11, lenet_ts_dynamic, lenet_bundle):
    images = _lenet_images(7, seed=9)
    fixed = predict(lenet_ts11.path, images)  # seven calls of batch 1
    dynamic = predict(OnnxRuntimeRunner(lenet_ts_dynamic.path), images, batch_size=3)  # 3+3+1
    assert fixed.shape == dynamic.shape == (7, 10)
    assert np.array_equal(fixed, dynamic)
    with torch.no_grad():
        want = lenet_bundle.model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(fixed, want, atol=1e-4, rtol=0)


def test_predict_logits_converts_dtype(lenet_runner):
    images = _lenet_images(4, seed=2)
    np.testing.assert_array_equal(predict(lenet_runner, images.astype(np.float64)),
                                  predict(lenet_runner, images))


# ---------------------------------------------------------------- registry
def test_parse_backends():
    assert parse_backends("onnxruntime") == ["onnxruntime"]
    assert parse_backends(" ONNXRuntime , onnxruntime,") == ["onnxruntime", "onnxruntime"]


@pytest.mark.parametrize("text", ["nope", "onnxruntime,warp", "", " , "])
def test_unknown_backend_lists_the_available_ones(text):
    with pytest.raises(DeployLabError) as info:
        parse_backends(text)
    message = str(info.value)
    assert f"available: {', '.join(BACKENDS)}" in message
    bad = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "onnxruntime"]
    for name in bad:
        assert repr(name) in message


def test_make_runner(lenet_ts_dynamic):
    runner = make_runner("onnxruntime", lenet_ts_dynamic.path, optimization="basic", intra_op_threads=1)
    assert isinstance(runner, OnnxRuntimeRunner)
    assert runner.optimization == "basic" and runner.intra_op_threads == 1
    assert runner.output_names == ["output"]
    with pytest.raises(DeployLabError) as info:
        make_runner("warp", lenet_ts_dynamic.path)
    assert re.search(r"unknown backend\(s\) 'warp'; available: .*onnxruntime", str(info.value))
    assert str(info.value).endswith(", ".join(BACKENDS))


def test_onnxruntime_spinning_can_be_turned_off(lenet_ts_dynamic):
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner

    quiet = OnnxRuntimeRunner(lenet_ts_dynamic.path, intra_op_threads=2, spinning=False).activate()
    entries = quiet.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert entries == "0"
    assert quiet.with_model(lenet_ts_dynamic.path).spinning is False
    default = OnnxRuntimeRunner(lenet_ts_dynamic.path).activate()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's default: spinning on
        default.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
