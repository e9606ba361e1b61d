"""OpenVINO: the build phase (ONNX -> IR with a TensorRT-style profile, reused when unchanged)
and the runtime phase (OpenVinoRunner: shapes, bounds, precision, hints, async queue).

Everything runs for real on the CPU plugin. The LeNet export comes from conftest
(``lenet_ts_dynamic``: torchscript, opset 17, symbolic "batch"); it is read-only, so tests
that modify the ONNX file work on a copy. What precision OpenVINO picks by default depends
on the CPU (bf16 with AMX, f32 elsewhere): tests read it from ``default_inference_precision``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest

from conftest import LENET_PARAMETERS
from deploylab.backends.base import TensorSpec
from deploylab.backends.onnxruntime import OnnxRuntimeRunner
from deploylab.backends.openvino import (
    OpenVinoRunner,
    build_openvino_ir,
    default_inference_precision,
    file_sha256,
)
from deploylab.backends.registry import backend_for_artifact, make_runner
from deploylab.compare import compare_layerwise, compare_runners
from deploylab.errors import DeployLabError

PROFILE = {"input": ((1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32))}
ONNX_DIM_NAMES = {"input": ["batch", 1, 32, 32], "output": ["batch", 10]}


def _feed(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(seed).random((batch, 1, 32, 32), dtype=np.float32)}


def _ir_input_shape(xml_path) -> str:
    """The input shape the IR on disk declares, read by OpenVINO itself (not from the sidecar)."""
    model = ov.Core().read_model(str(xml_path))
    return str(model.inputs[0].get_partial_shape())


@pytest.fixture(scope="module")
def onnx_path(lenet_ts_dynamic):
    return lenet_ts_dynamic.path  # read-only


@pytest.fixture(scope="module")
def ir(onnx_path, tmp_path_factory):
    """The IR built once from PROFILE (batch 1..16); tests must not rebuild it."""
    return build_openvino_ir(onnx_path, tmp_path_factory.mktemp("ir") / "lenet.xml", PROFILE)


@pytest.fixture(scope="module")
def ov_ir(ir):
    return OpenVinoRunner(ir.xml_path)


@pytest.fixture(scope="module")
def ov_onnx(onnx_path):
    return OpenVinoRunner(onnx_path)


@pytest.fixture(scope="module")
def ort(onnx_path):
    return OnnxRuntimeRunner(onnx_path)


@pytest.fixture(scope="module")
def device_precision():
    return default_inference_precision()


@pytest.fixture
def deploylab_log():
    """Messages of the ``deploylab`` logger (it does not propagate, so caplog cannot see them)."""
    messages: list[str] = []

    class _ListHandler(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = _ListHandler(logging.DEBUG)
    logger = logging.getLogger("deploylab")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


# ---------------------------------------------------------------- build phase
def test_build_writes_ir_weights_and_sidecar(ir, onnx_path):
    xml = ir.xml_path
    assert not ir.reused
    assert xml.suffix == ".xml" and xml.is_file()
    assert xml.with_suffix(".bin").is_file()
    assert Path(str(xml) + ".deploylab.json").is_file()
    # the profile's min..max became a bounded batch dim, in the report and in the IR on disk
    assert ir.input_shapes == {"input": "[1..16,1,32,32]"}
    assert _ir_input_shape(xml) == "[1..16,1,32,32]"
    # weights stay f32 (save_model would halve them to f16 by default)
    assert xml.with_suffix(".bin").stat().st_size >= 4 * LENET_PARAMETERS


def test_sidecar_records_what_the_ir_was_built_from(ir, onnx_path):
    on_disk = json.loads(Path(str(ir.xml_path) + ".deploylab.json").read_text())
    assert on_disk == ir.sidecar
    assert on_disk["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert on_disk["onnx_sha256"] == file_sha256(onnx_path)
    assert on_disk["profile"] == {"input": [[1, 1, 32, 32], [8, 1, 32, 32], [16, 1, 32, 32]]}
    assert on_disk["openvino"] == ov.__version__
    assert on_disk["dim_names"] == ONNX_DIM_NAMES
    assert on_disk["inputs"] == {"input": "[1..16,1,32,32]"}
    assert on_disk["onnx_file"] == onnx_path.name
    assert on_disk["weights"] == "f32"


def test_reuse_and_what_forces_a_rebuild(onnx_path, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copyfile(onnx_path, model)  # the shared export is read-only: modify a copy
    xml = tmp_path / "ir" / "model.xml"

    first = build_openvino_ir(model, xml, PROFILE)
    assert not first.reused
    built_at = xml.stat().st_mtime_ns

    again = build_openvino_ir(model, xml, PROFILE)
    assert again.reused
    assert again.input_shapes == {"input": "[1..16,1,32,32]"}
    assert again.sidecar == first.sidecar
    assert xml.stat().st_mtime_ns == built_at  # the IR was not rewritten
    assert first.seconds / again.seconds > 1, (first.seconds, again.seconds)
    assert "reused" in again.format() and "built" in first.format()

    # another profile: rebuilt with the new range, and the sidecar says so
    narrow = {"input": ((1, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32))}
    changed = build_openvino_ir(model, xml, narrow)
    assert not changed.reused
    assert changed.input_shapes == {"input": "[1..8,1,32,32]"}
    assert _ir_input_shape(xml) == "[1..8,1,32,32]"
    assert json.loads(Path(str(xml) + ".deploylab.json").read_text())["profile"]["input"][2] == [8, 1, 32, 32]
    assert build_openvino_ir(model, xml, narrow).reused

    # the same graph and profile, other bytes (a doc_string): the ONNX file changed, so rebuild
    old_sha = file_sha256(model)
    proto = onnx.load(str(model))
    proto.doc_string = "edited after the IR was built"
    onnx.save(proto, str(model))
    assert file_sha256(model) != old_sha
    edited = build_openvino_ir(model, xml, narrow)
    assert not edited.reused
    assert edited.sidecar["onnx_sha256"] == file_sha256(model) != old_sha
    assert build_openvino_ir(model, xml, narrow).reused

    # reuse=False always rebuilds, even when everything matches
    forced = build_openvino_ir(model, xml, narrow, reuse=False)
    assert not forced.reused
    assert forced.sidecar["onnx_sha256"] == edited.sidecar["onnx_sha256"]


def test_damaged_ir_with_a_matching_sidecar_is_rebuilt(onnx_path, tmp_path):
    xml = tmp_path / "model.xml"
    build_openvino_ir(onnx_path, xml, PROFILE)
    xml.write_text("<net>cut short by an interrupted write")
    report = build_openvino_ir(onnx_path, xml, PROFILE)
    assert not report.reused
    assert _ir_input_shape(xml) == "[1..16,1,32,32]"


def _bad_builds(onnx_path, tmp_path):
    """case -> (build kwargs, texts the message must name)."""
    return {
        "xml without .xml suffix": (dict(onnx_path=onnx_path, xml_path=tmp_path / "lenet.bin", profile=PROFILE),
                                    ["lenet.bin", ".xml"]),
        "unknown input": (dict(onnx_path=onnx_path, xml_path=tmp_path / "x.xml",
                               profile={"images": PROFILE["input"]}), ["'images'", "input"]),
        "rank mismatch": (dict(onnx_path=onnx_path, xml_path=tmp_path / "x.xml",
                               profile={"input": ((1, 32, 32), (8, 32, 32), (16, 32, 32))}), ["rank 3"]),
        "changes a fixed dim": (dict(onnx_path=onnx_path, xml_path=tmp_path / "x.xml",
                                     profile={"input": ((1, 3, 32, 32), (8, 3, 32, 32), (16, 3, 32, 32))}),
                                ["dim 1", "3", "fixes it at 1"]),
        "missing onnx": (dict(onnx_path=tmp_path / "absent.onnx", xml_path=tmp_path / "x.xml", profile=PROFILE),
                         ["absent.onnx", "does not exist"]),
    }


@pytest.mark.parametrize("case", list(_bad_builds(Path("."), Path("."))))
def test_bad_builds_fail_naming_the_value(case, onnx_path, tmp_path):
    kwargs, named = _bad_builds(onnx_path, tmp_path)[case]
    with pytest.raises(DeployLabError) as info:
        build_openvino_ir(**kwargs)
    for text in named:
        assert text in str(info.value), (text, str(info.value))
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("profile", [
    {"input": ((8, 1, 32, 32), (8, 1, 32, 32), (2, 1, 32, 32))},   # min > max
    {"input": ((1, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32))},      # max has rank 3
    {"input": ((0, 1, 32, 32), (8, 1, 32, 32), (16, 1, 32, 32))},  # dim 0 = 0
], ids=["min>max", "max rank", "zero dim"])
def test_inconsistent_profiles_are_deploylab_errors(profile, onnx_path, tmp_path):
    with pytest.raises(DeployLabError):
        build_openvino_ir(onnx_path, tmp_path / "x.xml", profile)


# ---------------------------------------------------------------- runtime phase
@pytest.mark.parametrize("which", ["ov_ir", "ov_onnx"])
def test_describe_shows_symbolic_batch_from_onnx_dim_names(which, request):
    runner = request.getfixturevalue(which)
    text = runner.describe()
    assert "(openvino)" in text
    assert "input: float32[batchx1x32x32]" in text
    assert "output: float32[batchx10]" in text
    assert runner.inputs[0].shape == ("batch", 1, 32, 32)
    assert runner.outputs[0].shape == ("batch", 10)


def test_ir_runner_carries_the_profile_bounds_the_onnx_runner_does_not(ov_ir, ov_onnx):
    assert ov_ir.inputs == [TensorSpec("input", np.dtype("float32"), ("batch", 1, 32, 32), (("batch", 1, 16),))]
    assert ov_ir.inputs[0].bounds == (("batch", 1, 16),)
    assert ov_onnx.inputs[0].bounds == ()  # the ONNX graph's batch is unbounded


@pytest.mark.parametrize("which", ["ov_ir", "ov_onnx"])
def test_matches_onnxruntime_at_batch_1_and_16(which, request, ort):
    runner = request.getfixturevalue(which)
    report = compare_runners(ort, runner, batch_sizes=(1, 16), atol=1e-4, rtol=0)
    assert report.passed, report.format()
    assert [c.shape for c in report.comparisons] == [(1, 10), (16, 10)]
    assert all(c.max_abs_error <= 1e-4 for c in report.comparisons)


def test_batch_outside_the_profile_is_refused_before_the_engine(ov_ir, ov_onnx):
    feed = _feed(17)
    with pytest.raises(DeployLabError) as info:
        ov_ir.infer(feed)
    message = str(info.value)
    assert "outside" in message and "[1, 16]" in message and "17" in message
    # the same refusal comes from the input check alone, which never touches the engine
    with pytest.raises(DeployLabError, match=r"outside the \[1, 16\]"):
        ov_ir.check(feed)
    # the unbounded ONNX graph takes batch 17: the limit is the IR's profile
    assert ov_onnx.infer(feed)["output"].shape == (17, 10)


def test_wrong_dtype_is_refused(ov_ir):
    with pytest.raises(DeployLabError, match="float64.*float32"):
        ov_ir.infer({"input": np.zeros((2, 1, 32, 32), np.float64)})


# ---------------------------------------------------------------- precision and settings
def test_fp32_is_f32(ov_ir):
    assert ov_ir.precision == "fp32"
    assert ov_ir.inference_precision == "f32"


def test_precision_none_is_the_device_default(ir, device_precision):
    runner = OpenVinoRunner(ir.xml_path, precision=None)
    assert "INFERENCE_PRECISION_HINT" not in runner.config()
    assert runner.inference_precision == device_precision["default_precision"]
    assert device_precision["default_precision"] in ("f32", "bf16", "f16")


def test_bf16_request_runs_and_reports_what_openvino_picked(ir, device_precision, deploylab_log):
    runner = OpenVinoRunner(ir.xml_path, precision="bf16")
    out = runner.infer(_feed(2))["output"]
    assert out.shape == (2, 10) and np.isfinite(out).all()
    picked = runner.inference_precision
    assert picked in ("f32", "bf16", "f16")
    asked = [m for m in deploylab_log if "asked for bf16" in m]
    if "BF16" in device_precision["capabilities"]:
        assert picked == "bf16" and not asked
    else:  # this CPU (AVX2, no AVX-512 BF16 / AMX): OpenVINO falls back, and deploylab says so
        assert picked != "bf16"
        assert len(asked) == 1, deploylab_log
        assert picked in asked[0]


@pytest.mark.parametrize("kwargs, named", [
    (dict(precision="int8"), "'int8'"),
    (dict(precision="fp64"), "'fp64'"),
    (dict(hint="fast"), "'fast'"),
    (dict(threads=0), "threads must be a positive integer, got 0"),
])
def test_bad_settings_fail_at_construction(kwargs, named, tmp_path):
    # the model file does not even exist: the settings are refused before any use
    with pytest.raises(DeployLabError) as info:
        OpenVinoRunner(tmp_path / "absent.xml", **kwargs)
    assert named in str(info.value)


def test_throughput_hint_and_async_queue_in_order(ir):
    runner = OpenVinoRunner(ir.xml_path, hint="throughput")
    assert runner.optimal_requests >= 1
    # batch sizes vary so a result out of order would have the wrong shape, not just other values
    feeds = [_feed(1 + i % 4, seed=i) for i in range(10)]
    results = runner.infer_async_queue(feeds)
    assert len(results) == 10
    for feed, result in zip(feeds, results):
        expected = runner.infer(feed)["output"]
        assert result["output"].shape == (len(feed["input"]), 10)
        np.testing.assert_allclose(result["output"], expected, atol=1e-5, rtol=0)
    # the queue validates each feed like infer does
    with pytest.raises(DeployLabError, match="outside"):
        runner.infer_async_queue([_feed(1), _feed(17)])


def test_with_model_keeps_settings(onnx_path, ir):
    source = OpenVinoRunner(onnx_path, precision=None, hint="throughput", threads=1)
    other = source.with_model(ir.xml_path)
    assert isinstance(other, OpenVinoRunner)
    assert other.model_path == ir.xml_path
    assert (other.device, other.precision, other.hint, other.threads) == ("CPU", None, "throughput", 1)
    assert other.config() == source.config()
    assert other.inputs[0].bounds == (("batch", 1, 16),)
    np.testing.assert_allclose(other.infer(_feed(3))["output"], source.infer(_feed(3))["output"],
                               atol=1e-5, rtol=0)


def test_layerwise_onnxruntime_vs_openvino_on_the_same_onnx(ort, ov_onnx, tmp_path):
    report = compare_layerwise(ort, ov_onnx, atol=1e-4, rtol=0, workdir=tmp_path)
    assert report.passed, report.format()
    assert len(report.tensors) >= 10  # LeNet: convs, activations, pools, flatten, gemms
    assert report.tensors[-1][0] == "output"
    assert all(comp.max_abs_error <= 1e-4 for _, _, comp in report.tensors)


def test_layerwise_refuses_the_ir_and_suggests_the_onnx(ort, ov_ir):
    with pytest.raises(DeployLabError) as info:
        compare_layerwise(ort, ov_ir)
    message = str(info.value)
    assert str(ov_ir.model_path) in message
    assert ".onnx" in message and "--backends openvino --layerwise" in message


# ---------------------------------------------------------------- registry and broken files
def test_make_runner_by_artifact(ir):
    runner = make_runner("openvino", ir.xml_path)
    assert isinstance(runner, OpenVinoRunner)
    assert runner.infer(_feed(2))["output"].shape == (2, 10)
    with pytest.raises(DeployLabError) as info:
        make_runner("onnxruntime", ir.xml_path)
    assert ".xml" in str(info.value) and "openvino" in str(info.value)


@pytest.mark.parametrize("name, backend", [
    ("model.xml", "openvino"),
    ("model.plan", "tensorrt"),
    ("model.engine", "tensorrt"),
    ("model.onnx", "onnxruntime"),
    ("MODEL.XML", "openvino"),
])
def test_backend_for_artifact(name, backend):
    assert backend_for_artifact(name) == backend


def test_corrupt_xml_fails_at_activation_naming_the_path(garbage_file):
    path = garbage_file("corrupt.xml")
    runner = OpenVinoRunner(path)  # lazy: construction does not read the file
    with pytest.raises(DeployLabError) as info:
        runner.activate()
    assert str(path) in str(info.value)
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)
