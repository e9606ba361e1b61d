"""int8 post-training quantization for OpenVINO with NNCF: an ONNX file or IR in, an int8 IR out.

NNCF computes its own ranges (min/max statistics, then bias correction) on the calibration
samples and inserts FakeQuantize operations, which OpenVINO's CPU plugin turns into int8
kernels. The ONNX Runtime route (:mod:`deploylab.quantize.int8`) is separate: its calibrators
and Q/DQ options do not apply here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError, EngineError, require
from deploylab.backends.openvino import read_model, save_ir
from deploylab.quantize._common import QuantizationReport, file_bytes, quiet_tools, weight_bytes
from deploylab.quantize.int8 import check_choice
from deploylab.text import first_line

OPENVINO_PRESETS = ("performance", "mixed")


def _no_cuda_notice():
    """Hide torch's "No CUDA runtime is found" warning, which nncf triggers on a CPU machine."""
    import logging

    import torch  # noqa: F401  (first: importing torch would reset the level set below)

    from deploylab.log import logger_level

    return logger_level(logging.getLogger("torch.utils.cpp_extension"), logging.ERROR)


def quantize_int8_openvino(
    onnx_or_xml: str | Path,
    out_xml: str | Path,
    calibration: np.ndarray,
    subset_size: int | None = None,
    preset: str = "performance",
    ignored_scope: Sequence[str] | None = None,
    fast_bias_correction: bool = True,
) -> QuantizationReport:
    """int8 post-training quantization of an ONNX file or OpenVINO IR with NNCF; saves an IR.

    ``calibration``: float32 samples (N, ...) for the single input; ``subset_size``: how
    many NNCF uses (default: all). ``preset``: ``performance`` (symmetric activations and
    weights) or ``mixed`` (asymmetric activations, for non-ReLU models). ``ignored_scope``:
    OpenVINO operation names left in float. The IR gets FakeQuantize operations that the
    CPU plugin turns into int8 kernels; weights are stored as int8.
    """
    from deploylab.data.calibration import check_calibration_array
    from deploylab.onnx_tools import load_onnx

    require("openvino", "openvino", "the OpenVINO backend")
    onnx_or_xml, out_xml = Path(onnx_or_xml), Path(out_xml)
    if out_xml.suffix != ".xml":
        raise DeployLabError(f"OpenVINO IR path {str(out_xml)!r} must end in .xml (the .bin is written beside it)")
    check_choice("preset", preset, OPENVINO_PRESETS)
    if onnx_or_xml.suffix == ".onnx":
        load_onnx(onnx_or_xml, load_external_data=False)
    elif onnx_or_xml.suffix != ".xml" or not onnx_or_xml.is_file():
        raise DeployLabError(f"{str(onnx_or_xml)!r} is not an existing .onnx file or OpenVINO .xml IR")
    with _no_cuda_notice():
        nncf = require("nncf", "nncf", "int8 quantization for OpenVINO")
    model = read_model(onnx_or_xml)
    if len(model.inputs) != 1:
        raise DeployLabError(f"NNCF calibration here feeds one input; {onnx_or_xml.name} has {len(model.inputs)}")
    port = model.inputs[0]
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    calibration = check_calibration_array(calibration, shape)
    batch = shape[0] if isinstance(shape[0], int) else 1
    if len(calibration) < batch:
        raise DeployLabError(f"the model's batch dim is fixed at {batch}; give at least {batch} calibration samples")
    items = [calibration[i : i + batch] for i in range(0, len(calibration) - batch + 1, batch)]
    if subset_size is not None and (isinstance(subset_size, bool) or not isinstance(subset_size, int)
                                    or subset_size < 1):
        raise DeployLabError(f"subset_size={subset_size!r} must be a positive integer")
    subset = min(subset_size or len(items), len(items))
    scope = None
    if ignored_scope:
        if isinstance(ignored_scope, str):
            raise DeployLabError(f"ignored_scope={ignored_scope!r} must be a list of operation names")
        scope = nncf.IgnoredScope(names=list(ignored_scope))
    start = time.perf_counter()
    try:
        with quiet_tools("nncf") as messages, _no_cuda_notice():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                preset=getattr(nncf.QuantizationPreset, preset.upper()),
                subset_size=subset,
                ignored_scope=scope,
                fast_bias_correction=fast_bias_correction,
            )
    except nncf.ValidationError as exc:  # e.g. ignored_scope names that are not in the model
        raise DeployLabError(f"NNCF refused the settings: {first_line(exc, limit=300)}") from exc
    except Exception as exc:  # noqa: BLE001 - NNCF compiles and runs the model: its failures are the engine's
        raise EngineError(f"NNCF could not quantize {str(onnx_or_xml)!r}: {first_line(exc, limit=240)}",
                          engine_text=str(exc)) from exc
    save_ir(quantized, out_xml)  # complete files renamed into place, or the previous ones left as they were
    seconds = time.perf_counter() - start
    source_weights = (onnx_or_xml.with_suffix(".bin").stat().st_size if onnx_or_xml.suffix == ".xml"
                      else weight_bytes(onnx_or_xml))
    histogram: dict[str, int] = {}
    for op in quantized.get_ops():
        histogram[op.get_type_name()] = histogram.get(op.get_type_name(), 0) + 1
    return QuantizationReport(
        mode="int8",
        tool=f"nncf {nncf.__version__} -> OpenVINO IR",
        source=str(onnx_or_xml),
        output=str(out_xml),
        seconds=seconds,
        file_bytes_before=file_bytes(onnx_or_xml),
        file_bytes_after=file_bytes(out_xml),
        weight_bytes_before=source_weights,
        weight_bytes_after=out_xml.with_suffix(".bin").stat().st_size,
        settings={"preset": preset, "fast_bias_correction": fast_bias_correction,
                  "ignored": list(ignored_scope or []) or "none"},
        method="nncf (min/max statistics, bias correction)",
        num_samples=subset * batch,
        op_histogram=dict(sorted(histogram.items(), key=lambda kv: -kv[1])),
        notes=messages[:5],
    )
