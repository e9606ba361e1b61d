"""TensorRT backend: versions, trtexec commands, profiles, plan records, calibration caches, API surface.

Everything here runs without a GPU; the lean runtime bindings installed in the venv stand in
for the API-surface checks. The build + run parity test at the end needs an NVIDIA GPU and
the full ``tensorrt`` and is skipped elsewhere.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
import shlex
import struct
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import deploylab
from deploylab.backends import tensorrt as trtb
from deploylab.backends.profiles import ShapeProfile, parse_profile_args, validate_profile
from deploylab.backends.tensorrt import (
    BuildSettings,
    TensorRTRunner,
    TensorRTVersion,
    check_plan_compatibility,
    format_command,
    read_calibration_cache,
    scales_from_ranges,
    trtexec_command,
    write_calibration_cache,
    write_sidecar,
)
from deploylab.errors import DeployLabError, MissingDependencyError

lean = pytest.importorskip("tensorrt_lean_bindings")

SEED_PROFILE = dict(min="input:1x3x224x224", opt="input:8x3x224x224", max="input:32x3x224x224")
SEED_SHAPES = ["--minShapes=input:1x3x224x224", "--optShapes=input:8x3x224x224", "--maxShapes=input:32x3x224x224"]
# Every command ends with these: layer details for the inspector, and build only (no timing run).
BUILD_ONLY = ["--profilingVerbosity=detailed", "--skipInference"]


def _has_full_tensorrt() -> bool:
    module, _, is_lean = trtb.detect_tensorrt()
    return module is not None and not is_lean and hasattr(module, "Builder")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------- ONNX files
def _save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def dynamic_model(tmp_path):
    """One input ["batch", 3, 224, 224] -> Relu."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 224, 224])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "dyn", [x], [y])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "dyn.onnx")


