"""The plan record: what a plan needs to run, written next to it, and checked before loading.

A plan runs only where it was built unless built portable: the TensorRT release (or, built
version-compatible, later ones), the runtime library (full, lean, dispatch) and the GPU. Every
plan deploylab builds gets a JSON sidecar ``<plan>.json`` tied to the plan's bytes (size and
sha256); ``check_plan_compatibility`` reads it and refuses a plan this machine cannot run,
saying where it was built and which runtime it needs.
"""

from __future__ import annotations

import importlib
import re
from datetime import datetime, timezone
from pathlib import Path

from deploylab.backends.build_record import RECORD_FORMATS, read_record, record_path_for, write_record
from deploylab.backends.tensorrt.settings import BuildSettings, ModelFacts, read_model_facts
from deploylab.backends.tensorrt.version import RUNTIME_KINDS, TensorRTVersion
from deploylab.errors import DeployLabError
from deploylab.log import announce, info
from deploylab.paths import sha256_file

SIDECAR_FORMAT = RECORD_FORMATS["tensorrt"]


# Version-compatible plans may cross a major version only in these documented pairs:
# https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/getting-started/support-matrix.html
# ("TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8
# version-compatible engines can run with a TensorRT 10 runtime").
_CROSS_MAJOR_VERSION_COMPATIBLE = {(8, 10), (10, 11)}


def gpu_info(device: int | None = None) -> dict | None:
    """``{"name", "compute_capability": "8.6", "index"}`` of CUDA device ``device`` (None: the
    current device, where TensorRT builds and runs), or None without a GPU.

    Asks torch first, then cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``).
    """
    try:
        import torch

        if torch.cuda.is_available():
            index = torch.cuda.current_device() if device is None else device
            major, minor = torch.cuda.get_device_capability(index)
            return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}",
                    "index": index}
    except Exception:  # noqa: BLE001 - a broken CUDA setup means "unknown", not a crash
        pass
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            cudart = importlib.import_module(name)
            index = device
            if index is None:
                err, index = cudart.cudaGetDevice()
                if int(err) != 0:
                    continue
            err, prop = cudart.cudaGetDeviceProperties(index)
            if int(err) == 0 and prop is not None:
                label = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
                return {"name": label.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}",
                        "index": int(index)}
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


def sidecar_path(engine_path: str | Path) -> Path:
    """Where the build record of ``engine_path`` lives: ``<engine>.deploylab.json`` next to it."""
    return record_path_for(engine_path)


def write_sidecar(settings: BuildSettings, version: TensorRTVersion, gpu: dict | None, profiles=None,
                  facts: ModelFacts | None = None) -> Path:
    """Write the JSON build record of ``settings.engine_path`` (which must exist) and return its path.

    The record holds the plan's size and sha256, so a plan replaced after the record was
    written (rebuilt by trtexec, copied over) is not described by a stale record.
    ``facts``: the model's facts when the caller has read them already.
    """
    from deploylab import __version__

    facts = facts or read_model_facts(settings.onnx_path)
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
        "inputs": facts.inputs,
        "outputs": facts.outputs,
        "onnx": {"path": str(settings.onnx_path), "sha256": facts.sha256},
        "plan": {"bytes": Path(settings.engine_path).stat().st_size, "sha256": sha256_file(settings.engine_path)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deploylab_version": __version__,
    }
    return write_record(sidecar_path(settings.engine_path), "tensorrt", record)


def read_sidecar(engine_path: str | Path) -> dict | None:
    """The build record of ``engine_path``, or None when there is none (e.g. a trtexec plan) or when
    it describes other bytes than the plan now at ``engine_path`` (size or sha256 differ)."""
    path = sidecar_path(engine_path)
    record = read_record(path, "tensorrt", "rebuild the plan")
    if record is None:
        return None
    plan = record.get("plan")
    engine_path = Path(engine_path)
    if engine_path.is_file():
        if not isinstance(plan, dict) or plan.get("bytes") != engine_path.stat().st_size \
                or plan.get("sha256") != sha256_file(engine_path):
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


def runtimes_for_plan(record: dict) -> str:
    """Which TensorRT runtimes can load the plan ``record`` describes, as one sentence."""
    built = TensorRTVersion.parse(record["tensorrt_version"])
    if not record.get("version_compatible"):
        return f"the full runtime of TensorRT {built} only"
    later = f"{built.major}.x" + (f" or {built.major + 1}.x" if (built.major, built.major + 1)
                                  in _CROSS_MAJOR_VERSION_COMPATIBLE else "")
    return (f"the full or dispatch runtime of TensorRT {built} or a later {later}, or the lean runtime of "
            f"TensorRT {built} exactly (version-compatible plan)")


