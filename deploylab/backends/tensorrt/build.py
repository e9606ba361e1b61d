"""The build phase: parse an ONNX model, configure the builder, build and save a plan.

NVIDIA's build flow, one step per function: :func:`parse_onnx` (network + OnnxParser, every
error reported), :func:`configure` (precision flags, TF32, portability, profiling
verbosity, calibrator), :func:`add_profiles`, :func:`_load_timing_cache`, then
``build_serialized_network``. :func:`build_engine_plan` runs them, reading the model's facts
once, and writes the plan and its record atomically.
https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/python-api-docs.html
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from deploylab.backends.build_record import BuildReport
from deploylab.backends.profiles import ShapeProfile, validate_profile
from deploylab.backends.tensorrt.calibration import (
    calibration_header, make_entropy_calibrator, read_calibration_cache,
)
from deploylab.backends.tensorrt.record import gpu_info, read_sidecar, sidecar_path, write_sidecar
from deploylab.backends.tensorrt.settings import (
    BuildSettings, ModelFacts, check_hardware_level, check_model_precision, precision_plan, read_model_facts,
)
from deploylab.backends.tensorrt.version import TensorRTVersion, require_tensorrt
from deploylab.errors import DeployLabError
from deploylab.log import info
from deploylab.paths import write_atomically

def _parser_errors(parser) -> list[str]:
    """Every ONNX parser error as one readable line: node index, name, operator, code, description."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node()
        where = f"node {node}" if node >= 0 else "graph"
        name = error.node_name() if hasattr(error, "node_name") else ""  # bound in 10.0-11.4; guarded anyway
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


def parse_onnx(trt, builder, logger, settings: BuildSettings, plan: dict, version: TensorRTVersion):
    """A network parsed from ``settings.onnx_path``: ``(network, parser, notes)``; raises listing every error."""
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
    return network, parser, [f"parser warning: {e}" for e in errors]


def add_profiles(builder, config, profiles: list[ShapeProfile]) -> list:
    """One TensorRT optimization profile per deploylab profile, added to ``config``."""
    trt_profiles = []
    for index, profile in enumerate(profiles):
        trt_profile = builder.create_optimization_profile()
        for name, (low, mid, high) in profile.shapes.items():
            trt_profile.set_shape(name, low, mid, high)
        if config.add_optimization_profile(trt_profile) < 0:
            raise DeployLabError(f"TensorRT rejected optimization profile {index}: {profile.to_dict()}")
        trt_profiles.append(trt_profile)
    return trt_profiles


def configure(trt, config, settings: BuildSettings, plan: dict, version: TensorRTVersion, trt_profiles: list,
              calibration_batches: Iterable[Mapping[str, np.ndarray]] | None = None):
    """Set the builder config's flags for ``settings``; return the int8 calibrator, if one is attached."""
    if settings.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib * 2**20)  # bytes
    if plan["flag"]:
        config.set_flag(getattr(trt.BuilderFlag, plan["flag"]))  # 10.x only, see precision_plan
    if settings.clears_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # TensorRT's default is on: fp32 layers would round to TF32
    calibrator = None
    if plan["calibrate"]:
        calibrator = make_entropy_calibrator(calibration_batches or [], settings.calibration_cache, trt)
        config.int8_calibrator = calibrator
        if trt_profiles:  # dynamic shapes: calibrate at the first profile's opt shapes
            config.set_calibration_profile(trt_profiles[0])
    if settings.version_compatible:
        # https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/version-compatibility.html
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if settings.hardware_compatibility != "NONE":
        check_hardware_level(settings.hardware_compatibility, version)
        level = getattr(trt.HardwareCompatibilityLevel, settings.hardware_compatibility, None)
        if level is None:
            raise DeployLabError(
                f"TensorRT {version} has no hardware compatibility level {settings.hardware_compatibility}; "
                f"it offers {', '.join(trt.HardwareCompatibilityLevel.__members__)}"
            )
        config.hardware_compatibility_level = level
    # Layer names, tactics and precisions in the engine inspector (TensorRTRunner.inspect).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return calibrator


