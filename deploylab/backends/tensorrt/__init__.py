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

Without the full TensorRT, ``detect_tensorrt`` falls back to the lean runtime
(``tensorrt_lean``/``tensorrt_lean_bindings``), then the dispatch runtime
(``tensorrt_dispatch``): they run version-compatible plans but cannot build, parse ONNX or
inspect engines.

One module per role, as Polygraphy keeps loaders apart from runners: ``version`` (which
TensorRT and which runtime), ``settings`` (what to build, the 10/11 precision rules, the
model's facts), ``trtexec`` (command lines, checked against ``trtexec_options``),
``record`` (the plan's sidecar, GPU facts, compatibility), ``calibration`` (cache files and
the 10.x calibrator), ``build`` (the build phase) and ``runtime`` (``load_plan`` and the
runner). Every public name is importable from here.
"""

from deploylab.backends.tensorrt.build import (
    BuildReport, _load_timing_cache, _logger_severity, _parser_errors, add_profiles, build_engine_plan, configure,
    parse_onnx,
)
from deploylab.backends.tensorrt.calibration import (
    CalibrationCache, calibration_header, installed_calibration_version, make_entropy_calibrator,
    read_calibration_cache, scales_from_ranges, write_calibration_cache,
)
from deploylab.backends.tensorrt.record import (
    SIDECAR_FORMAT, _cc_tuple, check_plan_compatibility, gpu_info, read_sidecar, runtimes_for_plan, sidecar_path,
    write_sidecar,
)
from deploylab.backends.tensorrt.runtime import (
    OPTIONAL_RUNTIME_API_CALLS, RUNTIME_API_CALLS, RUNTIME_ENUMS, TRT_TO_NUMPY, TRT_TO_TORCH, LoadedPlan,
    TensorRTRunner, _EngineSession, check_profile_bounds, load_plan, numpy_dtype, torch_dtype,
)
from deploylab.backends.tensorrt.settings import (
    HARDWARE_LEVELS, PRECISIONS, TENSORRT_INT8_COMMAND, BuildSettings, ModelFacts, check_hardware_level,
    check_model_precision, model_precision, precision_plan, read_model_facts,
)
from deploylab.backends.tensorrt.trtexec import format_command, trtexec_command
from deploylab.backends.tensorrt.version import (
    INSTALL_HINT, RUNTIME_KINDS, TensorRTInstall, TensorRTVersion, detect_install, detect_runtimes, detect_tensorrt,
    require_tensorrt,
)

__all__ = [
    "BuildReport", "BuildSettings", "CalibrationCache", "HARDWARE_LEVELS", "INSTALL_HINT", "LoadedPlan",
    "ModelFacts", "OPTIONAL_RUNTIME_API_CALLS", "PRECISIONS", "RUNTIME_API_CALLS", "RUNTIME_ENUMS", "RUNTIME_KINDS",
    "SIDECAR_FORMAT", "TENSORRT_INT8_COMMAND", "TRT_TO_NUMPY", "TRT_TO_TORCH", "TensorRTInstall", "TensorRTRunner", "TensorRTVersion",
    "add_profiles", "build_engine_plan", "calibration_header", "check_hardware_level", "check_model_precision",
    "check_plan_compatibility", "check_profile_bounds", "configure", "detect_install", "detect_runtimes",
    "detect_tensorrt", "format_command", "gpu_info", "installed_calibration_version", "load_plan",
    "make_entropy_calibrator", "model_precision", "numpy_dtype", "parse_onnx", "precision_plan",
    "read_calibration_cache", "read_model_facts", "read_sidecar", "require_tensorrt", "runtimes_for_plan",
    "scales_from_ranges", "sidecar_path", "torch_dtype", "trtexec_command",
    "write_calibration_cache", "write_sidecar",
]

from deploylab.backends.spec import BackendSpec  # noqa: E402 (the spec closes the package)

SPEC = BackendSpec(
    name="tensorrt",
    reads_onnx=False,
    artifacts=(".plan", ".engine"),
    runner=TensorRTRunner,
    available=lambda: bool(detect_runtimes()),
    builder=build_engine_plan,
)
