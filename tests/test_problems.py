"""The five common problems: each broken module is really wrong, each fix right on every check input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deploylab.problems import adapters, control_flow, custom, inplace, scalars
from deploylab.problems._common import eager
from deploylab.problems.scalars import check_export_at_sizes

SIZES = (16, 64)


# ---------------------------------------------------------------- 1. numpy / Python scalars
def test_numpy_scale_is_traced_as_a_constant_and_wrong_at_another_size(tmp_path):
    attempt = scalars.attempt_at_sizes(scalars.ScaleByNumpy(), SIZES, "torchscript", workdir=tmp_path)
    assert any("Converting a tensor to a NumPy array" in w for w in attempt.export.tracer_warnings)
    assert attempt.export.input_shapes["x"] == [2, 4, "length"]  # accepts any length...
    assert "Sqrt" not in attempt.export.ops  # ...but 1/sqrt(16) is a constant
    at_export, other = attempt.checks
    assert at_export.passed
    # x / sqrt(16) instead of x / sqrt(64): off by x/8, with x in [0.5, 1.5)
    assert other.max_abs_error > 0.05 and not other.passed


def test_python_float_scale_gets_the_dimension_fixed_by_dynamo(tmp_path):
    checks = check_export_at_sizes(scalars.ScaleByPythonFloat(), SIZES, "dynamo", workdir=tmp_path)
    assert [c.size for c in checks] == list(SIZES)
    (size_a, err_a), (size_b, err_b) = checks
    assert err_a <= 1e-6
    assert err_b == math.inf  # ONNX Runtime refuses length 64: the input was fixed at 16
    model_path = tmp_path / "ScaleByPythonFloat_dynamo.onnx"
    import onnx

    dims = [d.dim_value for d in onnx.load(str(model_path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 4, 16]


def test_refused_size_keeps_onnx_runtimes_whole_message(tmp_path):
    """The engine's own words, indices included (they are on the lines after the first)."""
    attempt = scalars.attempt_at_sizes(scalars.ScaleByPythonFloat(), SIZES, "dynamo", workdir=tmp_path)
    refused = attempt.checks[1]
    assert refused.max_abs_error == math.inf
    assert "Got invalid dimensions for input: x" in refused.note
    assert "index: 2 Got: 64 Expected: 16" in refused.note and "\n" not in refused.note


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_tensor_scale_is_right_at_both_sizes(exporter, tmp_path):
    checks = check_export_at_sizes(scalars.ScaleByTensor(), SIZES, exporter, workdir=tmp_path)
    assert all(err <= 1e-6 for _, err in checks), checks
    attempt = scalars.attempt_at_sizes(scalars.ScaleByTensor(), (8,), "torchscript", workdir=tmp_path)
    assert attempt.export.tracer_warnings == []


# ---------------------------------------------------------------- 2. in-place on shape values
def test_inplace_shape_arithmetic_loses_the_padding_in_torchscript(tmp_path):
    attempt = inplace.attempt(inplace.PadSequenceInPlace(), "torchscript", tmp_path)
    assert attempt.export.ok and not attempt.right
    for check in attempt.checks:  # at the export shape too
        assert check.max_abs_error == math.inf
        assert "output shape" in check.note
    first = attempt.checks[0].note
    assert "(2, 5, 3)" in first and "(2, 7, 3)" in first  # pad of 0 rows instead of 2
    assert "In-place op on output of tensor.shape" in attempt.export.native_log


def test_inplace_shape_arithmetic_is_exported_right_by_dynamo(tmp_path):
    # Honest: SymInts are immutable, so the dynamo exporter is not fooled.
    assert inplace.attempt(inplace.PadSequenceInPlace(), "dynamo", tmp_path).right


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_out_of_place_padding_is_right(exporter, tmp_path):
    attempt = inplace.attempt(inplace.PadSequence(), exporter, tmp_path)
    assert attempt.right, attempt.format()
    assert len(attempt.checks) == 2


# ---------------------------------------------------------------- 3. backend adapters
def test_det_runs_in_onnxruntime_but_not_openvino_and_the_adapter_fixes_it(tmp_path):
    pytest.importorskip("openvino")
    module = adapters.NormalizeHomography()
    h = adapters.homographies(5, seed=3)
    expected = eager(module, h)

    plain = adapters.export_for_backend(module, adapters.homographies(4), tmp_path / "plain.onnx", None)
    assert "Det" in plain.ops
    np.testing.assert_allclose(adapters.run_in_backend(plain.path, "onnxruntime", h.numpy()), expected,
                               rtol=1e-4, atol=1e-5)
    from deploylab.errors import DeployLabError

    with pytest.raises(DeployLabError) as refused:
        adapters.run_in_backend(plain.path, "openvino", h.numpy())
    assert "Det" in str(refused.value.__cause__)

    adapted = adapters.export_for_backend(module, adapters.homographies(4), tmp_path / "ov.onnx", "openvino")
    assert "Det" not in adapted.ops and adapted.input_shapes["h"] == ["batch", 3, 3]
    for batch, seed in ((5, 3), (2, 4)):
        hh = adapters.homographies(batch, seed)
        got = adapters.run_in_backend(adapted.path, "openvino", hh.numpy())
        np.testing.assert_allclose(got, eager(module, hh), rtol=1e-4, atol=1e-5)
    assert torch.linalg.det is not adapters.det_by_cofactors  # restored after the export

    for_ort = adapters.export_for_backend(module, adapters.homographies(4), tmp_path / "ort.onnx", "onnxruntime",
                                          exporter="torchscript")
    assert "Det" in for_ort.ops  # the adapter is only active for openvino / tensorrt


