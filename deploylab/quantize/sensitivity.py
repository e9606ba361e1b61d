"""Which layers does int8 hurt most? Per-layer sensitivity and a mixed-precision fix.

The measurement is direct: for each layer group (each Conv/Gemm/MatMul node) build the
int8 model with *only that group* left in float, and see how much fidelity to the fp32
model it recovers compared with the fully quantized model, on an evaluation set that is
not the calibration set. The group whose exclusion recovers most is the most sensitive.
A layer-wise comparison (:func:`deploylab.compare.compare_layerwise`) is cheaper but only
shows where the error *appears*; errors accumulate downstream, so it cannot tell which
layer to keep in float.

It stays cheap because calibration runs once: every variant is quantized from the same
calibration ranges (ORT's calibration cache). LeNet has 5 groups (2 Conv, 3 Gemm),
ResNet-18 21 (20 Conv with BatchNorm folded in, 1 Gemm); with 16 evaluation images each
variant costs one ``quantize_static`` and 16 inferences (ResNet-18: about 45 s in all on
two AVX2 cores, LeNet: about 1 s).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.quantize.evaluate import Fidelity, fidelity, predict

GROUP_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def quantizable_nodes(onnx_path: str | Path, preprocess: bool = True) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes int8 quantization would see, in graph order.

    With ``preprocess`` the names are read from the ``quant_pre_process`` output (what
    ``nodes_to_exclude`` refers to: BatchNorm nodes are gone after folding).
    """
    from deploylab.onnx_tools import load_onnx
    from deploylab.quantize.int8 import prepare_for_quantization

    with tempfile.TemporaryDirectory(prefix="deploylab-nodes-") as tmp:
        path = prepare_for_quantization(onnx_path, Path(tmp) / "prep.onnx")[0] if preprocess else Path(onnx_path)
        model = load_onnx(path, load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in GROUP_OP_TYPES and n.name]


@dataclass
class LayerSensitivity:
    """Fidelity of the int8 model with ``node`` kept in float, and what that recovers over full int8."""

    node: str
    op_type: str
    fidelity: Fidelity
    recovered_top1: float  # top-1 agreement gained over the fully quantized model
    recovered_cosine: float  # mean cosine gained over the fully quantized model


@dataclass
class SensitivityReport:
    """Layer groups ranked most sensitive first (keeping them in float recovers the most)."""

    model: str
    method: str
    evaluation_samples: int
    full_int8: Fidelity
    layers: list[LayerSensitivity]
    seconds: float
    settings: dict = field(default_factory=dict)

    def worst(self, k: int = 1) -> list[str]:
        """The ``k`` most sensitive node names: the ``keep_fp32`` list for :func:`mixed_precision`."""
        return [layer.node for layer in self.layers[:k]]

    def format(self, limit: int = 10) -> str:
        lines = [f"per-layer sensitivity of {Path(self.model).name} ({self.method} calibration, "
                 f"{self.evaluation_samples} evaluation samples, {self.seconds:.1f} s)",
                 f"  full int8: {self.full_int8.format()}",
                 "  keep in float      -> top-1 agreement, mean cosine (gain over full int8)"]
        for layer in self.layers[:limit]:
            f = layer.fidelity
            lines.append(f"  {layer.node} ({layer.op_type}): {f.top1_agreement:.2%}, {f.mean_cosine:.6f} "
                         f"({layer.recovered_top1:+.2%}, {layer.recovered_cosine:+.2e})")
        return "\n".join(lines)