@pytest.fixture
def two_input_model(tmp_path):
    """Dynamic "a" [batch, 4] and static "c" [2, 2], each through its own Relu."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 2])
    outs = [helper.make_tensor_value_info("out_a", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("out_c", TensorProto.FLOAT, [2, 2])]
    nodes = [helper.make_node("Relu", ["a"], ["out_a"]), helper.make_node("Relu", ["c"], ["out_c"])]
    graph = helper.make_graph(nodes, "two", [a, c], outs)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "two.onnx")


# ---------------------------------------------------------------- versions
def test_version_parsing_and_numbers():
    v = TensorRTVersion.parse("10.3.0.26")
    assert (v.major, v.minor, v.patch, v.build) == (10, 3, 0, 26) and str(v) == "10.3.0.26"
    assert TensorRTVersion.parse("11.4") == TensorRTVersion(11, 4, 0)
    assert TensorRTVersion.parse("TensorRT 10.13.3") == TensorRTVersion(10, 13, 3)
    assert TensorRTVersion.parse(lean.__version__).major == 11
    assert TensorRTVersion(10, 3, 0).number == 100300 and TensorRTVersion(8, 6, 1).number == 8601
    assert TensorRTVersion(10, 16, 1) > TensorRTVersion(10, 3, 0) > TensorRTVersion(8, 6, 1)
    assert TensorRTVersion(10, 3, 0, 26).same_release(TensorRTVersion(10, 3, 0))
    assert not TensorRTVersion(10, 3, 0, 26).same_release(TensorRTVersion(10, 3, 0, 27))
    assert TensorRTVersion(10, 0).weakly_typed_builds and not TensorRTVersion(11, 0).weakly_typed_builds
    with pytest.raises(DeployLabError, match="cannot read a TensorRT version from 'latest'"):
        TensorRTVersion.parse("latest")


def test_detect_finds_the_lean_runtime_here():
    module, version, is_lean = trtb.detect_tensorrt()
    assert module is not None and version is not None
    if not _has_full_tensorrt():
        assert is_lean and version == TensorRTVersion.parse(lean.__version__)


# ---------------------------------------------------------------- trtexec commands
def _settings(**kwargs):
    base = dict(onnx_path="batch_resnet18.onnx", engine_path="batch_resnet18.plan",
                profiles=[parse_profile_args(**SEED_PROFILE)], workspace_mib=1024)
    base.update(kwargs)
    return BuildSettings(**base)


def test_trtexec_10x_is_the_seed_command_with_mempoolsize():
    # Seed: trtexec --onnx=batch_resnet18.onnx --saveEngine=batch_resnet18.plan --minShapes=... --workspace=1024
    command = trtexec_command(_settings(), "10.3.0")
    assert command == ["trtexec", "--onnx=batch_resnet18.onnx", "--saveEngine=batch_resnet18.plan", "--noTF32",
                       *SEED_SHAPES, "--memPoolSize=workspace:1024", *BUILD_ONLY]
    assert "--workspace=1024" not in command
    text = format_command(command)
    assert text.splitlines()[0] == "trtexec --onnx=batch_resnet18.onnx \\"
    assert text.splitlines()[-1] == "    --skipInference"
    assert text.replace(" \\\n    ", " ") == " ".join(command)


@pytest.mark.parametrize("version", ["10.0.1", "10.13.3", "11.4.0"])
def test_fp32_plans_clear_tf32_unless_asked(version):
    """TensorRT turns TF32 on by default (NvInfer.h, 10.x and 11.x): an "fp32" plan would round
    conv/matmul inputs to 10-bit mantissas on Ampere+. deploylab clears it for fp32 only."""
    assert "--noTF32" in trtexec_command(_settings(), version)
    assert "--noTF32" not in trtexec_command(_settings(tf32=True), version)
    assert BuildSettings("m.onnx", "m.plan").clears_tf32
    assert not BuildSettings("m.onnx", "m.plan", precision="fp16").clears_tf32


def test_trtexec_10x_fp16_and_int8_flags_in_seed_order():
    fp16 = trtexec_command(_settings(engine_path="batch_fp16_resnet18.plan", precision="fp16"), "10.8.0")
    assert fp16 == ["trtexec", "--onnx=batch_resnet18.onnx", "--fp16", "--saveEngine=batch_fp16_resnet18.plan",
                    *SEED_SHAPES, "--memPoolSize=workspace:1024", *BUILD_ONLY]
    int8 = trtexec_command(_settings(engine_path="batch_int8_resnet18.plan", precision="int8",
                                     calibration_cache="calibration.cache"), "10.8.0")
    assert int8 == ["trtexec", "--onnx=batch_resnet18.onnx", "--int8", "--calib=calibration.cache",
                    "--saveEngine=batch_int8_resnet18.plan", *SEED_SHAPES, "--memPoolSize=workspace:1024", *BUILD_ONLY]
    assert "--bf16" in trtexec_command(_settings(precision="bf16"), "10.8.0")
    with pytest.raises(DeployLabError, match=r"needs a calibration cache \(--calib=FILE\)"):
        trtexec_command(_settings(precision="int8"), "10.8.0")
    with pytest.raises(DeployLabError, match="only applies to int8 builds, but precision is 'fp16'"):
        trtexec_command(_settings(precision="fp16", calibration_cache="c.cache"), "10.8.0")


def test_trtexec_10x_strongly_typed():
    command = trtexec_command(_settings(precision="fp16", strongly_typed=True), "10.12.0")
    assert "--stronglyTyped" in command and "--fp16" not in command
    with pytest.raises(DeployLabError, match="strongly typed network takes int8 scales from Q/DQ nodes"):
        trtexec_command(_settings(precision="int8", strongly_typed=True, calibration_cache="c.cache"), "10.12.0")


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8"])
def test_trtexec_11x_refuses_precision_flags_and_explains_the_route(precision):
    with pytest.raises(DeployLabError) as err:
        trtexec_command(_settings(precision=precision), "11.4.0")
    text = str(err.value)
    assert f"removed the --{precision} builder flag" in text and "strongly typed" in text
    assert "strongly_typed=True" in text
    assert ("Q/DQ" in text) if precision == "int8" else ("AutoCast" in text)
    if precision == "int8":  # the route is the recipe TensorRT's parser takes, not ORT's uint8 defaults
        assert trtb.TENSORRT_INT8_COMMAND in text and "symmetric signed int8" in text
        assert "quantize_static" not in text


def test_trtexec_11x_commands():
    plain = trtexec_command(_settings(), "11.4.0")
    assert plain == ["trtexec", "--onnx=batch_resnet18.onnx", "--saveEngine=batch_resnet18.plan", "--noTF32",
                     *SEED_SHAPES, "--memPoolSize=workspace:1024", *BUILD_ONLY]
    # The model carries fp16: no precision flag, and no --stronglyTyped (always on in 11.x).
    fp16 = trtexec_command(_settings(onnx_path="model_fp16.onnx", precision="fp16", strongly_typed=True), "11.0.0")
    assert not any(a in fp16 for a in ("--fp16", "--stronglyTyped"))
    with pytest.raises(DeployLabError, match=r"removed int8 calibration \(--calib"):
        trtexec_command(_settings(precision="int8", strongly_typed=True, calibration_cache="c.cache"), "11.0.0")


def test_trtexec_portability_cache_and_refusals():
    command = trtexec_command(_settings(workspace_mib=None, timing_cache="build/timing.cache",
                                        version_compatible=True, hardware_compatibility="ampere+"), "10.8.0")
    assert command[-5:] == ["--timingCacheFile=build/timing.cache", "--versionCompatible",
                            "--hardwareCompatibilityLevel=ampere+", *BUILD_ONLY]
    assert not any(a.startswith("--memPoolSize") for a in command)
    # trtexec and the enum have sameComputeCapability from 10.9 on, not in 10.0-10.8
    same_cc = trtexec_command(_settings(hardware_compatibility="sameComputeCapability"), "10.9.0")
    assert same_cc[-3] == "--hardwareCompatibilityLevel=sameComputeCapability"
    for older in ("10.0.1", "10.8.0"):
        with pytest.raises(DeployLabError, match=f"sameComputeCapability needs TensorRT 10.9 or newer, not {older}"):
            trtexec_command(_settings(hardware_compatibility="sameComputeCapability"), older)
    static = trtexec_command(_settings(profiles=[]), "10.8.0")
    assert not any("Shapes" in a for a in static)
    with pytest.raises(DeployLabError, match="older than 10.0"):
        trtexec_command(_settings(), "8.6.1")
    with pytest.raises(DeployLabError, match="2 profiles given"):
        trtexec_command(_settings(profiles=[parse_profile_args(**SEED_PROFILE)] * 2), "10.8.0")
    with pytest.raises(DeployLabError, match="bare shape"):
        trtexec_command(_settings(profiles=[parse_profile_args(opt="8x3x224x224")]), "10.8.0")


def test_trtexec_quotes_names_with_colons():
    profile = parse_profile_args(opt="'input:0':1x3,mask:1x3")
    assert profile.shapes["input:0"] == ((1, 3),) * 3
    command = trtexec_command(_settings(profiles=[profile]), "10.8.0")
    assert "--optShapes='input:0':1x3,mask:1x3" in command
    assert shlex.split(format_command(command).replace(" \\\n    ", " ")) == command  # shell-safe quoting


@pytest.mark.parametrize("kwargs, message", [
    (dict(precision="int4"), "unknown precision 'int4'"),
    (dict(workspace_mib=0), "workspace_mib must be a positive whole number of MiB, got 0"),
    (dict(workspace_mib=1.5), "positive whole number of MiB, got 1.5"),
    (dict(hardware_compatibility="turing"), "unknown hardware compatibility 'turing'"),
])
def test_build_settings_reject_bad_values(kwargs, message):
    with pytest.raises(DeployLabError, match=message):
        _settings(**kwargs)


# ---------------------------------------------------------------- profiles
def test_profile_parsing_forms(dynamic_model):
    bare = parse_profile_args(min="1x3x224x224", opt="8x3x224x224", max="32x3x224x224")
    assert list(bare.shapes) == [""]
    resolved = validate_profile(bare, dynamic_model)
    assert resolved.shapes == {"input": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
    assert parse_profile_args(**SEED_PROFILE).shapes == resolved.shapes
    named = parse_profile_args(min="1x3x224x224", opt="8x3x224x224", max="32x3x224x224", input_name="input")
    assert named.shapes == resolved.shapes
    opt_only = parse_profile_args(opt="input:4x3x224x224")
    assert opt_only.shapes["input"] == ((4, 3, 224, 224),) * 3  # trtexec: opt alone -> min = max = opt
    assert ShapeProfile.from_dict(resolved.to_dict()).shapes == resolved.shapes
    assert parse_profile_args(opt="x:scalar").shapes["x"] == ((), (), ())


@pytest.mark.parametrize("kwargs, message", [
    (dict(min="1x3", max="4x3"), "needs an opt shape"),
    (dict(min="1x3", opt="2x3"), "give both min and max"),
    (dict(min="1x3xabc", opt="2x3x1", max="4x3x1"), r"min shape for input '\(bare\)': '1x3xabc' is not a shape"),
    (dict(min="a:1x3", opt="b:2x3", max="b:4x3"), "must name the same inputs"),
    (dict(opt="1x3,b:2x3"), "mixes a bare shape with named ones"),
    (dict(opt="a:1x3,a:2x3"), "names input 'a' twice"),
    (dict(opt="'a:1x3"), "unbalanced single quote"),
    (dict(opt=""), "opt shape spec is empty"),
])
def test_profile_parse_errors(kwargs, message):
    with pytest.raises(DeployLabError, match=message):
        parse_profile_args(**kwargs)


@pytest.mark.parametrize("spec, message", [
    (dict(opt="image:8x3x224x224"), r"names input 'image', but the model's inputs are input: batchx3x224x224"),
    (dict(min="1x3x224", opt="8x3x224", max="32x3x224"),
     r"min shape for input 'input' is 1x3x224 \(rank 3\), but the model's input is batchx3x224x224 \(rank 4\)"),
    (dict(min="1x3x224x224", opt="8x3x224x224", max="32x4x224x224"),
     r"max shape 32x4x224x224 for input 'input' has dim 1 = 4, but the model fixes dim 1 to 3 "
     r"\(model shape batchx3x224x224\)"),
    (dict(min="16x3x224x224", opt="8x3x224x224", max="32x3x224x224"),
     r"input 'input' dim 0: min 16, opt 8, max 32 must satisfy min <= opt <= max"),
    (dict(min="0x3x224x224", opt="8x3x224x224", max="32x3x224x224"),
     r"min shape 0x3x224x224 for input 'input' has dim 0 = 0; every profile dim must be >= 1"),
])
def test_validate_profile_errors(dynamic_model, spec, message):
    with pytest.raises(DeployLabError, match=message):
        validate_profile(parse_profile_args(**spec), dynamic_model)


def test_validate_profile_static_inputs_may_be_omitted(two_input_model):
    profile = validate_profile(parse_profile_args(min="a:1x4", opt="a:8x4", max="a:16x4"), two_input_model)
    assert set(profile.shapes) == {"a"}
    with_static = parse_profile_args(min="a:1x4,c:2x2", opt="a:8x4,c:2x2", max="a:16x4,c:2x2")
    assert set(validate_profile(with_static, two_input_model).shapes) == {"a", "c"}
    with pytest.raises(DeployLabError, match=r"input 'a' has shape batchx4 \(dim 0 not fixed\) but the profile "
                                             r"gives no shapes for it; add e.g. a:1x4"):
        validate_profile(parse_profile_args(opt="c:2x2"), two_input_model)
    with pytest.raises(DeployLabError, match="a bare profile shape needs a model with one input, but two.onnx has 2"):
        validate_profile(parse_profile_args(opt="8x4"), two_input_model)
    with pytest.raises(DeployLabError, match="model fixes dim 0 to 2"):
        validate_profile(parse_profile_args(opt="a:8x4,c:3x2"), two_input_model)


def test_model_precision_facts(tmp_path, dynamic_model):
    assert trtb.model_precision(dynamic_model) == {"float_dtypes": ["float32"], "qdq_nodes": 0}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    qdq = _save(helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], [scale, zero]),
                                  opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "qdq.onnx")
    assert trtb.model_precision(qdq)["qdq_nodes"] == 2
    settings = BuildSettings(dynamic_model, tmp_path / "m.plan", precision="fp16", strongly_typed=True)
    with pytest.raises(DeployLabError, match="holds no float16 tensors"):
        trtb.check_model_precision(settings)
    with pytest.raises(DeployLabError, match="no QuantizeLinear/DequantizeLinear"):
        trtb.check_model_precision(BuildSettings(dynamic_model, tmp_path / "m.plan", precision="int8",
                                                 strongly_typed=True))
    trtb.check_model_precision(BuildSettings(qdq, tmp_path / "q.plan", precision="int8", strongly_typed=True))


def _qdq_model(tmp_path, zero_type, zero_value, name="qdq.onnx"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", zero_type, [], [zero_value])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant_x"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant_x")]
    return _save(helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], [scale, zero]),
                                   opset_imports=[helper.make_opsetid("", 17)]), tmp_path / name)


@pytest.mark.parametrize("zero_type, zero_value, issue", [
    (TensorProto.UINT8, 107, "non-zero zero point"),  # ONNX Runtime's asymmetric uint8 activations
    (TensorProto.INT8, 3, "non-zero zero point"),
    (TensorProto.UINT8, 0, "TensorRT has no uint8 on the GPU"),
])
def test_strongly_typed_int8_refuses_qdq_tensorrt_cannot_import(tmp_path, zero_type, zero_value, issue):
    """onnx-tensorrt's Q/DQ importer takes symmetric signed int8 only: a model ONNX Runtime quantized
    with its CPU defaults (uint8, zero points like 107) cannot be built; the error names the nodes."""
    model = _qdq_model(tmp_path, zero_type, zero_value)
    settings = BuildSettings(model, tmp_path / "q.plan", precision="int8", strongly_typed=True)
    with pytest.raises(DeployLabError) as err:
        trtb.check_model_precision(settings)
    text = str(err.value)
    assert "Q/DQ nodes TensorRT's ONNX parser refuses" in text and "'quant_x'" in text and issue in text
    assert "--for tensorrt" in text
    assert trtb.read_model_facts(model).qdq_problems  # the facts say so too
    assert not trtb.read_model_facts(_qdq_model(tmp_path, TensorProto.INT8, 0, "ok.onnx")).qdq_problems


def test_10x_int8_of_a_qdq_model_needs_no_calibration(tmp_path):
    """Explicit quantization: the Q/DQ nodes carry the scales, so --int8 needs no --calib on 10.x."""
    model = _qdq_model(tmp_path, TensorProto.INT8, 0)
    command = trtexec_command(BuildSettings(model, tmp_path / "q.plan", precision="int8"), "10.13.3")
    assert "--int8" in command and not any(a.startswith("--calib") for a in command)
    with pytest.raises(DeployLabError, match="its int8 scales come from the model"):
        trtexec_command(BuildSettings(model, tmp_path / "q.plan", precision="int8", calibration_cache="c.cache"),
                        "10.13.3")
    facts = trtb.read_model_facts(model)
    plan = trtb.precision_plan(BuildSettings(model, tmp_path / "q.plan", precision="int8"), TensorRTVersion(10, 8), facts)
    assert plan == {"flag": "INT8", "strongly_typed": False, "calibrate": False}


# ---------------------------------------------------------------- plan records (sidecar)
A10 = {"name": "NVIDIA A10", "compute_capability": "8.6"}


def _plan(tmp_path, onnx_path, version="10.3.0.26", gpu=A10, **kwargs):
    settings = BuildSettings(onnx_path, tmp_path / "model.plan", **kwargs)
    settings.engine_path.write_bytes(b"plan bytes")
    write_sidecar(settings, TensorRTVersion.parse(version), gpu)
    return settings.engine_path


def test_sidecar_records_the_build(tmp_path, dynamic_model):
    profile = validate_profile(parse_profile_args(opt="2x3x224x224", min="1x3x224x224", max="4x3x224x224"),
                               dynamic_model)
    plan = _plan(tmp_path, dynamic_model, precision="fp16", profiles=[profile], workspace_mib=512)
    record = json.loads((tmp_path / "model.plan.deploylab.json").read_text())
    assert record["tensorrt_version"] == "10.3.0.26" and record["gpu"] == A10
    assert record["precision"] == "fp16" and record["workspace_mib"] == 512
    assert record["profiles"] == [{"input": {"min": [1, 3, 224, 224], "opt": [2, 3, 224, 224],
                                             "max": [4, 3, 224, 224]}}]
    assert record["inputs"] == {"input": ["batch", 3, 224, 224]}
    assert record["onnx"]["sha256"] == hashlib.sha256(dynamic_model.read_bytes()).hexdigest()
    assert record["deploylab_version"] == deploylab.__version__
    assert datetime.fromisoformat(record["created"]).tzinfo is not None
    assert check_plan_compatibility(plan, "10.3.0.26", (8, 6)) == record


def test_plan_from_another_version_or_gpu_is_refused(tmp_path, dynamic_model):
    plan = _plan(tmp_path, dynamic_model)
    with pytest.raises(DeployLabError) as err:
        check_plan_compatibility(plan, "10.4.0", "8.6")
    text = str(err.value)
    assert "built with TensorRT 10.3.0.26 on NVIDIA A10 (sm_86)" in text and "TensorRT 10.4.0" in text
    assert "rebuild it here from" in text and "version_compatible=True" in text
    assert "it runs on the full runtime of TensorRT 10.3.0.26 only" in text
    with pytest.raises(DeployLabError, match=r"this GPU is sm_89, and the plan is promised only for the GPU architecture"):
        check_plan_compatibility(plan, "10.3.0", "sm_89")
    assert check_plan_compatibility(plan, "10.3.0", None)["gpu"] == A10  # unknown GPU: version check only
    for runtime in ("lean", "dispatch"):
        with pytest.raises(DeployLabError, match=f"the {runtime} runtime of TensorRT 10.3.0 runs only version-compatible"):
            check_plan_compatibility(plan, "10.3.0", "8.6", runtime=runtime)
    with pytest.raises(DeployLabError, match="unknown TensorRT runtime 'slim'"):
        check_plan_compatibility(plan, "10.3.0", "8.6", runtime="slim")


def test_same_compute_capability_on_another_gpu_model_warns(tmp_path, dynamic_model, monkeypatch):
    """NvInfer.h promises a default plan only for the device that built it: another GPU model of the
    same compute capability (an A10 plan on an RTX 3090, both sm_86) loads with a warning."""
    said = []
    monkeypatch.setattr(trtb.record, "announce", said.append)
    plan = _plan(tmp_path, dynamic_model)
    assert check_plan_compatibility(plan, "10.3.0.26", "8.6", gpu_name="NVIDIA A10") and not said
    assert check_plan_compatibility(plan, "10.3.0.26", "8.6", gpu_name="NVIDIA GeForce RTX 3090")
    assert len(said) == 1 and "another GPU of the same compute capability" in said[0]
    same_cc = _plan(tmp_path, dynamic_model, hardware_compatibility="sameComputeCapability", version="10.9.0")
    assert check_plan_compatibility(same_cc, "10.9.0", "8.6", gpu_name="NVIDIA GeForce RTX 3090")
    assert len(said) == 1  # built for any GPU of that compute capability: nothing to warn about


def test_version_compatible_plans_run_forward_only(tmp_path, dynamic_model):
    plan = _plan(tmp_path, dynamic_model, version_compatible=True)
    assert check_plan_compatibility(plan, "10.8.0", "8.6")
    assert check_plan_compatibility(plan, "11.4.0", "8.6", runtime="dispatch")  # documented 10 -> 11
    # A lean runtime runs version-compatible plans of its own release only; crossing needs dispatch.
    assert check_plan_compatibility(plan, "10.3.0.26", "8.6", runtime="lean")
    with pytest.raises(DeployLabError) as err:
        check_plan_compatibility(plan, "11.4.0", "8.6", runtime="lean")
    assert "a lean runtime runs only plans built by its own release" in str(err.value)
    assert "use the dispatch runtime (tensorrt_dispatch)" in str(err.value)
    assert "full or dispatch runtime of TensorRT 10.3.0.26 or a later 10.x or 11.x" in str(err.value)
    with pytest.raises(DeployLabError, match="only runs forward"):
        check_plan_compatibility(plan, "10.2.0", "8.6")
    plan11 = _plan(tmp_path, dynamic_model, version="11.0.0", version_compatible=True)
    with pytest.raises(DeployLabError, match="TensorRT 12.0.0 cannot load it"):
        check_plan_compatibility(plan11, "12.0.0", "8.6")


def test_hardware_compatible_plans_need_ampere(tmp_path, dynamic_model):
    plan = _plan(tmp_path, dynamic_model, hardware_compatibility="ampere+")
    assert check_plan_compatibility(plan, "10.3.0", "9.0")
    with pytest.raises(DeployLabError, match=r"this GPU is sm_75, older than Ampere \(sm_80\)"):
        check_plan_compatibility(plan, "10.3.0", (7, 5))
    same_cc = _plan(tmp_path, dynamic_model, hardware_compatibility="sameComputeCapability")
    with pytest.raises(DeployLabError, match="sm_89"):
        check_plan_compatibility(same_cc, "10.3.0", "8.9")


def test_missing_sidecar_is_allowed_with_a_warning(tmp_path, monkeypatch):
    said = []
    monkeypatch.setattr(trtb.record, "announce", said.append)
    plan = tmp_path / "trtexec.plan"
    plan.write_bytes(b"x")
    assert check_plan_compatibility(plan, "10.3.0", "8.6") is None
    assert said and "no build record (trtexec.plan.deploylab.json)" in said[0]
    (tmp_path / "trtexec.plan.deploylab.json").write_text("{not json")
    with pytest.raises(DeployLabError, match="build record .* is not valid JSON"):
        check_plan_compatibility(plan, "10.3.0", "8.6")
    with pytest.raises(DeployLabError, match="cannot read a compute capability from 'ampere'"):
        trtb._cc_tuple("ampere")


# ---------------------------------------------------------------- calibration cache
def test_calibration_cache_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(1e-4, 1.0, 50), [1 / 127, 2.0 ** -140, 3.4e38]]).astype(np.float32)
    names = [f"/layer{i}/Conv_output_0" for i in range(len(values) - 1)] + ["input_1:0"]
    scales = dict(zip(names, values.tolist()))
    path = write_calibration_cache(tmp_path / "calib.cache", scales, tensorrt_version="10.3.0")
    cache = read_calibration_cache(path)
    assert cache.header == "TRT-100300-EntropyCalibration2"
    assert list(cache.scales) == names
    got = np.array(list(cache.scales.values()), dtype=np.float32)
    assert np.array_equal(got.view(np.uint32), values.view(np.uint32))
    # The file format: float32 bit pattern, 8 hex digits, most significant first.
    lines = path.read_text().splitlines()
    assert lines[1 + 51] == f"{names[51]}: {struct.pack('>f', values[51]).hex()}" == "/layer51/Conv_output_0: 00000200"
    assert lines[1 + 50] == "/layer50/Conv_output_0: 3c010204"  # 1/127, as in published TensorRT caches
    custom = write_calibration_cache(tmp_path / "old.cache", {"data": 2.008338},
                                     version_tag="TRT-8600-EntropyCalibration2")
    assert read_calibration_cache(custom).header == "TRT-8600-EntropyCalibration2"


def test_calibration_cache_reads_published_format(tmp_path):
    path = tmp_path / "mnist.cache"
    path.write_text("TRT-7202-EntropyCalibration2\ndata: 3c008912\nconv1: 3c60dd38\n"
                    "(Unnamed Layer* 4) [Fully Connected]_output: 3d65992f\nprob: 3c083ffd")
    cache = read_calibration_cache(path)
    assert cache.scales["data"] == struct.unpack(">f", bytes.fromhex("3c008912"))[0]
    assert "(Unnamed Layer* 4) [Fully Connected]_output" in cache.scales and len(cache.scales) == 4


@pytest.mark.parametrize("content, message", [
    ("TRT-100300-EntropyCalibration2\na: 3c010204\nb 3c010204\n", r"line 3: 'b 3c010204' is not 'tensor_name: "),
    ("TRT-100300-EntropyCalibration2\na: 3c010204\nb: zz010204\n", "line 3"),
    ("TRT-100300-EntropyCalibration2\na: 3c010204\na: 3c010205\n", "line 3: tensor 'a' appears twice"),
    ("a: 3c010204\n", "line 1: 'a: 3c010204' is not a calibration cache header"),
    ("", r"line 1: '\(empty file\)'"),
])
def test_malformed_calibration_cache_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.cache"
    path.write_text(content)
    with pytest.raises(DeployLabError, match=message):
        read_calibration_cache(path)


def test_write_calibration_cache_refusals(tmp_path):
    with pytest.raises(DeployLabError, match="scale -1.0 of tensor 'a' must be a positive finite float32"):
        write_calibration_cache(tmp_path / "c", {"a": -1.0}, tensorrt_version="10.3.0")
    with pytest.raises(DeployLabError, match="version_tag 'TRT-x' is not like"):
        write_calibration_cache(tmp_path / "c", {"a": 1.0}, version_tag="TRT-x")
    if not _has_full_tensorrt():  # only the 11.x lean runtime here: the reading version is unknown
        with pytest.raises(DeployLabError, match="needs the TensorRT 10.x release that will read the cache, and "
                                                 "here only the lean runtime"):
            write_calibration_cache(tmp_path / "c", {"a": 1.0})
    with pytest.raises(DeployLabError, match="does not exist"):
        read_calibration_cache(tmp_path / "missing.cache")


@pytest.mark.parametrize("version", ["10.13", "10", "TensorRT 10.13"])
def test_calibration_header_needs_a_full_release(tmp_path, version):
    """10.13.2 and 10.13.3 both exist; "10.13" would be written TRT-101300, which neither reads."""
    with pytest.raises(DeployLabError, match="give major.minor.patch of the TensorRT that will read the cache"):
        trtb.calibration_header(version)
    with pytest.raises(DeployLabError, match="names several"):
        write_calibration_cache(tmp_path / "c.cache", {"a": 1.0}, tensorrt_version=version)
    assert not (tmp_path / "c.cache").exists()
    assert trtb.calibration_header("10.13.3") == "TRT-101303-EntropyCalibration2"
    assert trtb.calibration_header("10.13.3.9") == "TRT-101303-EntropyCalibration2"  # the build is not in it


def test_installed_version_is_the_default_header_with_a_warning(monkeypatch, tmp_path):
    said = []
    monkeypatch.setattr(trtb.calibration, "announce", said.append)
    full = trtb.TensorRTInstall(SimpleNamespace(__name__="tensorrt", Builder=object), TensorRTVersion(10, 13, 3, 9),
                                "full")
    monkeypatch.setattr(trtb.calibration, "detect_install", lambda: full)
    path = write_calibration_cache(tmp_path / "c.cache", {"a": 1.0})
    assert read_calibration_cache(path).header == "TRT-101303-EntropyCalibration2"
    assert said and "written for the installed TensorRT 10.13.3.9" in said[0]
    eleven = trtb.TensorRTInstall(SimpleNamespace(__name__="tensorrt", Builder=object), TensorRTVersion(11, 4, 0),
                                  "full")
    monkeypatch.setattr(trtb.calibration, "detect_install", lambda: eleven)
    with pytest.raises(DeployLabError, match="needs the TensorRT 10.x release"):
        write_calibration_cache(tmp_path / "d.cache", {"a": 1.0})


class _CalibratorBase:
    """Stands in for trt.IInt8EntropyCalibrator2 (10.x); the real base is checked in the conformance tests."""

    def __init__(self):
        pass


_FAKE_TRT10 = SimpleNamespace(__version__="10.13.3.9", IInt8EntropyCalibrator2=_CalibratorBase)


def _failing_batches():
    yield {"input": np.zeros((1, 3), np.float32)}
    raise OSError("disk read failed while loading calibration images")


@pytest.mark.parametrize("batches, message", [
    ([{"image": np.zeros((1, 3), np.float32)}], "calibration batch 0 lacks input(s) input; it has image"),
    (_failing_batches(), "int8 calibration stopped at batch 1: get_batch raised OSError: disk read failed"),
])
def test_calibrator_errors_survive_tensorrt(tmp_path, monkeypatch, batches, message):
    """TensorRT's trampoline prints an exception raised in get_batch and reads "no more batches"; the
    calibrator keeps it, answers None (as TensorRT would have read), and raise_error raises it."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the CUDA copy is never reached
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    calibrator = trtb.make_entropy_calibrator(batches, tmp_path / "c.cache", trt=_FAKE_TRT10)
    while calibrator.get_batch(["input"]) is not None:
        pass
    assert calibrator.get_batch(["input"]) is None  # after an error: no more batches
    with pytest.raises(DeployLabError, match=re.escape(message)):
        calibrator.raise_error()


