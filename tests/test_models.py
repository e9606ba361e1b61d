"""Models and data: the digits split, LeNet, ResNet-18 key mapping, checkpoints, the registry."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from deploylab.data.digits import load_digits_split
from deploylab.errors import DeployLabError
from deploylab.models import parse_shape, resolve_model
from deploylab.models import resnet
from deploylab.models.checkpoint import read_state_dict
from deploylab.models.lenet import LeNet, accuracy, load_lenet, save_lenet_checkpoint, train_lenet

from conftest import LENET_PARAMETERS, MMCLS_SPEC


# ---------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits():
    return {name: load_digits_split(name) for name in ("train", "test", "all")}


def _indices_in_all(split, all_split) -> np.ndarray:
    """Positions of ``split``'s images in the full set (the 1,797 digits are all distinct)."""
    where = {img.tobytes(): i for i, img in enumerate(all_split.images)}
    assert len(where) == len(all_split)
    return np.array([where[img.tobytes()] for img in split.images])


def test_digits_split_is_fixed_disjoint_and_stratified(digits):
    train, test, everything = digits["train"], digits["test"], digits["all"]
    assert (len(train), len(test), len(everything)) == (1437, 360, 1797)
    again = load_digits_split("test")
    np.testing.assert_array_equal(again.images, test.images)
    np.testing.assert_array_equal(again.labels, test.labels)

    train_idx, test_idx = _indices_in_all(train, everything), _indices_in_all(test, everything)
    assert not set(train_idx) & set(test_idx)
    assert sorted(np.concatenate([train_idx, test_idx])) == list(range(1797))
    np.testing.assert_array_equal(everything.labels[test_idx], test.labels)

    all_counts = np.bincount(everything.labels, minlength=10)
    test_counts = np.bincount(test.labels, minlength=10)
    assert (np.bincount(train.labels, minlength=10) > 0).all() and (test_counts > 0).all()
    # stratified: each class is ~20 % test, to within one image
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)


def test_digits_images_are_float32_in_unit_range(digits):
    for split in digits.values():
        assert split.images.dtype == np.float32 and split.labels.dtype == np.int64
        assert split.images.shape == (len(split), 1, 32, 32)
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0
        assert split.images.max() > 0.9  # really scaled to [0, 1], not left at 0..16/255
    with pytest.raises(DeployLabError, match="validation"):
        load_digits_split("validation")


# ---------------------------------------------------------------- LeNet
def test_shipped_lenet_checkpoint_accuracy(digits):
    test = digits["test"]
    acc = accuracy(load_lenet(), test.images, test.labels)
    assert acc >= 0.97, f"shipped LeNet reaches only {acc:.2%} on the digits test split"


def test_train_lenet_reaches_97_percent(digits):
    model, report = train_lenet(epochs=40, seed=0)
    assert report.test_accuracy >= 0.97, f"test accuracy {report.test_accuracy:.2%}"
    assert report.test_accuracy == accuracy(model, digits["test"].images, digits["test"].labels)
    assert len(report.losses) == 40 and report.losses[-1] < 0.5 * report.losses[0]
    assert not model.training


def _describe(module: nn.Module) -> tuple:
    if isinstance(module, nn.Conv2d):
        return ("Conv2d", module.in_channels, module.out_channels, module.kernel_size,
                module.stride, module.padding)
    if isinstance(module, nn.AvgPool2d):
        return ("AvgPool2d", module.kernel_size, module.stride)
    if isinstance(module, nn.Linear):
        return ("Linear", module.in_features, module.out_features)
    return (type(module).__name__,)


def test_lenet_architecture_is_the_seeds():
    model = LeNet()
    leaves = [m for m in model.modules() if not list(m.children())]
    assert [_describe(m) for m in leaves] == [
        ("Conv2d", 1, 6, (5, 5), (1, 1), (0, 0)), ("Sigmoid",), ("AvgPool2d", 2, 2),
        ("Conv2d", 6, 16, (5, 5), (1, 1), (0, 0)), ("Sigmoid",), ("AvgPool2d", 2, 2),
        ("Flatten",),
        ("Linear", 400, 120), ("Sigmoid",),
        ("Linear", 120, 84), ("Sigmoid",),
        ("Linear", 84, 10),
    ]
    assert sum(p.numel() for p in model.parameters()) == LENET_PARAMETERS
    with torch.no_grad():
        assert model(torch.rand(4, 1, 32, 32)).shape == (4, 10)