def _check_inputs(settings: BuildSettings, facts: ModelFacts, plan: dict,
                  calibration_batches) -> list[ShapeProfile]:
    """The validated profiles; refuse what TensorRT would fail on later, with the reason."""
    profiles = [validate_profile(p, settings.onnx_path) for p in settings.profiles]
    if facts.dynamic_inputs and not profiles:
        raise DeployLabError(
            f"input(s) {', '.join(facts.dynamic_inputs)} have dynamic dims, and TensorRT needs an optimization "
            "profile for them; pass profiles=[parse_profile_args(min=..., opt=..., max=...)]"
        )
    if plan["strongly_typed"] and settings.precision != "fp32":
        check_model_precision(settings, facts)
    if plan["calibrate"]:
        cache = settings.calibration_cache
        if cache is None or (not cache.is_file() and calibration_batches is None):
            raise DeployLabError(
                "an int8 build needs scales: give calibration_cache pointing at an existing cache, or "
                "calibration_batches (with calibration_cache where the new cache is written)"
            )
    return profiles


def _build_failed(settings: BuildSettings, version: TensorRTVersion, plan: dict) -> DeployLabError:
    causes = "often: workspace too small, an unsupported layer for this precision, or profile shapes out of range"
    cache = settings.calibration_cache
    if plan["calibrate"] and cache is not None and cache.is_file():
        # A cache TensorRT rejects sends it back to calibrating, with no batches left: the log then
        # says "workspace too small" or similar, and the real cause is the header.
        try:
            header = read_calibration_cache(cache).header
        except DeployLabError as exc:
            header = f"unreadable ({exc})"
        expected = calibration_header(version)
        if header != expected:
            causes = (f"likely the calibration cache: its header is {header!r}, and TensorRT {version} reads only "
                      f"{expected!r}, so it recalibrated without data; rewrite the cache for {version}")
        else:
            causes = (f"the calibration cache header matches TensorRT {version}; if the cache comes from another "
                      f"model or release, delete it and calibrate again; else {causes}")
    return DeployLabError(
        f"TensorRT {version} could not build {settings.onnx_path.name}; the TensorRT log lines above say why ({causes})"
    )


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
    ``settings.calibration_cache`` does not exist yet. Needs the full ``tensorrt`` and a GPU,
    checked before TensorRT is touched (without a driver ``trt.Builder`` raises "factory
    function returned nullptr").
    """
    install = require_tensorrt("build")
    trt, version = install.module, install.version
    gpu = gpu_info()
    if gpu is None:
        raise DeployLabError(
            f"building a TensorRT plan needs an NVIDIA GPU with a working driver, and none is visible here "
            f"(TensorRT {version} is installed); build on the machine that will run the plan, or print the trtexec "
            "command (deploylab build MODEL --backend tensorrt -o PLAN --print-trtexec --trt-version X.Y.Z) and run it "
            "there"
        )
    facts = read_model_facts(settings.onnx_path)
    plan = precision_plan(settings, version, facts)
    profiles = _check_inputs(settings, facts, plan, calibration_batches)

    logger = trt.Logger(_logger_severity(trt, logger_severity))
    builder = trt.Builder(logger)
    network, parser, notes = parse_onnx(trt, builder, logger, settings, plan, version)
    config = builder.create_builder_config()
    trt_profiles = add_profiles(builder, config, profiles)
    calibrator = configure(trt, config, settings, plan, version, trt_profiles, calibration_batches)
    cache_loaded = _load_timing_cache(config, settings.timing_cache, notes) if settings.timing_cache else False

    stale = sidecar_path(settings.engine_path)
    if stale.is_file():  # about to be replaced: it must not describe a half-built or failed plan
        stale.unlink()
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if calibrator is not None:
        calibrator.raise_error()  # TensorRT swallowed it; the plan (if any) lacks those batches
    if serialized is None:
        raise _build_failed(settings, version, plan)
    data = memoryview(serialized)
    write_atomically(settings.engine_path, bytes(data))
    cache_saved = False
    if settings.timing_cache is not None:
        write_atomically(settings.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
        cache_saved = True
    side = write_sidecar(settings, version, gpu, profiles, facts)
    info(f"built {settings.engine_path} ({data.nbytes / 2**20:.2f} MiB) with TensorRT {version} in {seconds:.1f} s")
    facts = {"tensorrt_version": str(version), "precision": settings.precision,
             "strongly_typed": plan["strongly_typed"], "profiles": [p.to_dict() for p in profiles],
             "workspace_mib": settings.workspace_mib, "engine_bytes": data.nbytes,
             "timing_cache_loaded": cache_loaded, "timing_cache_saved": cache_saved, "gpu": gpu}
    return BuildReport("tensorrt", Path(settings.engine_path), side, seconds, read_sidecar(settings.engine_path) or {},
                       facts=facts, notes=notes)