def test_calibrator_reads_an_existing_cache_without_a_gpu(tmp_path):
    cache = write_calibration_cache(tmp_path / "c.cache", {"input": 0.1}, tensorrt_version="10.13.3")
    calibrator = trtb.make_entropy_calibrator([], cache, trt=_FAKE_TRT10)
    assert calibrator.read_calibration_cache() == cache.read_bytes()
    calibrator.raise_error()  # nothing went wrong
    with pytest.raises(DeployLabError, match="TensorRT 11.4.0 has no int8 calibrators"):
        trtb.make_entropy_calibrator([], cache, trt=SimpleNamespace(__version__="11.4.0"))


def test_scales_from_ranges():
    scales = scales_from_ranges({"a": (-2.54, 1.0), "b": (0.0, 127.0), "c": (-0.5, 0.25)})
    assert scales["a"] == float(np.float32(2.54 / 127)) and scales["c"] == float(np.float32(0.5 / 127))
    assert scales["b"] == 1.0
    assert all(float(np.float32(v)) == v for v in scales.values())  # exactly what a cache stores
    with pytest.raises(DeployLabError, match=r"tensor 'z' has range \(0.0, 0.0\): a zero amax gives scale 0"):
        scales_from_ranges({"z": (0.0, 0.0)})
    with pytest.raises(DeployLabError, match=r"range \(1.0, -1.0\) of tensor 'w' must be finite with min <= max"):
        scales_from_ranges({"w": (1.0, -1.0)})


