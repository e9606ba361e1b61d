"""Comparing outputs: array metrics, runner parity, layer-wise localisation; top-k; timing statistics."""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploylab.backends.base import OnnxFileRunner
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.torch_eager import TorchEagerRunner
from deploylab.bench import summarize_timings, time_call, time_interleaved
from deploylab.compare import (
    compare_arrays,
    compare_layerwise,
    compare_runners,
    mark_all_outputs,
)
from deploylab.errors import DeployLabError
from deploylab.postprocess import is_probability, softmax, top_k


# ---------------------------------------------------------------- helpers and fixtures
def scaled_copy(src, dst, initializer: str, factor: float = 1.05):
    """Copy an ONNX file with one initializer multiplied by ``factor``."""
    model = onnx.load(str(src))
    for i, init in enumerate(model.graph.initializer):
        if init.name == initializer:
            scaled = numpy_helper.to_array(init) * np.asarray(factor, dtype=numpy_helper.to_array(init).dtype)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(scaled, initializer))
            break
    else:
        raise AssertionError(f"no initializer {initializer!r} in {src}")
    onnx.save(model, str(dst))
    return dst


def second_conv(path):
    """(weight initializer name, output tensor name) of the second Conv node."""
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    assert len(convs) >= 2
    return convs[1].input[1], convs[1].output[0]


@pytest.fixture(scope="module")
def lenet_onnx(lenet_ts_dynamic):
    return lenet_ts_dynamic.path  # read-only (session fixture)


@pytest.fixture(scope="module")
def lenet_last_layer_scaled(lenet_onnx, tmp_path_factory):
    model = onnx.load(str(lenet_onnx))
    last_gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    return scaled_copy(lenet_onnx, tmp_path_factory.mktemp("scaled") / "scaled.onnx", last_gemm.input[1])


@pytest.fixture(scope="module")
def lenet_conv2_scaled(lenet_onnx, tmp_path_factory):
    weight, _ = second_conv(lenet_onnx)
    return scaled_copy(lenet_onnx, tmp_path_factory.mktemp("conv2") / "conv2.onnx", weight)


# ---------------------------------------------------------------- compare_runners
def test_exported_lenet_passes_against_torch(lenet_bundle, lenet_onnx):
    report = compare_runners(TorchEagerRunner(lenet_bundle), OnnxRuntimeRunner(lenet_onnx),
                             batch_sizes=(1, 3), topk=5)
    assert report.passed, report.format()
    assert [c.shape for c in report.comparisons] == [(1, 10), (3, 10)]
    for c in report.comparisons:
        assert c.name == "output"
        assert c.max_abs_error < 1e-4
        assert c.top1_agreement == 1.0
        assert c.topk == 5 and c.topk_agreement == 1.0  # 10 classes > k: overlap computed
        assert c.cosine_similarity == pytest.approx(1.0, abs=1e-9)
    text = report.format()
    assert text.splitlines()[0].endswith(": PASS") and "top-5 overlap 100.0%" in text
    data = report.to_dict()
    assert data["passed"] is True and len(data["comparisons"]) == 2


def test_perturbed_model_fails_and_worst_names_the_output(lenet_bundle, lenet_last_layer_scaled):
    report = compare_runners(TorchEagerRunner(lenet_bundle), OnnxRuntimeRunner(lenet_last_layer_scaled),
                             batch_sizes=(1, 3))
    assert not report.passed
    worst = report.worst()
    assert worst.name == "output" and not worst.passed
    assert worst.max_abs_error > 1e-3
    assert worst.max_abs_error == max(c.max_abs_error for c in report.comparisons)
    assert "FAIL output" in report.format()


def test_compare_runners_uses_given_feeds(lenet_onnx):
    a, b = OnnxRuntimeRunner(lenet_onnx), OnnxRuntimeRunner(lenet_onnx, optimization="disabled")
    feeds = [{"input": np.zeros((2, 1, 32, 32), np.float32)}, {"input": np.ones((4, 1, 32, 32), np.float32)}]
    report = compare_runners(a, b, feeds)
    assert [c.shape for c in report.comparisons] == [(2, 10), (4, 10)]
    assert report.passed


