"""deploylab build: arguments and handlers."""

from __future__ import annotations

from pathlib import Path

from deploylab.cli._base import EXIT_OK
from deploylab.errors import DeployLabError
from deploylab.paths import refuse_overwriting_inputs


def _cmd_build(args) -> int:
    from deploylab.backends.profiles import ShapeProfile, parse_profile_args, validate_profile

    refuse_overwriting_inputs(args.output, args.model, args.calib)
    for flag, value in (("--min", args.min), ("--opt", args.opt), ("--max", args.max)):
        if value is not None and not value.strip():
            raise DeployLabError(f"{flag} is empty; give a shape such as 1x3x224x224, or leave the flag out")
    if args.min or args.opt or args.max:
        profile = validate_profile(parse_profile_args(min=args.min, opt=args.opt, max=args.max), args.model)
    elif args.backend == "tensorrt":
        profile = validate_profile(ShapeProfile(), args.model)  # passes only for a fully static model
    else:
        profile = ShapeProfile()  # OpenVINO keeps dynamic dims unbounded
    if args.backend == "openvino":
        return _build_openvino(args, profile)
    return _build_tensorrt(args, profile)


def _build_openvino(args, profile) -> int:
    from deploylab.backends.openvino import build_openvino_ir

    if args.precision == "int8":
        raise DeployLabError(
            "OpenVINO runs int8 from a quantized model, not from a build flag; quantize first "
            "(NNCF or ONNX Runtime Q/DQ) and build that model with --precision fp32"
        )
    output = args.output if args.output.suffix == ".xml" else args.output.with_name(args.output.name + ".xml")
    report = build_openvino_ir(args.model, output, profile.shapes or None, reuse=not args.rebuild)
    print(report.format())
    if args.precision != "fp32":
        print(f"note: OpenVINO picks the inference precision when compiling (runtime phase); run with "
              f"OpenVinoRunner(..., precision={args.precision!r})")
    if args.print_trtexec:
        print("(--print-trtexec applies to --backend tensorrt)")
    return EXIT_OK


def _build_tensorrt(args, profile) -> int:
    from deploylab.backends.tensorrt import (
        BuildSettings,
        build_engine_plan,
        detect_tensorrt,
        format_command,
        trtexec_command,
    )

    settings = BuildSettings(args.model, args.output, [profile] if profile.shapes else [], args.precision,
                             args.workspace_mib, calibration_cache=args.calib,
                             strongly_typed=args.strongly_typed)
    _, installed, lean = detect_tensorrt()
    if args.print_trtexec:
        version = args.trt_version or (str(installed) if installed else None)
        if version is None:
            raise DeployLabError("TensorRT is not installed; say which version the command is for with --trt-version, e.g. 10.13 or 11.4")
        command = format_command(trtexec_command(settings, version))
        print(f"# trtexec command for TensorRT {version} (the pip wheels ship no trtexec binary)")
        print(command)
        return EXIT_OK
    report = build_engine_plan(settings)
    print(f"TensorRT plan written: {report.engine_path}")
    return EXIT_OK


def register(sub) -> None:
    from deploylab.backends.registry import builders

    p = sub.add_parser("build", help="build phase: ONNX -> TensorRT plan or OpenVINO IR")
    p.add_argument("model", type=Path, help="ONNX file")
    p.add_argument("--backend", choices=builders(), required=True)
    p.add_argument("-o", "--output", required=True, type=Path, help="plan (.plan) or IR (.xml) to write")
    p.add_argument("--min", default=None, help="profile min shape, e.g. 1x3x224x224 or input:1x3x224x224")
    p.add_argument("--opt", default=None, help="profile opt shape (TensorRT tunes for it)")
    p.add_argument("--max", default=None, help="profile max shape")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default="fp32")
    p.add_argument("--workspace-mib", type=int, default=None, help="TensorRT workspace pool limit (MiB)")
    p.add_argument("--calib", type=Path, default=None, help="TensorRT 10 int8 calibration cache")
    p.add_argument("--strongly-typed", action="store_true", help="TensorRT: precision comes from the model")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command, do not build")
    p.add_argument("--trt-version", default=None, help="TensorRT version for --print-trtexec (default: installed)")
    p.add_argument("--rebuild", action="store_true", help="OpenVINO: rebuild even if a matching IR exists")
    p.set_defaults(func=_cmd_build)
