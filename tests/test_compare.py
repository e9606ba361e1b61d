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
    COSINE_MIN,
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


def perturbed_copy(src, dst, relative: float = 0.1, seed: int = 0):
    """Copy an ONNX file with every float initializer multiplied by ``1 + relative * N(0, 1)`` (seeded)."""
    rng = np.random.default_rng(seed)
    model = onnx.load(str(src))
    for i, init in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f":
            noisy = array * (1 + relative * rng.standard_normal(array.shape)).astype(array.dtype)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(dst))
    return dst


def last_gemm(path):
    """(weight, bias) initializer names of the last Gemm node: the classifier."""
    return tuple([n for n in onnx.load(str(path)).graph.node if n.op_type == "Gemm"][-1].input[1:3])


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


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """{init: (bundle, ONNX file)}: mobilenet_v3_small under both inits, torchscript, dynamic batch (read-only)."""
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    made = {}
    for init in ("seeded", "realistic"):
        bundle = resolve_model("torchvision:mobilenet_v3_small", init=init)
        path = tmp_path_factory.mktemp(f"mobilenet_{init}") / "m.onnx"
        made[init] = bundle, export_bundle(bundle, path, exporter="torchscript", opset=17, dynamic_batch=True).path
    return made


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


# ---------------------------------------------------------------- the reference's scale, degenerate references
def test_tolerance_is_judged_at_the_reference_scale():
    ref = np.random.default_rng(0).normal(size=(4, 10)) * 1e-5  # max abs ~3e-5, below atol 1e-4
    doubled = 2 * ref
    assert np.allclose(doubled, ref, atol=1e-4, rtol=1e-3)  # numpy's rule passes a 100% error
    c = compare_arrays(ref, doubled)
    assert c.verdict == "FAIL" and not c.passed and not c.degenerate
    assert "values outside atol + rtol * |reference|" in c.reason
    assert c.cosine_similarity == pytest.approx(1.0) and c.top1_agreement == 1.0  # only the scale catches it
    assert c.reference_scale == pytest.approx(np.abs(ref).max())
    assert c.effective_atol == pytest.approx(1e-2 * c.reference_scale)
    text = c.format()
    assert text.startswith("FAIL output 4x10: reference max abs 2.") and "capped by the scale" in text
    assert compare_arrays(ref, ref * (1 + 1e-4)).verdict == "PASS"
    # at an ordinary scale atol counts in full, as in numpy
    big = ref * 1e5
    assert compare_arrays(big, big + 0.9e-4, rtol=0).passed
    assert not compare_arrays(big, big + 1.1e-4, rtol=0).passed
    assert compare_arrays(big, big).effective_atol == 1e-4


@pytest.mark.parametrize("scale", [0.0, 8.9e-10, 4.5e-14])
def test_near_zero_reference_is_degenerate_not_a_pass(scale):
    base = np.random.default_rng(0).normal(size=(8, 1000))
    ref = base * scale
    c = compare_arrays(ref, ref.copy())  # even an exact candidate cannot be judged
    assert c.verdict == "DEGENERATE" and c.degenerate and not c.passed
    assert c.reason.startswith(f"reference output max abs {c.reference_scale:.2g} is near zero")
    assert "use real weights" in c.reason and c.to_dict()["verdict"] == "DEGENERATE"
    assert c.format().startswith("DEGENERATE output 8x1000") and "cannot judge: " in c.format()
    assert ("all 8 rows predict class 0" in c.reason) == (scale == 0.0)
    assert compare_arrays(base * 1e-5, base * 1e-5).verdict == "PASS"  # small is not near zero


def test_constant_rows_are_degenerate_when_their_inputs_differ():
    rng = np.random.default_rng(0)
    ref = np.tile(rng.normal(size=10), (4, 1))  # a constant classifier: every row the same scores
    c = compare_arrays(ref, ref.copy())
    assert c.verdict == "DEGENERATE"
    assert "all 4 reference rows are the same" in c.reason and "does not depend on the input" in c.reason
    assert f"all 4 rows predict class {ref[0].argmax()}" in c.reason
    assert compare_arrays(ref, ref.copy(), distinct_inputs=False).verdict == "PASS"  # identical inputs
    varied = ref + 0.1 * rng.normal(size=ref.shape)
    assert compare_arrays(varied, varied.copy()).verdict == "PASS"
    assert compare_arrays(ref[:1], ref[:1].copy()).verdict == "PASS"  # one row cannot show it
    flat = np.full((1, 10), 3.0)  # every class the same score
    one_row = compare_arrays(flat, flat.copy())
    assert one_row.verdict == "DEGENERATE" and "does not depend on the class" in one_row.reason