# ---------------------------------------------------------------- API surface against the lean and dispatch runtimes
dispatch = pytest.importorskip("tensorrt_dispatch_bindings")


@pytest.mark.parametrize("module", [lean, dispatch], ids=["lean", "dispatch"])
@pytest.mark.parametrize("cls, attr", trtb.RUNTIME_API_CALLS + trtb.RUNTIME_ENUMS)
def test_runtime_api_exists_in_lean_and_dispatch_bindings(module, cls, attr):
    assert hasattr(getattr(module, cls), attr), f"{module.__name__}.{cls} has no {attr}"


def test_detect_tells_the_three_runtimes_apart():
    found = {r.kind: r for r in trtb.detect_runtimes()}
    assert found["lean"].module is lean and found["dispatch"].module is dispatch
    assert not found["lean"].can_build and not found["dispatch"].can_build
    assert found["dispatch"].describe() == f"dispatch runtime tensorrt_dispatch_bindings {dispatch.__version__}"
    if not _has_full_tensorrt():  # lean first: both run the same plans of their own release
        assert trtb.detect_install().kind == "lean"


def test_optional_runtime_api_is_guarded():
    # The lean runtime returns an IEngineInspector it has no Python class for; inspect() checks
    # for the class before using it, and any class that is bound must have the member.
    for cls, attr in trtb.OPTIONAL_RUNTIME_API_CALLS:
        assert not hasattr(lean, cls) or hasattr(getattr(lean, cls), attr)
    assert hasattr(lean.LayerInformationFormat, "JSON")