def check_plan_compatibility(
    engine_path: str | Path,
    tensorrt_version: str | TensorRTVersion,
    gpu_compute_capability=None,
    runtime: str = "full",
    gpu_name: str | None = None,
) -> dict | None:
    """Refuse to load a plan this TensorRT runtime/GPU cannot run, saying where it was built and
    which runtime it needs; return its record.

    Versions: a plan runs only on the full runtime of the TensorRT release that built it,
    unless built version-compatible; then the full and the dispatch runtime run it on the same
    or a newer release of the same major (or across the documented 8 -> 10 and 10 -> 11 pairs),
    and the lean runtime runs it only on the release that built it (the lean and dispatch
    runtimes run nothing but version-compatible plans: trtexec --help, ``--useRuntime``).

    GPUs: ``gpu_compute_capability`` as ``(8, 6)``, ``"8.6"`` or ``"sm_86"`` (None skips the
    GPU check). A plan built with hardware compatibility NONE is promised only for the GPU
    architecture that built it; on another GPU model of the same compute capability it is
    allowed with a warning (``gpu_name`` tells them apart), as TensorRT itself warns.
    SAME_COMPUTE_CAPABILITY plans run on any GPU of that compute capability, AMPERE_PLUS plans
    on any sm_80+ GPU.

    A plan without a sidecar (built by trtexec or elsewhere) is allowed with a one-time
    warning: deploylab cannot tell where it was built, and TensorRT itself refuses an
    incompatible plan at deserialization, which the runner reports as an error.
    """
    if runtime not in RUNTIME_KINDS:
        raise DeployLabError(f"unknown TensorRT runtime {runtime!r}; use one of {', '.join(RUNTIME_KINDS)}")
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
    needs = f"it runs on {runtimes_for_plan(record)}"
    vc = bool(record.get("version_compatible"))
    this = f"the {runtime} runtime of TensorRT {running}"
    if runtime != "full" and not vc:
        raise DeployLabError(
            f"{name} was built with {where} without version compatibility, and {this} runs only "
            f"version-compatible plans; {needs}: install the full tensorrt {built}, or {rebuild} with "
            "version_compatible=True"
        )
    if not built.same_release(running):
        if not vc:
            raise DeployLabError(
                f"{name} was built with {where}; this is {this}, and {needs}; {rebuild}, or build it with "
                "version_compatible=True"
            )
        if runtime == "lean":
            raise DeployLabError(
                f"{name} was built version-compatible with {where}, but a lean runtime runs only plans built by its "
                f"own release, and this is {this}; {needs}: use the dispatch runtime (tensorrt_dispatch) or the "
                f"full tensorrt {running}, or a lean runtime {built}"
            )
        if not _version_compatible_ok(built, running):
            raise DeployLabError(
                f"{name} was built version-compatible with {where}, but version compatibility only runs forward "
                f"within a major version (and from 10.x to 11.x, 8.x to 10.x): {this} cannot load it; {needs}; "
                f"{rebuild}"
            )
    running_cc = _cc_tuple(gpu_compute_capability)
    level = record.get("hardware_compatibility", "NONE")
    if running_cc is not None and built_cc is not None and running_cc != built_cc:
        if level != "AMPERE_PLUS":
            portable = "runs only on compute capability" if level == "SAME_COMPUTE_CAPABILITY" else \
                "is promised only for the GPU architecture that built it,"
            raise DeployLabError(
                f"{name} was built with {where}; this GPU is sm_{running_cc[0]}{running_cc[1]}, and the plan "
                f"{portable} sm_{built_cc[0]}{built_cc[1]}; {rebuild}, or build with hardware_compatibility='ampere+' "
                "to run on any Ampere or newer GPU"
            )
        if running_cc < (8, 0):
            raise DeployLabError(
                f"{name} was built with {where} for Ampere and newer GPUs (ampere+), but this GPU is "
                f"sm_{running_cc[0]}{running_cc[1]}, older than Ampere (sm_80); {rebuild}"
            )
    elif level == "NONE" and gpu_name and gpu.get("name") and gpu_name != gpu.get("name"):
        # NvInfer.h, HardwareCompatibilityLevel::kNONE: no compatibility with other GPU models is
        # promised; TensorRT warns that using a plan across device models "is not recommended and is
        # likely to affect performance or even cause errors".
        announce(
            f"{name} was built with {where} and runs here on {gpu_name}, another GPU of the same compute "
            f"capability: TensorRT promises a plan only for the device model that built it; {rebuild} for the "
            "speed it was tuned for, or build with hardware_compatibility='sameComputeCapability' (10.9+)"
        )
    return record
