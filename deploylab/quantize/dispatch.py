"""One entry point for every quantization: mode x backend x target x calibration checked once.

``deploylab quantize`` and any caller that takes the same choices as words call
:func:`quantize_model`; it refuses the combinations that make no sense (an fp16 model "for
TensorRT", a calibrator for NNCF, calibration options for a mode that needs no calibration)
with the reason and the fix, picks a calibration set (:func:`calibration_for_model`) and
calls the quantizer that writes the file. The messages name the command-line flags, which
are the keyword names spelled with dashes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.quantize._common import QuantizationReport, single_input
from deploylab.paths import refuse_overwriting_inputs

MODES = ("fp16", "int8", "int4")
BACKENDS = ("onnxruntime", "openvino")
TARGETS = ("tensorrt",)


def calibration_for_model(
    onnx_path: str | Path, data: str | Path | None = None, num_samples: int | None = None, seed: int = 0
) -> tuple[np.ndarray, str]:
    """Calibration samples for ``onnx_path`` and a line saying where they come from.

    With ``data`` (an .npy/.npz file or an image folder) they are loaded and checked
    against the model input. Without it the built-in set that fits the input shape
    (:func:`deploylab.data.calibration.builtin_calibration`): digits for 1x32x32, augmented
    photos for an image input, preprocessed as the file's deploylab metadata says (else the
    mmcls pipeline, 3x224x224 only); any other input needs ``data``.
    """
    from deploylab.data.calibration import builtin_calibration, load_calibration_data
    from deploylab.onnx_tools import preprocessing_for_artifact

    spec = single_input(onnx_path)
    if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                    or num_samples < 1):
        raise DeployLabError(f"number of calibration samples {num_samples!r} must be a positive integer")
    prep, _ = preprocessing_for_artifact(onnx_path)
    if data is not None:
        samples = load_calibration_data(data, spec.shape, limit=num_samples, preprocessing=prep)
        return samples, f"{len(samples)} samples from {data}"
    return builtin_calibration(spec.name, spec.shape, num_samples, seed, preprocessing=prep)


def check_combination(mode: str, backend: str, output: Path, target: str | None = None,
                      calib_data=None, calib_method: str | None = None, num_samples: int | None = None) -> None:
    """Raise :class:`DeployLabError` for a choice of mode, backend, target and calibration that cannot work."""
    for name, value, choices in (("mode", mode, MODES), ("backend", backend, BACKENDS)):
        if value not in choices:
            raise DeployLabError(f"--{name} {value!r} is not one of {', '.join(choices)}")
    if target is not None and target not in TARGETS:
        raise DeployLabError(f"--for {target!r} is not one of {', '.join(TARGETS)}")
    if target == "tensorrt" and (mode != "int8" or backend != "onnxruntime"):
        why = {"fp16": "an fp16 ONNX file is already what TensorRT 11 builds strongly typed for fp16",
               "int4": "MatMulNBits is an ONNX Runtime operator TensorRT's parser does not import"}.get(
            mode, "NNCF writes an OpenVINO IR, which TensorRT does not read")
        flag = f"--mode {mode}" if mode != "int8" else "--backend openvino"
        raise DeployLabError(f"--for tensorrt makes the int8 Q/DQ recipe (--mode int8 --backend onnxruntime), not "
                             f"{flag}: {why}; drop --for tensorrt")
    if mode != "int8":
        given = [flag for flag, value in (("--calib-data", calib_data), ("--calib-method", calib_method),
                                          ("--num-samples", num_samples)) if value is not None]
        if given:
            raise DeployLabError(f"{', '.join(given)} only apply to --mode int8 ({mode} needs no calibration)")
        if backend == "openvino":
            hint = ("an fp16 ONNX file runs in OpenVINO as it is" if mode == "fp16" else
                    "MatMulNBits is an ONNX Runtime operator; OpenVINO compresses weights with nncf.compress_weights")
            raise DeployLabError(f"--mode {mode} writes an ONNX file for ONNX Runtime; drop --backend openvino ({hint})")
    suffix = ".xml" if backend == "openvino" else ".onnx"
    if Path(output).suffix != suffix:
        raise DeployLabError(f"output {str(output)!r} must end in {suffix} for --backend {backend}")
    if backend == "openvino" and calib_method not in (None, "minmax"):
        raise DeployLabError(f"--calib-method {calib_method} is an ONNX Runtime calibrator; NNCF computes its own "
                             "ranges (min/max statistics with bias correction): drop --calib-method")


def quantize_model(
    model: str | Path,
    output: str | Path,
    mode: str,
    backend: str = "onnxruntime",
    target: str | None = None,
    calib_data: str | Path | None = None,
    calib_method: str | None = None,
    num_samples: int | None = None,
    on_calibration: Callable[[str], None] | None = None,
) -> QuantizationReport:
    """Quantize ``model`` (an ONNX file) into ``output`` as ``mode`` for ``backend``; return the report.

    ``mode``: fp16, int8 or int4. ``backend``: onnxruntime (an ONNX file) or openvino (int8
    only, an IR: ``output`` ends in .xml). ``target="tensorrt"``: the int8 Q/DQ recipe
    TensorRT builds strongly typed. ``calib_data``, ``calib_method`` (an ONNX Runtime
    calibrator, default minmax) and ``num_samples``: int8 only. ``on_calibration`` receives
    the line saying where the calibration samples come from, before quantizing.
    """
    from deploylab.quantize import fp16, int4, int8, openvino_int8, tensorrt_int8

    output = Path(output)
    check_combination(mode, backend, output, target, calib_data, calib_method, num_samples)
    refuse_overwriting_inputs(output, model, calib_data, flag="output")
    if mode == "fp16":
        return fp16.convert_to_fp16(model, output)
    if mode == "int4":
        return int4.quantize_int4_weights(model, output)
    samples, source = calibration_for_model(model, calib_data, num_samples)
    if on_calibration is not None:
        on_calibration(source)
    if backend == "openvino":
        return openvino_int8.quantize_int8_openvino(model, output, samples)
    if target == "tensorrt":
        return tensorrt_int8.quantize_int8_for_tensorrt(model, output, samples, method=calib_method or "minmax")
    return int8.quantize_int8_onnxruntime(model, output, samples, method=calib_method or "minmax")