def test_dtype_maps_match_tensorrt():
    import torch

    members = lean.DataType.__members__
    assert set(trtb.TRT_TO_NUMPY) <= set(members) and set(trtb.TRT_TO_TORCH) <= set(members)
    for name in trtb.TRT_TO_NUMPY:
        assert trtb.numpy_dtype(members[name]) == np.dtype(lean.nptype(members[name]))
        assert torch.empty(0, dtype=trtb.torch_dtype(members[name])).numpy().dtype == trtb.numpy_dtype(members[name])
    assert trtb.torch_dtype(lean.DataType.BF16) is torch.bfloat16
    with pytest.raises(DeployLabError, match="TensorRT IO dtype BF16 has no numpy equivalent"):
        trtb.numpy_dtype(lean.DataType.BF16)


def test_lean_runtime_cannot_build(tmp_path, dynamic_model):
    if _has_full_tensorrt():
        pytest.skip("the full tensorrt is installed")
    with pytest.raises(MissingDependencyError, match="only the lean runtime tensorrt_lean_bindings 11.4"):
        trtb.build_engine_plan(BuildSettings(dynamic_model, tmp_path / "m.plan"))
    with pytest.raises(MissingDependencyError, match="pip install tensorrt"):
        trtb.make_entropy_calibrator([], tmp_path / "c.cache")


