"""Quantization: fp16, int8 with calibration (ONNX Runtime Q/DQ, OpenVINO NNCF), int4 weight-only.

One module per role: :mod:`~deploylab.quantize.fp16`, :mod:`~deploylab.quantize.int8` (the ONNX
Runtime steps), :mod:`~deploylab.quantize.tensorrt_int8` (the Q/DQ recipe for TensorRT),
:mod:`~deploylab.quantize.openvino_int8` (NNCF), :mod:`~deploylab.quantize.int4`,
:mod:`~deploylab.quantize.sensitivity`, :mod:`~deploylab.quantize.evaluate`,
:mod:`~deploylab.quantize.report`; :func:`quantize_model` (:mod:`~deploylab.quantize.dispatch`)
checks a mode x backend x target x calibration choice and calls the right one.

Every function takes a model file and writes a new one, returning a report (sizes,
settings, time, calibration ranges). Accuracy and fidelity are measured separately
(:mod:`deploylab.quantize.evaluate`) on data the calibration never saw
(:mod:`deploylab.data.calibration`).

The names below are imported on first use, so ``import deploylab.quantize`` stays cheap
and an engine that is not installed only matters to the function that needs it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "QuantizationReport": "_common",
    "quantize_model": "dispatch",
    "calibration_for_model": "dispatch",
    "convert_to_fp16": "fp16",
    "QdqOptions": "int8",
    "quantize_int8_onnxruntime": "int8",
    "quantize_int8_from_ranges": "int8",
    "calibration_ranges": "int8",
    "collect_tensors_data": "int8",
    "prepare_for_quantization": "int8",
    "cpu_saturates_int8": "int8",
    "quantize_int8_openvino": "openvino_int8",
    "quantize_int8_for_tensorrt": "tensorrt_int8",
    "TENSORRT_INT8_RECIPE": "tensorrt_int8",
    "tensorrt_cache_from_ranges": "tensorrt_int8",
    "quantize_int4_weights": "int4",
    "matmul_weight_nodes": "int4",
    "export_matmul_mlp": "int4",
    "MatMulMLP": "int4",  # defined in deploylab.models.mlp
    "train_matmul_mlp": "int4",  # defined in deploylab.models.mlp
    "layer_sensitivity": "sensitivity",
    "mixed_precision": "sensitivity",
    "quantizable_nodes": "sensitivity",
    "SensitivityReport": "sensitivity",
    "accuracy_onnx": "evaluate",
    "fidelity": "evaluate",
    "predict": "evaluate",
    "Fidelity": "evaluate",
    "FidelityBudget": "evaluate",
    "check_fidelity": "evaluate",
    "labelled_accuracy": "evaluate",
    "evaluate_classifier": "evaluate",
    "ClassifierReport": "evaluate",
    "LabelledAccuracy": "evaluate",
    "quantize_variants": "report",
    "evaluate_candidates": "report",
    "CandidateTable": "report",
    "per_tensor_weight_levels": "report",
    "zero_range_tensors": "report",
    "qdq_format": "report",
    "tensorrt_qdq_problems": "report",  # defined in deploylab.backends.tensorrt.qdq
    "summarize_tensorrt_problems": "report",
    "TensorRTQdqProblem": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deploylab.quantize' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deploylab.quantize.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
