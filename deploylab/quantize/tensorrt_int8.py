"""int8 for TensorRT: the Q/DQ recipe TensorRT 11 builds strongly typed, and calibration caches for TensorRT 10.

TensorRT 11 has no int8 calibrators: the Q/DQ nodes *are* the int8 model, so
:func:`quantize_int8_for_tensorrt` runs the ONNX Runtime route (:mod:`deploylab.quantize.int8`)
with :data:`TENSORRT_INT8_RECIPE` (signed, symmetric, float biases), the only Q/DQ format
TensorRT's ONNX parser takes, and checks the result against the parser's rules
(:mod:`deploylab.backends.tensorrt.qdq`) before writing it. :func:`tensorrt_cache_from_ranges`
turns calibrated ranges into the calibration cache TensorRT 10's implicit int8 reads.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deploylab.backends.tensorrt.qdq import summarize_tensorrt_problems, tensorrt_qdq_problems
from deploylab.errors import DeployLabError
from deploylab.log import info
from deploylab.paths import replace_when_done
from deploylab.quantize import int8
from deploylab.quantize._common import QuantizationReport
from deploylab.quantize.report import qdq_format

# The options the recipe may take are those of the ORT route as written (a test may replace the
# function that runs, to check that the result is checked).
_ORT_SIGNATURE_OF = int8.quantize_int8_onnxruntime

#: quantize_int8_onnxruntime options for the Q/DQ model TensorRT 11 builds strongly typed (it has no int8
#: calibrators: the Q/DQ nodes *are* the int8 model). TensorRT's ONNX parser takes signed int8 with zero
#: points of 0 only (see :func:`deploylab.backends.tensorrt.qdq.tensorrt_qdq_problems`), hence int8 activations
#: and weights, both symmetric. Per-channel weights: TensorRT takes one scale per output channel for
#: weights (per-tensor for activations, which ORT's activations are). QuantizeBias=False keeps biases
#: float: ORT would store them as int32 behind a DequantizeLinear, which TensorRT's DequantizeLayer
#: refuses ("only activation types allowed as input to this layer", microsoft/onnxruntime#14229), and
#: TensorRT adds a float bias inside its int8 convolution/GEMM kernels itself, so nothing is lost.
#: reduce_range=False: 7-bit weights only work around the int16 saturation of ORT's u8 x s8 kernels on
#: x86 CPUs without VNNI; on TensorRT they would only throw a bit of every weight away.
TENSORRT_INT8_RECIPE = {
    "activation_type": "int8",
    "weight_type": "int8",
    "per_channel": True,
    "reduce_range": False,
    "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
}
# Why each option the recipe fixes cannot be overridden (the others, e.g. per_channel, can).
_TENSORRT_FIXED = {
    "activation_type": "TensorRT quantizes activations to signed int8 only; its parser rejects uint8 or reads it "
                       "as int8",
    "weight_type": "TensorRT's parser rejects uint8 weights",
    "ActivationSymmetric": "TensorRT rejects non-zero zero points",
    "WeightSymmetric": "TensorRT rejects non-zero zero points",
    "QuantizeBias": "TensorRT's DequantizeLayer refuses the int32 biases it makes",
}


def _tensorrt_options(overrides: Mapping) -> dict:
    """The recipe with ``overrides`` applied; refuses unknown options and those that break the format."""
    known = set(inspect.signature(_ORT_SIGNATURE_OF).parameters) - {"onnx_in", "onnx_out", "calibration", "method"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DeployLabError(f"{', '.join(unknown)}: not an option of quantize_int8_onnxruntime; the TensorRT "
                             f"recipe takes {', '.join(sorted(known))}")
    extra = dict(overrides.get("extra_options") or {})
    changed = [(key, overrides[key]) for key in ("activation_type", "weight_type")
               if key in overrides and overrides[key] != TENSORRT_INT8_RECIPE[key]]
    changed += [(key, extra[key]) for key, value in TENSORRT_INT8_RECIPE["extra_options"].items()
                if key in extra and extra[key] != value]
    if changed:
        key, value = changed[0]
        raise DeployLabError(f"{key}={value!r} breaks the TensorRT recipe ({_TENSORRT_FIXED[key]}); drop it, or "
                             "call quantize_int8_onnxruntime for a model meant for ONNX Runtime")
    options = {**TENSORRT_INT8_RECIPE, **overrides}
    options["extra_options"] = {**extra, **TENSORRT_INT8_RECIPE["extra_options"]}
    return options


def quantize_int8_for_tensorrt(
    onnx_in: str | Path,
    onnx_out: str | Path,
    calibration: np.ndarray,
    method: str = "minmax",
    **overrides,
) -> QuantizationReport:
    """int8 Q/DQ model for TensorRT: :func:`quantize_int8_onnxruntime` with :data:`TENSORRT_INT8_RECIPE`.

    Signed int8 activations and per-channel weights, zero points 0, float biases: the format
    TensorRT 11 builds strongly typed (``trtexec --stronglyTyped``, ``deploylab build --strongly-typed``).
    ``overrides`` are other :func:`quantize_int8_onnxruntime` arguments (``nodes_to_exclude``,
    ``per_channel``, ``calibrator_options``, ...); one that would break the format (e.g.
    ``activation_type="uint8"``) is refused. The result is checked with
    :func:`~deploylab.backends.tensorrt.qdq.tensorrt_qdq_problems` before it is moved to ``onnx_out``: a
    model TensorRT would not take raises :class:`DeployLabError` naming the nodes and is not written.
    """
    options = _tensorrt_options(overrides)
    onnx_out = Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    # Same folder, so the rename is atomic; the checked model replaces onnx_out, a failed check writes nothing.
    with replace_when_done(onnx_out, suffix=".onnx") as staged:
        report = int8.quantize_int8_onnxruntime(onnx_in, staged, calibration, method=method, **options)
        problems = tensorrt_qdq_problems(staged)
        if problems:
            raise DeployLabError(f"the TensorRT recipe gave a model TensorRT's ONNX parser would not take: "
                                 f"{summarize_tensorrt_problems(problems)}")
        fmt = qdq_format(staged)
    return dataclasses.replace(
        report,
        output=str(onnx_out),
        settings={"recipe": "tensorrt", **report.settings, "symmetric": True, "biases": "float"},
        notes=report.notes + [f"TensorRT check passed: {fmt.format()}"],
    )


# ---------------------------------------------------------------- TensorRT 10: a calibration cache
def tensorrt_cache_from_ranges(
    ranges: Mapping[str, tuple[float, float]],
    path: str | Path,
    version: str,
    algorithm: str = "EntropyCalibration2",
) -> Path:
    """Write ``ranges`` as a TensorRT calibration cache for TensorRT ``version`` (major.minor.patch, e.g. "10.13.3").

    Each scale is TensorRT's symmetric int8 scale ``max(|min|, |max|) / 127`` as float32.
    The header names the calibrator that will *read* the cache (TensorRT ignores a cache
    whose header does not match its version and calibrator), not how the ranges were
    found. Tensors whose range is exactly (0, 0) cannot get a scale and are left out.
    """
    from deploylab.backends.tensorrt import calibration_header, scales_from_ranges, write_calibration_cache

    if not ranges:
        raise DeployLabError("no tensor ranges to write; calibrate first (calibration_ranges)")
    usable = {n: r for n, r in ranges.items() if max(abs(r[0]), abs(r[1])) > 0}
    skipped = sorted(set(ranges) - set(usable))
    if skipped:
        info(f"TensorRT cache: {len(skipped)} tensor(s) with range (0, 0) left out: {', '.join(skipped[:5])}")
    scales = scales_from_ranges(usable)
    return write_calibration_cache(path, scales, version_tag=calibration_header(version, algorithm))