def test_runner_without_gpu_says_so(tmp_path):
    if _cuda():
        pytest.skip("a CUDA GPU is present")
    runner = TensorRTRunner(tmp_path / "model.plan")  # construction is cheap and never touches TensorRT
    with pytest.raises(DeployLabError, match="needs an NVIDIA GPU / TensorRT"):
        runner.activate()
    with pytest.raises(DeployLabError, match="needs an NVIDIA GPU"):
        runner.infer({"input": np.zeros((1, 3), np.float32)})


# ---------------------------------------------------------------- the runner's engine logic on strict stand-ins
_ALLOWED = set(trtb.RUNTIME_API_CALLS) | set(trtb.OPTIONAL_RUNTIME_API_CALLS)


class _Strict:
    """Fails on any public attribute of a TensorRT class that RUNTIME_API_CALLS does not list."""

    trt_class = ""

    def __getattribute__(self, name):
        if not name.startswith("_") and (type(self).trt_class, name) not in _ALLOWED:
            raise AssertionError(f"the runner used {type(self).trt_class}.{name}, not in RUNTIME_API_CALLS")
        return object.__getattribute__(self, name)


class _FakeEngine(_Strict):
    """A "doubling" engine: input [-1, 3] float32 -> output [-1, 3]; one profile, batch 1..4."""

    trt_class = "ICudaEngine"
    num_io_tensors = 2
    num_optimization_profiles = 1

    def get_tensor_name(self, i):
        return ["input", "output"][i]

    def get_tensor_mode(self, name):
        return {"input": "IN", "output": "OUT"}[name]

    def get_tensor_dtype(self, name):
        return lean.DataType.FLOAT

    def get_tensor_shape(self, name):
        return (-1, 3)

    def get_tensor_location(self, name):
        return "DEV"

    def get_tensor_profile_shape(self, name, index):
        assert index == 0
        return [(1, 3), (2, 3), (4, 3)]


class _FakeContext(_Strict):
    trt_class = "IExecutionContext"

    def __init__(self):
        self._shapes, self._addresses, self._runs = {}, {}, 0

    def set_input_shape(self, name, shape):
        self._shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self._shapes["input"]

    def set_tensor_address(self, name, address):
        self._addresses[name] = address
        return True

    def set_optimization_profile_async(self, index, stream):
        return True

    def execute_async_v3(self, stream):
        count = int(np.prod(self._shapes["input"]))
        src = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self._addresses["input"]))
        dst = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self._addresses["output"]))
        dst[:] = 2 * src
        self._runs += 1
        return True


_FAKE_TRT = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="IN", OUTPUT="OUT"),
                            TensorLocation=SimpleNamespace(DEVICE="DEV", HOST="HOST"), __name__="fake")