# ---------------------------------------------------------------- layer-wise
def test_layerwise_localises_a_perturbed_conv(lenet_onnx, lenet_conv2_scaled, tmp_path):
    _, conv2_out = second_conv(lenet_onnx)
    report = compare_layerwise(OnnxRuntimeRunner(lenet_onnx), OnnxRuntimeRunner(lenet_conv2_scaled),
                               workdir=tmp_path)
    assert not report.passed
    name, node, comparison = report.first_failure
    assert name == conv2_out
    assert node.startswith("Conv ")
    assert not comparison.passed
    names = [t[0] for t in report.tensors]
    index = names.index(conv2_out)
    assert index >= 3  # conv1, its activation and pooling come first
    assert all(c.passed and c.max_abs_error == 0.0 for _, _, c in report.tensors[:index])
    assert not report.tensors[-1][2].passed  # the error reaches the output
    assert names[-1] == "output"
    text = report.format()
    assert f"first out of tolerance: {conv2_out!r}" in text
    assert list(tmp_path.iterdir()) == []  # the marked copies were temporary


def test_layerwise_identical_models_pass(lenet_onnx, tmp_path):
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(lenet_onnx.read_bytes())
    report = compare_layerwise(OnnxRuntimeRunner(lenet_onnx, optimization="disabled"), OnnxRuntimeRunner(copy))
    assert report.passed and report.first_failure is None
    n_nodes = len(onnx.load(str(lenet_onnx)).graph.node)
    assert len(report.tensors) == n_nodes and report.skipped == []
    assert "all within tolerance" in report.format()


@pytest.mark.parametrize("side", ["reference", "candidate"])
def test_layerwise_refuses_a_torch_runner(lenet_bundle, lenet_onnx, side):
    torch_runner, onnx_runner = TorchEagerRunner(lenet_bundle), OnnxRuntimeRunner(lenet_onnx)
    assert not isinstance(torch_runner, OnnxFileRunner)
    args = (torch_runner, onnx_runner) if side == "reference" else (onnx_runner, torch_runner)
    with pytest.raises(DeployLabError, match=r"needs two ONNX-based runners; torch:lenet \(torch\)"):
        compare_layerwise(*args)


def test_mark_all_outputs(lenet_onnx, tmp_path):
    out = tmp_path / "marked.onnx"
    order = mark_all_outputs(lenet_onnx, out)
    original = onnx.load(str(lenet_onnx))
    expected = [(o, f"{n.op_type} {n.name}") for n in original.graph.node for o in n.output
                if o not in {g.name for g in original.graph.output}]
    assert order == expected  # graph order, with "OpType name"
    # topological: every tensor's producer reads only graph inputs, initializers or earlier tensors
    produced = {o: n for n in original.graph.node for o in n.output}
    available = {i.name for i in original.graph.input} | {i.name for i in original.graph.initializer}
    for name, _ in order:
        assert all(i in available for i in produced[name].input if i), name
        available.add(name)
    marked = onnx.load(str(out))
    node_outputs = sum(len(n.output) for n in marked.graph.node)
    assert len(marked.graph.output) == node_outputs
    assert len({o.name for o in marked.graph.output}) == node_outputs
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in marked.graph.output)
    # the original is untouched and the copy runs, giving every intermediate tensor
    assert len(onnx.load(str(lenet_onnx)).graph.output) == 1
    outputs = OnnxRuntimeRunner(out).infer({"input": np.zeros((2, 1, 32, 32), np.float32)})
    assert set(outputs) == {name for name, _ in order} | {"output"}


