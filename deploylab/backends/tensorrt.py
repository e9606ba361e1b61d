"""TensorRT in its two phases: build an ONNX model into a plan, then run the plan.

Build phase: ``trtexec_command`` writes the exact trtexec command line for a TensorRT
version, and ``build_engine_plan`` does the same with the Python builder (parse, configure,
``build_serialized_network``), writing the plan and a JSON sidecar ``<plan>.json`` that
records where and how the plan was built. Runtime phase: ``TensorRTRunner`` deserializes
the plan, creates an execution context, binds torch CUDA buffers by address and runs
``execute_async_v3`` on a CUDA stream, behind deploylab's runner contract.

Versions. deploylab follows the documented API of TensorRT 10 and 11 and branches on the
major version wherever they differ:

- 10.x removed the binding API (``execute_async_v2``, ``build_engine``,
  ``max_workspace_size``) and trtexec's ``--workspace`` (now ``--memPoolSize=workspace:N``).
  Networks are explicit-batch; ``EXPLICIT_BATCH`` is deprecated and ignored, strong typing
  is opt-in (``STRONGLY_TYPED`` / ``--stronglyTyped``), fp16/bf16/int8 are builder flags,
  int8 scales can come from a calibrator or a calibration cache (``--calib``).
- 11.x removed weak typing: every network is strongly typed, ``BuilderFlag.FP16/BF16/INT8``,
  the int8 calibrators and trtexec's ``--fp16/--bf16/--int8/--calib`` are gone. fp16 comes
  from an fp16 ONNX model (e.g. ModelOpt AutoCast), int8 from explicit Q/DQ nodes.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
  https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-trtexec.html

The pip wheels (``pip install tensorrt``) ship the Python API but no trtexec binary; trtexec
comes with the tar/deb/container distributions. Plans are tied to the TensorRT version and
GPU architecture that built them unless built version- or hardware-compatible, which is why
every plan deploylab writes carries a sidecar that ``check_plan_compatibility`` reads.

Without the full TensorRT, ``detect_tensorrt`` falls back to the lean runtime bindings
(``tensorrt_lean``/``tensorrt_lean_bindings``): they can run version-compatible plans but
cannot build, parse ONNX or inspect engines.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import shlex
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from deploylab.backends.base import Runner, TensorSpec, check_feed
from deploylab.backends.profiles import ShapeProfile, shape_text, validate_profile
from deploylab.errors import DeployLabError, MissingDependencyError
from deploylab.log import announce, info

INSTALL_HINT = (
    "pip install tensorrt (needs an NVIDIA GPU with a recent driver; the wheels download "
    "their libraries from NVIDIA's own package index, so a machine that cannot reach it "
    "cannot install them)"
)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# trtexec spells the levels differently from the Python enum.
HARDWARE_LEVELS = {"NONE": "none", "AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "sameComputeCapability"}
_HARDWARE_ALIASES = {
    "none": "NONE", "ampere+": "AMPERE_PLUS", "ampere_plus": "AMPERE_PLUS", "ampereplus": "AMPERE_PLUS",
    "samecomputecapability": "SAME_COMPUTE_CAPABILITY", "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}
SIDECAR_FORMAT = "deploylab-tensorrt-plan/1"
# Version-compatible plans may cross a major version only in these documented pairs:
# https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/getting-started/support-matrix.html
# ("TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8
# version-compatible engines can run with a TensorRT 10 runtime").
_CROSS_MAJOR_VERSION_COMPATIBLE = {(8, 10), (10, 11)}

#: Every runtime-phase class member the runner touches; a test checks each one exists in
#: ``tensorrt_lean_bindings``, so the runtime phase works on the lean runtime too.
RUNTIME_API_CALLS: tuple[tuple[str, str], ...] = (
    ("Logger", "__init__"),
    ("Runtime", "__init__"),
    ("Runtime", "engine_host_code_allowed"),
    ("Runtime", "deserialize_cuda_engine"),
    ("ICudaEngine", "num_io_tensors"),
    ("ICudaEngine", "get_tensor_name"),
    ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_dtype"),
    ("ICudaEngine", "get_tensor_shape"),
    ("ICudaEngine", "get_tensor_location"),
    ("ICudaEngine", "num_optimization_profiles"),
    ("ICudaEngine", "get_tensor_profile_shape"),
    ("ICudaEngine", "create_execution_context"),
    ("IExecutionContext", "set_optimization_profile_async"),
    ("IExecutionContext", "set_input_shape"),
    ("IExecutionContext", "get_tensor_shape"),
    ("IExecutionContext", "set_tensor_address"),
    ("IExecutionContext", "execute_async_v3"),
)
#: Enum members the runtime phase reads.
RUNTIME_ENUMS: tuple[tuple[str, str], ...] = (
    ("Logger", "WARNING"), ("TensorIOMode", "INPUT"), ("TensorIOMode", "OUTPUT"),
    ("TensorLocation", "DEVICE"), ("TensorLocation", "HOST"),
)
#: Used only when the module has them (the full tensorrt; the lean runtime binds no inspector
#: class). The Python class is bound as ``EngineInspector`` (not ``IEngineInspector``) in every
#: release 10.0-11.4: ``py::class_<IEngineInspector>(m, "EngineInspector", ...)`` in
#: python/src/infer/pyCore.cpp.
OPTIONAL_RUNTIME_API_CALLS: tuple[tuple[str, str], ...] = (
    ("ICudaEngine", "create_engine_inspector"),
    ("EngineInspector", "get_engine_information"),
)

# TensorRT DataType member name -> numpy dtype / torch dtype name. numpy has no bfloat16,
# so BF16 IO tensors are refused (build with fp32 IO, e.g. AutoCast keep_io_types=True).
TRT_TO_NUMPY = {
    "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
    "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8,
}
TRT_TO_TORCH = {
    "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
    "INT64": "int64", "BOOL": "bool", "UINT8": "uint8",
}


# ---------------------------------------------------------------- versions and import
@dataclass(frozen=True, order=True)
class TensorRTVersion:
    """A TensorRT version: major.minor.patch[.build] (build ignored unless both sides have it)."""

    major: int
    minor: int = 0
    patch: int = 0
    build: int | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str | TensorRTVersion) -> TensorRTVersion:
        """``"10.3.0.26"``, ``"11.4"``, ``"TensorRT 10.13.3"`` -> TensorRTVersion."""
        if isinstance(text, TensorRTVersion):
            return text
        match = re.search(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not match:
            raise DeployLabError(
                f"cannot read a TensorRT version from {text!r}; write it as major.minor.patch, e.g. '10.3.0'"
            )
        major, minor, patch, build = (int(g) if g is not None else None for g in match.groups())
        return cls(major, minor or 0, patch or 0, build)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build is not None else "")

    def same_release(self, other: TensorRTVersion) -> bool:
        """Equal major.minor.patch, and build too when both know it (plans need an exact match)."""
        if (self.major, self.minor, self.patch) != (other.major, other.minor, other.patch):
            return False
        return self.build is None or other.build is None or self.build == other.build

    @property
    def number(self) -> int:
        """``NV_TENSORRT_VERSION``: major*10000+minor*100+patch from 10.x on (8.x: major*1000+...).

        This is the number in a calibration cache header (``TRT-100300-EntropyCalibration2``).
        """
        return self.major * (10000 if self.major >= 10 else 1000) + self.minor * 100 + self.patch

    @property
    def weakly_typed_builds(self) -> bool:
        """True where fp16/bf16/int8 builder flags and calibrators exist (TensorRT 10.x)."""
        return self.major < 11


def detect_tensorrt():
    """The importable TensorRT Python module: ``(module or None, TensorRTVersion or None, is_lean)``.

    Prefers the full ``tensorrt`` (build + runtime). Falls back to the lean runtime
    (``tensorrt_lean``, then the ``tensorrt_lean_bindings`` wheel), which only deserializes
    and runs version-compatible plans.
    """
    for name, lean in (("tensorrt", False), ("tensorrt_lean", True), ("tensorrt_lean_bindings", True)):
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken install raises OSError/RuntimeError, not only ImportError
            continue
        # The PyPI sdist stub installs a 'tensorrt' package without bindings: not usable.
        if not hasattr(module, "Runtime"):
            continue
        return module, TensorRTVersion.parse(getattr(module, "__version__", "0")), lean
    return None, None, False


def _require_tensorrt(phase: str):
    module, version, lean = detect_tensorrt()
    if module is None:
        raise MissingDependencyError(
            f"the TensorRT {phase} phase needs the Python module 'tensorrt', which is not importable; "
            f"install it with: {INSTALL_HINT}"
        )
    if phase == "build" and (lean or not hasattr(module, "Builder")):
        raise MissingDependencyError(
            f"building a TensorRT plan needs the full 'tensorrt' module (Builder, OnnxParser), but only the "
            f"lean runtime {module.__name__} {version} is installed; it can run version-compatible plans, "
            f"not build them. Install the builder with: {INSTALL_HINT}"
        )
    return module, version, lean


# ---------------------------------------------------------------- build settings and trtexec
@dataclass
class BuildSettings:
    """What to build: paths, profiles, precision and portability options.

    ``precision``: fp32, fp16, bf16 or int8. On TensorRT 10 with ``strongly_typed=False``
    it selects builder flags (int8 needs ``calibration_cache`` or calibration batches); with
    ``strongly_typed=True`` (10.x) or on TensorRT 11 (always strongly typed) it states the
    precision the ONNX model already carries (fp16/bf16 tensors, int8 Q/DQ nodes).
    ``workspace_mib``: workspace pool limit in MiB (None = TensorRT's default, all device memory).
    ``hardware_compatibility``: none, ampere+ or sameComputeCapability (10.9+).
    ``tf32``: let fp32 convolutions and matrix multiplies use TF32 (inputs rounded to 10-bit
    mantissas) on Ampere and newer GPUs. TensorRT enables ``BuilderFlag.TF32`` by default in
    10.x and 11.x (``NvInfer.h``: "Enabled by default"); deploylab clears it for fp32 builds
    (trtexec ``--noTF32``) unless ``tf32=True``, so an fp32 plan matches ONNX Runtime to fp32
    rounding, as Polygraphy does. The choice is recorded in the sidecar.
    """

    onnx_path: str | Path
    engine_path: str | Path
    profiles: list[ShapeProfile] = field(default_factory=list)
    precision: str = "fp32"
    workspace_mib: int | None = None
    timing_cache: str | Path | None = None
    calibration_cache: str | Path | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    strongly_typed: bool = False
    tf32: bool = False

    @property
    def clears_tf32(self) -> bool:
        """True when the build clears BuilderFlag.TF32 (fp32 plans, unless tf32=True)."""
        return self.precision == "fp32" and not self.tf32

    def __post_init__(self):
        self.onnx_path, self.engine_path = Path(self.onnx_path), Path(self.engine_path)
        self.timing_cache = Path(self.timing_cache) if self.timing_cache else None
        self.calibration_cache = Path(self.calibration_cache) if self.calibration_cache else None
        if self.precision not in PRECISIONS:
            raise DeployLabError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.workspace_mib is not None and (not isinstance(self.workspace_mib, int) or self.workspace_mib < 1):
            raise DeployLabError(f"workspace_mib must be a positive whole number of MiB, got {self.workspace_mib!r}")
        level = _HARDWARE_ALIASES.get(str(self.hardware_compatibility).lower().replace("-", "_"))
        if level is None:
            raise DeployLabError(
                f"unknown hardware compatibility {self.hardware_compatibility!r}; use none, ampere+ or "
                "sameComputeCapability"
            )
        self.hardware_compatibility = level
        self.profiles = list(self.profiles)


_ROUTE_11 = {
    "fp16": "convert the model to fp16 first with ModelOpt AutoCast (python -m modelopt.onnx.autocast "
            "--onnx_path model.onnx --output_path model_fp16.onnx) or deploylab's fp16 conversion, and build that",
    "bf16": "convert the model to bf16 first with ModelOpt AutoCast (low_precision_type='bf16') and build that",
    "int8": "quantize the model into explicit QuantizeLinear/DequantizeLinear (Q/DQ) nodes first (ModelOpt, "
            "or ONNX Runtime's quantize_static with QuantFormat.QDQ) and build that",
}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _precision_plan(settings: BuildSettings, version: TensorRTVersion) -> dict:
    """Decide how ``settings.precision`` is obtained on ``version``; raise if it cannot be.

    Returns {"flag": BuilderFlag name or None, "strongly_typed": bool, "calibrate": bool}.
    """
    if version.major < 10:
        raise DeployLabError(
            f"TensorRT {version} is older than 10.0; deploylab writes TensorRT 10/11 commands and calls "
            "(8.x used --workspace and the binding API); upgrade TensorRT"
        )
    precision = settings.precision
    if not version.weakly_typed_builds:  # 11.x: strong typing only
        # https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-trtexec.html
        if settings.calibration_cache is not None:
            raise DeployLabError(
                f"TensorRT {version} removed int8 calibration (--calib, IInt8Calibrator); int8 scales must be in "
                f"the model as Q/DQ nodes: {_ROUTE_11['int8']}, then set calibration_cache=None"
            )
        if precision != "fp32" and not settings.strongly_typed:
            raise DeployLabError(
                f"TensorRT {version} removed the --{precision} builder flag: every network is strongly typed, so "
                f"the precision comes from the model. {_sentence(_ROUTE_11[precision])}, with "
                f"BuildSettings(precision={precision!r}, strongly_typed=True) to state that the model carries it"
            )
        return {"flag": None, "strongly_typed": True, "calibrate": False}
    if settings.strongly_typed:
        # 10.x strongly typed networks reject precision flags; types come from the model.
        if settings.calibration_cache is not None:
            raise DeployLabError(
                "a strongly typed network takes int8 scales from Q/DQ nodes, not from a calibration cache; "
                "drop calibration_cache or build weakly typed (strongly_typed=False) with --int8 --calib"
            )
        return {"flag": None, "strongly_typed": True, "calibrate": False}
    if precision == "int8":
        return {"flag": "INT8", "strongly_typed": False, "calibrate": True}
    if settings.calibration_cache is not None:
        raise DeployLabError(
            f"a calibration cache only applies to int8 builds, but precision is {precision!r}; "
            "set precision='int8' or drop calibration_cache"
        )
    return {"flag": {"fp32": None, "fp16": "FP16", "bf16": "BF16"}[precision], "strongly_typed": False,
            "calibrate": False}


def _quote_name(name: str) -> str:
    # trtexec: "Input names can be wrapped with escaped single quotes (ex: 'Input:0')".
    return f"'{name}'" if any(c in name for c in ":,") else name


def _shapes_flag(profile: ShapeProfile, index: int) -> str:
    return ",".join(f"{_quote_name(n)}:{shape_text(s[index])}" for n, s in profile.shapes.items())


def trtexec_command(settings: BuildSettings, version: str | TensorRTVersion) -> list[str]:
    """The trtexec command (argv list) that builds ``settings`` with TensorRT ``version``.

    10.x: ``--fp16`` / ``--bf16`` / ``--int8 --calib=FILE`` as builder flags, ``--stronglyTyped``
    when asked. 11.x: no precision flags (removed) and no ``--stronglyTyped`` (always on, "no
    longer needed"); asking for fp16/bf16/int8 without a model that carries it raises with the
    11.x route. ``--memPoolSize=workspace:N`` is in MiB, trtexec's default unit. Profile names
    that are bare shapes must be resolved first (:func:`validate_profile`). Note that the pip
    wheels ship no trtexec binary: it comes with the tar/deb packages and NGC containers.
    """
    version = TensorRTVersion.parse(version)
    plan = _precision_plan(settings, version)
    command = ["trtexec", f"--onnx={settings.onnx_path}"]
    if plan["flag"]:
        command.append(f"--{plan['flag'].lower()}")
    if plan["calibrate"]:
        if settings.calibration_cache is None:
            raise DeployLabError(
                "an int8 trtexec build needs a calibration cache (--calib=FILE): without one trtexec uses "
                "placeholder dynamic ranges, fine for timing but not for accuracy; write one with "
                "build_engine_plan (calibration batches) or write_calibration_cache"
            )
        command.append(f"--calib={settings.calibration_cache}")
    if plan["strongly_typed"] and version.weakly_typed_builds:
        command.append("--stronglyTyped")
    command.append(f"--saveEngine={settings.engine_path}")
    if settings.clears_tf32:
        command.append("--noTF32")  # exact fp32: TF32 is on by default on Ampere and newer
    if len(settings.profiles) > 1:
        raise DeployLabError(
            f"{len(settings.profiles)} profiles given; deploylab writes trtexec commands for one profile "
            "(--minShapes/--optShapes/--maxShapes); build several with build_engine_plan"
        )
    for profile in settings.profiles:
        if "" in profile.shapes:
            raise DeployLabError("the profile has a bare shape; name the input or call validate_profile first")
        command += [f"--{w}Shapes={_shapes_flag(profile, i)}" for i, w in enumerate(("min", "opt", "max"))]
    if settings.workspace_mib is not None:
        # https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-8x-to-10x-trtexec.html
        # --workspace=N became --memPoolSize=workspace:N; "If none of suffixes is appended, the
        # default unit is in MiB" (trtexec --help), so a bare number works on every 10.x/11.x.
        command.append(f"--memPoolSize=workspace:{settings.workspace_mib}")
    if settings.timing_cache is not None:
        command.append(f"--timingCacheFile={settings.timing_cache}")
    if settings.version_compatible:
        command.append("--versionCompatible")
    if settings.hardware_compatibility != "NONE":
        _check_hardware_level(settings.hardware_compatibility, version)
        command.append(f"--hardwareCompatibilityLevel={HARDWARE_LEVELS[settings.hardware_compatibility]}")
    return command


# trtexec accepts --hardwareCompatibilityLevel=sameComputeCapability, and the
# HardwareCompatibilityLevel enum has SAME_COMPUTE_CAPABILITY, from TensorRT 10.9 on
# (samples/common/sampleOptions.cpp and include/NvInfer.h of release 10.9; absent in 10.8).
_SAME_COMPUTE_CAPABILITY_SINCE = (10, 9)


def _check_hardware_level(level: str, version: TensorRTVersion) -> None:
    if level == "SAME_COMPUTE_CAPABILITY" and (version.major, version.minor) < _SAME_COMPUTE_CAPABILITY_SINCE:
        raise DeployLabError(
            f"hardware compatibility sameComputeCapability needs TensorRT 10.9 or newer, not {version}; "
            "use ampere+ (any sm_80+ GPU) or none with this version"
        )


def format_command(command: list[str]) -> str:
    """A command list as shell text, one argument per line joined by `` \\`` continuations."""
    quoted = [shlex.quote(str(part)) for part in command]
    if len(quoted) < 3:
        return " ".join(quoted)
    return " \\\n    ".join([" ".join(quoted[:2]), *quoted[2:]])


# ---------------------------------------------------------------- model facts, GPU facts, sidecar
def model_precision(onnx_path: str | Path) -> dict:
    """What precision an ONNX model carries: float dtypes of its initializers/IO and its Q/DQ count."""
    from deploylab.onnx_tools import ONNX_DTYPE_NAMES, graph_inputs, graph_outputs, load_onnx

    model = load_onnx(onnx_path, load_external_data=False)
    dtypes = {ONNX_DTYPE_NAMES.get(i.data_type, str(i.data_type)) for i in model.graph.initializer}
    dtypes |= {t.dtype for t in graph_inputs(model) + graph_outputs(model)}
    for node in model.graph.node:  # Cast(to=fp16) inserted by converters counts too
        if node.op_type == "Cast":
            dtypes |= {ONNX_DTYPE_NAMES.get(a.i, str(a.i)) for a in node.attribute if a.name == "to"}
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return {"float_dtypes": sorted(d for d in dtypes if "float" in d), "qdq_nodes": qdq}


def check_model_precision(settings: BuildSettings) -> None:
    """Raise unless the model carries ``settings.precision`` (fp16/bf16 tensors, int8 Q/DQ nodes)."""
    facts = model_precision(settings.onnx_path)
    needed = {"fp16": "float16", "bf16": "bfloat16"}.get(settings.precision)
    if needed and needed not in facts["float_dtypes"]:
        raise DeployLabError(
            f"strongly typed build with precision {settings.precision!r}, but {settings.onnx_path.name} holds no "
            f"{needed} tensors ({', '.join(facts['float_dtypes']) or 'no float tensors'}): the engine would run in "
            f"the model's types. {_sentence(_ROUTE_11[settings.precision])}"
        )
    if settings.precision == "int8" and not facts["qdq_nodes"]:
        raise DeployLabError(
            f"strongly typed int8 build, but {settings.onnx_path.name} has no QuantizeLinear/DequantizeLinear "
            f"nodes: {_ROUTE_11['int8']}"
        )


def gpu_info(device: int = 0) -> dict | None:
    """``{"name", "compute_capability": "8.6"}`` of CUDA device ``device``, or None without one.

    Asks torch first, then cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``).
    """
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return {"name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001 - a broken CUDA setup means "unknown", not a crash
        pass
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            cudart = importlib.import_module(name)
            err, prop = cudart.cudaGetDeviceProperties(device)
            if int(err) == 0 and prop is not None:
                label = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
                return {"name": label.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}"}
        except Exception:  # noqa: BLE001
            continue
    return None


def _cc_tuple(value) -> tuple[int, int] | None:
    """``(8, 6)``, ``"8.6"``, ``"sm_86"``, ``86`` -> (8, 6); None stays None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    text = str(value).lower().removeprefix("sm_").removeprefix("sm")
    match = re.fullmatch(r"(\d+)\.(\d+)", text) or re.fullmatch(r"(\d+)(\d)", text)
    if not match:
        raise DeployLabError(f"cannot read a compute capability from {value!r}; write it as '8.6' or 'sm_86'")
    return int(match.group(1)), int(match.group(2))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(engine_path: str | Path) -> Path:
    """Where the build record of ``engine_path`` lives: ``<engine>.json`` next to it."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader never sees half a file,
    and a failed write leaves what was there before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_sidecar(settings: BuildSettings, version: TensorRTVersion, gpu: dict | None, profiles=None) -> Path:
    """Write the JSON build record of ``settings.engine_path`` (which must exist) and return its path.

    The record holds the plan's size and sha256, so a plan replaced after the record was
    written (rebuilt by trtexec, copied over) is not described by a stale record.
    """
    from deploylab import __version__
    from deploylab.onnx_tools import graph_inputs, graph_outputs, load_onnx

    model = load_onnx(settings.onnx_path, load_external_data=False)
    record = {
        "format": SIDECAR_FORMAT,
        "tensorrt_version": str(version),
        "gpu": gpu,
        "precision": settings.precision,
        "strongly_typed": settings.strongly_typed or not version.weakly_typed_builds,
        "tf32": not settings.clears_tf32,
        "version_compatible": settings.version_compatible,
        "hardware_compatibility": settings.hardware_compatibility,
        "workspace_mib": settings.workspace_mib,
        "profiles": [p.to_dict() for p in (profiles if profiles is not None else settings.profiles)],
        "inputs": {t.name: list(t.shape) for t in graph_inputs(model)},
        "outputs": {t.name: list(t.shape) for t in graph_outputs(model)},
        "onnx": {"path": str(settings.onnx_path), "sha256": _sha256(settings.onnx_path)},
        "plan": {"bytes": Path(settings.engine_path).stat().st_size, "sha256": _sha256(settings.engine_path)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deploylab_version": __version__,
    }
    path = sidecar_path(settings.engine_path)
    _write_atomically(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return path


def read_sidecar(engine_path: str | Path) -> dict | None:
    """The build record of ``engine_path``, or None when there is none (e.g. a trtexec plan) or when
    it describes other bytes than the plan now at ``engine_path`` (size or sha256 differ)."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployLabError(
            f"{str(path)!r} is not a readable JSON build record ({exc}); delete it or rebuild the plan"
        ) from exc
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        raise DeployLabError(
            f"{str(path)!r} is not a deploylab plan record (format {SIDECAR_FORMAT}); rebuild the plan"
        )
    plan = record.get("plan")
    engine_path = Path(engine_path)
    if engine_path.is_file():
        if not isinstance(plan, dict) or plan.get("bytes") != engine_path.stat().st_size \
                or plan.get("sha256") != _sha256(engine_path):
            info(f"{path.name} describes another plan than {engine_path.name} (size or sha256 differ): "
                 "treating the plan as having no build record")
            return None
    return record


