"""Quantization: fp16, int8 with calibration (ONNX Runtime Q/DQ, OpenVINO NNCF), int4 weight-only.

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
    "convert_to_fp16": "fp16",
    "quantize_int8_onnxruntime": "int8",
    "quantize_int8_openvino": "int8",
    "quantize_int8_for_tensorrt": "int8",
    "TENSORRT_INT8_RECIPE": "int8",
    "calibration_ranges": "int8",
    "calibration_for_model": "int8",
    "collect_tensors_data": "int8",
    "prepare_for_quantization": "int8",
    "tensorrt_cache_from_ranges": "int8",
    "cpu_saturates_int8": "int8",
    "quantize_int4_weights": "int4",
    "matmul_weight_nodes": "int4",
    "MatMulMLP": "int4",
    "train_matmul_mlp": "int4",
    "export_matmul_mlp": "int4",
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
    "quantize_variants": "report",
    "evaluate_candidates": "report",
    "CandidateTable": "report",
    "per_tensor_weight_levels": "report",
    "zero_range_tensors": "report",
    "qdq_format": "report",
    "tensorrt_qdq_problems": "report",
    "TensorRTQdqProblem": "report",
    "ClassifierReport": "evaluate",
    "LabelledAccuracy": "evaluate",
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
