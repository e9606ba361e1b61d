"""What to build, and the precision rules of TensorRT 10 and 11.

``BuildSettings`` holds one build (paths, profiles, precision, portability); ``precision_plan``
decides how a precision is obtained on a given release (a builder flag and a calibrator on
10.x weak typing; the model's own types on 10.x strong typing and on 11.x, which is always
strongly typed); ``ModelFacts`` is what a build needs to know about the ONNX model, read
once; ``check_model_precision`` refuses a strongly typed build of a model that does not
carry the precision asked for, including Q/DQ nodes TensorRT's ONNX parser cannot import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deploylab.backends.profiles import ShapeProfile
from deploylab.backends.tensorrt.version import TensorRTVersion
from deploylab.errors import DeployLabError
from deploylab.paths import sha256_file

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


# trtexec spells the levels differently from the Python enum.
HARDWARE_LEVELS = {"NONE": "none", "AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "sameComputeCapability"}


_HARDWARE_ALIASES = {
    "none": "NONE", "ampere+": "AMPERE_PLUS", "ampere_plus": "AMPERE_PLUS", "ampereplus": "AMPERE_PLUS",
    "samecomputecapability": "SAME_COMPUTE_CAPABILITY", "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}


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


#: The command that makes the int8 model TensorRT's ONNX parser takes (signed, symmetric Q/DQ).
TENSORRT_INT8_COMMAND = "deploylab quantize MODEL --mode int8 --for tensorrt"

_ROUTE_11 = {
    "fp16": "convert the model to fp16 first with ModelOpt AutoCast (python -m modelopt.onnx.autocast "
            "--onnx_path model.onnx --output_path model_fp16.onnx) or deploylab's fp16 conversion, and build that",
    "bf16": "convert the model to bf16 first with ModelOpt AutoCast (low_precision_type='bf16') and build that",
    # ORT's quantize_static defaults (uint8, asymmetric) give Q/DQ nodes TensorRT's parser refuses.
    "int8": "quantize the model into explicit, symmetric signed int8 QuantizeLinear/DequantizeLinear (Q/DQ) nodes "
            f"first ({TENSORRT_INT8_COMMAND}, or ModelOpt) and build that",
}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def precision_plan(settings: BuildSettings, version: TensorRTVersion, facts: ModelFacts | None = None) -> dict:
    """Decide how ``settings.precision`` is obtained on ``version``; raise if it cannot be.

    Returns {"flag": BuilderFlag name or None, "strongly_typed": bool, "calibrate": bool}.
    ``facts`` (when the model has been read): a 10.x int8 build of a Q/DQ model needs no
    calibration.
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
        if facts is not None and facts.qdq_nodes:
            # Explicit quantization: a Q/DQ model carries its own scales, and TensorRT 10.x
            # ignores a calibrator for it ("Explicit Versus Implicit Quantization",
            # https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/work-quantized-types.html).
            if settings.calibration_cache is not None:
                raise DeployLabError(
                    f"{settings.onnx_path.name} has {facts.qdq_nodes} Q/DQ nodes, so its int8 scales come from the "
                    "model and TensorRT ignores a calibration cache; drop calibration_cache"
                )
            return {"flag": "INT8", "strongly_typed": False, "calibrate": False}
        return {"flag": "INT8", "strongly_typed": False, "calibrate": True}
    if settings.calibration_cache is not None:
        raise DeployLabError(
            f"a calibration cache only applies to int8 builds, but precision is {precision!r}; "
            "set precision='int8' or drop calibration_cache"
        )
    return {"flag": {"fp32": None, "fp16": "FP16", "bf16": "BF16"}[precision], "strongly_typed": False,
            "calibrate": False}


# trtexec accepts --hardwareCompatibilityLevel=sameComputeCapability, and the
# HardwareCompatibilityLevel enum has SAME_COMPUTE_CAPABILITY, from TensorRT 10.9 on
# (samples/common/sampleOptions.cpp and include/NvInfer.h of release 10.9; absent in 10.8).
_SAME_COMPUTE_CAPABILITY_SINCE = (10, 9)


def check_hardware_level(level: str, version: TensorRTVersion) -> None:
    if level == "SAME_COMPUTE_CAPABILITY" and (version.major, version.minor) < _SAME_COMPUTE_CAPABILITY_SINCE:
        raise DeployLabError(
            f"hardware compatibility sameComputeCapability needs TensorRT 10.9 or newer, not {version}; "
            "use ampere+ (any sm_80+ GPU) or none with this version"
        )