def _version_compatible_ok(built: TensorRTVersion, running: TensorRTVersion) -> bool:
    # https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html
    # Version compatibility starts at 8.6 and only runs forward (newer runtime, never older).
    if built < TensorRTVersion(8, 6, 0) or running < built:
        return False
    return built.major == running.major or (built.major, running.major) in _CROSS_MAJOR_VERSION_COMPATIBLE


def check_plan_compatibility(
    engine_path: str | Path,
    tensorrt_version: str | TensorRTVersion,
    gpu_compute_capability=None,
    lean_runtime: bool = False,
) -> dict | None:
    """Refuse to load a plan this TensorRT/GPU cannot run, with where it was built; return its record.

    A plan runs only on the TensorRT release that built it, unless built version-compatible
    (then on the same or a newer release of the same major, or across the documented 10 -> 11
    and 8 -> 10 pairs); the lean runtime runs only version-compatible plans. A plan runs only
    on the GPU compute capability that built it, unless built with hardware compatibility
    AMPERE_PLUS (then any sm_80+ GPU). ``gpu_compute_capability``: ``(8, 6)``, ``"8.6"`` or
    ``"sm_86"``; None skips the GPU check.

    A plan without a sidecar (built by trtexec or elsewhere) is allowed with a one-time
    warning: deploylab cannot tell where it was built, and TensorRT itself refuses an
    incompatible plan at deserialization, which the runner reports as an error.
    """
    record = read_sidecar(engine_path)
    name = Path(engine_path).name
    if record is None:
        announce(
            f"{name} has no build record ({sidecar_path(engine_path).name}); cannot check that it was built for "
            "this TensorRT version and GPU - TensorRT will refuse it at load time if not"
        )
        return None
    running = TensorRTVersion.parse(tensorrt_version)
    built = TensorRTVersion.parse(record["tensorrt_version"])
    gpu = record.get("gpu") or {}
    built_cc = _cc_tuple(gpu.get("compute_capability"))
    where = f"TensorRT {built}" + (f" on {gpu.get('name', 'a GPU')} (sm_{built_cc[0]}{built_cc[1]})" if built_cc
                                   else " on an unrecorded GPU")
    rebuild = f"rebuild it here from {record.get('onnx', {}).get('path', 'the ONNX model')}"
    vc = bool(record.get("version_compatible"))
    if lean_runtime and not vc:
        # trtexec --help: "lean" and "dispatch" runtimes "require loading VC engine".
        raise DeployLabError(
            f"{name} was built with {where} without version compatibility, and the lean runtime only runs "
            f"version-compatible plans; {rebuild} with version_compatible=True, or install the full tensorrt"
        )
    if not built.same_release(running):
        if not vc:
            raise DeployLabError(
                f"{name} was built with {where}; this runtime is TensorRT {running}, and a plan only runs on the "
                f"TensorRT release that built it; {rebuild}, or build with version_compatible=True"
            )
        if not _version_compatible_ok(built, running):
            raise DeployLabError(
                f"{name} was built version-compatible with {where}, but version compatibility only runs forward "
                f"within a major version (and from 10.x to 11.x, 8.x to 10.x): TensorRT {running} cannot load it; "
                f"{rebuild}"
            )
    running_cc = _cc_tuple(gpu_compute_capability)
    if running_cc is not None and built_cc is not None and running_cc != built_cc:
        level = record.get("hardware_compatibility", "NONE")
        if level != "AMPERE_PLUS":
            raise DeployLabError(
                f"{name} was built with {where}; this GPU is sm_{running_cc[0]}{running_cc[1]}, and a plan only runs "
                f"on the compute capability that built it; {rebuild}, or build with hardware_compatibility='ampere+' "
                "to run on any Ampere or newer GPU"
            )
        if running_cc < (8, 0):
            raise DeployLabError(
                f"{name} was built with {where} for Ampere and newer GPUs (ampere+), but this GPU is "
                f"sm_{running_cc[0]}{running_cc[1]}, older than Ampere (sm_80); {rebuild}"
            )
    return record


