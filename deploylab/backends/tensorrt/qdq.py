"""Q/DQ nodes TensorRT's ONNX parser rejects or reads differently from ONNX Runtime.

Read by the precision check before a strongly typed build (:func:`deploylab.backends.tensorrt.
check_model_precision`), by ``deploylab check-support``'s TensorRT column and by the TensorRT
int8 recipe, which checks its own output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploylab.onnx_qdq import QdqNode, model_of, nonzero, qdq_nodes

# ---------------------------------------------------------------- Q/DQ format, TensorRT's rules
# What TensorRT's ONNX parser does with QuantizeLinear/DequantizeLinear, read in onnx-tensorrt's
# onnxOpImporters.cpp, QuantDequantLinearHelper, in release 10.1-GA (branch 10.1-GA, lines 1345-1657:
# uint8 checks 1349 and 1354, int8 default 1424, uint8 warning 1457, symmetric check 1491, accepted
# types 1593), 10.6 GA (commit 0137504e) and 10.15 GA (commit dd0a3a9f, the newest release available
# here; the TensorRT 11 parser's source was not. The symmetric rule and the accepted types held from
# 10.1 to 10.15; the uint8 handling and the messages changed):
# - the quantized type is the zero point's type; without a zero point the parser uses int8 (its
#   comment: "ONNX default is UINT8, TRT will default to INT8"), so a QuantizeLinear that ONNX runs in
#   uint8 [0, 255] runs in int8 [-128, 127] in TensorRT;
# - a uint8 zero point: 10.1 and 10.6 reject it on a QuantizeLinear ("Found unsupported input type of
#   UINT8") and read it as int8 on a DequantizeLinear with a warning; 10.15 reads it as int8 on both
#   ("supports ... UINT8 zero_point only on DLA ... Defaulting to INT8"); a uint8 *weight* feeding a
#   DequantizeLinear is rejected in all of them (uint8 only with the DLA-only parser flag
#   kENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA, 10.11+);
# - a zero point that is not all zeros is rejected: "TensorRT only supports symmetric quantization. The
#   zero point for the QuantizeLinear/DequantizeLinear operator must be all zeros" (10.1), "Non-zero
#   zero point is not supported" (10.15); a zero point computed at run time must still be a build-time
#   constant of zeros (IDequantizeLayer's documentation);
# - accepted quantized types: INT8, FP8 (ONNX float8e4m3fn only: the other float8 types do not convert),
#   INT4 and, since 10.8, FP4 (float4e2m1). TensorRT's "Working with Quantized Types" (10.11, 11.0,
#   11.3): symmetric only; INT4 is weight-only quantization;
# - any other zero-point type (the int32 of a bias ONNX Runtime quantized) is read as int8, and the
#   DequantizeLayer then refuses its int32 input: "only activation types allowed as input to this
#   layer" (microsoft/onnxruntime#14229, #17738).

TENSORRT_QUANTIZED_TYPES = ("int8", "float8e4m3fn", "float4e2m1")
TENSORRT_WEIGHT_ONLY_TYPES = ("int4",)  # only on a DequantizeLinear of a constant (weight-only)
_SHOWN_VALUES = 4


@dataclass(frozen=True)
class TensorRTQdqProblem:
    """One QuantizeLinear/DequantizeLinear node TensorRT's ONNX parser would reject or compute differently."""

    node: str
    op_type: str  # QuantizeLinear or DequantizeLinear
    tensor: str  # the tensor it quantizes or dequantizes
    issue: str  # short: "non-zero zero point", "computed zero point", or the quantized type ("uint8", "int32")
    detail: str  # the offending values or type, and what TensorRT does with them

    def __str__(self) -> str:
        return f"{self.op_type} {self.node!r} on {self.tensor!r}: {self.detail}"


def summarize_tensorrt_problems(problems, limit: int = 3) -> str:
    """One line for :func:`tensorrt_qdq_problems`' result: nodes affected, issues counted, the first few."""
    if not problems:
        return "no TensorRT Q/DQ problems"
    nodes = len({p.node for p in problems})
    issues: dict[str, int] = {}
    for p in problems:
        issues[p.issue] = issues.get(p.issue, 0) + 1
    counted = ", ".join(f"{issue} x{n}" for issue, n in issues.items())
    first = "; ".join(str(p) for p in problems[:limit]) + ("; ..." if len(problems) > limit else "")
    return f"{nodes} Q/DQ node(s) TensorRT cannot take as they are ({counted}): {first}"


def _type_problem(n: QdqNode) -> str | None:
    kind = n.quantized_type
    if kind in TENSORRT_QUANTIZED_TYPES or (kind in TENSORRT_WEIGHT_ONLY_TYPES and n.constant_input):
        return None
    if kind in TENSORRT_WEIGHT_ONLY_TYPES:
        return f"{kind} on an activation (TensorRT takes {kind} for weight-only quantization only)"
    if kind == "uint8":
        given = ("uint8 zero point" if n.has_zero_point else
                 "no zero point, so uint8 by the ONNX default")
        return (f"{given}: TensorRT has no uint8 on the GPU (its parser rejects it or reads it as int8, "
                "clipping at 127, not 255); quantize with activation_type='int8'")
    if kind == "int32":
        return ("int32, a quantized bias (TensorRT's DequantizeLayer takes only quantized types: \"only "
                "activation types allowed as input to this layer\"); keep biases float (QuantizeBias=False)")
    return f"{kind} (TensorRT quantizes to {', '.join(TENSORRT_QUANTIZED_TYPES)} and weight-only int4)"


def tensorrt_qdq_problems(onnx_path) -> list[TensorRTQdqProblem]:
    """Every Q/DQ node TensorRT's ONNX parser would reject or read differently, empty if none.

    Checked per node, as onnx-tensorrt's QuantizeLinear/DequantizeLinear importer does (see the
    comment above :data:`TENSORRT_QUANTIZED_TYPES`): the zero point must be a constant of zeros
    (symmetric quantization) and the quantized type int8, float8e4m3fn or float4e2m1, or int4 for
    weights. A uint8 or missing zero point is a problem even where the parser only warns: TensorRT
    then quantizes to int8, not to the uint8 the model (and ONNX Runtime) computes. ``onnx_path``:
    an ONNX file or a loaded ``onnx.ModelProto``; the main graph is checked (not If/Loop bodies).
    """
    problems = []
    for n in qdq_nodes(model_of(onnx_path)):
        name, op = n.node.name or n.node.output[0], n.node.op_type
        if not n.zero_point_constant:
            problems.append(TensorRTQdqProblem(name, op, n.tensor, "computed zero point",
                                               f"zero point {n.node.input[2]!r} is computed in the graph; "
                                               "TensorRT needs a build-time constant of zeros"))
        elif nonzero(n.zero_point):
            flat = n.zero_point.ravel()
            values = ", ".join(str(v) for v in flat[:_SHOWN_VALUES].tolist())
            values += ", ..." if flat.size > _SHOWN_VALUES else ""
            count = int(np.count_nonzero(flat.astype(np.float32)))
            problems.append(TensorRTQdqProblem(
                name, op, n.tensor, "non-zero zero point",
                f"{n.quantized_type} zero point [{values}] ({count} of {flat.size} non-zero): TensorRT takes "
                "symmetric quantization only (zero points all 0)"))
        wrong_type = _type_problem(n)
        if wrong_type:
            issue = n.quantized_type
            issue += " on an activation" if issue in TENSORRT_WEIGHT_ONLY_TYPES else ""
            problems.append(TensorRTQdqProblem(name, op, n.tensor, issue, wrong_type))
    return problems
