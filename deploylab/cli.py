"""The ``deploylab`` command line: thin wrappers over the package's functions.

Bad input ends with one line on stderr and exit status 2, never a traceback; a check
that runs but fails (e.g. parity outside tolerance) exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from deploylab.errors import DeployLabError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; keep it to one line
        self.exit(EXIT_BAD_INPUT, f"deploylab: error: {message} (see `{self.prog} --help`)\n")


def _cmd_export(args) -> int:
    from deploylab.export import export_bundle, verify_export
    from deploylab.models import resolve_model

    bundle = resolve_model(args.model, checkpoint=args.checkpoint, input_shape=args.input_shape,
                           init=args.reference_init)
    print(f"model: {bundle.name} ({bundle.weights}), input {'x'.join(map(str, bundle.input_shape))}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_bundle(bundle, args.output, exporter=args.exporter, opset=args.opset,
                               dynamic_batch=args.dynamic_batch)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(report.format())
    if args.no_verify:
        return EXIT_OK
    parity = verify_export(bundle, report.path, atol=args.atol, rtol=args.rtol)
    print(parity.format())
    if parity.verdict == "DEGENERATE":
        print(f"deploylab export: {_cannot_judge(parity.reason)}", file=sys.stderr)
    return EXIT_OK if parity.passed else EXIT_CHECK_FAILED


def _cmd_inspect(args) -> int:
    from deploylab.onnx_tools import check_onnx, summarize_onnx

    summary = summarize_onnx(args.file)
    check = check_onnx(args.file)
    if args.json:
        data = summary.to_dict()
        data["checker"] = {"valid": check.valid, "error": check.error,
                           "inferred_value_infos": check.inferred_value_infos}
        print(json.dumps(data, indent=2, default=str))
    else:
        print(summary.format())
        verdict = "valid" if check.valid else f"INVALID: {check.error}"
        print(f"checker:     {verdict}; shape inference typed "
              f"{check.inferred_value_infos}/{check.intermediate_tensors} intermediate tensors")
    if args.draw:
        from deploylab.graph_plot import draw_onnx_graph

        draw_onnx_graph(args.file, path=args.draw)
        print(f"graph drawn to {args.draw}")
    return EXIT_OK if check.valid else EXIT_CHECK_FAILED


def _cmd_profile(args) -> int:
    from deploylab.profiling import profile_model

    for value, flag in ((args.batch, "--batch"), (args.runs, "--runs"), (args.top, "--top")):
        if value < 1:
            raise DeployLabError(f"{flag} must be at least 1, got {value}")
    if args.threads is not None and args.threads < 1:
        raise DeployLabError(f"--threads must be at least 1, got {args.threads}")
    if args.backend == "onnxruntime" and args.precision != "fp32":
        raise DeployLabError(f"--precision {args.precision} is an OpenVINO setting; ONNX Runtime runs the precision "
                             "stored in the file (quantize it to change that)")
    report = profile_model(args.model, args.backend, batch_size=args.batch, runs=args.runs, threads=args.threads,
                           precision=None if args.precision == "default" else args.precision)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format(top=args.top))
    return EXIT_OK


def _load_input(path: Path, runner, model_path: Path | None = None) -> tuple[dict, str]:
    """An image (preprocessed as the model file's metadata says, else like mmcls for the
    model's input size) or a .npy array; returns the feed and a line saying which."""
    import numpy as np

    spec = runner.inputs[0]
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise DeployLabError(f"input file {str(path)!r} does not exist")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DeployLabError(f"{str(path)!r} is not a readable .npy array ({exc})") from exc
        if array.ndim == len(spec.shape) - 1:
            array = array[None]  # one sample without its batch dim
        return {spec.name: array}, f"input: {path.name} as given (.npy, no preprocessing)"
    from deploylab.data.preprocess import ImagePreprocessing
    from deploylab.onnx_tools import preprocessing_for_artifact

    prep, source = preprocessing_for_artifact(model_path) if model_path is not None else (None, "")
    channels, height, width = spec.shape[1:] if len(spec.shape) == 4 else (None, None, None)
    if prep is not None:
        if isinstance(height, int) and (prep.crop_size != height or prep.crop_size != width):
            raise DeployLabError(f"{source} makes {prep.crop_size}x{prep.crop_size} inputs, but the model "
                                 f"input is {spec.describe()}; re-export the model")
        return {spec.name: prep.batch([path])}, f"preprocessing: {source}"
    if channels != 3 or not isinstance(height, int) or height != width:
        raise DeployLabError(
            f"{str(path)!r} is an image, but the model input is {spec.describe()}: images are "
            "preprocessed only for square 3-channel inputs; pass the input as a .npy array instead"
        )
    prep = ImagePreprocessing(resize_short=round(height * 256 / 224), crop_size=height)
    return {spec.name: prep.batch([path])}, (
        f"preprocessing: {source}; using the default {prep.name} (resize {prep.resize_short}, crop {height}, "
        "ImageNet mean/std): re-export with deploylab export to record the model's own")


def _cmd_run(args) -> int:
    import numpy as np

    from deploylab.backends.registry import backend_for_artifact, make_runner
    from deploylab.onnx_tools import read_metadata

    runner = make_runner(args.backend or backend_for_artifact(args.model), args.model)
    feed, how = _load_input(args.input, runner, args.model)
    print(how)
    outputs = runner.infer(feed)
    name, scores = next(iter(outputs.items()))
    print(f"{runner.name} on {runner.providers[0] if hasattr(runner, 'providers') else runner.backend}: "
          f"{name} {'x'.join(map(str, scores.shape))}")
    if scores.ndim != 2:
        print(np.array2string(scores, precision=4, threshold=40))
        return EXIT_OK
    from deploylab.postprocess import is_probability, top_k

    classes = None
    labels = read_metadata(args.model).get("labels")
    if labels == "imagenet-1k" or (labels is None and scores.shape[1] == 1000):
        from deploylab.data.images import load_imagenet_classes

        classes = load_imagenet_classes()
    kind = "p" if is_probability(scores) else "softmax"
    for row, predictions in enumerate(top_k(scores, args.topk, classes)):
        if len(scores) > 1:
            print(f"sample {row}:")
        for rank, p in enumerate(predictions, 1):
            print(f"  {rank}. {p.index:>4} {p.label:<32} score={p.score:.4f} {kind}={p.probability:.4f}")
    return EXIT_OK


def _reference_runner(args):
    """--reference: a model spec (PyTorch eager) or an .onnx file; default: the model itself
    in ONNX Runtime without graph optimizations, the most literal reading of the graph."""
    from deploylab.backends.onnxruntime import OnnxRuntimeRunner

    ref = args.reference
    if ref is None:
        if args.model.suffix.lower() != ".onnx":
            raise DeployLabError(
                f"{str(args.model)!r} is a built artifact, not ONNX: give the reference with "
                "--reference MODEL_SPEC (PyTorch) or --reference FILE.onnx"
            )
        return OnnxRuntimeRunner(args.model, optimization="disabled", name="onnxruntime (no optimization)")
    if ref.lower().endswith(".onnx"):
        return OnnxRuntimeRunner(ref, optimization="disabled", name=f"onnxruntime (no optimization):{Path(ref).name}")
    if args.layerwise:
        raise DeployLabError(
            "--layerwise compares two ONNX graphs tensor by tensor; it cannot use a PyTorch "
            "reference. Drop --reference, or give --reference FILE.onnx"
        )
    from deploylab.backends.torch_eager import TorchEagerRunner
    from deploylab.models import resolve_model

    return TorchEagerRunner(resolve_model(ref, checkpoint=args.checkpoint, init=args.reference_init))


def _cannot_judge(reason: str) -> str:
    """The line a user sees for a DEGENERATE verdict: why the check cannot judge, what to do."""
    return (f"DEGENERATE, cannot judge: {reason} (--checkpoint FILE; for a seeded torchvision model "
            "--reference-init realistic, the default, when exporting and comparing)")


def _cmd_compare(args) -> int:
    from deploylab.backends.registry import backend_for_artifact, make_runner, parse_backends
    from deploylab.compare import compare_layerwise, compare_runners

    backends = parse_backends(args.backends or backend_for_artifact(args.model))
    try:
        batches = tuple(int(b) for b in str(args.batch).split(","))
    except ValueError:
        raise DeployLabError(f"--batch {args.batch!r} must be comma-separated integers, e.g. 1,4") from None
    reference = _reference_runner(args)
    failed, degenerate = False, []
    for backend in backends:
        candidate = make_runner(backend, args.model)
        if args.layerwise:
            report = compare_layerwise(reference, candidate, atol=args.atol, rtol=args.rtol)
        else:
            report = compare_runners(reference, candidate, batch_sizes=batches, atol=args.atol, rtol=args.rtol)
            if report.verdict == "DEGENERATE":
                degenerate.append(report.reason)
        print(report.format())
        failed |= not report.passed
    if degenerate:
        print(f"deploylab compare: {_cannot_judge(degenerate[0])}", file=sys.stderr)
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def _cmd_evaluate(args) -> int:
    from deploylab.backends.registry import backend_for_artifact, make_runner
    from deploylab.data.preprocess import ImagePreprocessing
    from deploylab.onnx_tools import preprocessing_for_artifact
    from deploylab.quantize.evaluate import FidelityBudget, evaluate_classifier

    if not 1 <= args.views <= 5000:
        raise DeployLabError(f"--views {args.views} must be between 1 and 5000")
    for flag, value in (("--min-top1-agreement", args.min_top1_agreement), ("--max-kl", args.max_kl)):
        if not 0 <= value <= (1 if flag == "--min-top1-agreement" else float("inf")):
            raise DeployLabError(f"{flag} {value} is out of range (agreement 0..1, KL >= 0)")
    runner = make_runner(args.backend or backend_for_artifact(args.model), args.model)
    prep, source = preprocessing_for_artifact(args.model)
    reference = None
    if args.reference is not None:
        ref = args.reference
        if Path(ref).suffix.lower() in (".onnx", ".xml", ".plan", ".engine"):
            reference = make_runner(backend_for_artifact(Path(ref)), Path(ref))
            if prep is None:
                prep, source = preprocessing_for_artifact(ref)
        else:
            from deploylab.backends.torch_eager import TorchEagerRunner
            from deploylab.models import resolve_model

            bundle = resolve_model(ref, checkpoint=args.checkpoint)
            reference = TorchEagerRunner(bundle)
            if prep is None and bundle.preprocessing is not None:
                prep, source = bundle.preprocessing, f"{bundle.preprocessing.name} (from model {bundle.name})"
    spec = runner.inputs[0]
    if prep is None:
        size = spec.shape[2] if len(spec.shape) == 4 and spec.shape[1] == 3 else None
        if not isinstance(size, int) or spec.shape[3] != size:
            raise DeployLabError(f"{str(args.model)!r} takes {spec.describe()}, not square RGB images: "
                                 "evaluate judges ImageNet classifiers on the shipped photos")
        prep = ImagePreprocessing(resize_short=round(size * 256 / 224), crop_size=size)
        print(f"note: {source}; using the default {prep.name}")
    budget = FidelityBudget(min_top1_agreement=args.min_top1_agreement, max_mean_kl=args.max_kl)
    report = evaluate_classifier(runner, prep, reference, views=args.views, budget=budget)
    print(report.format())
    if reference is None:
        print("give --reference FP32_MODEL (a file or a model spec) to measure fidelity over the views")
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


def _cmd_build(args) -> int:
    from deploylab.backends.profiles import ShapeProfile, parse_profile_args, validate_profile

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


def _cmd_bench(args) -> int:
    from deploylab.backends.registry import backend_for_artifact, make_runner, parse_backends
    from deploylab.batching import check_batch_bounds
    from deploylab.bench import parse_sizes, sweep

    backends = parse_backends(args.backends or backend_for_artifact(args.model))
    batches = parse_sizes(args.batch, "--batch")
    levels = parse_sizes(args.concurrency, "--concurrency") if args.concurrency else ()
    for value, flag in ((args.threads, "--threads"), (args.repeats, "--repeats")):
        if value is not None and value < 1:
            raise DeployLabError(f"{flag} must be at least 1, got {value}")
    if args.seconds is not None and not args.seconds > 0:
        raise DeployLabError(f"--seconds must be a positive number, got {args.seconds}")
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise DeployLabError(f"--plot {str(args.plot)!r} must end in .png, .svg or .pdf")
    if not args.model.is_file():
        raise DeployLabError(f"model file {str(args.model)!r} does not exist")
    # Equal, explicit threads for every engine: a comparison on engines' defaults is not like for like.
    threads = args.threads if args.threads is not None else (os.cpu_count() or 1)
    runners = {}
    for backend in backends:
        options = {}
        if backend == "onnxruntime":
            options["intra_op_threads"] = threads
        elif backend == "openvino":
            options["threads"] = threads
        runners[backend] = make_runner(backend, args.model, **options).activate()
    # Refuse up front when nothing can run: every (backend, batch) pair is out of bounds.
    refusals, runnable = {}, 0
    for backend, runner in runners.items():
        for size in batches:
            try:
                check_batch_bounds(runner, size)
                runnable += 1
            except DeployLabError as exc:
                refusals.setdefault(backend, str(exc))  # the first reason per backend is enough
    if not runnable:
        raise DeployLabError(f"no backend accepts batch size(s) {args.batch}: " + " | ".join(refusals.values()))
    results = sweep(runners, batches, repeats=args.repeats, seconds=args.seconds, concurrency=levels,
                    progress=sys.stderr.isatty())
    print(results.table())
    for name in results.runner_names:
        if len(results.for_runner(name)) > 1:
            print(results.batching_conclusion(name))
    if args.out is not None:
        json_path = results.to_json(args.out)
        csv_path = results.to_csv(Path(args.out).with_suffix(".csv"))
        print(f"results written to {json_path} and {csv_path}")
    if args.plot is not None:
        from deploylab.plots import plot_sweep

        plot_sweep(results, args.plot)
        print(f"plot written to {args.plot}")
    return EXIT_OK


def _cmd_env(args) -> int:
    from deploylab.env import collect_environment, format_environment

    env = collect_environment()
    print(json.dumps(env, indent=2, default=str) if args.json else format_environment(env))
    return EXIT_OK


def _cmd_train_lenet(args) -> int:
    from deploylab.models.lenet import save_lenet_checkpoint, train_lenet

    from deploylab.models.lenet import LENET_CHECKPOINT

    model, report = train_lenet(epochs=args.epochs, seed=args.seed, progress=True)
    path = save_lenet_checkpoint(model, args.output or LENET_CHECKPOINT)
    print(f"LeNet trained in {report.seconds:.1f} s: train accuracy {report.train_accuracy:.2%}, "
          f"test accuracy {report.test_accuracy:.2%}; saved to {path}")
    return EXIT_OK


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


def _cmd_check_support(args) -> int:
    from deploylab.backends.registry import parse_backends
    from deploylab.support import check_support

    backends = parse_backends(args.backends)
    report = check_support(args.file, backends, matrix=args.matrix)
    print(report.format())
    return EXIT_OK if report.all_supported else EXIT_CHECK_FAILED


def build_parser() -> argparse.ArgumentParser:
    from deploylab.models import MODEL_SPEC_HELP

    parser = _Parser(prog="deploylab", description="Deploy PyTorch models: export, inspect, run, compare.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("export", help="export a model to ONNX and check it against PyTorch")
    p.add_argument("model", help=f"model spec: {MODEL_SPEC_HELP}")
    p.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=None, help="opset to request (default: exporter's)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension symbolic")
    p.add_argument("--checkpoint", type=Path, default=None, help="state dict to load (.pth/.pt)")
    p.add_argument("--input-shape", default=None, help="example input shape, e.g. 1x3x224x224")
    p.add_argument("--atol", type=float, default=1e-4, help="parity absolute tolerance")
    p.add_argument("--rtol", type=float, default=1e-3, help="parity relative tolerance")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime parity run")
    p.add_argument("--reference-init", choices=("realistic", "seeded"), default="realistic",
                   help="a torchvision model without --checkpoint: realistic (default; BatchNorm statistics from "
                        "seeded batches, outputs not degenerate) or seeded (torchvision's init, near-zero outputs)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("inspect", help="summarise and check an ONNX file")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--draw", type=Path, default=None, metavar="PNG", help="draw the graph to a PNG")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("run", help="run a model on an image or .npy input and print the top-k")
    p.add_argument("model", type=Path, help="ONNX file, OpenVINO .xml or TensorRT .plan")
    p.add_argument("--input", required=True, type=Path, help="image file (jpg/png/...) or .npy array")
    p.add_argument("--backend", default=None, help="default: chosen from the file type")
    p.add_argument("--topk", type=int, default=5)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("compare", help="compare backends on the same inputs; exit 1 unless every verdict is PASS")
    p.add_argument("model", type=Path, help="ONNX file, OpenVINO .xml or TensorRT .plan")
    p.add_argument("--reference", default=None, metavar="MODEL_SPEC_OR_ONNX",
                   help="PyTorch model spec or .onnx file (default: ONNX Runtime without graph optimizations)")
    p.add_argument("--checkpoint", type=Path, default=None, help="weights for the --reference model")
    p.add_argument("--reference-init", choices=("realistic", "seeded"), default="realistic",
                   help="--reference torchvision:<name> without --checkpoint: realistic (default; as "
                        "`deploylab export` makes it) or seeded (torchvision's init, near-zero outputs)")
    p.add_argument("--backends", default=None, help="comma-separated backends to check (default: from the file type)")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--batch", default="1", help="batch sizes for seeded inputs, e.g. 1,4")
    p.add_argument("--layerwise", action="store_true", help="compare every intermediate tensor")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("evaluate", help="accuracy on the labelled photos and fidelity to a reference; exit 1 unless PASS")
    p.add_argument("model", type=Path, help="ONNX file, OpenVINO .xml or TensorRT .plan of an ImageNet classifier")
    p.add_argument("--reference", default=None, metavar="MODEL_SPEC_OR_FILE",
                   help="the fp32 model to be faithful to: a model spec (PyTorch) or a model file")
    p.add_argument("--checkpoint", type=Path, default=None, help="weights for a --reference model spec")
    p.add_argument("--backend", default=None, help="default: chosen from the file type")
    p.add_argument("--views", type=int, default=320, help="augmented views of the labelled photos (default 320)")
    p.add_argument("--min-top1-agreement", type=float, default=0.99)
    p.add_argument("--max-kl", type=float, default=0.05, help="mean KL(reference || model) bound, nats")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("build", help="build phase: ONNX -> TensorRT plan or OpenVINO IR")
    p.add_argument("model", type=Path, help="ONNX file")
    p.add_argument("--backend", choices=("tensorrt", "openvino"), required=True)
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

    p = sub.add_parser("bench", help="latency and throughput over batch sizes, per backend")
    p.add_argument("model", type=Path, help="ONNX file, OpenVINO .xml or TensorRT .plan")
    p.add_argument("--backends", default=None, help="comma-separated backends, e.g. onnxruntime,openvino "
                   "(default: from the file type)")
    p.add_argument("--batch", default="1,2,4,8,16,32", help="batch sizes, e.g. 1,8,32 (default: 1,2,4,8,16,32)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per runner, the same for every engine (ONNX Runtime intra-op, OpenVINO "
                   "inference threads; default: all logical CPUs)")
    p.add_argument("--seconds", type=float, default=None, help="time budget per point (at least 3 calls; p90 is shown from 20)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per point (default 20)")
    p.add_argument("--concurrency", default=None, metavar="N[,N...]",
                   help="also measure throughput with this many requests in flight, e.g. 2,4")
    p.add_argument("--out", type=Path, default=None, metavar="JSON",
                   help="results JSON to write; a CSV with the same stem goes beside it")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="plot latency/throughput vs batch")
    p.set_defaults(func=_cmd_bench)

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

    p = sub.add_parser("env", help="versions, CPU features and GPUs of this machine")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("train-lenet", help="train the notes' LeNet on sklearn digits")
    p.add_argument("-o", "--output", type=Path, default=None, help="checkpoint to write")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train_lenet)

    p = sub.add_parser("profile", help="per-layer times (and, for OpenVINO, runtime precision per layer)")
    p.add_argument("model", type=Path, help="ONNX file (or OpenVINO .xml for --backend openvino)")
    p.add_argument("--backend", choices=("onnxruntime", "openvino"), default="onnxruntime")
    p.add_argument("--batch", type=int, default=1, help="batch size of the seeded input (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs to average (default 10)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the engine's default)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "default"), default="fp32",
                   help="OpenVINO inference precision (default fp32; 'default' = the device's choice)")
    p.add_argument("--top", type=int, default=10, help="rows of the per-op and slowest-layer tables")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("check-support", help="which backends run every operator of an ONNX file; exit 1 if one does not")
    p.add_argument("file", type=Path, help="ONNX file")
    p.add_argument("--backends", default="onnxruntime,openvino",
                   help="comma-separated backends (default: onnxruntime,openvino; tensorrt: from NVIDIA's table)")
    p.add_argument("--matrix", type=Path, default=None, help="support matrix JSON (default: data/support_matrix.json)")
    p.set_defaults(func=_cmd_check_support)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DeployLabError as exc:
        print(f"deploylab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("deploylab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
