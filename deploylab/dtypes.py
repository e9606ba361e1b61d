"""One table of element types, keyed by ONNX's type code, with each engine's spelling.

ONNX Runtime names types ``tensor(float)``, PyTorch ``torch.float32``, TensorRT ``FLOAT``,
OpenVINO ``f32``; numpy has no bfloat16, float8 or 4-bit types (``numpy`` is None there).
Every conversion in deploylab reads this table, so a type is added in one row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ElementType:
    onnx: int  # onnx.TensorProto data type code
    name: str  # deploylab's name (numpy's where numpy has the type)
    numpy: type | None
    ort: str  # ONNX Runtime's NodeArg.type
    torch: str | None  # str(torch dtype)
    tensorrt: str | None  # tensorrt.DataType member
    openvino: str | None  # ov.Type short name


ELEMENT_TYPES: tuple[ElementType, ...] = (
    ElementType(1, "float32", np.float32, "tensor(float)", "torch.float32", "FLOAT", "f32"),
    ElementType(2, "uint8", np.uint8, "tensor(uint8)", "torch.uint8", "UINT8", "u8"),
    ElementType(3, "int8", np.int8, "tensor(int8)", "torch.int8", "INT8", "i8"),
    ElementType(4, "uint16", np.uint16, "tensor(uint16)", "torch.uint16", None, "u16"),
    ElementType(5, "int16", np.int16, "tensor(int16)", "torch.int16", None, "i16"),
    ElementType(6, "int32", np.int32, "tensor(int32)", "torch.int32", "INT32", "i32"),
    ElementType(7, "int64", np.int64, "tensor(int64)", "torch.int64", "INT64", "i64"),
    ElementType(9, "bool", np.bool_, "tensor(bool)", "torch.bool", "BOOL", "boolean"),
    ElementType(10, "float16", np.float16, "tensor(float16)", "torch.float16", "HALF", "f16"),
    ElementType(11, "float64", np.float64, "tensor(double)", "torch.float64", None, "f64"),
    ElementType(12, "uint32", np.uint32, "tensor(uint32)", "torch.uint32", None, "u32"),
    ElementType(13, "uint64", np.uint64, "tensor(uint64)", "torch.uint64", None, "u64"),
    ElementType(16, "bfloat16", None, "tensor(bfloat16)", "torch.bfloat16", "BF16", "bf16"),
    ElementType(17, "float8e4m3fn", None, "tensor(float8e4m3fn)", "torch.float8_e4m3fn", "FP8", "f8e4m3"),
    ElementType(19, "float8e5m2", None, "tensor(float8e5m2)", "torch.float8_e5m2", None, "f8e5m2"),
    ElementType(21, "uint4", None, "tensor(uint4)", None, None, "u4"),
    ElementType(22, "int4", None, "tensor(int4)", None, "INT4", "i4"),
)

_BY = {field: {getattr(t, field): t for t in ELEMENT_TYPES if getattr(t, field) is not None}
       for field in ("onnx", "name", "ort", "torch", "tensorrt", "openvino")}


def element_type(value, spelling: str = "onnx") -> ElementType | None:
    """The row for ``value`` as ``spelling`` writes it (onnx code, name, ort, torch, tensorrt,
    openvino), or None for a type the table does not hold."""
    return _BY[spelling].get(value)


def onnx_type_name(code: int) -> str:
    """``float32`` for ONNX type code 1; the code as text for a code the table does not hold."""
    row = _BY["onnx"].get(code)
    return row.name if row else str(code)


def numpy_dtype(value, spelling: str) -> np.dtype | None:
    """The numpy dtype for a type in an engine's spelling, None if numpy has none (bfloat16, fp8)."""
    row = _BY[spelling].get(value)
    return np.dtype(row.numpy) if row is not None and row.numpy is not None else None


def spelling_of(dtype, spelling: str) -> str | None:
    """A numpy dtype in an engine's spelling (e.g. ``torch.float32``), None if that engine lacks it."""
    row = _BY["name"].get(np.dtype(dtype).name)
    return getattr(row, spelling) if row is not None else None


#: Engines' precision spellings -> deploylab's (OpenVINO reports f32/bf16/f16).
PRECISION_NAMES = {"f32": "fp32", "fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
                   "f16": "fp16", "fp16": "fp16", "float16": "fp16"}


def precision_name(value) -> str:
    """A precision in deploylab's words (fp32, bf16, fp16) from any engine's spelling; None -> fp32."""
    if not value:
        return "fp32"
    text = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return PRECISION_NAMES.get(text.lower(), text.lower())