# ---------------------------------------------------------------- calibration cache
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


@dataclass
class CalibrationCache:
    """A TensorRT int8 calibration cache: header line and per-tensor scales (amax / 127)."""

    header: str
    scales: dict[str, float]


def calibration_header(version: str | TensorRTVersion, algorithm: str = "EntropyCalibration2") -> str:
    """``TRT-<NV_TENSORRT_VERSION>-<algorithm>``, e.g. ``TRT-100300-EntropyCalibration2`` for 10.3.0."""
    return f"TRT-{TensorRTVersion.parse(version).number}-{algorithm}"


def _float_to_hex(value: float) -> str:
    # The cache stores the float32 bit pattern as 8 hex digits, most significant first
    # (ONNX Runtime's TensorRT provider reads it back with strtoul(..., 16)).
    return struct.pack(">f", value).hex()


def _hex_to_float(text: str) -> float:
    return struct.unpack(">f", int(text, 16).to_bytes(4, "big"))[0]


def read_calibration_cache(path: str | Path) -> CalibrationCache:
    """Parse a TensorRT calibration cache file; a bad line raises naming its number."""
    path = Path(path)
    if not path.is_file():
        raise DeployLabError(f"calibration cache {str(path)!r} does not exist; calibrate first")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DeployLabError(f"{str(path)!r} is not a text calibration cache ({exc})") from exc
    if not lines or not _HEADER.match(lines[0].strip()):
        first = lines[0][:60] if lines else "(empty file)"
        raise DeployLabError(
            f"{path.name} line 1: {first!r} is not a calibration cache header like 'TRT-100300-EntropyCalibration2'"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")  # tensor names may hold colons ('input_1:0')
        value = value.strip()
        if not sep or not name or not re.fullmatch(r"[0-9a-fA-F]{1,8}", value):
            raise DeployLabError(
                f"{path.name} line {number}: {line[:80]!r} is not 'tensor_name: <8 hex digits of a float32>'"
            )
        if name in scales:
            raise DeployLabError(f"{path.name} line {number}: tensor {name!r} appears twice")
        scales[name] = _hex_to_float(value)
    return CalibrationCache(lines[0].strip(), scales)


def write_calibration_cache(
    path: str | Path,
    scales: Mapping[str, float],
    version_tag: str | None = None,
    tensorrt_version: str | TensorRTVersion | None = None,
) -> Path:
    """Write ``scales`` (tensor name -> scale = amax / 127) as a TensorRT calibration cache.

    ``version_tag`` is the header line; by default ``TRT-<version>-EntropyCalibration2`` for
    ``tensorrt_version`` or the installed TensorRT 10.x. TensorRT compares the header with its
    own version and recalibrates on a mismatch, so write it for the version that will read it.
    Scales are stored as float32 bit patterns: reading the file back gives them bit for bit.
    """
    if version_tag is None:
        if tensorrt_version is None:
            _, detected, lean = detect_tensorrt()
            if detected is None or lean or not detected.weakly_typed_builds:
                raise DeployLabError(
                    "write_calibration_cache needs the TensorRT version that will read the cache (its header "
                    "carries it): pass tensorrt_version='10.x.y' or version_tag='TRT-10xxyy-EntropyCalibration2'"
                )
            tensorrt_version = detected
        version_tag = calibration_header(tensorrt_version)
    if not _HEADER.match(version_tag):
        raise DeployLabError(f"version_tag {version_tag!r} is not like 'TRT-100300-EntropyCalibration2'")
    lines = [version_tag]
    for name, scale in scales.items():
        if "\n" in name or not name:
            raise DeployLabError(f"tensor name {name!r} cannot be written on one cache line")
        if not math.isfinite(scale) or scale <= 0 or not np.isfinite(np.float32(scale)):
            raise DeployLabError(f"scale {scale!r} of tensor {name!r} must be a positive finite float32")
        lines.append(f"{name}: {_float_to_hex(scale)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per-tensor symmetric int8 scales from observed (min, max): scale = max(|min|, |max|) / 127.

    Values are rounded to float32, exactly what a cache file stores.
    """
    scales = {}
    for name, (low, high) in ranges.items():
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise DeployLabError(f"range ({low}, {high}) of tensor {name!r} must be finite with min <= max")
        amax = max(abs(low), abs(high))
        if amax == 0:
            raise DeployLabError(
                f"tensor {name!r} has range ({low}, {high}): a zero amax gives scale 0, which cannot quantize; "
                "calibrate on data that reaches it or leave the tensor out"
            )
        scales[name] = float(np.float32(amax / 127.0))
    return scales


def make_entropy_calibrator(batches: Iterable[Mapping[str, np.ndarray]], cache_path: str | Path):
    """An ``IInt8EntropyCalibrator2`` (TensorRT 10.x only) feeding ``batches`` from torch CUDA buffers.

    ``batches`` yields {input name: numpy array} with the calibration profile's opt shapes. If
    ``cache_path`` exists, TensorRT reads its scales and skips calibration; otherwise it calls
    ``get_batch`` until the batches run out and writes the cache there. The calibrator API is
    deprecated since 10.1 and removed in 11.x (use Q/DQ nodes there).
    """
    trt, version, _ = _require_tensorrt("build")
    if not version.weakly_typed_builds or not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise DeployLabError(
            f"TensorRT {version} has no int8 calibrators (removed in 11.x): {_ROUTE_11['int8']}"
        )
    import torch

    if not torch.cuda.is_available():
        raise DeployLabError("int8 calibration runs the model on the GPU, and torch sees no CUDA device here")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        # Per the IInt8Calibrator docstrings: explicitly initialise the base class, return device
        # pointers from get_batch (None when done), return bytes or None from read_calibration_cache.
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.batches = iter(batches)
            self.device_buffers: dict[str, torch.Tensor] = {}  # alive until the next get_batch
            self.count = 0

        def get_batch_size(self):
            # Batch size is part of each tensor's shape in explicit-batch networks (all of 10.x);
            # Polygraphy's calibrator returns 1 here too.
            return 1

        def get_batch(self, names):
            try:
                batch = next(self.batches)
            except StopIteration:
                return None
            missing = [n for n in names if n not in batch]
            if missing:
                raise DeployLabError(
                    f"calibration batch {self.count} lacks input(s) {', '.join(missing)}; it has {', '.join(batch)}"
                )
            self.count += 1
            self.device_buffers = {
                n: torch.from_numpy(np.ascontiguousarray(batch[n])).to("cuda") for n in names
            }
            torch.cuda.synchronize()  # the copies must land before TensorRT reads the buffers
            return [int(self.device_buffers[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            if self.cache_path.is_file() and self.cache_path.stat().st_size:
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_bytes(memoryview(cache).tobytes())

    return EntropyCalibrator()


# ---------------------------------------------------------------- build phase
@dataclass
class BuildReport:
    """What :func:`build_engine_plan` did: files written, settings used, time taken (s), notes."""

    engine_path: Path
    sidecar_path: Path
    tensorrt_version: str
    precision: str
    strongly_typed: bool
    profiles: list[dict]
    workspace_mib: int | None
    engine_bytes: int
    build_seconds: float
    timing_cache_loaded: bool = False
    timing_cache_saved: bool = False
    gpu: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["engine_path"], out["sidecar_path"] = str(self.engine_path), str(self.sidecar_path)
        return out


def _parser_errors(parser) -> list[str]:
    """Every ONNX parser error as one readable line: node index, name, operator, code, description."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node()
        where = f"node {node}" if node >= 0 else "graph"
        name = error.node_name() if hasattr(error, "node_name") else ""  # node_name/node_operator: 10.x
        op = error.node_operator() if hasattr(error, "node_operator") else ""
        if name or op:
            where += f" ({name or '?'}: {op or '?'})"
        lines.append(f"{where}: {error.code()}: {error.desc()}")
    return lines


def _logger_severity(trt, severity):
    if not isinstance(severity, str):
        return severity
    names = {"error": "ERROR", "warning": "WARNING", "info": "INFO", "verbose": "VERBOSE"}
    if severity.lower() not in names:
        raise DeployLabError(f"unknown logger severity {severity!r}; use {', '.join(names)}")
    return getattr(trt.Logger, names[severity.lower()])


def _load_timing_cache(config, path: Path, notes: list[str]) -> bool:
    """Give ``config`` the timing cache saved at ``path``; True if one was loaded and accepted.

    A missing file starts a fresh cache. An unreadable blob makes ``create_timing_cache``
    return None (``set_timing_cache(None)`` would raise TypeError), and a cache from another
    TensorRT version or GPU is refused (``ignore_mismatch=False``): both start a fresh
    cache, with a note, and the build then replaces the file.
    """
    blob = path.read_bytes() if path.is_file() else b""
    if not blob:
        config.set_timing_cache(config.create_timing_cache(b""), False)
        return False
    try:
        cache = config.create_timing_cache(blob)
    except (RuntimeError, TypeError, ValueError):
        cache = None
    if cache is None:
        notes.append(f"timing cache {path} is unreadable (not a TensorRT timing cache, or truncated); "
                     "building with a fresh one, which replaces it")
    elif config.set_timing_cache(cache, False):
        return True
    else:
        notes.append(f"timing cache {path} was made elsewhere (other TensorRT or GPU); "
                     "building with a fresh one, which replaces it")
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return False


def build_engine_plan(
    settings: BuildSettings,
    logger_severity: str = "warning",
    calibration_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
) -> BuildReport:
    """Build ``settings.onnx_path`` into a plan with the Python builder; write plan + sidecar.

    Follows NVIDIA's build flow (Logger, Builder, network, OnnxParser.parse_from_file,
    builder config, optimization profiles, ``build_serialized_network``) and branches on the
    installed major version: precision flags and calibrators only on 10.x weak typing; on
    11.x (and 10.x strongly typed) fp16/bf16/int8 must already be in the model. Every parser
    error is reported. ``calibration_batches`` feed an int8 calibration when
    ``settings.calibration_cache`` does not exist yet. Needs the full ``tensorrt`` and a GPU.
    https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/python-api-docs.html
    """
    trt, version, _ = _require_tensorrt("build")
    plan = _precision_plan(settings, version)
    from deploylab.onnx_tools import graph_inputs, load_onnx

    model_inputs = graph_inputs(load_onnx(settings.onnx_path, load_external_data=False))
    profiles = [validate_profile(p, settings.onnx_path) for p in settings.profiles]
    dynamic = [t.name for t in model_inputs if any(not isinstance(d, int) or d < 0 for d in t.shape)]
    if dynamic and not profiles:
        raise DeployLabError(
            f"input(s) {', '.join(dynamic)} have dynamic dims, and TensorRT needs an optimization profile for them; "
            "pass profiles=[parse_profile_args(min=..., opt=..., max=...)]"
        )
    if plan["strongly_typed"] and settings.precision != "fp32":
        check_model_precision(settings)
    if plan["calibrate"]:
        cache = settings.calibration_cache
        if cache is None or (not cache.is_file() and calibration_batches is None):
            raise DeployLabError(
                "an int8 build needs scales: give calibration_cache pointing at an existing cache, or "
                "calibration_batches (with calibration_cache where the new cache is written)"
            )

    logger = trt.Logger(_logger_severity(trt, logger_severity))
    builder = trt.Builder(logger)
    flags = 0
    if version.weakly_typed_builds and plan["strongly_typed"]:
        # 10.x: strong typing is opt-in. EXPLICIT_BATCH is deprecated and ignored in 10.x and
        # removed in 11.x, so it is never passed; 11.x networks are always strongly typed.
        # https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse_from_file(str(settings.onnx_path))  # reads external data next to the file
    errors = _parser_errors(parser)
    if not parsed:
        listing = "\n  ".join(errors) or "(the parser reported no details; rerun with logger_severity='verbose')"
        raise DeployLabError(
            f"TensorRT {version} could not parse {settings.onnx_path.name} ({len(errors)} error(s)):\n  {listing}\n"
            "Check the model with `deploylab inspect`; unsupported operators need a rewrite or a plugin"
        )
    notes = [f"parser warning: {e}" for e in errors]

    config = builder.create_builder_config()
    if settings.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib * 2**20)  # bytes
    trt_profiles = []
    for index, profile in enumerate(profiles):
        trt_profile = builder.create_optimization_profile()
        for name, (low, mid, high) in profile.shapes.items():
            trt_profile.set_shape(name, low, mid, high)
        if config.add_optimization_profile(trt_profile) < 0:
            raise DeployLabError(f"TensorRT rejected optimization profile {index}: {profile.to_dict()}")
        trt_profiles.append(trt_profile)
    if plan["flag"]:
        config.set_flag(getattr(trt.BuilderFlag, plan["flag"]))  # 10.x only, see _precision_plan
    if settings.clears_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # TensorRT's default is on: fp32 layers would round to TF32
    if plan["calibrate"]:
        config.int8_calibrator = make_entropy_calibrator(calibration_batches or [], settings.calibration_cache)
        if trt_profiles:  # dynamic shapes: calibrate at the first profile's opt shapes
            config.set_calibration_profile(trt_profiles[0])
    if settings.version_compatible:
        # https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/version-compatibility.html
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if settings.hardware_compatibility != "NONE":
        _check_hardware_level(settings.hardware_compatibility, version)
        level = getattr(trt.HardwareCompatibilityLevel, settings.hardware_compatibility, None)
        if level is None:
            raise DeployLabError(
                f"TensorRT {version} has no hardware compatibility level {settings.hardware_compatibility}; "
                f"it offers {', '.join(trt.HardwareCompatibilityLevel.__members__)}"
            )
        config.hardware_compatibility_level = level
    # Layer names, tactics and precisions in the engine inspector (TensorRTRunner.inspect).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache_loaded = _load_timing_cache(config, settings.timing_cache, notes) if settings.timing_cache else False

    stale = sidecar_path(settings.engine_path)
    if stale.is_file():  # about to be replaced: it must not describe a half-built or failed plan
        stale.unlink()
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise DeployLabError(
            f"TensorRT {version} could not build {settings.onnx_path.name}; the TensorRT log lines above say why "
            "(often: workspace too small, an unsupported layer for this precision, or profile shapes out of range)"
        )
    data = memoryview(serialized)
    _write_atomically(settings.engine_path, bytes(data))
    cache_saved = False
    if settings.timing_cache is not None:
        settings.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        settings.timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
        cache_saved = True
    gpu = gpu_info()
    side = write_sidecar(settings, version, gpu, profiles)
    info(f"built {settings.engine_path} ({data.nbytes / 2**20:.2f} MiB) with TensorRT {version} in {seconds:.1f} s")
    return BuildReport(
        settings.engine_path, side, str(version), settings.precision, plan["strongly_typed"],
        [p.to_dict() for p in profiles], settings.workspace_mib, data.nbytes, seconds,
        cache_loaded, cache_saved, gpu, notes,
    )


# ---------------------------------------------------------------- runtime phase
def numpy_dtype(trt_dtype) -> np.dtype:
    """numpy dtype of a TensorRT ``DataType`` (by member name, so any TensorRT module works)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in TRT_TO_NUMPY:
        raise DeployLabError(
            f"TensorRT IO dtype {name} has no numpy equivalent deploylab can feed; build the plan with "
            f"IO tensors in one of {', '.join(TRT_TO_NUMPY)} (e.g. keep fp32 IO in an fp16/bf16 model)"
        )
    return np.dtype(TRT_TO_NUMPY[name])


def torch_dtype(trt_dtype):
    """torch dtype of a TensorRT ``DataType``."""
    import torch

    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in TRT_TO_TORCH:
        raise DeployLabError(f"TensorRT dtype {name} has no torch equivalent deploylab handles")
    return getattr(torch, TRT_TO_TORCH[name])


def check_profile_bounds(name: str, shape: tuple, engine_shape: tuple, low: tuple, high: tuple,
                         profile_index: int = 0) -> None:
    """Raise if ``shape`` leaves the profile's [min, max] on a dynamic (-1) dim of the engine input."""
    for axis, (want, got) in enumerate(zip(engine_shape, shape)):
        if want < 0 and not low[axis] <= got <= high[axis]:
            raise DeployLabError(
                f"input {name!r} has shape {shape_text(shape)}, but optimization profile {profile_index} of this "
                f"plan accepts min {shape_text(low)} to max {shape_text(high)} (dim {axis} = {got} is outside "
                f"[{low[axis]}, {high[axis]}]); split the batch, or rebuild with a wider profile"
            )


class _EngineSession:
    """An engine + execution context behind the runner contract, with buffers on ``device``.

    Kept apart from :class:`TensorRTRunner` so the same code runs on a real engine (CUDA
    device, CUDA stream) and, in tests, on a stand-in engine on the CPU.
    """

    def __init__(self, trt, engine, context, device: str, stream_handle: int, synchronize,
                 profile_index: int = 0, record: dict | None = None):
        self.trt, self.engine, self.context = trt, engine, context
        self.device, self.stream_handle, self.synchronize = device, stream_handle, synchronize
        self.profile_index, self.record = profile_index, record or {}
        count = engine.num_optimization_profiles
        if not 0 <= profile_index < max(count, 1):
            raise DeployLabError(f"profile_index {profile_index} out of range: the plan has {count} profile(s)")
        if profile_index:
            context.set_optimization_profile_async(profile_index, stream_handle)
            synchronize()
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.shapes = {n: tuple(engine.get_tensor_shape(n)) for n in self.names}
        self.dtypes = {n: engine.get_tensor_dtype(n) for n in self.names}
        self.on_host = {n: engine.get_tensor_location(n) == trt.TensorLocation.HOST for n in self.names}
        self.bounds = {}
        for n in self.inputs:
            if any(d < 0 for d in self.shapes[n]):
                low, _, high = engine.get_tensor_profile_shape(n, profile_index)
                self.bounds[n] = (tuple(low), tuple(high))

    def describe(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        model_dims = {**self.record.get("inputs", {}), **self.record.get("outputs", {})}

        def spec(name, is_input):
            onnx_dims = model_dims.get(name, [])
            dims = []
            for axis, d in enumerate(self.shapes[name]):
                if d >= 0:
                    dims.append(d)
                elif axis < len(onnx_dims) and isinstance(onnx_dims[axis], str) and onnx_dims[axis] != "?":
                    dims.append(onnx_dims[axis])  # the ONNX dim name ties inputs and outputs together
                else:
                    dims.append(f"{name}:{axis}" if is_input else None)
            bounds = ()
            if is_input and name in self.bounds:
                low, high = self.bounds[name]
                bounds = tuple((dims[a], low[a], high[a]) for a, d in enumerate(self.shapes[name]) if d < 0)
            return TensorSpec(name, numpy_dtype(self.dtypes[name]), tuple(dims), bounds)

        return [spec(n, True) for n in self.inputs], [spec(n, False) for n in self.outputs]

    def check_bounds(self, feed: Mapping[str, object]) -> None:
        for name, (low, high) in self.bounds.items():
            value = feed.get(name) if isinstance(feed, Mapping) else None
            if isinstance(value, np.ndarray) and value.ndim == len(low):
                check_profile_bounds(name, value.shape, self.shapes[name], low, high, self.profile_index)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        keep_alive = []  # every bound buffer must outlive the synchronize below
        for name in self.inputs:
            array = feed[name]
            if not self.context.set_input_shape(name, array.shape):
                raise DeployLabError(f"TensorRT refused shape {shape_text(array.shape)} for input {name!r}")
            if self.on_host[name]:  # shape-tensor inputs are read by TensorRT from host memory
                host = np.ascontiguousarray(array)
                keep_alive.append(host)
                address = host.ctypes.data
            else:
                tensor = torch.from_numpy(array).to(self.device)
                keep_alive.append(tensor)
                address = tensor.data_ptr()
            self.context.set_tensor_address(name, address)
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise DeployLabError(
                    f"output {name!r} has data-dependent shape {shape_text(shape)}; deploylab's runner needs "
                    "output shapes known from the input shapes"
                )
            results[name] = torch.empty(shape, dtype=torch_dtype(self.dtypes[name]), device=self.device)
            self.context.set_tensor_address(name, results[name].data_ptr())
        # Input copies were queued on torch's current stream; wait so TensorRT's stream sees them.
        self.synchronize()
        if not self.context.execute_async_v3(self.stream_handle):
            raise DeployLabError("TensorRT execute_async_v3 failed; the TensorRT log lines above say why")
        self.synchronize()
        del keep_alive
        return {name: tensor.cpu().numpy() for name, tensor in results.items()}


class TensorRTRunner(Runner):
    """A TensorRT plan behind the runner contract (the runtime phase of the notes).

    Activation: check the sidecar, create ``trt.Runtime``, ``deserialize_cuda_engine``,
    ``create_execution_context`` and a torch CUDA stream. Each ``infer`` checks the inputs
    (profile bounds included) before TensorRT sees them, sets input shapes, allocates
    outputs from ``context.get_tensor_shape``, binds every IO tensor by address and runs
    ``execute_async_v3``. Needs an NVIDIA GPU, torch with CUDA and TensorRT (full or lean).

    ``profile_index``: the optimization profile to run with; ``device``: CUDA device index;
    ``allow_host_code``: let TensorRT load host code embedded in a version-compatible plan
    (None = only when the plan's build record says it is version-compatible). A plan is
    executable code: load only plans you built or received over a trusted channel.
    """

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, profile_index: int = 0, device: int = 0,
                 allow_host_code: bool | None = None, name: str | None = None):
        super().__init__(name or f"tensorrt:{Path(engine_path).name}")
        self.engine_path = Path(engine_path)
        self.profile_index, self.device, self.allow_host_code = profile_index, device, allow_host_code
        self.session: _EngineSession | None = None
        self.record: dict | None = None
        self.tensorrt_version: TensorRTVersion | None = None
        self._runtime = self._stream = None

    def with_engine(self, engine_path: str | Path) -> TensorRTRunner:
        """The same runner settings on another plan."""
        return TensorRTRunner(engine_path, self.profile_index, self.device, self.allow_host_code)

    def _activate(self) -> None:
        try:
            import torch

            has_gpu = torch.cuda.is_available()
        except ImportError:
            has_gpu = False
        # Checked before TensorRT is touched: without a working CUDA driver, creating a
        # trt.Runtime only logs errors and can crash the interpreter later.
        if not has_gpu:
            raise DeployLabError(
                "the TensorRT runner needs an NVIDIA GPU / TensorRT, and torch sees no CUDA device on this machine; "
                "run the plan on a machine with an NVIDIA GPU, or use the CPU twin (OpenVINO, ONNX Runtime) here"
            )
        trt, version, lean = _require_tensorrt("runtime")
        if not self.engine_path.is_file():
            raise DeployLabError(
                f"TensorRT plan {str(self.engine_path)!r} does not exist; build one with build_engine_plan or "
                "trtexec --saveEngine"
            )
        gpu = gpu_info(self.device)
        self.record = check_plan_compatibility(
            self.engine_path, version, gpu and gpu["compute_capability"], lean_runtime=lean
        )
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        allow = self.allow_host_code
        if allow is None:
            allow = bool((self.record or {}).get("version_compatible"))
        if allow:
            # Version-compatible plans embed the lean runtime, i.e. host code TensorRT runs only
            # when allowed (Runtime.engine_host_code_allowed, default False).
            runtime.engine_host_code_allowed = True
        torch.cuda.set_device(self.device)
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise DeployLabError(
                f"TensorRT {version} could not deserialize {self.engine_path.name}; it was most likely built with "
                "another TensorRT version or for another GPU (the log lines above say which): rebuild it here. A "
                "version-compatible plan without a build record also needs TensorRTRunner(..., allow_host_code=True)"
            )
        context = engine.create_execution_context()
        self._runtime, self._stream = runtime, torch.cuda.Stream(device=self.device)
        stream = self._stream

        def synchronize():
            torch.cuda.current_stream(self.device).synchronize()
            stream.synchronize()

        self.session = _EngineSession(trt, engine, context, f"cuda:{self.device}", stream.cuda_stream,
                                      synchronize, self.profile_index, self.record)
        self.tensorrt_version = version

    def _deactivate(self) -> None:
        self.session = self._runtime = self._stream = None

    def _describe(self):
        return self.session.describe()

    def check(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Validate ``feed``: the profile bounds first (the clearest message), then the contract."""
        self.activate()
        self.session.check_bounds(feed)
        return check_feed(self.inputs, feed)

    def _infer(self, feed):
        return self.session.infer(feed)

    def inspect(self) -> dict:
        """IO tensors, profiles (min/opt/max per dynamic input) and layers of the plan.

        ``layers`` is the engine inspector's JSON (complete when built with DETAILED profiling
        verbosity, as build_engine_plan does); None with a note on the lean runtime, which has
        no inspector, or when the engine returns no layer information.
        """
        self.activate()
        session, trt, engine = self.session, self.session.trt, self.session.engine
        io = [{"name": n, "mode": "input" if n in session.inputs else "output",
               "dtype": getattr(session.dtypes[n], "name", str(session.dtypes[n])),
               "shape": list(session.shapes[n])} for n in session.names]
        dynamic = [n for n in session.inputs if any(d < 0 for d in session.shapes[n])]
        profiles = []
        for index in range(engine.num_optimization_profiles):
            entry = {}
            for n in dynamic:
                low, mid, high = engine.get_tensor_profile_shape(n, index)
                entry[n] = {"min": list(low), "opt": list(mid), "max": list(high)}
            profiles.append(entry)
        layers, note = None, None
        if hasattr(trt, "EngineInspector"):
            inspector = engine.create_engine_inspector()
            text = inspector.get_engine_information(trt.LayerInformationFormat.JSON) if inspector else ""
            if text and text.strip():
                layers = json.loads(text)
            else:
                note = ("the engine returned no layer information; build it with "
                        "profiling_verbosity=DETAILED (trtexec --profilingVerbosity=detailed) to list its layers")
        else:
            note = (f"{trt.__name__} is a lean runtime without EngineInspector; install the full tensorrt to "
                    "list the layers")
        return {"tensorrt_version": str(self.tensorrt_version), "io_tensors": io, "profiles": profiles,
                "layers": layers, "layers_note": note, "build_record": self.record}