def _fake_runner(record=None):
    context = _FakeContext()
    runner = TensorRTRunner("fake.plan")

    def activate():
        runner.session = trtb._EngineSession(_FAKE_TRT, _FakeEngine(), context, "cpu", 0, lambda: None, 0, record)

    runner._activate = activate
    return runner, context


def test_runner_logic_binds_every_tensor_and_checks_profile_bounds_first():
    runner, context = _fake_runner(record={"inputs": {"input": ["batch", 3]}, "outputs": {"output": ["batch", 3]}})
    (spec,) = runner.inputs
    assert spec.shape == ("batch", 3) and spec.bounds == (("batch", 1, 4),) and spec.dtype == np.float32
    assert runner.outputs[0].shape == ("batch", 3)
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    out = runner.infer({"input": x})
    np.testing.assert_array_equal(out["output"], 2 * x)
    assert context._shapes == {"input": (3, 3)} and set(context._addresses) == {"input", "output"}
    with pytest.raises(DeployLabError, match=r"input 'input' has shape 5x3, but optimization profile 0 of this plan "
                                             r"accepts min 1x3 to max 4x3 \(dim 0 = 5 is outside \[1, 4\]\)"):
        runner.infer({"input": np.zeros((5, 3), np.float32)})
    assert context._runs == 1  # refused before TensorRT ran
    with pytest.raises(DeployLabError, match="has dtype float64"):
        runner.infer({"input": np.zeros((2, 3))})
    facts = runner.inspect()
    assert facts["profiles"] == [{"input": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}}]
    assert facts["io_tensors"][0] == {"name": "input", "mode": "input", "dtype": "FLOAT", "shape": [-1, 3]}
    assert facts["layers"] is None and "without EngineInspector" in facts["layers_note"]


class _HostEngine(_FakeEngine):
    """Both IO tensors live in host memory (as shape tensors do)."""

    def get_tensor_location(self, name):
        return "HOST"


class _CheckedContext(_FakeContext):
    def execute_async_v3(self, stream):
        for name, address in self._addresses.items():  # a meta/unallocated buffer has no address
            if not address:
                raise AssertionError(f"{name} is bound to address 0")
        return super().execute_async_v3(stream)


def test_host_outputs_get_host_buffers():
    """TensorRT writes a HOST-located output in host memory: the runner must bind a host buffer
    there, not one on the CUDA device (here "meta", which has no storage, stands for the device)."""
    context = _CheckedContext()
    session = trtb._EngineSession(_FAKE_TRT, _HostEngine(), context, "meta", 0, lambda: None)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(session.infer({"input": x})["output"], 2 * x)


class _Events(list):
    def runtime_module(self, engine):
        events = self

        class Runtime:
            def __init__(self, logger):
                events.append("Runtime")

            def deserialize_cuda_engine(self, blob):
                events.append("deserialize")
                return engine

        class Logger:
            WARNING = "W"

            def __init__(self, severity):
                self.severity = severity

        return SimpleNamespace(__name__="tensorrt", __version__="10.13.3", Runtime=Runtime, Logger=Logger)


def _patch_runtime(monkeypatch, events, engine, devices=2):
    module = events.runtime_module(engine)
    fake_cuda = SimpleNamespace(device_count=lambda: devices, set_device=lambda d: events.append(f"set_device {d}"),
                                is_available=lambda: True)
    monkeypatch.setattr(trtb.runtime, "_require_cuda", lambda: SimpleNamespace(cuda=fake_cuda))
    monkeypatch.setattr(trtb.runtime, "require_tensorrt",
                        lambda phase: trtb.TensorRTInstall(module, TensorRTVersion(10, 13, 3), "full"))
    monkeypatch.setattr(trtb.runtime, "gpu_info", lambda device: None)
    monkeypatch.setattr(trtb.record, "announce", lambda text: None)


def test_load_plan_sets_the_device_before_the_runtime(tmp_path, monkeypatch):
    events = _Events()
    _patch_runtime(monkeypatch, events, engine=_FakeEngine())
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    loaded = trtb.load_plan(plan, device=1)
    assert events == ["set_device 1", "Runtime", "deserialize"]  # the engine lands on device 1
    assert loaded.runtime_kind == "full" and loaded.version == TensorRTVersion(10, 13, 3)
    with pytest.raises(DeployLabError, match="CUDA device 2 does not exist; this machine has 2"):
        trtb.load_plan(plan, device=2)


class _NoContextEngine(_FakeEngine):
    def create_execution_context(self):
        return None  # what TensorRT returns when it cannot allocate the context


def test_a_missing_execution_context_is_an_error(tmp_path, monkeypatch):
    _patch_runtime(monkeypatch, _Events(), engine=_NoContextEngine())
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    with pytest.raises(DeployLabError, match="could not create an execution context for m.plan"):
        TensorRTRunner(plan).activate()


def test_gpu_info_reports_the_current_device_by_default(monkeypatch):
    """A build runs on torch's current device, which need not be 0; the record must name that one."""
    import torch

    names = {0: "NVIDIA A10", 1: "NVIDIA L4"}
    capabilities = {0: (8, 6), 1: (8, 9)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: names[d])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: capabilities[d])
    assert trtb.gpu_info() == {"name": "NVIDIA L4", "compute_capability": "8.9", "index": 1}
    assert trtb.gpu_info(0) == {"name": "NVIDIA A10", "compute_capability": "8.6", "index": 0}


def test_build_checks_the_gpu_before_touching_tensorrt(tmp_path, dynamic_model, monkeypatch):
    """Without a driver trt.Builder raises "TypeError: factory function returned nullptr"."""
    def builder(logger):
        raise TypeError("factory function returned nullptr")

    module = SimpleNamespace(__name__="tensorrt", Builder=builder, Runtime=object)
    monkeypatch.setattr(trtb.build, "require_tensorrt",
                        lambda phase: trtb.TensorRTInstall(module, TensorRTVersion(10, 13, 3), "full"))
    monkeypatch.setattr(trtb.build, "gpu_info", lambda device=None: None)
    with pytest.raises(DeployLabError, match="building a TensorRT plan needs an NVIDIA GPU with a working driver"):
        trtb.build_engine_plan(BuildSettings(dynamic_model, tmp_path / "m.plan", [parse_profile_args(
            min="input:1x3x224x224", opt="input:1x3x224x224", max="input:1x3x224x224")]))


class _FakeInspector(_Strict):
    trt_class = "EngineInspector"

    def __init__(self, text):
        self._text = text

    def get_engine_information(self, fmt):
        assert fmt == "JSON"
        return self._text


class _InspectableEngine(_FakeEngine):
    def __init__(self, text):
        self._text = text

    def create_engine_inspector(self):
        return _FakeInspector(self._text)


