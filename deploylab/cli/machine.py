"""deploylab env, train-lenet, profile: arguments and handlers."""

from __future__ import annotations

import json
from pathlib import Path

from deploylab.cli._base import EXIT_OK, MAX_BATCH, check_threads, int_in
from deploylab.errors import DeployLabError


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


def _cmd_profile(args) -> int:
    from deploylab.profiling import profile_model

    for value, flag in ((args.batch, "--batch"), (args.runs, "--runs"), (args.top, "--top")):
        if value < 1:
            raise DeployLabError(f"{flag} must be at least 1, got {value}")
    if args.threads is not None and args.threads < 1:
        raise DeployLabError(f"--threads must be at least 1, got {args.threads}")
    check_threads(args.threads)
    if args.batch > MAX_BATCH:
        raise DeployLabError(f"--batch must be at most {MAX_BATCH}, got {args.batch}")
    if args.backend == "onnxruntime" and args.precision != "fp32":
        raise DeployLabError(f"--precision {args.precision} is an OpenVINO setting; ONNX Runtime runs the precision "
                             "stored in the file (quantize it to change that)")
    report = profile_model(args.model, args.backend, batch_size=args.batch, runs=args.runs, threads=args.threads,
                           precision=None if args.precision == "default" else args.precision)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format(top=args.top))
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("env", help="versions, CPU features and GPUs of this machine")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("train-lenet", help="train the notes' LeNet on sklearn digits")
    p.add_argument("-o", "--output", type=Path, default=None, help="checkpoint to write")
    p.add_argument("--epochs", type=int_in(1, 10000), default=40)
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
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