def test_cosine_and_top1_backstops_hold_with_huge_tolerances():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 1000))
    ref[:, 7], ref[0, 3] = 10.0, 9.5  # class 7 first everywhere; row 0's runner-up is 0.5 behind
    huge = {"atol": 1e9, "rtol": 1e9}
    slightly_noisy = ref + 0.02 * rng.normal(size=ref.shape) * (ref < 9)
    assert compare_arrays(ref, slightly_noisy, **huge).verdict == "PASS"  # the values check is vacuous
    assert not compare_arrays(ref, slightly_noisy).passed
    noisy = ref + 0.2 * rng.normal(size=ref.shape) * (ref < 9)
    c = compare_arrays(ref, noisy, **huge)
    assert c.cosine_similarity < COSINE_MIN and c.top1_agreement == 1.0
    assert c.verdict == "FAIL" and c.reason == f"cosine {c.cosine_similarity:.4f} < {COSINE_MIN}"
    swapped = ref.copy()
    swapped[0, [7, 3]] = ref[0, [3, 7]]
    c = compare_arrays(ref, swapped, **huge)
    assert c.cosine_similarity > COSINE_MIN and c.top1_agreement == 0.75
    assert c.verdict == "FAIL" and c.reason == "top-1 class differs in 1 of 4 rows (no tie in the reference)"
    tied = ref.copy()
    tied[0, 3] = 9.95  # within 1% of the scale (10): a tie, either class may come first
    tied_swapped = tied.copy()
    tied_swapped[0, [7, 3]] = tied[0, [3, 7]]
    c = compare_arrays(tied, tied_swapped, **huge)
    assert c.verdict == "PASS" and c.top1_agreement == 0.75
    assert compare_arrays(tied, tied_swapped).verdict == "FAIL"  # default tolerances: 0.05 is too far


@pytest.mark.parametrize("init, verdict", [("seeded", "DEGENERATE"), ("realistic", "FAIL")])
def test_ten_percent_weight_perturbation_never_passes(mobilenet, tmp_path, init, verdict):
    bundle, path = mobilenet[init]
    exact = compare_runners(TorchEagerRunner(bundle), OnnxRuntimeRunner(path), batch_sizes=(1, 4))
    perturbed = perturbed_copy(path, tmp_path / "perturbed.onnx", relative=0.1)
    report = compare_runners(TorchEagerRunner(bundle), OnnxRuntimeRunner(perturbed), batch_sizes=(1, 4))
    assert report.verdict == verdict and not report.passed, report.format()
    assert report.format().splitlines()[0].endswith(f": {verdict}")
    if init == "seeded":  # torchvision's init: outputs near 1e-9, far below atol
        assert report.worst().max_abs_error < 1e-4  # numpy's allclose would pass it
        assert report.degenerate and "near zero" in report.reason
        assert exact.verdict == "DEGENERATE"  # the exact export cannot be judged either
    else:
        assert exact.verdict == "PASS", exact.format()
        assert not report.degenerate and "outside" in report.reason
        assert all(c.reference_scale > 1e-3 for c in exact.comparisons)


def test_zeroed_classifier_never_passes(mobilenet, tmp_path):
    weight, bias = last_gemm(mobilenet["realistic"][1])
    zeroed = scaled_copy(mobilenet["realistic"][1], tmp_path / "zero_w.onnx", weight, factor=0.0)
    zeroed = scaled_copy(zeroed, tmp_path / "zeroed.onnx", bias, factor=0.0)
    assert not OnnxRuntimeRunner(zeroed).infer({"input": np.ones((2, 3, 224, 224), np.float32)})["output"].any()
    seeded, realistic = mobilenet["seeded"][0], mobilenet["realistic"][0]
    issue = compare_runners(TorchEagerRunner(seeded), OnnxRuntimeRunner(zeroed), batch_sizes=(1, 4))
    assert issue.verdict == "DEGENERATE" and not issue.passed  # the issue's case: it used to PASS
    assert all(c.cosine_similarity == 0.0 and c.max_abs_error < 1e-4 for c in issue.comparisons)
    judged = compare_runners(TorchEagerRunner(realistic), OnnxRuntimeRunner(zeroed), batch_sizes=(1, 4))
    assert judged.verdict == "FAIL" and "cosine 0.0000 < 0.995" in judged.reason
    itself = compare_runners(OnnxRuntimeRunner(zeroed, optimization="disabled"), OnnxRuntimeRunner(zeroed),
                             batch_sizes=(1, 4))
    assert itself.verdict == "DEGENERATE" and "max abs 0 is near zero" in itself.reason
    assert itself.to_dict()["verdict"] == "DEGENERATE" and itself.to_dict()["passed"] is False


def test_constant_classifier_runner_is_degenerate_beyond_one_row(lenet_onnx, tmp_path):
    weight, _ = last_gemm(lenet_onnx)
    constant = scaled_copy(lenet_onnx, tmp_path / "constant.onnx", weight, factor=0.0)  # output = bias
    report = compare_runners(OnnxRuntimeRunner(constant, optimization="disabled"), OnnxRuntimeRunner(constant),
                             batch_sizes=(1, 3))
    one, three = report.comparisons
    assert one.verdict == "PASS"  # a single row cannot show that every input gets the same scores
    assert three.verdict == "DEGENERATE" and "all 3 reference rows are the same" in three.reason
    assert report.verdict == "DEGENERATE" and not report.passed and report.reason == three.reason
    same_inputs = [{"input": np.ones((3, 1, 32, 32), np.float32)}]
    assert compare_runners(OnnxRuntimeRunner(constant), OnnxRuntimeRunner(constant), same_inputs).passed


