"""int4 weight-only quantization of MatMul layers (ONNX Runtime's MatMulNBits).

Weight-only quantization stores the constant B of each ``MatMul`` as 4-bit integers in
blocks of ``block_size`` values along K, each block with its own float scale (and zero
point when asymmetric); activations stay float. ORT replaces the node with the contrib op
``com.microsoft.MatMulNBits``, which dequantizes on the fly: the point is memory (LLM
weights), not integer arithmetic. It is an ONNX Runtime operator: other engines do not run
the file (OpenVINO has its own route, ``nncf.compress_weights``).

Only ``MatMul`` with a constant 2-D weight is covered. PyTorch exports ``nn.Linear`` on a
2-D input (N, features) as ``Gemm``, which this quantizer skips, so LeNet has nothing to
quantize. :class:`deploylab.models.mlp.MatMulMLP` feeds its Linear layers a 3-D input
(N, 1, features), which exports as ``MatMul`` + ``Add``; :func:`export_matmul_mlp` exports it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from deploylab.errors import DeployLabError
from deploylab.paths import replace_when_done
from deploylab.models.mlp import MatMulMLP, MlpTrainingReport, train_matmul_mlp  # noqa: F401  (re-exported here)
from deploylab.quantize._common import (
    QuantizationReport,
    check_onnx_valid,
    onnx_report,
    op_histogram,
    quiet_tools,
    weight_bytes,
)

ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # MatMulNBits: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute


def matmul_weight_nodes(model) -> list[str]:
    """Names of MatMul nodes whose B input is a constant initializer of rank 2 (or 1 x ... x K x N)."""
    initializers = {t.name: t for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        weight = initializers.get(node.input[1])
        if weight is not None and len(weight.dims) >= 2 and all(d == 1 for d in weight.dims[:-2]):
            found.append(node.name or node.output[0])
    return found


def quantize_int4_weights(
    onnx_in: str | Path,
    onnx_out: str | Path,
    block_size: int = 32,
    symmetric: bool = True,
    accuracy_level: int | None = None,
) -> QuantizationReport:
    """Quantize the constant MatMul weights of ``onnx_in`` to int4 (``MatMulNBits``); report sizes.

    ``block_size``: values per scale along K (a power of two >= 16). ``symmetric``: no zero
    points. ``accuracy_level``: the lowest precision MatMulNBits may compute in (None:
    unset; 4 allows int8 activations on CPUs with int8 dot-product instructions (VNNI)). Raises a
    :class:`DeployLabError` when the model has no MatMul with a constant 2-D weight.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from deploylab.onnx_tools import load_onnx

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    power_of_two = isinstance(block_size, int) and block_size > 0 and not block_size & (block_size - 1)
    if isinstance(block_size, bool) or not power_of_two or block_size < 16:
        raise DeployLabError(f"block_size={block_size!r} must be a power of two >= 16 (e.g. 32, 64, 128)")
    if accuracy_level is not None and accuracy_level not in ACCURACY_LEVELS:
        raise DeployLabError(f"accuracy_level={accuracy_level!r} must be None or one of {ACCURACY_LEVELS}")
    model = load_onnx(onnx_in)
    targets = matmul_weight_nodes(model)
    if not targets:
        ops = sorted({n.op_type for n in model.graph.node})
        gemm = " A 2-D nn.Linear exports as Gemm, which this quantizer does not cover." if "Gemm" in ops else ""
        raise DeployLabError(
            f"{onnx_in.name} has no MatMul with a constant 2-D weight, so int4 weight-only quantization has "
            f"nothing to quantize (its ops: {', '.join(ops)}).{gemm} Export the Linear layers with a 3-D input "
            "(N, 1, features), e.g. deploylab.quantize.MatMulMLP, or use a model whose layers are MatMul"
        )
    before_weights = weight_bytes(model)
    start = time.perf_counter()
    with quiet_tools("onnxruntime.quantization.matmul_nbits_quantizer", "onnxruntime"):
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=symmetric,
                                         accuracy_level=accuracy_level)
        quantizer.process()
    quantized = quantizer.model.model
    with replace_when_done(onnx_out, suffix=".onnx") as staged:  # checked before it replaces anything
        onnx.save(quantized, str(staged))
        check_onnx_valid(staged, onnx_out)
    seconds = time.perf_counter() - start
    histogram = op_histogram(onnx_out)
    done = histogram.get("com.microsoft.MatMulNBits", 0)
    # The quantizer rewrites ``model`` in place: its weights were counted before.
    return onnx_report(
        "int4", "onnxruntime MatMulNBitsQuantizer", onnx_in, onnx_out, seconds, model,
        weight_bytes_before=before_weights, op_histogram=histogram,
        settings={"block_size": block_size, "symmetric": symmetric, "accuracy_level": accuracy_level,
                  "matmuls": f"{done} of {len(targets)}"},
        notes=[] if done == len(targets) else [f"only {done} of {len(targets)} MatMul weights were quantized"],
    )


# ---------------------------------------------------------------- a model made of MatMuls
# The MLP and its training live in deploylab.models.mlp; exporting it so that its layers stay
# MatMul nodes is the int4 lesson's own step.
def export_matmul_mlp(model: nn.Module, path: str | Path, opset: int = 17):
    """Export the MLP (TorchScript exporter, symbolic batch) so its layers are MatMul nodes."""
    from deploylab.export import export_onnx

    example = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    report = export_onnx(model, (example,), path, exporter="torchscript", opset=opset, dynamic_batch=True)
    if report.summary.op_histogram.get("MatMul", 0) == 0:  # a future exporter might fuse to Gemm
        raise DeployLabError(f"the export of {type(model).__name__} has no MatMul ({report.summary.op_histogram})")
    return report