@dataclass(frozen=True)
class ModelFacts:
    """What a build needs to know about an ONNX model, read once (:func:`read_model_facts`).

    ``inputs`` / ``outputs``: name -> dims (ints, dim names, "?"); ``float_dtypes``: float types
    of initializers, IO and Cast targets; ``qdq_nodes``: QuantizeLinear/DequantizeLinear count;
    ``qdq_problems``: what TensorRT's ONNX parser refuses among them (non-zero zero points,
    unsigned types), as :class:`deploylab.backends.tensorrt.qdq.TensorRTQdqProblem` entries.
    """

    path: Path
    inputs: dict[str, list]
    outputs: dict[str, list]
    float_dtypes: list[str]
    qdq_nodes: int
    qdq_problems: list[str] = field(default_factory=list)
    sha256: str = ""

    @property
    def dynamic_inputs(self) -> list[str]:
        return [n for n, dims in self.inputs.items() if any(not isinstance(d, int) or d < 0 for d in dims)]

    def precision(self) -> dict:
        return {"float_dtypes": self.float_dtypes, "qdq_nodes": self.qdq_nodes}


def read_model_facts(onnx_path: str | Path) -> ModelFacts:
    """Read :class:`ModelFacts` of ``onnx_path`` (the graph only: external weights are not loaded)."""
    from deploylab.onnx_tools import ONNX_DTYPE_NAMES, graph_inputs, graph_outputs, load_onnx
    from deploylab.backends.tensorrt.qdq import tensorrt_qdq_problems

    onnx_path = Path(onnx_path)
    model = load_onnx(onnx_path, load_external_data=False)
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    dtypes = {ONNX_DTYPE_NAMES.get(i.data_type, str(i.data_type)) for i in model.graph.initializer}
    dtypes |= {t.dtype for t in inputs + outputs}
    for node in model.graph.node:  # Cast(to=fp16) inserted by converters counts too
        if node.op_type == "Cast":
            dtypes |= {ONNX_DTYPE_NAMES.get(a.i, str(a.i)) for a in node.attribute if a.name == "to"}
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return ModelFacts(
        onnx_path,
        {t.name: list(t.shape) for t in inputs},
        {t.name: list(t.shape) for t in outputs},
        sorted(d for d in dtypes if "float" in d),
        qdq,
        tensorrt_qdq_problems(model) if qdq else [],
        sha256_file(onnx_path),
    )


def model_precision(onnx_path: str | Path) -> dict:
    """What precision an ONNX model carries: float dtypes of its initializers/IO and its Q/DQ count."""
    return read_model_facts(onnx_path).precision()


def check_model_precision(settings: BuildSettings, facts: ModelFacts | None = None) -> None:
    """Raise unless the model carries ``settings.precision`` in a form TensorRT builds strongly typed.

    fp16/bf16: the model holds tensors of that type. int8: it has Q/DQ nodes, and every one is
    signed with all-zero zero points: onnx-tensorrt's QuantizeLinear/DequantizeLinear importer
    refuses a non-zero zero point ("TensorRT only supports symmetric quantization"), so an
    asymmetric uint8 model (ONNX Runtime's CPU default) cannot be built.
    """
    facts = facts or read_model_facts(settings.onnx_path)
    name = settings.onnx_path.name
    needed = {"fp16": "float16", "bf16": "bfloat16"}.get(settings.precision)
    if needed and needed not in facts.float_dtypes:
        raise DeployLabError(
            f"strongly typed build with precision {settings.precision!r}, but {name} holds no "
            f"{needed} tensors ({', '.join(facts.float_dtypes) or 'no float tensors'}): the engine would run in "
            f"the model's types. {_sentence(_ROUTE_11[settings.precision])}"
        )
    if settings.precision == "int8" and not facts.qdq_nodes:
        raise DeployLabError(
            f"strongly typed int8 build, but {name} has no QuantizeLinear/DequantizeLinear nodes: {_ROUTE_11['int8']}"
        )
    if settings.precision == "int8" and facts.qdq_problems:
        from deploylab.backends.tensorrt.qdq import summarize_tensorrt_problems

        raise DeployLabError(
            f"{name} has Q/DQ nodes TensorRT's ONNX parser refuses (it takes signed int8 with zero points of 0): "
            f"{summarize_tensorrt_problems(facts.qdq_problems)}. Quantize it with the TensorRT recipe "
            f"({TENSORRT_INT8_COMMAND})"
        )