def test_det_adapter_matches_torch_for_2x2_and_3x3():
    from deploylab.rewrite import rewriting

    for n in (2, 3):
        m = torch.randn(6, n, n, generator=torch.Generator().manual_seed(n))
        reference = torch.linalg.det(m)
        with rewriting(backend="tensorrt", registry=adapters.BACKEND_ADAPTERS):
            rewritten = torch.linalg.det(m)
        torch.testing.assert_close(rewritten, reference, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 4. custom operators
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_custom_op_fails_without_translation_and_matches_pytorch_in_ort_with_it(exporter, tmp_path):
    pytest.importorskip("onnxruntime_extensions")
    failed = custom.attempt(exporter, False, tmp_path)
    assert not failed.export.ok
    assert failed.export.failed_step == (3 if exporter == "dynamo" else None)  # translation, not capture
    assert ("unrecognized namespace deploylab::soft_clip" if exporter == "torchscript"
            else "No ONNX function found") in failed.export.error
    done = custom.attempt(exporter, True, tmp_path)
    assert done.export.ok, done.export.error
    assert "ai.deploylab::SoftClip" in done.export.ops
    assert any("plain ONNX Runtime refuses it" in n for n in done.notes)
    assert [c.label for c in done.checks] == ["ORT + extensions PyOp, batch 3", "ORT + extensions PyOp, batch 5"]
    assert all(c.max_abs_error <= 1e-5 for c in done.checks), done.format()


def test_custom_onnx_file_is_valid_and_retargeted_for_pyop(tmp_path):
    import onnx

    from deploylab.custom_ops import PYOP_DOMAIN, SoftClipNet, retarget_domain
    from deploylab.problems.custom import export_with_custom_op

    outcome = export_with_custom_op(SoftClipNet(), torch.randn(2, 8), tmp_path / "net.onnx", "torchscript")
    onnx.checker.check_model(onnx.load(str(outcome.path)), full_check=True)  # schema registered
    moved = onnx.load(str(retarget_domain(outcome.path, tmp_path / "contrib.onnx")))
    assert {n.domain for n in moved.graph.node} == {"", PYOP_DOMAIN}
    assert {o.domain for o in moved.opset_import} == {"", PYOP_DOMAIN}


# ---------------------------------------------------------------- 5. control flow
BRANCH = control_flow.BRANCH_CHECKS
LOOP = control_flow.LOOP_CHECKS


def _attempt(module, route, example, checks, tmp_path):
    return control_flow.attempt(module, route, example, checks, tmp_path)


def test_traced_branch_bakes_the_example_path(tmp_path):
    a = _attempt(control_flow.SignBranch(), "torchscript", control_flow.BRANCH_EXAMPLE, BRANCH, tmp_path)
    assert any("Python boolean" in w for w in a.export.tracer_warnings)
    assert "If" not in a.export.ops
    same_path, other_path = a.checks
    assert same_path.passed and other_path.max_abs_error > 0.1


def test_dynamo_refuses_the_data_dependent_branch(tmp_path):
    a = _attempt(control_flow.SignBranch(), "dynamo", control_flow.BRANCH_EXAMPLE, BRANCH, tmp_path)
    assert not a.export.ok and "data-dependent" in a.export.error
    assert a.export.failed_step == 1  # torch.export could not capture it


def test_failed_step_is_read_from_the_dynamo_error_only():
    from deploylab.problems import DYNAMO_STEPS, ExportOutcome

    def outcome(error):
        return ExportOutcome("dynamo", None, error)

    step3 = ("ConversionError: Failed to convert the exported program to an ONNX model. This is step 3/3 of "
             "exporting the model to ONNX. Next steps: [cause: DispatchError: No ONNX function found]")
    assert outcome(step3).failed_step == 3 and 3 in DYNAMO_STEPS
    assert outcome("UnsupportedOperatorError: ONNX export failed on an operator").failed_step is None
    assert ExportOutcome("dynamo", None).failed_step is None  # exported fine


@pytest.mark.parametrize("module, route, op", [
    (control_flow.SignBranchCond(), "dynamo", "If"),
    (control_flow.SignBranch(), control_flow.SCRIPTED, "If"),
    (control_flow.SignBranchWhere(), "torchscript", "Where"),
])
def test_branch_fixes_are_right_on_both_paths(module, route, op, tmp_path):
    a = _attempt(module, route, control_flow.BRANCH_EXAMPLE, BRANCH, tmp_path)
    assert op in a.export.ops
    assert a.right and len(a.checks) == 2, a.format()


def test_traced_loop_bakes_the_trip_count(tmp_path):
    a = _attempt(control_flow.HalveUntilSmall(), "torchscript", control_flow.LOOP_EXAMPLE, LOOP, tmp_path)
    assert "Loop" not in a.export.ops and a.export.ops.count("Div") == 2  # two halvings, unrolled
    like_example, no_halving, six_halvings = a.checks
    assert like_example.passed and not no_halving.passed and not six_halvings.passed


@pytest.mark.parametrize("module, route, op", [
    (control_flow.HalveWhileLoop(), "dynamo", "Loop"),
    (control_flow.HalveUntilSmall(), control_flow.SCRIPTED, "Loop"),
    (control_flow.HalveClosedForm(), "torchscript", "Ceil"),
])
def test_loop_fixes_are_right_for_every_trip_count(module, route, op, tmp_path):
    a = _attempt(module, route, control_flow.LOOP_EXAMPLE, LOOP, tmp_path)
    assert op in a.export.ops
    assert a.right and len(a.checks) == 3, a.format()
