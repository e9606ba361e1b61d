"""TensorRT's column, as NVIDIA documents it: the ONNX-TensorRT operator table, read from a data file.

TensorRT cannot be installed on a machine without an NVIDIA GPU, so its support cannot be
measured here. ``data/tensorrt_onnx_ops.json`` holds the rows of onnx-tensorrt's
``docs/operators.md`` this course needs, with where and when they were read; this module
reads that file once and answers per operator.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.paths import DATA_DIR, read_json_object

TENSORRT_OPS_PATH = DATA_DIR / "tensorrt_onnx_ops.json"
TENSORRT_OPS_FORMAT = 1


@dataclass(frozen=True)
class TensorRTOpTable:
    """NVIDIA's operator table: ``ops`` maps an ONNX op type to ``(supported, restriction)``."""

    ops: dict[str, tuple[bool, str]]
    source: str  # the document's URL
    tensorrt: str  # the TensorRT release the document describes
    read: str  # the date the rows were copied, YYYY-MM-DD

    @property
    def provenance(self) -> str:
        """One line for reports: release and URL."""
        return f"{self.tensorrt}, {self.source}"


def read_tensorrt_op_table(path: str | Path = TENSORRT_OPS_PATH) -> TensorRTOpTable:
    """Read a table file (format :data:`TENSORRT_OPS_FORMAT`); a clear error when it is missing or damaged."""
    path = Path(path)
    data = read_json_object(path, "TensorRT's documented operator table",
                            "it ships in the repository's data/ folder (set DEPLOYLAB_DATA to the folder that holds it)")
    missing = [k for k in ("source", "tensorrt", "read", "ops") if k not in data]
    if data.get("format") != TENSORRT_OPS_FORMAT or missing:
        raise DeployLabError(f"{str(path)!r} is not a deploylab TensorRT operator table (format "
                             f"{data.get('format')!r}, missing {', '.join(missing) or 'nothing'})")
    try:
        ops = {op: (bool(row["supported"]), str(row.get("restriction", ""))) for op, row in data["ops"].items()}
    except (AttributeError, KeyError, TypeError) as exc:
        raise DeployLabError(f"{str(path)!r} has a malformed operator row ({type(exc).__name__}: {exc}); "
                             "restore it from the repository's data/ folder") from None
    return TensorRTOpTable(ops, data["source"], data["tensorrt"], data["read"])


@functools.cache
def tensorrt_op_table() -> TensorRTOpTable:
    """The shipped table, read on first use (so ``import deploylab.support`` needs no data file)."""
    return read_tensorrt_op_table()


def tensorrt_documented(domain: str, op_type: str) -> str:
    """``"Y"``, ``"Y (restriction)"``, ``"N"`` or ``"unknown"`` from NVIDIA's table.

    Operators outside the default ONNX domain are TensorRT *plugins* (the ONNX parser
    looks up a registered plugin creator named like the op): ``"plugin"``.
    """
    if domain not in ("", "ai.onnx"):
        return "plugin"
    entry = tensorrt_op_table().ops.get(op_type)
    if entry is None:
        return "unknown"
    supported, restriction = entry
    if not supported:
        return "N"
    return f"Y ({restriction})" if restriction else "Y"