def layer_sensitivity(
    onnx_path: str | Path,
    calibration: np.ndarray,
    evaluation: np.ndarray,
    method: str = "minmax",
    groups: Sequence[str] | None = None,
    preprocess: bool = True,
    progress: bool | None = None,
    **quantize_options,
) -> SensitivityReport:
    """Rank each Conv/Gemm/MatMul node by the fidelity keeping it in float recovers.

    ``calibration`` fits the ranges (once); ``evaluation`` (different inputs) measures
    fidelity to the fp32 model run by ONNX Runtime. ``groups`` limits the nodes tried
    (default: :func:`quantizable_nodes`). ``quantize_options`` (per_channel,
    activation_type, reduce_range, ..., and the calibration's batch_size and calibrator_options)
    are those of :func:`~deploylab.quantize.int8.quantize_int8_onnxruntime`: the model is
    calibrated once and every variant written from those ranges.
    """
    from deploylab.onnx_tools import load_onnx
    from deploylab.quantize.int8 import (
        collect_tensors_data,
        prepare_for_quantization,
        quantize_int8_from_ranges,
        split_int8_options,
    )

    if not isinstance(evaluation, np.ndarray) or len(evaluation) == 0:
        raise DeployLabError("the evaluation set is empty; give at least one input (not the calibration data)")
    start = time.perf_counter()
    reference = predict(onnx_path, evaluation)
    with tempfile.TemporaryDirectory(prefix="deploylab-sensitivity-") as tmp:
        tmp = Path(tmp)
        source = prepare_for_quantization(onnx_path, tmp / "prep.onnx")[0] if preprocess else Path(onnx_path)
        source_model = load_onnx(source)
        graph = source_model.graph
        op_types = {n.name: n.op_type for n in graph.node if n.name}
        candidates = [n for n, op in op_types.items() if op in GROUP_OP_TYPES] if groups is None else list(groups)
        unknown = [g for g in candidates if g not in op_types]
        if unknown:
            raise DeployLabError(f"groups {', '.join(map(repr, unknown))} are not nodes of the "
                                 f"{'pre-processed ' if preprocess else ''}model; see quantizable_nodes()")
        if not candidates:
            raise DeployLabError(f"{Path(onnx_path).name} has no Conv/Gemm/MatMul node to rank")
        calibration_options, options = split_int8_options(quantize_options)  # one calibration, ranges reused
        tensors = collect_tensors_data(source, calibration, method, calibration_options.get("batch_size"),
                                       calibration_options.get("calibrator_options"), progress, model=source_model)

        def measure(excluded: list[str]) -> Fidelity:
            path = tmp / "variant.onnx"
            quantize_int8_from_ranges(source, path, tensors, dataclasses.replace(options, nodes_to_exclude=excluded),
                                      method, len(calibration), source_model=source_model)
            return fidelity(reference, predict(path, evaluation))

        baseline = measure([])
        layers = []
        for name in candidates:
            f = measure([name])
            layers.append(LayerSensitivity(name, op_types[name], f, f.top1_agreement - baseline.top1_agreement,
                                           f.mean_cosine - baseline.mean_cosine))
    layers.sort(key=lambda s: (s.recovered_top1, s.recovered_cosine), reverse=True)
    return SensitivityReport(str(onnx_path), method, len(evaluation), baseline, layers,
                             time.perf_counter() - start, dict(quantize_options))


def mixed_precision(
    onnx_in: str | Path,
    onnx_out: str | Path,
    calibration: np.ndarray,
    keep_fp32: Sequence[str],
    method: str = "minmax",
    **quantize_options,
):
    """int8 everywhere except the nodes in ``keep_fp32`` (e.g. ``SensitivityReport.worst(k)``).

    The node names are those of the pre-processed model (what :func:`quantizable_nodes`
    and :func:`layer_sensitivity` report). Returns the int8 :class:`QuantizationReport`.
    """
    from deploylab.quantize.int8 import quantize_int8_onnxruntime

    if isinstance(keep_fp32, str) or not all(isinstance(n, str) for n in keep_fp32):
        raise DeployLabError(f"keep_fp32={keep_fp32!r} must be a list of node names")
    return quantize_int8_onnxruntime(onnx_in, onnx_out, calibration, method=method,
                                     nodes_to_exclude=list(keep_fp32), **quantize_options)
