"""deploylab quantize: arguments and handlers."""

from __future__ import annotations

from pathlib import Path

from deploylab.cli._base import EXIT_OK


def _cmd_quantize(args) -> int:
    from deploylab.quantize import quantize_model

    report = quantize_model(args.model, args.output, args.mode, backend=args.backend, target=args.target,
                            calib_data=args.calib_data, calib_method=args.calib_method,
                            num_samples=args.num_samples,
                            on_calibration=lambda source: print(f"calibration data: {source}"))
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
