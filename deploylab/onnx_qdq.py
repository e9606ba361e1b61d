"""The QuantizeLinear/DequantizeLinear nodes of an ONNX graph, read once for every check.

A node's quantized type follows the ONNX definitions (zero point type, else ``output_dtype``,
else uint8), which is what both ONNX Runtime's format summary (:mod:`deploylab.quantize.report`)
and TensorRT's parser rules (:mod:`deploylab.backends.tensorrt.qdq`) need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.dtypes import element_type


@dataclass(frozen=True)
class QdqNode:
    """One QuantizeLinear/DequantizeLinear node as the checks read it."""

    node: object  # onnx.NodeProto
    tensor: str  # the tensor quantized (Q) or dequantized (DQ): the node's input 0
    quantized_type: str  # the integer/float8 side, an ONNX type name ("int8", "uint8", "int32", ...)
    zero_point: np.ndarray | None  # None: no zero point input, or one that is not a constant
    zero_point_constant: bool  # False when a zero point is given but computed in the graph
    constant_input: bool  # a DequantizeLinear of a constant (weights, a bias)

    @property
    def has_zero_point(self) -> bool:
        return len(self.node.input) > 2 and bool(self.node.input[2])


def _dtype_name(code: int) -> str:
    import onnx

    row = element_type(code)
    if row is not None:
        return row.name
    try:
        return onnx.TensorProto.DataType.Name(code).lower()
    except ValueError:
        return str(code)


def qdq_nodes(model) -> list[QdqNode]:
    """The Q/DQ nodes of ``model``'s main graph, each with its quantized type and zero point.

    The quantized type follows the ONNX definitions: a QuantizeLinear's is its zero point's type,
    else its ``output_dtype`` attribute, else uint8; a DequantizeLinear's is its input's type (a
    constant's, a QuantizeLinear's output, or what shape inference recorded).
    """
    from onnx import numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    constants.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value"})
    declared = {v.name: v.type.tensor_type.elem_type
                for v in (*graph.input, *graph.value_info, *graph.output) if v.type.tensor_type.elem_type}

    def type_of(name: str) -> str | None:
        if name in constants:
            return _dtype_name(constants[name].data_type)
        return _dtype_name(declared[name]) if name in declared else None

    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.domain in ("", "ai.onnx")]
    quantized_outputs: dict[str, str] = {}
    for node in qdq:
        if node.op_type == "QuantizeLinear":
            zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
            attr = next((a.i for a in node.attribute if a.name == "output_dtype" and a.i), None)
            kind = (type_of(zero_point) if zero_point else None) or (_dtype_name(attr) if attr else "uint8")
            quantized_outputs[node.output[0]] = kind
    found = []
    for node in qdq:
        zero_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zero_tensor = constants.get(zero_name) if zero_name else None
        if node.op_type == "QuantizeLinear":
            kind = quantized_outputs[node.output[0]]
        else:
            kind = (type_of(node.input[0]) or quantized_outputs.get(node.input[0])
                    or (type_of(zero_name) if zero_name else None) or "unknown")
        found.append(QdqNode(
            node, node.input[0], kind,
            numpy_helper.to_array(zero_tensor) if zero_tensor is not None else None,
            zero_name is None or zero_tensor is not None,
            node.op_type == "DequantizeLinear" and node.input[0] in constants,
        ))
    return found


def model_of(onnx_path_or_model):
    """A loaded ``onnx.ModelProto`` from a file or a model (passed through)."""
    from deploylab.onnx_tools import load_onnx

    if isinstance(onnx_path_or_model, (str, Path)):
        return load_onnx(onnx_path_or_model)
    return onnx_path_or_model


def nonzero(zero_point: np.ndarray | None) -> bool:
    """True when a zero point is given and not all zeros (asymmetric quantization)."""
    return zero_point is not None and bool(np.any(zero_point.astype(np.float32) != 0))