# ---------------------------------------------------------------- ResNet-18 two ways
def test_key_mapping_round_trip_is_identity(resnet18_state):
    from torchvision.models import resnet18

    tv = resnet.mmcls_to_torchvision(resnet18_state)
    assert list(tv) == list(resnet18(weights=None).state_dict())  # exactly torchvision's names
    assert "fc.weight" in tv and "head.fc.weight" in resnet18_state
    back = resnet.torchvision_to_mmcls(tv)
    assert list(back) == list(resnet18_state)
    assert all(torch.equal(back[k], resnet18_state[k]) for k in back)  # renamed, values untouched


def test_key_mapping_rejects_unknown_key(resnet18_state):
    state = dict(resnet18_state, **{"neck.foo": torch.zeros(1)})
    with pytest.raises(DeployLabError, match=r"neck\.foo"):
        resnet.mmcls_to_torchvision(state)


def test_mmcls_and_torchvision_models_agree_on_one_state_dict(perturbed_resnet18_state, resnet18_state):
    state = perturbed_resnet18_state
    mm = resnet.build_mmcls_classifier(checkpoint=state)
    tv = resnet.build_torchvision_resnet18(resnet.mmcls_to_torchvision(state))
    # the perturbed BN statistics really are in both models
    assert torch.equal(mm.backbone.bn1.running_var, state["backbone.bn1.running_var"])
    assert torch.equal(tv.bn1.running_var, state["backbone.bn1.running_var"])
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    got_mm = resnet.mmcls_logits(mm, x)
    with torch.no_grad():
        got_tv = tv(x)
    assert got_mm.shape == got_tv.shape == (2, 1000)
    assert got_tv.std() > 1e-3  # not a degenerate constant output
    assert (got_mm - got_tv).abs().max().item() <= 1e-5
    # the perturbation matters: with the trivial BN init the logits are clearly different
    plain = resnet.build_torchvision_resnet18(resnet.mmcls_to_torchvision(resnet18_state))
    with torch.no_grad():
        assert (plain(x) - got_tv).abs().max().item() > 1e-3


def test_missing_resnet_checkpoint_uses_seeded_weights_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(resnet, "RESNET18_CHECKPOINT", tmp_path / resnet.MMCLS_CHECKPOINT_NAME)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("deploylab")
    logger.addHandler(handler)
    try:
        state, source = resnet.resnet18_state_dict()
    finally:
        logger.removeHandler(handler)
    assert "seeded" in source
    assert [r.getMessage() for r in records] == [source]  # announced, once, verbatim
    assert records[0].levelno >= logging.WARNING and "\n" not in source
    assert set(state) == set(resnet.torchvision_to_mmcls(resnet.build_torchvision_resnet18().state_dict()))
    # seeded means reproducible
    again, _ = resnet.resnet18_state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)


# ---------------------------------------------------------------- checkpoints
def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "no_such_weights.pt"
    with pytest.raises(DeployLabError, match="no_such_weights.pt"):
        load_lenet(path)


def test_garbage_checkpoint_mentions_weights_only(garbage_file):
    path = garbage_file("garbage.pt")
    with pytest.raises(DeployLabError, match="weights_only") as info:
        load_lenet(path)
    assert "garbage.pt" in str(info.value)


def test_checkpoint_that_does_not_fit_lists_the_keys(tmp_path):
    state = LeNet().state_dict()
    state["net.7.renamed_weight"] = state.pop("net.7.weight")
    state["net.0.weight"] = state["net.0.weight"].reshape(6, 25)
    path = tmp_path / "mismatch.pt"
    torch.save(state, path)
    with pytest.raises(DeployLabError) as info:
        load_lenet(path)
    message = str(info.value)
    assert "missing keys: net.7.weight" in message
    assert "unexpected keys: net.7.renamed_weight" in message
    assert "net.0.weight (checkpoint (6, 25), model (6, 1, 5, 5))" in message
    assert "net.3.weight" not in message  # only the keys that do not fit are listed


