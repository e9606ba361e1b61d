"""trtexec command lines for a TensorRT release, checked against that release's options.

The pip wheels ship no trtexec binary: it comes with the tar/deb packages and the NGC
containers. Every flag written here is checked against the option list of the release's
``samples/common/sampleOptions.cpp`` (:mod:`deploylab.backends.tensorrt.trtexec_options`).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from deploylab.backends.profiles import ShapeProfile
from deploylab.text import shape_text
from deploylab.backends.tensorrt.settings import (
    HARDWARE_LEVELS, TENSORRT_INT8_COMMAND, BuildSettings, ModelFacts, check_hardware_level, precision_plan,
    read_model_facts,
)
from deploylab.backends.tensorrt.trtexec_options import check_trtexec_flags
from deploylab.backends.tensorrt.version import TensorRTVersion
from deploylab.errors import DeployLabError

def _quote_name(name: str) -> str:
    # trtexec: "Input names can be wrapped with escaped single quotes (ex: 'Input:0')".
    return f"'{name}'" if any(c in name for c in ":,") else name


def _shapes_flag(profile: ShapeProfile, index: int) -> str:
    return ",".join(f"{_quote_name(n)}:{shape_text(s[index])}" for n, s in profile.shapes.items())


def trtexec_command(settings: BuildSettings, version: str | TensorRTVersion,
                    facts: ModelFacts | None = None, skip_inference: bool = True) -> list[str]:
    """The trtexec command (argv list) that builds ``settings`` with TensorRT ``version``.

    10.x: ``--fp16`` / ``--bf16`` / ``--int8 --calib=FILE`` as builder flags, ``--stronglyTyped``
    when asked. 11.x: no precision flags (removed) and no ``--stronglyTyped`` (always on, "no
    longer needed"); asking for fp16/bf16/int8 without a model that carries it raises with the
    11.x route. ``--memPoolSize=workspace:N`` is in MiB, trtexec's default unit. Profile names
    that are bare shapes must be resolved first (:func:`validate_profile`). Every command
    ends with ``--profilingVerbosity=detailed`` (layer details for the inspector) and
    ``--skipInference`` (build only). ``facts``: the model's facts; read from
    ``settings.onnx_path`` when that file exists (an int8 build of a Q/DQ model needs no
    ``--calib``). Every flag is checked against the release's trtexec option list.
    """
    version = TensorRTVersion.parse(version)
    if facts is None and Path(settings.onnx_path).is_file():
        facts = read_model_facts(settings.onnx_path)
    plan = precision_plan(settings, version, facts)
    command = ["trtexec", f"--onnx={settings.onnx_path}"]
    if plan["flag"]:
        command.append(f"--{plan['flag'].lower()}")
    if plan["calibrate"]:
        if settings.calibration_cache is None:
            raise DeployLabError(
                "an int8 trtexec build of a model without Q/DQ nodes needs a calibration cache (--calib=FILE): "
                "without one trtexec uses placeholder dynamic ranges, fine for timing but not for accuracy; write "
                "one with build_engine_plan (calibration batches) or write_calibration_cache, or quantize the "
                f"model into Q/DQ nodes ({TENSORRT_INT8_COMMAND})"
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
        check_hardware_level(settings.hardware_compatibility, version)
        command.append(f"--hardwareCompatibilityLevel={HARDWARE_LEVELS[settings.hardware_compatibility]}")
    # Layer names, tactics and precisions for the engine inspector (TensorRTRunner.inspect), as
    # build_engine_plan records them; and build only: trtexec would otherwise time the engine too
    # (skip_inference=False keeps that run, e.g. for --dumpProfile).
    command.append("--profilingVerbosity=detailed")
    if skip_inference:
        command.append("--skipInference")
    check_trtexec_flags(command, version)
    return command


def format_command(command: list[str]) -> str:
    """A command list as shell text, one argument per line joined by `` \\`` continuations."""
    quoted = [shlex.quote(str(part)) for part in command]
    if len(quoted) < 3:
        return " ".join(quoted)
    return " \\\n    ".join([" ".join(quoted[:2]), *quoted[2:]])

