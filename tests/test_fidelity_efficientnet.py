"""Fidelity of quantized EfficientNet-Lite0 (real ImageNet weights) and the helpers notebook 06 uses.

The model is the point: its depthwise convolutions make per-tensor int8 lose most of its
agreement with fp32 while per-channel keeps most of it, a property a constant classifier
(the seeded ResNet-18) could never show. The view set is smaller than the notebook's 320
to keep the file fast; the bounds have a wide margin for that and for CPUs without VNNI
(7-bit weights).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploylab.errors import DeployLabError
from deploylab.quantize import FidelityBudget
from deploylab.plots import plot_quality_speed
from deploylab.quantize.report import (
    evaluate_candidates,
    per_tensor_weight_levels,
    qdq_format,
    quantize_variants,
    zero_range_tensors,
)

VIEWS = 80  # 10 views of each of the 8 labelled photos


@pytest.fixture(scope="module")
def effnet(tmp_path_factory):
    """(fp32 ONNX path, preprocessing) of EfficientNet-Lite0; torchscript export, fast (read-only file)."""
    from deploylab.export import export_bundle
    from deploylab.models import resolve_model

    bundle = resolve_model("efficientnet_lite0")
    path = tmp_path_factory.mktemp("effnet") / "efficientnet_lite0.onnx"
    export_bundle(bundle, path, exporter="torchscript", opset=17, dynamic_batch=True)
    return path, bundle.preprocessing


@pytest.fixture(scope="module")
def views(effnet):
    from deploylab.data.calibration import labelled_evaluation_views

    return labelled_evaluation_views(VIEWS, seed=0, preprocessing=effnet[1])


@pytest.fixture(scope="module")
def photos(effnet):
    from deploylab.quantize.evaluate import labelled_photo_batch

    images, accepted, _names = labelled_photo_batch(effnet[1])
    return images, accepted


@pytest.fixture(scope="module")
def variants(effnet, tmp_path_factory):
    from deploylab.data.calibration import image_calibration

    calibration = image_calibration(16, seed=0, preprocessing=effnet[1])
    grid = {"per-tensor": {"per_channel": False}, "per-channel": {"per_channel": True},
            "tensorrt": {"per_channel": True, "activation_type": "int8",
                         "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "QuantizeBias": False}}}
    return quantize_variants(effnet[0], calibration, grid, tmp_path_factory.mktemp("variants"), stem="lite0")


@pytest.fixture(scope="module")
def table(effnet, variants, views, photos):
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner
    from deploylab.quantize import convert_to_fp16

    fp16 = convert_to_fp16(effnet[0], effnet[0].parent / "fp16.onnx").path
    candidates = {("fp32", "onnxruntime"): OnnxRuntimeRunner(effnet[0]), ("fp16", "onnxruntime"): OnnxRuntimeRunner(fp16)}
    candidates |= {(f"int8 {k}", "onnxruntime"): OnnxRuntimeRunner(r.path) for k, r in variants.items()}
    return evaluate_candidates(candidates, views, photos, budget=FidelityBudget(0.99, 0.05))


# ---------------------------------------------------------------- the model
def test_reference_discriminates_and_fp16_keeps_its_decisions(table):
    ref, fp16 = table["fp32", "onnxruntime"], table["fp16", "onnxruntime"]
    assert ref.fidelity.reference_classes >= 5  # a real classifier, not a constant one
    assert ref.photos.top1 >= 0.75  # the ImageNet weights name the labelled photos
    # fp16 moves the softmax by ~1e-4 nats; a flip needs a near tie, so allow 2 of 80 views
    assert fp16.fidelity.top1_agreement >= 0.97 and fp16.fidelity.mean_kl < 1e-3
    assert fp16.photos.correct_top1 == ref.photos.correct_top1


def test_per_channel_weights_rescue_int8_on_depthwise_convs(table):
    pt, pc = table["int8 per-tensor", "onnxruntime"].fidelity, table["int8 per-channel", "onnxruntime"].fidelity
    assert pc.top1_agreement >= 0.75 and pc.top1_agreement > pt.top1_agreement + 0.1
    assert pc.mean_kl < pt.mean_kl / 2
    assert table["int8 per-tensor", "onnxruntime"].verdict.verdict == "FAIL"
    assert any("top-1 agreement" in reason for reason in table["int8 per-tensor", "onnxruntime"].verdict.reasons)


def test_candidate_table_formats_and_keeps_outputs(table, views):
    text = table.format()
    assert text.splitlines()[2].split()[0] == "fp32" and "reference" in text.splitlines()[2]
    assert "int8 per-channel" in text and "FAIL" in text
    assert table.reference_outputs.shape == (len(views), 1000)
    assert set(table.outputs) == {(r.label, r.engine) for r in table}
    photos_text = table.format_photos()
    assert photos_text.splitlines()[0].split()[-1] == "onnxruntime" and "/8" in photos_text
    with pytest.raises(KeyError, match="no candidate"):
        table["int4", "onnxruntime"]


def test_variants_share_one_calibration_and_keep_their_own_settings(variants):
    assert {r.settings["per_channel"] for r in variants.values()} == {False, True}
    assert all(r.settings["preprocessed"] for r in variants.values())
    assert len({r.path for r in variants.values()}) == 3
    notes = [n for r in variants.values() for n in r.notes if n.startswith("calibration (minmax")]
    assert len(notes) == 3 and len(set(notes)) == 1  # one calibration, reported by each variant
    assert variants["per-channel"].weight_bytes_after < variants["per-channel"].weight_bytes_before / 3


def test_only_the_symmetric_signed_variant_suits_tensorrt(variants):
    default, trt = qdq_format(variants["per-channel"].path), qdq_format(variants["tensorrt"].path)
    assert not default.symmetric_signed and default.nonzero_zero_points > 0 and "int32" in default.types
    assert trt.symmetric_signed and set(trt.types) == {"int8"} and trt.nonzero_zero_points == 0
    assert "symmetric signed" in trt.format()


def test_efficientnet_has_no_zero_calibration_ranges_and_per_tensor_wastes_levels(effnet, variants):
    assert zero_range_tensors(effnet[0], variants["per-channel"].ranges) == []
    levels = per_tensor_weight_levels(effnet[0])
    depthwise = [level for level in levels if level.depthwise]
    assert len(depthwise) == 16 and len(levels) == 49  # EfficientNet-Lite0's 16 blocks, 49 convolutions
    assert np.median([level.median_levels for level in depthwise]) < 64


# ---------------------------------------------------------------- helpers on tiny graphs
def _conv_model(weight: np.ndarray, group: int = 1, bias: np.ndarray | None = None, bias_through_identity=False):
    c_out, c_in_per_group = weight.shape[:2]
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    nodes, conv_inputs = [], ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b0"))
        if bias_through_identity:
            nodes.append(helper.make_node("Identity", ["b0"], ["b"]))
            conv_inputs.append("b")
        else:
            conv_inputs.append("b0")
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], name="conv", group=group, kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [1, c_in_per_group * group, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_per_tensor_weight_levels_counts_levels_per_channel(tmp_path):
    weight = np.zeros((3, 1, 3, 3))
    for channel, top in enumerate((1.0, 0.5, 0.01)):
        weight[channel, 0, 1, 1] = -top  # the sign must not matter
    path = tmp_path / "dw.onnx"
    onnx.save(_conv_model(weight, group=3), path)
    (level,) = per_tensor_weight_levels(path)
    assert level.depthwise and level.channels == 3
    assert level.median_levels == pytest.approx(63.5) and level.min_levels == pytest.approx(1.27)


def test_zero_range_tensors_names_what_reads_them(tmp_path):
    path = tmp_path / "conv.onnx"
    onnx.save(_conv_model(np.ones((2, 2, 3, 3)), bias=np.zeros(2), bias_through_identity=True), path)
    found = zero_range_tensors(path, {"b": (0.0, 0.0), "x": (-1.0, 2.0), "y": (0.0, 3.0)})
    assert found == [("b", "Conv input 2 (bias)")]


def test_quantize_variants_refuses_options_it_decides(tmp_path):
    with pytest.raises(DeployLabError, match="preprocess"):
        quantize_variants(tmp_path / "m.onnx", np.zeros((1, 3, 8, 8), np.float32), {"a": {"preprocess": False}},
                          tmp_path)
    with pytest.raises(DeployLabError, match="no variants"):
        quantize_variants(tmp_path / "m.onnx", np.zeros((1, 3, 8, 8), np.float32), {}, tmp_path)


def test_evaluate_candidates_needs_a_known_reference(views, photos, effnet):
    with pytest.raises(DeployLabError, match="reference"):
        evaluate_candidates({("fp32", "onnxruntime"): effnet[0]}, views, photos, reference=("fp16", "onnxruntime"))


def test_quality_axis_spans_the_data_even_when_all_equal():
    rows = [{"label": "fp32", "backend": "onnxruntime", "latency_ms": 5.0, "size_mib": 17.7, "top1_agreement": 1.0},
            {"label": "fp32", "backend": "openvino", "latency_ms": 3.0, "size_mib": 17.7, "top1_agreement": 1.0}]
    low, high = plot_quality_speed(rows).axes[0].get_ylim()
    assert low < 1.0 < high and high - low == pytest.approx(0.01)
    rows[1]["top1_agreement"] = 0.5
    low, high = plot_quality_speed(rows).axes[0].get_ylim()
    assert low < 0.5 and high > 1.0 and high - low < 0.6
