"""deploylab run, compare, evaluate: arguments and handlers."""

from __future__ import annotations

import sys
from pathlib import Path

from deploylab.cli._base import EXIT_CHECK_FAILED, EXIT_OK, cannot_judge, int_in, parse_sizes, tolerance
from deploylab.errors import DeployLabError
from deploylab.text import shape_text


def _candidate_runner(backend: str, args):
    """The runner under test: ``backend`` on ``args.model``, with ``--providers`` where given."""
    from deploylab.backends.onnxruntime import parse_providers
    from deploylab.backends.registry import make_runner, spec_for

    providers = parse_providers(args.providers) if args.providers else None
    return make_runner(backend, args.model, **spec_for(backend).runner_options(providers=providers))


def _load_input(path: Path, runner, model_path: Path | None = None) -> tuple[dict, str]:
    """An image (preprocessed as the model file's metadata says, else like mmcls for the
    model's input size) or a .npy array; returns the feed and a line saying which."""
    if len(runner.inputs) != 1:
        names = ", ".join(spec.name for spec in runner.inputs) or "none"
        raise DeployLabError(f"{str(model_path or runner.name)!r} has {len(runner.inputs)} inputs ({names}); "
                             "deploylab run feeds exactly one: call the runner from Python for other models")
    spec = runner.inputs[0]
    if path.suffix.lower() == ".npy":
        from deploylab.data.arrays import load_npy

        array = load_npy(path)
        if array.ndim == len(spec.shape) - 1:
            array = array[None]  # one sample without its batch dim
        return {spec.name: array}, f"input: {path.name} as given (.npy, no preprocessing)"
    from deploylab.serve.requests import preprocessing_for_model

    prep, how = preprocessing_for_model(model_path, spec)
    if prep is None:
        raise DeployLabError(
            f"{str(path)!r} is an image, but the model input is {spec.describe()}: images are "
            "preprocessed only for square 3-channel inputs; pass the input as a .npy array instead"
        )
    return {spec.name: prep.batch([path])}, how


def _cmd_run(args) -> int:
    import numpy as np

    from deploylab.backends.registry import backend_for_artifact
    from deploylab.onnx_tools import read_metadata

    runner = _candidate_runner(args.backend or backend_for_artifact(args.model), args)
    feed, how = _load_input(args.input, runner, args.model)
    print(how)
    outputs = runner.infer(feed)
    if not outputs:
        raise DeployLabError(f"{str(args.model)!r} returned no outputs; a model to run needs at least one")
    name, scores = next(iter(outputs.items()))
    print(f"{runner.name} on {runner.providers[0] if hasattr(runner, 'providers') else runner.backend}: "
          f"{name} {shape_text(scores.shape)}")
    if scores.ndim != 2 or scores.shape[1] == 0 or not np.issubdtype(scores.dtype, np.number):
        print(f"not a batch of class scores ({scores.dtype}); the output as it came:")
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


def _cmd_compare(args) -> int:
    from deploylab.backends.registry import backend_for_artifact, parse_backends
    from deploylab.compare import compare_layerwise, compare_runners

    backends = parse_backends(args.backends or backend_for_artifact(args.model))
    batches = parse_sizes(args.batch, "--batch")
    reference = _reference_runner(args)
    failed, degenerate = False, []
    for backend in backends:
        candidate = _candidate_runner(backend, args)
        if args.layerwise:
            report = compare_layerwise(reference, candidate, atol=args.atol, rtol=args.rtol)
        else:
            report = compare_runners(reference, candidate, batch_sizes=batches, atol=args.atol, rtol=args.rtol)
            if report.verdict == "DEGENERATE":
                degenerate.append(report.reason)
        print(report.format())
        failed |= not report.passed
    if degenerate:
        print(f"deploylab compare: {cannot_judge(degenerate[0])}", file=sys.stderr)
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
    runner = _candidate_runner(args.backend or backend_for_artifact(args.model), args)
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


def add_providers_argument(parser) -> None:
    """``--providers``: ONNX Runtime execution providers with their options (see ``parse_providers``)."""
    parser.add_argument("--providers", default=None, metavar="P[:K=V;...],...",
                        help="ONNX Runtime execution providers in order, with options as ORT takes them, e.g. "
                             "cuda:device_id=0,cpu or tensorrt:trt_engine_cache_path=cache,cuda,cpu (default: cpu)")


def register(sub) -> None:
    p = sub.add_parser("run", help="run a model on an image or .npy input and print the top-k")
    p.add_argument("model", type=Path, help="ONNX file, OpenVINO .xml or TensorRT .plan")
    p.add_argument("--input", required=True, type=Path, help="image file (jpg/png/...) or .npy array")
    p.add_argument("--backend", default=None, help="default: chosen from the file type")
    p.add_argument("--topk", type=int_in(1, 1000), default=5)
    add_providers_argument(p)
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
    p.add_argument("--atol", type=tolerance, default=1e-4)
    p.add_argument("--rtol", type=tolerance, default=1e-3)
    p.add_argument("--batch", default="1", help="batch sizes for seeded inputs, e.g. 1,4")
    p.add_argument("--layerwise", action="store_true", help="compare every intermediate tensor")
    add_providers_argument(p)
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
    add_providers_argument(p)
    p.set_defaults(func=_cmd_evaluate)
