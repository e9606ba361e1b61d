"""deploylab quantize: arguments and handlers."""

from __future__ import annotations

from pathlib import Path

from deploylab.cli._base import EXIT_OK
from deploylab.errors import DeployLabError


def _cmd_quantize(args) -> int:
    from deploylab import quantize

    if args.target == "tensorrt" and (args.mode != "int8" or args.backend != "onnxruntime"):
        why = {"fp16": "an fp16 ONNX file is already what TensorRT 11 builds strongly typed for fp16",
               "int4": "MatMulNBits is an ONNX Runtime operator TensorRT's parser does not import"}.get(
            args.mode, "NNCF writes an OpenVINO IR, which TensorRT does not read")
        flag = f"--mode {args.mode}" if args.mode != "int8" else "--backend openvino"
        raise DeployLabError(f"--for tensorrt makes the int8 Q/DQ recipe (--mode int8 --backend onnxruntime), not "
                             f"{flag}: {why}; drop --for tensorrt")
    if args.mode != "int8":
        given = [flag for flag, value in (("--calib-data", args.calib_data), ("--calib-method", args.calib_method),
                                          ("--num-samples", args.num_samples)) if value is not None]
        if given:
            raise DeployLabError(f"{', '.join(given)} only apply to --mode int8 ({args.mode} needs no calibration)")
        if args.backend == "openvino":
            hint = ("an fp16 ONNX file runs in OpenVINO as it is" if args.mode == "fp16" else
                    "MatMulNBits is an ONNX Runtime operator; OpenVINO compresses weights with nncf.compress_weights")
            raise DeployLabError(f"--mode {args.mode} writes an ONNX file for ONNX Runtime; drop --backend openvino ({hint})")
    suffix = ".xml" if args.backend == "openvino" else ".onnx"
    if args.output.suffix != suffix:
        raise DeployLabError(f"output {str(args.output)!r} must end in {suffix} for --backend {args.backend}")
    if args.backend == "openvino" and args.calib_method not in (None, "minmax"):
        raise DeployLabError(f"--calib-method {args.calib_method} is an ONNX Runtime calibrator; NNCF computes its own "
                             "ranges (min/max statistics with bias correction): drop --calib-method")
    if args.mode == "fp16":
        report = quantize.convert_to_fp16(args.model, args.output)
    elif args.mode == "int4":
        report = quantize.quantize_int4_weights(args.model, args.output)
    else:
        samples, source = quantize.calibration_for_model(args.model, args.calib_data, args.num_samples)
        print(f"calibration data: {source}")
        if args.backend == "openvino":
            report = quantize.quantize_int8_openvino(args.model, args.output, samples)
        elif args.target == "tensorrt":
            report = quantize.quantize_int8_for_tensorrt(args.model, args.output, samples,
                                                         method=args.calib_method or "minmax")
        else:
            report = quantize.quantize_int8_onnxruntime(args.model, args.output, samples,
                                                        method=args.calib_method or "minmax")
    print(report.format())
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("quantize", help="fp16, int8 (calibrated) or int4 weight-only copy of an ONNX model")
    p.add_argument("model", type=Path, help="ONNX file")
    p.add_argument("--mode", choices=("fp16", "int8", "int4"), required=True)
    p.add_argument("--backend", choices=("onnxruntime", "openvino"), default="onnxruntime",
                   help="int8: ONNX Runtime Q/DQ (.onnx) or OpenVINO NNCF (.xml)")
    p.add_argument("--calib-data", type=Path, default=None, metavar="DIR_OR_NPZ",
                   help="int8 calibration inputs: .npy/.npz of preprocessed samples or an image folder "
                        "(default: digits train split for 1x32x32, augmented photos for 3x224x224)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default=None,
                   help="ONNX Runtime calibrator (default minmax)")
    p.add_argument("--num-samples", type=int, default=None, help="calibration samples to use")
    p.add_argument("--for", dest="target", choices=("tensorrt",), default=None,
                   help="int8 only: make the symmetric signed Q/DQ model (int8 activations and per-channel weights, "
                        "zero points 0, float biases) that TensorRT 11 builds strongly typed, checked against "
                        "TensorRT's ONNX parser rules before it is written")
    p.add_argument("-o", "--output", required=True, type=Path, help="file to write (.onnx, or .xml for openvino)")
    p.set_defaults(func=_cmd_quantize)