def test_openmmlab_style_checkpoint_loads(tmp_path, digits):
    reference = load_lenet()
    path = tmp_path / "openmmlab.pth"
    torch.save({"state_dict": reference.state_dict(),
                "meta": {"epoch": 40, "mmcls_version": "0.25.0", "CLASSES": [str(i) for i in range(10)]}},
               path)
    loaded = load_lenet(path)
    x = torch.from_numpy(digits["test"].images[:8])
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))


def test_saved_lenet_checkpoint_round_trips(tmp_path):
    model = LeNet()
    path = save_lenet_checkpoint(model, tmp_path / "sub" / "lenet.pt")
    state = read_state_dict(path)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize("spec, classes", [
    ("lenet", 10),
    ("resnet18", 1000),
    (MMCLS_SPEC, 1000),
    ("torchvision:mobilenet_v3_small", 1000),
    ("torchvision:squeezenet1_0", 1000),
])
def test_registry_resolves_runnable_bundles(spec, classes, request):
    bundle = request.getfixturevalue("mmcls_bundle") if spec == MMCLS_SPEC else resolve_model(spec)
    out = bundle.reference(bundle.example_input)
    assert isinstance(out, np.ndarray) and out.shape == (1, classes)
    assert np.isfinite(out).all()
    assert not bundle.model.training
    assert bundle.input_names == ["input"] and bundle.output_names == ["output"]


def test_mmcls_bundle_is_the_seeds_call(mmcls_bundle):
    x, flag = mmcls_bundle.example_args
    assert isinstance(x, torch.Tensor) and x.shape == (1, 3, 224, 224) and flag is False
    assert mmcls_bundle.output_kind == "probabilities"
    probs = mmcls_bundle.reference(torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    assert probs.shape == (3, 1000) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_matmul_mlp_spec_trains_or_loads_the_mlp(digits, tmp_path):
    """No weights are shipped: the spec trains the MLP (seeded, a few seconds) to a useful accuracy,
    and a saved state dict given as the checkpoint gives back the very same model."""
    bundle = resolve_model("matmul_mlp", input_shape="2x1x32x32")
    test = digits["test"]
    assert bundle.example_input.shape == (2, 1, 32, 32) and bundle.reference(bundle.example_input).shape == (2, 10)
    assert not bundle.model.training and "trained on sklearn digits (seed 0" in bundle.weights
    assert accuracy(bundle.model, test.images, test.labels) > 0.93
    path = tmp_path / "mlp.pt"
    torch.save({k: v.detach().clone() for k, v in bundle.model.state_dict().items()}, path)
    loaded = resolve_model("matmul_mlp", checkpoint=path, input_shape="2x1x32x32")
    assert loaded.weights == "checkpoint mlp.pt"
    np.testing.assert_array_equal(loaded.reference(bundle.example_input), bundle.reference(bundle.example_input))


@pytest.mark.parametrize("spec, named", [
    ("nothing", "nothing"),
    ("torchvision:resnet999", "resnet999"),
    ("mmcls:no_such_config.py", "no_such_config.py"),
])
def test_unknown_model_names_the_value(spec, named):
    with pytest.raises(DeployLabError, match=named.replace(".", r"\.")):
        resolve_model(spec)


@pytest.mark.parametrize("shape", ["1xax3", "0x3", "", "2x-1"])
def test_bad_input_shape_strings(shape):
    with pytest.raises(DeployLabError, match="input shape"):
        resolve_model("lenet", input_shape=shape)


def test_shape_that_does_not_fit_the_model():
    with pytest.raises(DeployLabError, match=r"1x3x32x32.*lenet.*1x1x32x32"):
        resolve_model("lenet", input_shape="1x3x32x32")


def test_input_shape_is_used():
    bundle = resolve_model("lenet", input_shape="4x1x32x32")
    assert bundle.input_shape == (4, 1, 32, 32)
    assert bundle.reference(bundle.example_input).shape == (4, 10)


def test_parse_shape():
    assert parse_shape("2x3x224x224") == (2, 3, 224, 224)
    assert parse_shape("1X1x32x32") == (1, 1, 32, 32)