# ---------------------------------------------------------------- compare_arrays
def test_topk_agreement_handcrafted():
    reference = np.array([
        [10, 9, 8, 7, 6, 0, 0, 0, 0, 0],   # top-5 {0,1,2,3,4}
        [0, 0, 0, 0, 0, 6, 7, 8, 9, 10],   # top-5 {5,...,9}
    ], dtype=np.float32)
    candidate = np.array([
        [10, 9, 8, 0, 0, 0, 0, 7, 6, 0],   # top-5 {0,1,2,7,8}: 3 of 5
        [0, 0, 0, 0, 0, 6, 7, 8, 9, 10],   # identical: 5 of 5
    ], dtype=np.float32)
    first = compare_arrays(reference[:1], candidate[:1], topk=5)
    assert first.topk_agreement == pytest.approx(0.6)
    assert first.top1_agreement == 1.0
    both = compare_arrays(reference, candidate, topk=5)
    assert both.topk_agreement == pytest.approx(0.8)
    assert both.top1_agreement == 1.0
    assert not both.passed
    assert both.max_abs_error == 7.0
    assert compare_arrays(reference, candidate, topk=3).topk_agreement == pytest.approx(1.0)
    assert compare_arrays(reference, candidate, topk=10).topk_agreement is None  # k not < classes
    swapped = candidate.copy()
    swapped[1, [8, 9]] = swapped[1, [9, 8]]
    assert compare_arrays(reference, swapped).top1_agreement == 0.5


def test_compare_arrays_tolerance_rule_and_metrics():
    ref = np.array([[1.0, -2.0, 4.0]], dtype=np.float32)
    # |diff| <= atol + rtol*|ref|: 0.1 + 0.1*4 = 0.5 allowed at the last element
    ok = compare_arrays(ref, ref + np.array([[0.15, 0.25, 0.5]], np.float32), atol=0.1, rtol=0.1)
    assert ok.passed
    bad = compare_arrays(ref, ref + np.array([[0.0, 0.0, 0.6]], np.float32), atol=0.1, rtol=0.1)
    assert not bad.passed
    assert bad.max_abs_error == pytest.approx(0.6, rel=1e-6)
    assert bad.max_rel_error == pytest.approx(0.15, rel=1e-6)
    assert bad.mean_abs_error == pytest.approx(0.2, rel=1e-6)
    assert compare_arrays(ref, -ref).cosine_similarity == pytest.approx(-1.0)
    assert compare_arrays(ref, ref).passed and compare_arrays(ref, ref).max_abs_error == 0.0
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert not compare_arrays(nan, nan, atol=1.0).passed  # non-finite never passes
    assert compare_arrays(np.zeros(3), np.zeros(3)).cosine_similarity == 1.0
    with pytest.raises(DeployLabError, match=r"output 'logits' has shape \(1, 4\) but the reference has \(1, 3\)"):
        compare_arrays(ref, np.zeros((1, 4)), name="logits")


# ---------------------------------------------------------------- postprocess
def test_top_k_logits_and_probabilities():
    logits = np.array([[2.0, 0.5, 3.0, -1.0]])
    assert not is_probability(logits)
    probs = softmax(logits)
    assert is_probability(probs)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    from_logits = top_k(logits, k=4)[0]
    assert [p.index for p in from_logits] == [2, 0, 1, 3]
    assert sum(p.probability for p in from_logits) == pytest.approx(1.0)
    assert from_logits[0].score == 3.0 and from_logits[0].probability == pytest.approx(probs[0, 2])
    from_probs = top_k(probs, k=2)[0]  # already probabilities: taken as they are
    assert [p.index for p in from_probs] == [2, 0]
    assert all(p.probability == p.score for p in from_probs)
    # a row of non-negative scores that does not sum to 1 is treated as logits
    assert not is_probability(np.array([[0.2, 0.2, 0.2]]))
    assert top_k(np.array([[0.2, 0.2, 0.2]]), k=1)[0][0].probability == pytest.approx(1 / 3)