def test_one_class_for_every_input_is_not_degenerate_by_itself(lenet_bundle, lenet_onnx):
    import torch

    from deploylab.export import verify_export

    # verify_export's seeded noise images: the trained LeNet calls all 8 a 0, but its scores
    # still depend on the input, so the check can judge a candidate against them
    x = torch.rand((8, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    assert set(lenet_bundle.reference(x).argmax(axis=1)) == {0}
    parity = verify_export(lenet_bundle, lenet_onnx, batch_sizes=(8,))
    assert parity.verdict == "PASS" and parity.passed, parity.format()


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
    assert stats.p90_ms is None and stats.p99_ms is None  # 5 samples support neither percentile
    assert (stats.q1_ms, stats.q3_ms) == (pytest.approx(2.0), pytest.approx(4.0))
    assert stats.stdev_ms == pytest.approx(statistics.pstdev([1, 2, 3, 4, 10]))
    assert stats.throughput == pytest.approx(8 * 1000 / 3.0)
    assert stats.spread == pytest.approx((4.0 - 2.0) / 3.0) and stats.upper_ms == pytest.approx(4.0)
    assert stats.to_dict()["throughput_per_s"] == pytest.approx(8000 / 3)
    assert "median 3.000 ms" in stats.format() and "n=5" in stats.format() and "p90" not in stats.format()
    single = summarize_timings("one", np.array([2_500_000]))
    assert single.stdev_ms == 0.0 and single.q1_ms == single.q3_ms == single.median_ms == pytest.approx(2.5)
    with pytest.raises(DeployLabError, match="no timings for 'empty'"):
        summarize_timings("empty", [])


def test_time_call_counts_warmup_and_repeats():
    calls = []
    stats = time_call(lambda: calls.append(1), label="count", warmup=3, repeats=7, items_per_call=2)
    assert len(calls) == 10
    assert stats.repeats == 7 and stats.label == "count" and stats.items_per_call == 2
    assert 0 <= stats.min_ms <= stats.q1_ms <= stats.median_ms <= stats.q3_ms
    assert stats.p90_ms is None and stats.method == "calls"


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


# ---------------------------------------------------------------- the metric functions
def test_whole_array_and_mean_row_cosine_are_different_numbers():
    """Rows of very different norms: the whole-array cosine is dominated by the big row, the mean
    per-row cosine weighs every row alike. Each verdict reports the one it names."""
    from deploylab.compare import mean_row_cosine, row_cosines, whole_array_cosine
    from deploylab.quantize.evaluate import fidelity

    reference = np.array([[100.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    candidate = np.array([[100.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # the small row is orthogonal
    assert row_cosines(reference, candidate).tolist() == pytest.approx([1.0, 0.0])
    assert mean_row_cosine(reference, candidate) == pytest.approx(0.5)
    assert whole_array_cosine(reference, candidate) == pytest.approx(10000 / 10001)
    assert compare_arrays(reference, candidate).cosine_similarity == whole_array_cosine(reference, candidate)
    assert fidelity(reference, candidate).mean_cosine == mean_row_cosine(reference, candidate)
    assert whole_array_cosine(np.zeros(3), np.zeros(3)) == 1.0 and whole_array_cosine(np.zeros(3), np.ones(3)) == 0.0


def test_max_abs_error_and_values_mismatch():
    from deploylab.compare import max_abs_error, top1_agreement, topk_overlap, values_mismatch

    assert max_abs_error(np.ones((2, 3)), np.ones((3, 2))) == float("inf")
    assert max_abs_error(np.zeros(0), np.zeros(0)) == 0.0
    assert max_abs_error([1.0, 2.0], [1.5, 2.0]) == 0.5
    assert values_mismatch(np.ones(4), np.ones(4) + 1e-9, rtol=1e-5, atol=1e-6) is None
    got = np.array([1.0, 2.0, np.nan, 4.5])
    assert values_mismatch(np.array([1.0, 2.0, np.nan, 4.0]), got, rtol=0, atol=0.1) == (
        "1 of 4 values off, max abs error 0.5")
    assert values_mismatch(np.array([1.0]), np.array([np.inf]), rtol=0, atol=0.1) == (
        "1 of 1 values off, all at NaN/inf positions")
    ref = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    cand = np.array([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
    assert top1_agreement(ref, cand) == 0.5
    assert topk_overlap(ref, cand, k=2) == pytest.approx(0.5)  # {0, 1} vs {0, 2}; {3, 2} vs {0, 2}: one of two each