@pytest.mark.parametrize("text, layers, note", [
    ('{"Layers": ["conv1"], "Bindings": ["input", "output"]}', {"Layers": ["conv1"], "Bindings": ["input", "output"]},
     None),
    ("", None, "build it with profiling_verbosity=DETAILED"),  # an engine built without detailed verbosity
])
def test_inspect_reads_layers_with_the_full_tensorrt(text, layers, note):
    """The full bindings bind the inspector as ``EngineInspector``; with it present, inspect() lists layers."""
    full_trt = SimpleNamespace(**vars(_FAKE_TRT), EngineInspector=_FakeInspector,
                               LayerInformationFormat=SimpleNamespace(JSON="JSON"))
    runner = TensorRTRunner("fake.plan")

    def activate():
        runner.session = trtb._EngineSession(full_trt, _InspectableEngine(text), _FakeContext(), "cpu", 0,
                                             lambda: None, 0, None)

    runner._activate = activate
    facts = runner.inspect()
    assert facts["layers"] == layers
    assert (facts["layers_note"] is None) if note is None else (note in facts["layers_note"])


def test_runner_logic_without_a_record_names_dims_itself():
    runner, _ = _fake_runner()
    assert runner.inputs[0].shape == ("input:0", 3) and runner.inputs[0].bounds == (("input:0", 1, 4),)
    assert runner.outputs[0].shape == (None, 3)
    with pytest.raises(DeployLabError, match="profile_index 2 out of range: the plan has 1 profile"):
        trtb._EngineSession(_FAKE_TRT, _FakeEngine(), _FakeContext(), "cpu", 0, lambda: None, 2)


# ---------------------------------------------------------------- on an NVIDIA GPU with the full TensorRT
needs_gpu = pytest.mark.skipif(not (_cuda() and _has_full_tensorrt()), reason="no NVIDIA GPU / TensorRT")


@needs_gpu
def test_build_and_run_lenet_matches_onnxruntime(lenet_ts_dynamic, tmp_path):
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner

    settings = BuildSettings(
        lenet_ts_dynamic.path, tmp_path / "lenet.plan",
        profiles=[parse_profile_args(min="input:1x1x32x32", opt="input:4x1x32x32", max="input:8x1x32x32")],
        workspace_mib=256, timing_cache=tmp_path / "timing.cache",
    )
    report = trtb.build_engine_plan(settings)
    assert report.engine_path.stat().st_size == report.engine_bytes > 0
    assert report.timing_cache_saved and settings.timing_cache.stat().st_size > 0
    runner = TensorRTRunner(report.engine_path)
    assert runner.inputs[0].bounds == (("batch", 1, 8),)
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    expected = OnnxRuntimeRunner(lenet_ts_dynamic.path).infer({"input": x})["output"]
    got = runner.infer({"input": x})["output"]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(DeployLabError, match="max 8x1x32x32"):
        runner.infer({"input": np.zeros((9, 1, 32, 32), np.float32)})
    facts = runner.inspect()
    assert facts["profiles"] == [{"input": {"min": [1, 1, 32, 32], "opt": [4, 1, 32, 32], "max": [8, 1, 32, 32]}}]
    assert [t["name"] for t in facts["io_tensors"]] == ["input", "output"] and facts["layers"]
    rebuilt = trtb.build_engine_plan(settings)  # the saved timing cache is reused
    assert rebuilt.timing_cache_loaded


# ---------------------------------------------------------------- timing cache loading (fault: None cache)
class _FakeTimingConfig:
    """Like IBuilderConfig: create_timing_cache returns None for a blob it cannot read, and
    set_timing_cache(None, ...) raises TypeError (pybind's check of the ITimingCache argument)."""

    MAGIC = b"TRTC"

    def __init__(self, accepts_foreign: bool = True):
        self.accepts_foreign, self.current = accepts_foreign, None

    def create_timing_cache(self, blob):
        blob = bytes(blob)
        if blob and not blob.startswith(self.MAGIC):
            return None
        return ("cache", blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache is None:
            raise TypeError("set_timing_cache(): incompatible function arguments")
        assert ignore_mismatch is False
        self.current = cache
        return bool(cache[1]) is False or self.accepts_foreign


@pytest.mark.parametrize("content, accepts, loaded, note", [
    (None, True, False, None),                                   # no file yet: a fresh cache
    (b"TRTC saved by this GPU", True, True, None),               # reused
    (b"\x00garbage", True, False, "is unreadable"),              # corrupt: fresh, not a TypeError
    (b"TRTC from another GPU", False, False, "was made elsewhere"),  # refused by TensorRT
])
def test_timing_cache_falls_back_to_a_fresh_one(tmp_path, content, accepts, loaded, note):
    path = tmp_path / "timing.cache"
    if content is not None:
        path.write_bytes(content)
    config, notes = _FakeTimingConfig(accepts), []
    assert trtb._load_timing_cache(config, path, notes) is loaded
    assert config.current is not None  # the build always has a cache to fill
    assert (not notes) if note is None else (len(notes) == 1 and note in notes[0])
    if not loaded:
        assert config.current == ("cache", b"")


def test_sidecar_records_whether_tf32_was_allowed(tmp_path, dynamic_model):
    exact = trtb.read_sidecar(_plan(tmp_path, dynamic_model))
    assert exact["tf32"] is False
    allowed = trtb.read_sidecar(_plan(tmp_path, dynamic_model, tf32=True))
    assert allowed["tf32"] is True
    fp16 = trtb.read_sidecar(_plan(tmp_path, dynamic_model, precision="fp16"))
    assert fp16["tf32"] is True  # only fp32 builds clear it: TensorRT's default stays for the others


def test_sidecar_is_tied_to_the_plan_bytes(tmp_path, dynamic_model):
    plan = _plan(tmp_path, dynamic_model)
    record = trtb.read_sidecar(plan)
    assert record["plan"] == {"bytes": len(b"plan bytes"), "sha256": hashlib.sha256(b"plan bytes").hexdigest()}
    assert not list(tmp_path.glob("*.partial"))  # written through a temporary file and a rename
    plan.write_bytes(b"plan byteZ")  # same size, other bytes: e.g. rebuilt by trtexec
    assert trtb.read_sidecar(plan) is None
    plan.write_bytes(b"a longer plan")
    assert trtb.read_sidecar(plan) is None
    assert check_plan_compatibility(plan, "10.3.0", "8.6") is None  # "no build record", not the stale one
    side = trtb.sidecar_path(plan)  # a record without the plan's facts (older deploylab) is not trusted
    old = json.loads(side.read_text())
    del old["plan"]
    side.write_text(json.dumps(old))
    assert trtb.read_sidecar(plan) is None