def test_top_k_labels_and_fallback():
    scores = np.array([[0.1, 0.9, 0.3, 0.7], [5.0, 1.0, 2.0, 3.0]])
    result = top_k(scores, k=2, classes=["cat", "dog", "fish"])
    assert [[p.label for p in row] for row in result] == [["dog", "class 3"], ["cat", "class 3"]]
    assert [p.label for p in top_k(scores[0], k=2)[0]] == ["class 1", "class 3"]  # 1-D input, no classes
    assert len(top_k(scores, k=10)[0]) == 4


def test_top_k_ties_are_stable():
    ranked = top_k(np.array([[1.0, 3.0, 3.0, 2.0, 3.0]]), k=5)[0]
    assert [p.index for p in ranked] == [1, 2, 4, 3, 0]


# ---------------------------------------------------------------- bench
def test_summarize_timings_known_answers():
    samples = [3_000_000, 1_000_000, 10_000_000, 2_000_000, 4_000_000]  # 3, 1, 10, 2, 4 ms
    stats = summarize_timings("synthetic", samples, items_per_call=8)
    assert stats.repeats == 5
    assert stats.median_ms == pytest.approx(3.0)
    assert stats.mean_ms == pytest.approx(4.0)
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.p90_ms == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90)) == pytest.approx(7.6)
    assert stats.p99_ms == pytest.approx(np.percentile([1, 2, 3, 4, 10], 99))
    assert stats.stdev_ms == pytest.approx(statistics.pstdev([1, 2, 3, 4, 10]))
    assert stats.throughput == pytest.approx(8 * 1000 / 3.0)
    assert stats.spread == pytest.approx((7.6 - 1.0) / 3.0)
    assert stats.to_dict()["throughput_per_s"] == pytest.approx(8000 / 3)
    assert "median 3.000 ms" in stats.format() and "n=5" in stats.format()
    single = summarize_timings("one", np.array([2_500_000]))
    assert single.stdev_ms == 0.0 and single.p90_ms == single.median_ms == pytest.approx(2.5)
    with pytest.raises(DeployLabError, match="no timings for 'empty'"):
        summarize_timings("empty", [])


def test_time_call_counts_warmup_and_repeats():
    calls = []
    stats = time_call(lambda: calls.append(1), label="count", warmup=3, repeats=7, items_per_call=2)
    assert len(calls) == 10
    assert stats.repeats == 7 and stats.label == "count" and stats.items_per_call == 2
    assert 0 <= stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.p99_ms


def test_time_call_min_seconds_extends_the_run():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.001)

    stats = time_call(fn, warmup=0, repeats=1, min_seconds=0.02)
    assert stats.repeats == len(calls) >= 2
    assert stats.min_ms >= 1.0  # each call slept at least 1 ms


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": -1}, {"warmup": -1}])
def test_time_call_rejects_bad_counts(kwargs):
    calls = []
    with pytest.raises(DeployLabError, match="repeats must be >= 1 and warmup >= 0"):
        time_call(lambda: calls.append(1), **kwargs)
    assert calls == []


def test_time_interleaved_alternates_and_reports_every_key():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b"), "c": lambda: order.append("c")}
    stats = time_interleaved(fns, warmup=2, repeats=4, items_per_call=3)
    assert set(stats) == {"a", "b", "c"}
    for key, s in stats.items():
        assert s.label == key and s.repeats == 4 and s.items_per_call == 3
    assert order.count("a") == order.count("b") == order.count("c") == 6
    assert order[-12:] == ["a", "b", "c"] * 4  # timed calls alternate


def test_layerwise_refuses_graphs_that_share_no_tensor(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from deploylab.backends.onnxruntime import OnnxRuntimeRunner
    from deploylab.compare import compare_layerwise
    from deploylab.errors import DeployLabError

    paths = []
    for out in ("y", "z"):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], [out])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 4])],
        )
        path = tmp_path / f"{out}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        paths.append(path)
    with pytest.raises(DeployLabError, match="share no tensor names"):
        compare_layerwise(OnnxRuntimeRunner(paths[0]), OnnxRuntimeRunner(paths[1]))
