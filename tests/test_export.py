"""export_onnx / export_bundle / verify_export with both exporters.

Dynamo exports take seconds each, so each is made once per module and read by several
tests; the torchscript exporter is used wherever the dynamo exporter is not the subject.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from deploylab.errors import DeployLabError
from deploylab.export import ExportWarning, export_bundle, export_onnx, verify_export
from deploylab.models import resolve_model

from conftest import LENET_PARAMETERS


def _export_recording_warnings(bundle, path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_bundle(bundle, path, **kwargs)
    return report, [w for w in caught if issubclass(w.category, ExportWarning)]


@pytest.fixture(scope="module")
def lenet_dynamo11(lenet_bundle, tmp_path_factory):
    """LeNet through dynamo with the seed's opset 11 requested: (report, ExportWarnings)."""
    path = tmp_path_factory.mktemp("lenet_dynamo11") / "model.onnx"
    return _export_recording_warnings(lenet_bundle, path, exporter="dynamo", opset=11)


@pytest.fixture(scope="module")
def lenet_dynamo_dynamic(lenet_bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("lenet_dynamo_dyn") / "model.onnx"
    return export_bundle(lenet_bundle, path, exporter="dynamo", dynamic_batch=True)


@pytest.fixture(scope="module")
def mmcls_dynamo_dynamic(mmcls_bundle, tmp_path_factory):
    """The one mmcls dynamo export of the suite: the seed's (x, False) call, dynamic batch."""
    path = tmp_path_factory.mktemp("mmcls_dynamo_dyn") / "model.onnx"
    return export_bundle(mmcls_bundle, path, exporter="dynamo", dynamic_batch=True)


@pytest.fixture(scope="module")
def mmcls_torchscript17(mmcls_bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("mmcls_ts17") / "model.onnx"
    return export_bundle(mmcls_bundle, path, exporter="torchscript", opset=17)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# ---------------------------------------------------------------- the seed's call
def test_lenet_torchscript_opset11(lenet_ts11, lenet_bundle):
    report = lenet_ts11
    model = onnx.load(report.path)
    assert report.opset == 11 and report.exporter == "torchscript" and report.requested_opset == 11
    assert {e.domain or "ai.onnx": e.version for e in model.opset_import}["ai.onnx"] == 11
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    assert _dims(model.graph.input[0]) == [1, 1, 32, 32] and _dims(model.graph.output[0]) == [1, 10]
    hist = report.summary.op_histogram
    assert {op: hist.get(op) for op in ("Conv", "Sigmoid", "AveragePool", "Gemm")} == {
        "Conv": 2, "Sigmoid": 4, "AveragePool": 2, "Gemm": 3}
    assert not any("asked for opset" in w for w in report.warnings)  # the opset is the requested one
    parity = verify_export(lenet_bundle, report.path)
    assert parity.passed and parity.batch_sizes == [1]  # static batch: only the example batch


# ---------------------------------------------------------------- dynamo and opsets
def test_dynamo_opset11_request_warns_and_gives_18_or_newer(lenet_dynamo11, lenet_bundle):
    report, caught = lenet_dynamo11
    assert report.opset >= 18 and report.requested_opset == 11
    assert report.summary.opsets["ai.onnx"] == report.opset
    assert len(caught) == 1
    message = str(caught[0].message)
    assert re.search(r"\b11\b", message) and re.search(rf"\b{report.opset}\b", message)
    assert report.warnings[0] == message  # also kept in the report
    assert verify_export(lenet_bundle, report.path).passed


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_exported_file_is_self_contained_with_all_parameters(exporter, request, lenet_bundle):
    report = request.getfixturevalue("lenet_dynamo11" if exporter == "dynamo" else "lenet_ts11")
    report = report[0] if isinstance(report, tuple) else report
    assert [p.name for p in report.path.parent.iterdir()] == [report.path.name]  # no .data beside it
    assert report.summary.external_data_bytes == 0
    model = onnx.load(report.path, load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    params = sum(p.numel() for p in lenet_bundle.model.parameters())
    assert params == LENET_PARAMETERS
    assert params <= report.summary.parameter_count <= params + 64


# ---------------------------------------------------------------- dynamic batch
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_lenet_dynamic_batch(exporter, request, lenet_bundle):
    report = request.getfixturevalue("lenet_dynamo_dynamic" if exporter == "dynamo" else "lenet_ts_dynamic")
    assert report.exporter == exporter and report.dynamic_batch
    model = onnx.load(report.path)
    assert _dims(model.graph.input[0]) == ["batch", 1, 32, 32]
    assert _dims(model.graph.output[0]) == ["batch", 10]
    parity = verify_export(lenet_bundle, report.path)
    assert parity.batch_sizes == [1, 3] and parity.passed
    assert [c.shape for c in parity.comparisons] == [(1, 10), (3, 10)]


def test_mmcls_dynamo_dynamic_batch_names_the_batch_dim(mmcls_dynamo_dynamic, mmcls_bundle):
    report = mmcls_dynamo_dynamic
    model = onnx.load(report.path)
    assert [i.name for i in model.graph.input] == ["input"]  # the False flag is not an input
    assert _dims(model.graph.input[0]) == ["batch", 3, 224, 224]
    assert _dims(model.graph.output[0]) == ["batch", 1000]
    assert report.summary.symbolic_dims == ["batch"]
    parity = verify_export(mmcls_bundle, report.path)
    assert parity.batch_sizes == [1, 3] and parity.passed


# ---------------------------------------------------------------- graph contents
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_mmcls_export_ends_in_softmax(exporter, request):
    fixture = "mmcls_dynamo_dynamic" if exporter == "dynamo" else "mmcls_torchscript17"
    report = request.getfixturevalue(fixture)
    model = onnx.load(report.path)
    last = model.graph.node[-1]
    assert last.op_type == "Softmax"
    assert list(last.output) == ["output"]


def test_mmcls_torchscript_export_parity(mmcls_torchscript17, mmcls_bundle):
    assert mmcls_torchscript17.opset == 17
    assert verify_export(mmcls_bundle, mmcls_torchscript17.path).passed


def test_resnet18_torchscript_export_folds_batchnorm(tmp_path):
    bundle = resolve_model("resnet18")
    report = export_bundle(bundle, tmp_path / "resnet18.onnx", exporter="torchscript", opset=17)
    hist = report.summary.op_histogram
    assert "BatchNormalization" not in hist
    assert hist["Conv"] == 20 and hist["Gemm"] == 1  # 17 convs + 3 downsample convs, one fc
    assert verify_export(bundle, report.path).passed


# ---------------------------------------------------------------- quiet by default
def test_dynamo_export_is_quiet_and_keeps_progress_in_log(lenet_bundle, tmp_path, capfd):
    report = export_bundle(lenet_bundle, tmp_path / "quiet.onnx", exporter="dynamo")
    out, err = capfd.readouterr()
    assert "[torch.onnx]" not in out and "[torch.onnx]" not in err
    assert "[torch.onnx]" in report.log, "the exporter's progress lines should be kept in report.log"


# ---------------------------------------------------------------- parity catches wrong files
def test_verify_export_fails_for_wrong_weights(lenet_ts11, lenet_bundle, tmp_path):
    model = onnx.load(lenet_ts11.path)
    # the last Gemm's weight (10 x 84): changing it changes every logit
    init = next(i for i in model.graph.initializer if list(i.dims) == [10, 84])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    bad = tmp_path / "wrong.onnx"
    onnx.save(model, bad)
    onnx.checker.check_model(str(bad), full_check=True)  # structurally fine: only parity can tell
    parity = verify_export(lenet_bundle, bad)
    assert not parity.passed
    assert parity.max_abs_error > parity.comparisons[0].atol
    assert "FAIL" in parity.format()


def test_verify_export_applies_the_tolerances_to_seeded_inputs(lenet_ts_dynamic, lenet_bundle):
    path = lenet_ts_dynamic.path
    exact = verify_export(lenet_bundle, path, batch_sizes=(2,), atol=0.0, rtol=0.0)
    assert exact.batch_sizes == [2]
    assert exact.passed == (exact.max_abs_error == 0.0)  # zero tolerance: only bit-exact passes
    default = verify_export(lenet_bundle, path, batch_sizes=(2,))
    assert default.passed
    assert default.max_abs_error == exact.max_abs_error  # same seeded inputs each time


# ---------------------------------------------------------------- bad input
def test_unknown_exporter(lenet_bundle, tmp_path):
    with pytest.raises(DeployLabError, match="'tensorrt'"):
        export_bundle(lenet_bundle, tmp_path / "x.onnx", exporter="tensorrt")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("opset", [3, 99])
def test_opset_out_of_range(lenet_bundle, tmp_path, opset):
    with pytest.raises(DeployLabError, match=rf"opset {opset}\b"):
        export_bundle(lenet_bundle, tmp_path / "x.onnx", exporter="torchscript", opset=opset)


def test_example_args_must_start_with_a_tensor(lenet_bundle, tmp_path):
    with pytest.raises(DeployLabError, match="example_args"):
        export_onnx(lenet_bundle.model, (np.zeros((1, 1, 32, 32), np.float32),), tmp_path / "x.onnx")


def test_failing_export_is_a_deploylab_error(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("this layer cannot be exported")

    with pytest.raises(DeployLabError, match="torchscript exporter failed: this layer cannot.*'dynamo'"):
        export_onnx(Broken(), (torch.rand(2, 3),), tmp_path / "x.onnx", exporter="torchscript")


def test_dynamic_batch_request_that_forward_specialises_warns(tmp_path):
    import warnings

    import torch

    from deploylab.export import ExportWarning, export_onnx

    class DividesByBatch(torch.nn.Module):
        def forward(self, x):
            return x / float(x.shape[0])  # a Python number: the batch becomes a constant

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_onnx(DividesByBatch(), (torch.rand(2, 3),), tmp_path / "m.onnx", dynamic_batch=True)
    messages = [str(w.message) for w in caught if w.category is ExportWarning]
    assert report.summary.inputs[0].shape[0] == 2
    assert any("fixed batch of 2" in m for m in messages), messages


def test_metadata_rewrite_is_atomic(lenet_bundle, tmp_path, monkeypatch):
    """A save that fails while writing the metadata (disk full) leaves the user's previous file whole
    and no partial file: the export is staged beside it and moved into place only when complete."""
    import onnx

    from deploylab import export as export_module

    real_save = onnx.save

    def failing_save(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    out = tmp_path / "lenet.onnx"
    out.write_text("the user's previous export")
    monkeypatch.setattr(onnx, "save", failing_save)
    with pytest.raises(DeployLabError, match=r"cannot write '.*lenet.onnx' \(No space left on device\)"):
        export_module.export_bundle(lenet_bundle, out, exporter="torchscript", opset=11)
    monkeypatch.setattr(onnx, "save", real_save)
    assert out.read_text() == "the user's previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["lenet.onnx"]


def test_replace_when_done_keeps_the_old_file_on_failure(tmp_path):
    """The one temporary-file-and-rename helper every writer uses (export metadata, TensorRT plans,
    records, timing and calibration caches, the TensorRT int8 recipe)."""
    from deploylab.paths import replace_when_done, write_atomically

    target = tmp_path / "out" / "model.plan"
    write_atomically(target, b"good")
    with pytest.raises(DeployLabError, match=r"cannot write '.*model.plan' \(disk full\)"):
        with replace_when_done(target) as partial:
            partial.write_bytes(b"ha")
            raise OSError(28, "disk full")
    assert target.read_bytes() == b"good" and sorted(p.name for p in target.parent.iterdir()) == ["model.plan"]
    with replace_when_done(target, suffix=".onnx") as partial, replace_when_done(target) as other:
        # a name of its own per writer (pid and random), the extension kept for writers that need it
        assert partial.name.startswith(".model.plan.") and partial.name.endswith(".partial.onnx")
        assert other != partial
        partial.write_bytes(b"new")
        other.write_bytes(b"other")
    assert target.read_bytes() == b"new"  # the outer writer finished last: its file wins, whole
