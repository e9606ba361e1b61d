"""deploylab's TensorRT code against the real Python bindings of each pinned release, on CPU.

The bindings wheels (tests/tensorrt_conformance/wheels.txt, downloaded by ``make install``)
hold the real ``tensorrt`` module of each release without its libraries. A stub of the
libraries (nvinfer_stub.c) lets the module import; the driver (driver.py) then runs
deploylab's build and runtime phases in a subprocess per release, with strict fakes for
every library-backed object that allow only the members, signatures and property setters of
that release's real classes, and records what deploylab did. The tests here assert what
TensorRT expects of each release: which builder flags, network flags, profiles, pools and
levels are set, which requests each release refuses, and that nothing deploylab touches is
missing from the release. See tests/tensorrt_conformance/README.md for the provenance.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploylab.backends.tensorrt import (
    OPTIONAL_RUNTIME_API_CALLS, RUNTIME_API_CALLS, RUNTIME_ENUMS, TRT_TO_NUMPY, TRT_TO_TORCH, TensorRTVersion,
    write_calibration_cache,
)

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "tensorrt_conformance"
WHEEL_LIST = HERE / "wheels.txt"
WHEELS = ROOT / ".venv" / "tensorrt-wheels"
SUBPROCESS_TIMEOUT_S = 300


def _pinned_releases() -> list[tuple[str, str]]:
    """(package, release) per line of wheels.txt, e.g. ("tensorrt-cu12-bindings", "10.0.1")."""
    pins = []
    for line in WHEEL_LIST.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, release = line.partition("==")
            pins.append((package.strip(), release.strip()))
    return pins


PINS = _pinned_releases()
RELEASES = [release for _, release in PINS]
RELEASES_10 = [r for r in RELEASES if r.startswith("10.")]


def _major(release: str) -> int:
    return int(release.split(".")[0])


def _minor(release: str) -> tuple[int, int]:
    major, minor = release.split(".")[:2]
    return int(major), int(minor)


# ---------------------------------------------------------------- models
def _save(model, path: Path) -> str:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _conv_model(path: Path, dtype=np.float32) -> str:
    """input [batch, 3, 8, 8] -> Conv 3x3 (4 filters, no padding) -> output [batch, 4, 6, 6]."""
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    x = helper.make_tensor_value_info("input", elem, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("output", elem, ["batch", 4, 6, 6])
    weight = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, dtype), "weight")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "weight"], ["output"], name="conv")],
                              "conv", [x], [y], [weight])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _qdq_conv_model(path: Path) -> str:
    """The Conv with explicit int8 quantization: Q/DQ on the input, DQ on int8 weights.

    TensorRT takes symmetric int8 Q/DQ only: zero points must be int8 zeros."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, 6, 6])
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(np.full((4, 3, 3, 3), 13, np.int8), "w_int8"),
        numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zero"], ["w_dq"]),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["output"], name="conv"),
    ]
    graph = helper.make_graph(nodes, "conv_qdq", [x], [y], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


# ---------------------------------------------------------------- the cases each release runs
STATIC = {"opt": "input:2x3x8x8"}  # min = opt = max, as trtexec reads an opt shape alone
DYNAMIC = [
    {"min": "1x3x8x8", "opt": "4x3x8x8", "max": "8x3x8x8"},  # bare shapes: validate_profile names the input
    {"min": "input:8x3x8x8", "opt": "input:16x3x8x8", "max": "input:32x3x8x8"},
]
PARSER_ERRORS = [
    {"node": 0, "name": "conv", "op": "Conv", "code": "UNSUPPORTED_NODE", "desc": "no importer for this attribute"},
    {"node": -1, "code": "INVALID_GRAPH", "desc": "graph output 'output' is not produced"},
]


def _build(name, model="conv", profiles=(STATIC,), world=None, drop=(), **settings) -> dict:
    return {"name": name, "kind": "build", "model": model, "profiles": list(profiles), "world": world or {},
            "drop": [list(d) for d in drop], "settings": settings}


CASES = [
    _build("fp32"),
    _build("fp32_tf32", tf32=True),
    _build("fp16", precision="fp16"),
    _build("bf16", precision="bf16"),
    _build("int8_calibration_cache", precision="int8", calibration_cache="{work}/calibration.cache"),
    _build("int8_qdq_weakly_typed", model="qdq", precision="int8"),
    _build("strongly_typed_fp16", model="fp16", precision="fp16", strongly_typed=True),
    _build("strongly_typed_int8", model="qdq", precision="int8", strongly_typed=True),
    _build("workspace", workspace_mib=64),
    _build("dynamic_profiles", profiles=DYNAMIC),
    _build("version_compatible", version_compatible=True),
    _build("ampere_plus", hardware_compatibility="ampere+"),
    _build("same_compute_capability", hardware_compatibility="sameComputeCapability"),
    _build("timing_cache_missing", timing_cache="{work}/timing.cache"),  # order matters: it writes the file
    _build("timing_cache_present", timing_cache="{work}/timing.cache"),
    # The cache file now exists; a TensorRT that refuses it (other GPU or release) gets a fresh one.
    _build("timing_cache_foreign", timing_cache="{work}/timing.cache", world={"timing_cache_accepted": False}),
    _build("parser_failure", world={"parser_errors": PARSER_ERRORS}),
    # A sidecar of an older plan, then a build that fails: the stale record must be gone.
    {**_build("failed_build_stale_sidecar", world={"build_fails": True}), "stale_sidecar": True},
    # A cache whose header names another release: TensorRT recalibrates with no data and fails.
    _build("foreign_calibration_cache", precision="int8", calibration_cache="{work}/foreign.cache",
           world={"build_fails": True}),
    # int8 calibration (10.x) with batches lacking the input: TensorRT swallows get_batch's exception.
    {**_build("calibration_batch_error", precision="int8", calibration_cache="{work}/fresh.cache"),
     "bad_batches": True},
    {"name": "runtime", "kind": "runtime", "profile_index": 1},
    {"name": "load_plan", "kind": "load_plan", "plan": "{work}/version_compatible.plan"},  # built above
    {"name": "calibrator_base", "kind": "calibrator_base"},
    {"name": "make_calibrator", "kind": "make_calibrator", "cache": "{work}/calibration.cache"},
    {"name": "calibration_header", "kind": "calibration_header", "cache": "{work}/header.cache"},
    {"name": "strictness_probe", "kind": "strictness_probe"},
]
# Each removes one member deploylab uses from the fakes' view of the release: the case must fail
# with an AttributeError naming it, or the strict fakes would not catch a missing member.
DROPS = {
    "IBuilderConfig.clear_flag": _build("drop_clear_flag", drop=[("IBuilderConfig", "clear_flag")]),
    "BuilderFlag.TF32": _build("drop_tf32", drop=[("BuilderFlag", "TF32")]),
    "IOptimizationProfile.set_shape": _build("drop_set_shape", drop=[("IOptimizationProfile", "set_shape")]),
    "IBuilderConfig.profiling_verbosity": _build("drop_verbosity", drop=[("IBuilderConfig", "profiling_verbosity")]),
    "OnnxParser.num_errors": _build("drop_num_errors", drop=[("OnnxParser", "num_errors")]),
    "tensorrt.OnnxParser": _build("drop_parser", drop=[("tensorrt", "OnnxParser")]),
    "IExecutionContext.set_tensor_address": {"name": "drop_set_tensor_address", "kind": "runtime",
                                             "drop": [["IExecutionContext", "set_tensor_address"]]},
    "ICudaEngine.get_tensor_profile_shape": {"name": "drop_profile_shape", "kind": "runtime",
                                             "drop": [["ICudaEngine", "get_tensor_profile_shape"]]},
    "LayerInformationFormat.JSON": {"name": "drop_json", "kind": "runtime",
                                    "drop": [["LayerInformationFormat", "JSON"]]},
}
PRECISION_FLAGS = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4"}


# ---------------------------------------------------------------- running the driver
@pytest.fixture(scope="session")
def stub_libraries(tmp_path_factory) -> Path:
    """libnvinfer / libnvonnxparser / libnvinfer_plugin .so.10 and .so.11 built from nvinfer_stub.c."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("the TensorRT conformance tests compile stub libraries and need a C compiler; "
                    "install gcc (e.g. apt-get install gcc)")
    root = tmp_path_factory.mktemp("trt_stub")
    for major in sorted({_major(r) for r in RELEASES}):
        (root / str(major)).mkdir()
        for lib in ("nvinfer", "nvonnxparser", "nvinfer_plugin"):
            soname = f"lib{lib}.so.{major}"
            command = [compiler, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(root / str(major) / soname),
                       str(HERE / "nvinfer_stub.c")]
            subprocess.run(command, check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("trt_models")
    return {"conv": _conv_model(folder / "conv.onnx"), "fp16": _conv_model(folder / "conv_fp16.onnx", np.float16),
            "qdq": _qdq_conv_model(folder / "conv_qdq.onnx")}


def _wheel(package: str, release: str) -> Path | None:
    pattern = f"{package.replace('-', '_')}-{release}-*.whl"
    found = sorted(WHEELS.glob(pattern))
    return found[0] if found else None


def _spec(release: str, work: Path, models: dict) -> dict:
    def fill(value):
        if isinstance(value, str):
            return value.format(work=work)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    cases = []
    for case in CASES + list(DROPS.values()):
        case = fill(case)
        if case["kind"] == "build":
            model = case.pop("model")
            case["settings"].update(onnx_path=models[model], engine_path=str(work / f"{case['name']}.plan"))
        cases.append(case)
    owners = {cls for cls, _ in RUNTIME_API_CALLS + OPTIONAL_RUNTIME_API_CALLS + RUNTIME_ENUMS}
    return {"release": release, "output": str(work / "results.json"), "cases": cases,
            "dir_of": sorted(owners | {"tensorrt", "IInt8EntropyCalibrator2", "ParserError", "DataType"}),
            "enum_values": ["NetworkDefinitionCreationFlag"]}


@pytest.fixture(scope="session")
def conformance(stub_libraries, models, tmp_path_factory) -> dict[str, dict | str]:
    """Results of the driver per release (a dict), or why there are none (a str).

    All releases run at once, one subprocess each (importing deploylab and torch takes
    seconds; the cases themselves milliseconds)."""
    outcomes: dict[str, dict | str] = {}
    running = {}
    for package, release in PINS:
        wheel = _wheel(package, release)
        if wheel is None:
            outcomes[release] = (f"no wheel of {package}=={release} in {WHEELS}: run `make install`, which "
                                 f"downloads the wheels listed in {WHEEL_LIST.relative_to(ROOT)}")
            continue
        work = tmp_path_factory.mktemp(f"trt_{release}")
        site = work / "site"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
        # The calibration cache is written for the release that reads it: TensorRT compares the
        # header (TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2) with its own version.
        write_calibration_cache(work / "calibration.cache", {"input": 0.02, "output": 0.05}, tensorrt_version=release)
        write_calibration_cache(work / "foreign.cache", {"input": 0.02, "output": 0.05}, tensorrt_version="10.2.0")
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(_spec(release, work, models), indent=1))
        env = dict(os.environ)
        libraries = [str(stub_libraries / str(_major(release))), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libraries if p)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
        process = subprocess.Popen([sys.executable, str(HERE / "driver.py"), str(spec_path)], env=env, cwd=work,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        running[release] = (process, work, wheel)
    for release, (process, work, wheel) in running.items():
        try:
            output, _ = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        results = work / "results.json"
        if process.returncode != 0 or not results.is_file():
            outcomes[release] = (f"the driver for TensorRT {release} ({wheel.name}) exited with {process.returncode}:\n"
                                 + "\n".join(output.splitlines()[-30:]))
        else:
            outcomes[release] = {**json.loads(results.read_text()), "wheel": str(wheel), "work": str(work)}
    return outcomes


def _run(conformance, release: str) -> dict:
    outcome = conformance[release]
    if isinstance(outcome, str):
        pytest.fail(outcome, pytrace=False)
    return outcome


# ---------------------------------------------------------------- reading the records
def _calls(case: dict, owner: str, member: str) -> list[list]:
    return [e.get("args", []) for e in case["events"]
            if e["kind"] == "call" and (e["owner"], e["member"]) == (owner, member)]


def _set(case: dict, owner: str, member: str):
    values = [e["value"] for e in case["events"] if e["kind"] == "set" and (e["owner"], e["member"]) == (owner, member)]
    return values[-1] if values else None


def _facts(case: dict) -> dict:
    """What a build case configured, in TensorRT's own names."""
    shapes: dict[str, dict] = {}
    for event in case["events"]:
        if event["kind"] == "call" and (event["owner"], event["member"]) == ("IOptimizationProfile", "set_shape"):
            name, low, opt, high = event["args"]
            shapes.setdefault(f"<{event['object']}>", {})[name] = [low, opt, high]
    added = [args[0] for args in _calls(case, "IBuilderConfig", "add_optimization_profile")]
    return {
        "flags_set": [a[0] for a in _calls(case, "IBuilderConfig", "set_flag")],
        "flags_cleared": [a[0] for a in _calls(case, "IBuilderConfig", "clear_flag")],
        "network_flags": [a[0] if a else 0 for a in _calls(case, "Builder", "create_network")],
        "pools": {a[0]: a[1] for a in _calls(case, "IBuilderConfig", "set_memory_pool_limit")},
        "profiles": [shapes.get(p, {}) for p in added],
        "hardware_level": _set(case, "IBuilderConfig", "hardware_compatibility_level"),
        "profiling_verbosity": _set(case, "IBuilderConfig", "profiling_verbosity"),
        "calibrator": _set(case, "IBuilderConfig", "int8_calibrator"),
        "calibration_profile": _calls(case, "IBuilderConfig", "set_calibration_profile"),
        "builds": len(_calls(case, "Builder", "build_serialized_network")),
        "builder_created": bool(_calls(case, "Builder", "__init__")),
    }


def _ok(case: dict, name: str) -> dict:
    assert case["ok"], f"case {name} failed: {case['error']}"
    return _facts(case)


def _refused(case: dict, name: str, *fragments: str) -> str:
    assert not case["ok"], f"case {name} should have been refused, but built with {_facts(case)}"
    error = case["error"]
    assert error["type"] == "DeployLabError", f"case {name}: {error}"
    for fragment in fragments:
        assert fragment in error["message"], f"case {name}: {fragment!r} not in {error['message']!r}"
    return error["message"]


# ---------------------------------------------------------------- the tests
@pytest.mark.parametrize("release", RELEASES)
def test_detect_tensorrt_finds_the_real_bindings(conformance, release):
    run = _run(conformance, release)
    assert Path(run["module_file"]).is_relative_to(run["work"])  # from the unpacked wheel, not the venv
    # The lean runtime is installed in the venv too; the full module is preferred.
    assert run["detect"] == {"is_these_bindings": True, "version": release, "runtime_only": False}


@pytest.mark.parametrize("release", RELEASES)
def test_build_phase_conforms(conformance, release):
    run = _run(conformance, release)
    cases, v10 = run["cases"], _major(release) == 10
    strongly_typed_bit = run["enums"]["NetworkDefinitionCreationFlag"]["STRONGLY_TYPED"]
    # NetworkDefinitionCreationFlag: EXPLICIT_BATCH = 0, STRONGLY_TYPED = 1 in 10.x; 11.x removed
    # EXPLICIT_BATCH, so STRONGLY_TYPED = 0 there (and is never needed: 11.x is always strongly typed).
    assert strongly_typed_bit == (1 if v10 else 0)

    for name, case in cases.items():
        if case["ok"] and _facts(case)["builds"]:
            facts = _facts(case)
            # Every build: layer details for the inspector, one network, no TF32 set explicitly.
            assert facts["profiling_verbosity"] == "ProfilingVerbosity.DETAILED", name
            assert facts["builds"] == 1 and len(facts["network_flags"]) == 1, name
            assert not set(facts["flags_set"]) & {"BuilderFlag.TF32"}, name

    fp32 = _ok(cases["fp32"], "fp32")
    assert fp32["flags_cleared"] == ["BuilderFlag.TF32"] and fp32["flags_set"] == []  # exact fp32 (--noTF32)
    assert fp32["network_flags"] == [0] and fp32["pools"] == {} and fp32["hardware_level"] is None
    assert fp32["calibrator"] is None and fp32["profiles"] == [{"input": [[2, 3, 8, 8]] * 3}]
    tf32 = _ok(cases["fp32_tf32"], "fp32_tf32")
    assert tf32["flags_cleared"] == [] and tf32["flags_set"] == []  # TensorRT's default (TF32 on) kept

    if v10:
        for precision, flag in (("fp16", "FP16"), ("bf16", "BF16")):
            facts = _ok(cases[precision], precision)
            assert facts["flags_set"] == [f"BuilderFlag.{flag}"] and facts["flags_cleared"] == []
            assert facts["network_flags"] == [0] and facts["calibrator"] is None
        qdq = _ok(cases["int8_qdq_weakly_typed"], "int8_qdq_weakly_typed")
        assert qdq["flags_set"] == ["BuilderFlag.INT8"] and qdq["calibrator"] is None  # scales from the Q/DQ nodes
    else:
        # 11.x removed BuilderFlag.FP16/BF16/INT8: refused before a Builder exists, naming the route.
        for name, route in (("fp16", "ModelOpt AutoCast"), ("bf16", "AutoCast (low_precision_type='bf16')"),
                            ("int8_qdq_weakly_typed", "QuantizeLinear/DequantizeLinear")):
            precision = "int8" if name.startswith("int8") else name
            _refused(cases[name], name, f"TensorRT {release} removed the --{precision} builder flag", route,
                     "strongly_typed=True")
            assert not _facts(cases[name])["builder_created"]
        _refused(cases["int8_calibration_cache"], "int8_calibration_cache",
                 f"TensorRT {release} removed int8 calibration", "Q/DQ")

    for name in ("strongly_typed_fp16", "strongly_typed_int8"):
        facts = _ok(cases[name], name)
        # 10.x opts in with the creation flag; 11.x networks are always strongly typed (flags 0).
        assert facts["network_flags"] == [(1 << strongly_typed_bit) if v10 else 0], name
        assert not set(facts["flags_set"]) & {f"BuilderFlag.{f}" for f in PRECISION_FLAGS}, name
        assert facts["flags_cleared"] == [] and facts["calibrator"] is None, name
        assert cases[name]["report"]["strongly_typed"] is True

    workspace = _ok(cases["workspace"], "workspace")
    assert workspace["pools"] == {"MemoryPoolType.WORKSPACE": 64 * 2**20}  # MiB -> bytes
    dynamic = _ok(cases["dynamic_profiles"], "dynamic_profiles")
    assert dynamic["profiles"] == [
        {"input": [[1, 3, 8, 8], [4, 3, 8, 8], [8, 3, 8, 8]]},
        {"input": [[8, 3, 8, 8], [16, 3, 8, 8], [32, 3, 8, 8]]},
    ]
    compatible = _ok(cases["version_compatible"], "version_compatible")
    assert compatible["flags_set"] == ["BuilderFlag.VERSION_COMPATIBLE"]
    assert compatible["flags_cleared"] == ["BuilderFlag.TF32"]
    ampere = _ok(cases["ampere_plus"], "ampere_plus")
    assert ampere["hardware_level"] == "HardwareCompatibilityLevel.AMPERE_PLUS"
    # HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY is bound from 10.9 on (absent in 10.0.1
    # and 10.8.0.43, present in 10.13.3.9 and 11.4.0.106).
    if _minor(release) < (10, 9):
        _refused(cases["same_compute_capability"], "same_compute_capability", "needs TensorRT 10.9 or newer")
    else:
        same = _ok(cases["same_compute_capability"], "same_compute_capability")
        assert same["hardware_level"] == "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"


@pytest.mark.parametrize("release", RELEASES)
def test_timing_cache_is_created_then_reused(conformance, release):
    cases = _run(conformance, release)["cases"]
    missing, present = cases["timing_cache_missing"], cases["timing_cache_present"]
    _ok(missing, "timing_cache_missing")
    _ok(present, "timing_cache_present")
    # No file yet: a fresh cache from an empty blob, mismatches not ignored, then saved.
    assert _calls(missing, "IBuilderConfig", "create_timing_cache") == [["<0 bytes>"]]
    assert [a[1] for a in _calls(missing, "IBuilderConfig", "set_timing_cache")] == [False]
    assert missing["report"]["timing_cache_loaded"] is False and missing["report"]["timing_cache_saved"] is True
    assert _calls(missing, "ITimingCache", "serialize") == [[]]
    # The saved file is read back and accepted.
    (blob,) = _calls(present, "IBuilderConfig", "create_timing_cache")
    assert blob != ["<0 bytes>"] and present["report"]["timing_cache_loaded"] is True
    # Refused by set_timing_cache (returns False): a fresh cache, and a note saying why.
    foreign = cases["timing_cache_foreign"]
    _ok(foreign, "timing_cache_foreign")
    assert [a[0] for a in _calls(foreign, "IBuilderConfig", "create_timing_cache")] == [blob[0], "<0 bytes>"]
    assert foreign["report"]["timing_cache_loaded"] is False
    assert any("was made elsewhere" in note for note in foreign["report"]["notes"])


@pytest.mark.parametrize("release", RELEASES)
def test_parser_errors_are_all_listed(conformance, release):
    case = _run(conformance, release)["cases"]["parser_failure"]
    message = _refused(case, "parser_failure", f"TensorRT {release} could not parse conv.onnx (2 error(s))")
    assert "node 0 (conv: Conv): ErrorCode.UNSUPPORTED_NODE: no importer for this attribute" in message
    assert "graph: ErrorCode.INVALID_GRAPH: graph output 'output' is not produced" in message
    assert not _calls(case, "Builder", "create_builder_config")  # nothing built after a failed parse


@pytest.mark.parametrize("release", RELEASES_10)
def test_int8_from_a_calibration_cache(conformance, release):
    run = _run(conformance, release)
    case = run["cases"]["int8_calibration_cache"]
    facts = _ok(case, "int8_calibration_cache")
    assert facts["flags_set"] == ["BuilderFlag.INT8"] and facts["flags_cleared"] == []
    assert "IInt8EntropyCalibrator2" in facts["calibrator"]  # a subclass of the real base class
    assert facts["calibration_profile"] == [["<IOptimizationProfile#1>"]]  # the first profile's opt shapes
    # As TensorRT does with a cache: get_batch_size, then read_calibration_cache (no get_batch).
    cache = (Path(run["work"]) / "calibration.cache").read_bytes()
    assert case["calibration"] == {"batch_size": 1, "cache_bytes": cache.hex()}
    header = cache.decode().splitlines()[0]
    assert header == f"TRT-{TensorRTVersion.parse(release).number}-EntropyCalibration2"


@pytest.mark.parametrize("release", RELEASES)
def test_calibrators_per_release(conformance, release):
    cases = _run(conformance, release)["cases"]
    base = cases["calibrator_base"]
    assert base["ok"], base
    if _major(release) == 10:
        # IInt8EntropyCalibrator2 is deprecated since 10.1 but bound in every 10.x wheel.
        assert base["present"] and base["constructed"] and all(base["members"].values()), base
        made = cases["make_calibrator"]
        assert made["ok"], made["error"] if not made["ok"] else made
        assert "IInt8EntropyCalibrator2" in made["calibrator"] and made["read"] > 0
        header = cases["calibration_header"]
        assert header["ok"] and header["header"] == f"TRT-{TensorRTVersion.parse(release).number}-EntropyCalibration2"
    else:
        assert base == {"ok": True, "present": False, "calibrators": [], "events": []}  # 11.x removed them
        _refused(cases["make_calibrator"], "make_calibrator", "has no int8 calibrators")
        assert not cases["calibration_header"]["ok"]


def _missing_members(pairs, dirs: dict[str, list[str]]) -> list[str]:
    """``Class.member`` for every pair whose class or member is not in the release's dir()."""
    return [f"{cls}.{member}" for cls, member in pairs if member not in dirs.get(cls, ())]


@pytest.mark.parametrize("release", RELEASES)
def test_runtime_api_surface_exists(conformance, release):
    dirs = _run(conformance, release)["dirs"]
    assert _missing_members(RUNTIME_API_CALLS + RUNTIME_ENUMS, dirs) == []
    # The full bindings bind the inspector in every release (as EngineInspector, not IEngineInspector).
    assert _missing_members(OPTIONAL_RUNTIME_API_CALLS, dirs) == []
    # The dtype tables are keyed by DataType member names.
    assert _missing_members([("DataType", name) for name in {*TRT_TO_NUMPY, *TRT_TO_TORCH}], dirs) == []


def test_surface_check_reports_a_missing_member():
    dirs = {"ICudaEngine": ["get_tensor_name"], "TensorIOMode": ["INPUT"]}
    assert _missing_members([("ICudaEngine", "get_tensor_name"), ("ICudaEngine", "get_tensor_mode"),
                             ("TensorIOMode", "INPUT"), ("EngineInspector", "get_engine_information")], dirs) == \
        ["ICudaEngine.get_tensor_mode", "EngineInspector.get_engine_information"]


@pytest.mark.parametrize("release", RELEASES)
def test_runtime_phase_on_strict_fakes(conformance, release):
    run = _run(conformance, release)
    case = run["cases"]["runtime"]
    assert case["ok"], case["error"] if not case["ok"] else case
    assert case["describe"] == [
        ["input", "float32", ["batch", 3, 8, 8], [["batch", 1, 16]]],  # profile 1: batch 1..16
        ["output", "float32", ["batch", 4, 6, 6], []],
    ]
    assert case["infer"] == {"output": ["float32", [3, 4, 6, 6]]}
    assert _calls(case, "IExecutionContext", "set_optimization_profile_async") == [[1, 0]]
    assert _calls(case, "IExecutionContext", "set_input_shape") == [["input", [3, 3, 8, 8]]]
    addresses = dict(tuple(a) for a in _calls(case, "IExecutionContext", "set_tensor_address"))
    assert set(addresses) == {"input", "output"} and all(isinstance(a, int) and a for a in addresses.values())
    assert _calls(case, "IExecutionContext", "execute_async_v3") == [[0]]
    inspect = case["inspect"]
    assert inspect["layers"] == {"Layers": ["conv"], "Bindings": ["input", "output"]} and inspect["layers_note"] is None
    assert inspect["profiles"][1] == {"input": {"min": [1, 3, 8, 8], "opt": [8, 3, 8, 8], "max": [16, 3, 8, 8]}}
    assert _calls(case, "EngineInspector", "get_engine_information") == [["LayerInformationFormat.JSON"]]
    # RUNTIME_API_CALLS / RUNTIME_ENUMS / OPTIONAL_RUNTIME_API_CALLS promise to list every member the
    # runtime phase touches (so the lean and dispatch bindings can be checked against them).
    declared = set(RUNTIME_API_CALLS + RUNTIME_ENUMS + OPTIONAL_RUNTIME_API_CALLS)
    touched = {(e["owner"], e["member"]) for e in case["events"] if e["kind"] != "missing" and e["owner"] != "tensorrt"}
    assert sorted(touched - declared) == []


@pytest.mark.parametrize("release", RELEASES)
def test_load_plan_deserializes_with_the_real_runtime_api(conformance, release):
    """load_plan with torch answering as one sm_86 GPU (the GPU the build recorded)."""
    case = _run(conformance, release)["cases"]["load_plan"]
    assert case["ok"], case["error"] if not case["ok"] else case
    assert case["runtime_kind"] == "full" and case["version"] == release and case["version_compatible"] is True
    assert _calls(case, "Logger", "__init__") == [["Severity.WARNING"]]
    assert len(_calls(case, "Runtime", "__init__")) == 1
    # A version-compatible plan embeds the lean runtime: its host code must be allowed to run.
    assert _set(case, "Runtime", "engine_host_code_allowed") is True
    (blob,) = _calls(case, "Runtime", "deserialize_cuda_engine")
    assert re.fullmatch(r"<\d+ bytes>", blob[0]) and case["engine"] == "<ICudaEngine#1>"
    declared = set(RUNTIME_API_CALLS + RUNTIME_ENUMS + OPTIONAL_RUNTIME_API_CALLS)
    touched = {(e["owner"], e["member"]) for e in case["events"] if e["kind"] != "missing" and e["owner"] != "tensorrt"}
    assert sorted(touched - declared) == []


@pytest.mark.parametrize("release, removed", [(r, d) for r in RELEASES for d in DROPS])
def test_strict_fakes_fail_on_a_removed_member(conformance, release, removed):
    case = _run(conformance, release)["cases"][DROPS[removed]["name"]]
    assert not case["ok"], f"with {removed} removed, the case still passed"
    assert case["error"]["type"] == "AttributeError", case["error"]
    assert f"TensorRT {release}: {removed} does not exist" in case["error"]["message"]


@pytest.mark.parametrize("release", RELEASES)
def test_strict_fakes_refuse_what_the_bindings_refuse(conformance, release):
    probes = _run(conformance, release)["cases"]["strictness_probe"]["probes"]
    expected = {"removed member": "AttributeError", "wrong enum type": "TypeError", "missing argument": "TypeError",
                "int for an enum": "TypeError", "read-only property": "AttributeError",
                "method assigned": "AttributeError", "property of the wrong type": "TypeError"}
    assert {name: (p or {}).get("type") for name, p in probes.items()} == expected
    assert "IBuilderConfig.max_workspace_size does not exist" in probes["removed member"]["message"]
    assert "set_flag(flag: tensorrt_bindings.tensorrt.BuilderFlag)" in probes["wrong enum type"]["message"]


def test_coverage_summary(conformance, capsys):
    """Per release: the distinct (owner, member) pairs deploylab touched, all present in the release."""
    rows, problems = [], []
    for release in RELEASES:
        run = _run(conformance, release)
        drop_names = {c["name"] for c in DROPS.values()}
        touched, probed = set(), set()
        for name, case in run["cases"].items():
            if name in drop_names:
                continue
            for event in case["events"]:
                pair = (event["owner"], event["member"])
                (probed if event["kind"] == "missing" else touched).add(pair)
        absent = _missing_members(sorted(touched), run["dirs"])
        problems += [f"{release}: {m}" for m in absent]
        module = {p for p in touched if p[0] == "tensorrt"}
        # Enum members, and Logger.WARNING & co. (ILogger.Severity values set on Logger by __init__.py).
        enums = {p for p in touched if p[0] in run["enum_names"] or (p[0] == "Logger" and p[1] != "__init__")}
        rows.append((release, len(touched), len(touched - module - enums), len(enums), len(module),
                     ", ".join(f"{o}.{m}" for o, m in sorted(probed)) or "-"))
    with capsys.disabled():
        print("\nTensorRT conformance: distinct (owner, member) pairs deploylab touched per release")
        print(f"{'release':<12} {'total':>5} {'class members':>13} {'enum members':>12} {'module names':>12}  "
              "guarded probes of absent names")
        for row in rows:
            print(f"{row[0]:<12} {row[1]:>5} {row[2]:>13} {row[3]:>12} {row[4]:>12}  {row[5]}")
    assert problems == []
    assert all(row[2] > 0 for row in rows)


@pytest.mark.parametrize("release", RELEASES)
def test_failed_build_leaves_no_stale_record_and_calibrator_errors_surface(conformance, release):
    """Fault 9: a record of an older plan is removed before the build, so a failed build leaves none.
    Fault 8: an exception in get_batch, which TensorRT's trampoline prints and reads as "no more
    batches", is raised by build_engine_plan after the build (10.x; 11.x has no calibrators)."""
    cases = _run(conformance, release)["cases"]
    failed = cases["failed_build_stale_sidecar"]
    assert not failed["ok"] and "could not build" in failed["error"]["message"]
    assert failed["sidecar_after"] is False
    calibrated = cases["calibration_batch_error"]
    assert not calibrated["ok"]
    if _major(release) >= 11:
        assert "removed int8 calibration" in calibrated["error"]["message"]
    else:
        assert calibrated["calibration"]["get_batch_calls"] == 1  # TensorRT saw "no more batches" at once
        assert "calibration batch 0 lacks input(s) input" in calibrated["error"]["message"]
        assert calibrated["sidecar_after"] is False


@pytest.mark.parametrize("release", RELEASES)
def test_a_failed_build_with_a_foreign_cache_names_the_header(conformance, release):
    """Fault 5: a cache written for another release is rejected by TensorRT, which then calibrates
    without data and fails with an unrelated-looking message; deploylab names the likely cause."""
    case = _run(conformance, release)["cases"]["foreign_calibration_cache"]
    assert not case["ok"]
    message = case["error"]["message"]
    if _major(release) >= 11:
        assert "removed int8 calibration" in message
    else:
        expected = f"TRT-{TensorRTVersion.parse(release).number}-EntropyCalibration2"
        assert "likely the calibration cache: its header is 'TRT-100200-EntropyCalibration2'" in message
        assert expected in message
