"""Rewriters: patch while exporting, restore always (errors, nesting), per backend; mmcls head rewrite."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from deploylab.errors import DeployLabError
from deploylab.rewrite import RewriteRegistry, rewriting


def _toy_module():
    module = types.ModuleType("toy")
    module.scale = lambda x: x * 2
    return module


class Base:
    def describe(self):
        return "base"


class Child(Base):
    pass


def test_function_rewrite_sees_original_backend_and_options_and_restores():
    toy = _toy_module()
    original = toy.scale
    registry = RewriteRegistry()
    seen = {}

    @registry.register_function(toy, "scale")
    def scale(ctx, x):
        seen.update(backend=ctx.backend, original=ctx.original, offset=ctx.option("offset"))
        return ctx.original(x) + ctx.option("offset", 0)

    with rewriting(backend="openvino", registry=registry, options={"offset": 1}) as targets:
        assert toy.scale(3) == 7
        assert targets == ["toy.scale"]
    assert seen == {"backend": "openvino", "original": original, "offset": 1}
    assert toy.scale is original and toy.scale(3) == 6


def test_restores_everything_when_the_block_raises():
    toy = _toy_module()
    original_fn, original_method = toy.scale, Base.__dict__["describe"]
    registry = RewriteRegistry()
    registry.register_function(toy, "scale")(lambda ctx, x: -1)
    registry.register_method(Base, "describe")(lambda ctx, self: "rewritten")
    with pytest.raises(RuntimeError, match="boom"):
        with rewriting(registry=registry):
            assert toy.scale(1) == -1 and Child().describe() == "rewritten"
            raise RuntimeError("boom")
    assert toy.scale is original_fn
    assert Base.__dict__["describe"] is original_method and Child().describe() == "base"


def test_nested_rewrites_wrap_and_unwind_in_order():
    toy = _toy_module()
    outer, inner = RewriteRegistry("outer"), RewriteRegistry("inner")
    outer.register_function(toy, "scale")(lambda ctx, x: ctx.original(x) + 100)
    inner.register_function(toy, "scale")(lambda ctx, x: ctx.original(x) * 10)
    with rewriting(registry=outer):
        assert toy.scale(1) == 102
        with rewriting(registry=inner):
            assert toy.scale(1) == 1020  # inner wraps the outer replacement
        assert toy.scale(1) == 102  # the outer one is back
        with rewriting(registry=outer):  # the same registry nested in itself
            assert toy.scale(1) == 202
        assert toy.scale(1) == 102
    assert toy.scale(1) == 2


def test_backend_filtering():
    toy = _toy_module()
    registry = RewriteRegistry()
    registry.register_function(toy, "scale", backend="openvino")(lambda ctx, x: "openvino")
    registry.register_method(Base, "describe", backend=("tensorrt", "openvino"))(lambda ctx, self: "adapted")
    with rewriting(backend=None, registry=registry) as targets:
        assert targets == [] and toy.scale(1) == 2
    with rewriting(backend="onnxruntime", registry=registry):
        assert toy.scale(1) == 2 and Base().describe() == "base"
    with rewriting(backend="OpenVINO", registry=registry):  # names are case-insensitive
        assert toy.scale(1) == "openvino" and Base().describe() == "adapted"
    with rewriting(backend="tensorrt", registry=registry):
        assert toy.scale(1) == 2 and Base().describe() == "adapted"


def test_inherited_method_rewrite_is_removed_not_copied_onto_the_subclass():
    registry = RewriteRegistry()
    registry.register_method(Child, "describe")(lambda ctx, self: "child: " + ctx.original(self))
    with rewriting(registry=registry):
        assert Child().describe() == "child: base" and Base().describe() == "base"
    assert "describe" not in Child.__dict__ and Child().describe() == "base"


def test_registration_errors_name_the_problem():
    registry = RewriteRegistry()
    with pytest.raises(DeployLabError, match="no attribute 'nope'"):
        registry.register_function(math, "nope")
    with pytest.raises(DeployLabError, match="has no method 'nope'"):
        registry.register_method(Base, "nope")

    class WithStatic:
        @staticmethod
        def f():
            return 1

    with pytest.raises(DeployLabError, match="staticmethod"):
        registry.register_method(WithStatic, "f")
    with pytest.raises(DeployLabError, match="namespace::op"):
        registry.register_symbolic("soft_clip", 9)
    with pytest.raises(DeployLabError, match="backend"):
        with rewriting(backend="", registry=registry):
            pass


# ---------------------------------------------------------------- symbolics
def _export_softclip(tmp_path, name):
    """TorchScript-export the custom op; returns the custom node types, or the error text."""
    import onnx

    from deploylab.custom_ops import SoftClip

    path = tmp_path / f"{name}.onnx"
    try:
        torch.onnx.export(SoftClip(2.0), (torch.randn(2, 3),), str(path), dynamo=False, opset_version=17,
                          custom_opsets={"ai.deploylab": 1})
    except Exception as exc:  # UnsupportedOperatorError without a symbolic
        return f"error: {exc}"
    return [n.op_type for n in onnx.load(str(path)).graph.node if n.domain == "ai.deploylab"]


def _symbolic(op_type):
    def symbolic(ctx, g, x, bound):
        return g.op(f"ai.deploylab::{op_type}", x, bound_f=2.0).setType(x.type())

    return symbolic


def test_symbolic_registered_inside_and_unregistered_after_also_when_nested(tmp_path):
    pytest.importorskip("onnxscript")
    outer, inner = RewriteRegistry(), RewriteRegistry()
    outer.register_symbolic("deploylab::soft_clip", 9)(_symbolic("SoftClipOuter"))
    inner.register_symbolic("deploylab::soft_clip", 9)(_symbolic("SoftClipInner"))
    assert "unrecognized namespace" in _export_softclip(tmp_path, "before")
    with rewriting(registry=outer):
        assert _export_softclip(tmp_path, "outer") == ["SoftClipOuter"]
        with rewriting(registry=inner):
            assert _export_softclip(tmp_path, "inner") == ["SoftClipInner"]
        assert _export_softclip(tmp_path, "outer_again") == ["SoftClipOuter"]
    assert "unrecognized namespace" in _export_softclip(tmp_path, "after")


def test_symbolic_rewrite_puts_back_a_symbolic_registered_outside_deploylab(tmp_path):
    registry = RewriteRegistry()
    registry.register_symbolic("deploylab::soft_clip", 9)(_symbolic("SoftClipRewrite"))
    user = _symbolic("SoftClipUser")
    torch.onnx.register_custom_op_symbolic("deploylab::soft_clip", lambda g, x, b: user(None, g, x, b), 9)
    try:
        with rewriting(registry=registry):
            assert _export_softclip(tmp_path, "rewrite") == ["SoftClipRewrite"]
        assert _export_softclip(tmp_path, "user") == ["SoftClipUser"]
    finally:
        torch.onnx.unregister_custom_op_symbolic("deploylab::soft_clip", 9)
        # torch leaves an empty group behind after a direct unregister (then exports fail with
        # "min() arg is an empty sequence"); clean it so later tests see the original state.
        from deploylab.rewrite import _forget_empty_symbolic_group

        _forget_empty_symbolic_group("deploylab::soft_clip")
    assert "unrecognized namespace" in _export_softclip(tmp_path, "clean")


# ---------------------------------------------------------------- mmcls
@pytest.fixture(scope="module")
def mmcls_rewrites():
    pytest.importorskip("mmcls")
    from deploylab.rewrite import mmcls_classifier_rewrites

    return mmcls_classifier_rewrites()


def test_mmcls_model_x_exports_logits_with_parity_and_dynamic_batch(mmcls_bundle, mmcls_rewrites, tmp_path):
    from deploylab.models.resnet import mmcls_logits
    from deploylab.problems._common import export_outcome, run_onnx

    model, x = mmcls_bundle.model, mmcls_bundle.example_input
    with pytest.raises(TypeError, match="gt_label"):  # without the rewrite, model(x) is the training path
        model(x)
    x2 = torch.rand((2,) + tuple(x.shape[1:]), generator=torch.Generator().manual_seed(3))
    with rewriting(registry=mmcls_rewrites):
        eager_scores = model(x2)
        outcome = export_outcome(model, (x,), tmp_path / "mmcls_logits.onnx", "torchscript",
                                 dynamic_dims={0: "batch"})
    assert isinstance(eager_scores, torch.Tensor)
    assert outcome.ok, outcome.error
    assert outcome.ops[-1] == "Gemm"  # logits: no Softmax at the end (the (x, False) export ends in Softmax)
    expected = mmcls_logits(model, x2).numpy()
    np.testing.assert_allclose(eager_scores.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnx(outcome.path, x2.numpy())[0], expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(TypeError):  # restored after the block
        model(x)


def test_mmcls_softmax_option_and_dynamo_exporter(mmcls_bundle, mmcls_rewrites, tmp_path):
    from deploylab.models.resnet import mmcls_logits
    from deploylab.problems._common import export_outcome, run_onnx

    model, x = mmcls_bundle.model, mmcls_bundle.example_input
    with rewriting(registry=mmcls_rewrites, options={"softmax": True}):
        outcome = export_outcome(model, (x,), tmp_path / "mmcls_probs.onnx", "dynamo")
    assert outcome.ok, outcome.error
    assert outcome.ops[-1] == "Softmax"
    probabilities = run_onnx(outcome.path, x.numpy())[0]
    expected = torch.softmax(mmcls_logits(model, x), dim=1).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
