"""fp16: store and compute in half precision, with fp32 inputs and outputs.

ONNX Runtime's converter (``onnxruntime.transformers.float16``) rewrites every float32
initializer and tensor to float16 and, with ``keep_io_types``, puts a Cast at each graph
input and output so callers keep feeding float32. Weights halve; accuracy usually does
not move (fp16 keeps 11 significant bits and LeNet/ResNet activations stay far inside
its +-65504 range). Whether it is *faster* depends on who computes, not on the file:

- ONNX Runtime's CPU provider on x86 has no fp16 Conv/Gemm kernels (its MLAS fp16 kernels are
  built for ARM64 only). Its ``InsertCastTransformer`` puts a Cast to fp32 in front of such a
  node's fp16 inputs (``InsertedPrecisionFreeCast_*``) and runs the fp32 kernel; at the higher
  optimization levels the casts of constant weights fold into fp32 weights. The arithmetic is
  fp32, and fusions the fp32 graph gets (e.g. Conv + Clip) can be lost, so the fp16 file is
  usually slower there: :func:`deploylab.profiling.optimized_graph_changes` shows it.
- fp16 computes in fp16 on NVIDIA GPUs (ONNX Runtime's CUDA provider, TensorRT), on OpenVINO's
  GPU plugin (f16 by default) and in OpenVINO's CPU plugin when asked for ``f16`` on a CPU with
  AVX512-FP16 or AVX2-VNNI-2 (elsewhere the plugin ignores the hint and computes in f32).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.paths import replace_when_done
from deploylab.quantize._common import (
    QuantizationReport,
    check_onnx_valid,
    onnx_report,
    quiet_tools,
    topological_sort,
)


def convert_to_fp16(
    onnx_in: str | Path,
    onnx_out: str | Path,
    keep_io_types: bool = True,
    op_block_list: Sequence[str] | None = None,
) -> QuantizationReport:
    """Write an fp16 copy of ``onnx_in`` to ``onnx_out`` and report sizes before/after (bytes).

    ``keep_io_types`` keeps float32 inputs and outputs (a Cast inside the graph);
    ``op_block_list`` names operator types to leave in float32 (ORT's default list, with
    ops such as Range, TopK and NonMaxSuppression, is used when None). The result passes
    ``onnx.checker``: the converter leaves its input Casts at the end of the node list,
    so the nodes are put back in topological order.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from deploylab.onnx_tools import load_onnx

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    if op_block_list is not None and (isinstance(op_block_list, str)
                                      or not all(isinstance(o, str) for o in op_block_list)):
        raise DeployLabError(f"op_block_list={op_block_list!r} must be a list of operator type names, e.g. ['Softmax']")
    model = load_onnx(onnx_in)
    start = time.perf_counter()
    blocked = list(DEFAULT_OP_BLOCK_LIST if op_block_list is None else op_block_list)
    with quiet_tools("onnxruntime.transformers.float16") as messages:
        converted = convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=blocked)
    topological_sort(converted.graph)
    with replace_when_done(onnx_out, suffix=".onnx") as staged:  # checked before it replaces anything
        onnx.save(converted, str(staged))
        check_onnx_valid(staged, onnx_out)
    seconds = time.perf_counter() - start
    return onnx_report(
        "fp16", "onnxruntime.transformers.float16", onnx_in, onnx_out, seconds, model, converted,
        settings={"keep_io_types": keep_io_types,
                  "op_block_list": "ORT default" if op_block_list is None else list(op_block_list)},
        notes=messages[:5],
    )
