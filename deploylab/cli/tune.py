"""deploylab tune: arguments and handler."""

from __future__ import annotations

import sys
from pathlib import Path

from deploylab.cli._base import EXIT_CHECK_FAILED, EXIT_OK
from deploylab.models import MODEL_SPEC_HELP


def _cmd_tune(args) -> int:
    from deploylab.tune import tune
    from deploylab.tune.search import parse_time_budget

    seconds = parse_time_budget(args.time_budget)  # bad flags fail before anything loads
    if args.out is None:  # the table, plot, report and artifact always land somewhere, and the line says where
        name = Path(args.model).stem if args.model.endswith(".onnx") else args.model
        args.out = Path("tune_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name))
    report = tune(args.model, budget=args.budget, objective=args.objective, batch=args.batch,
                  backends=args.backends.split(","), precisions=args.precisions.split(","), time_budget=seconds,
                  out=args.out, checkpoint=args.checkpoint, allow_unjudged=args.allow_unjudged, views=args.views,
                  progress=sys.stderr.isatty(), calib_data=args.calib_data)
    from deploylab.env import machine_line

    print(f"machine: {machine_line(report.environment)}")
    print(f"held out: {report.held_out}; reference: {report.reference}")
    if report.held_out_warning:
        print(f"warning: {report.held_out_warning}", file=sys.stderr)
    print(report.table())
    print(report.conclusion())
    print(f"tune took {report.seconds:.0f} s (time budget {report.time_budget:.0f} s)")
    written = ["tune.json"] + (["pareto.png"] if report.measured else [])
    if report.winner_file is not None:
        written.append(report.winner_file.name)
    print(f"written to {args.out}: {', '.join(written)}" + ("" if report.winner_file else " (no winner)"))
    return EXIT_OK if report.winner is not None else EXIT_CHECK_FAILED


def register(sub) -> None:
    p = sub.add_parser("tune", help="the fastest deployment here that keeps a fidelity budget, engines x precisions "
                                    "x settings")
    p.add_argument("model", help=f"model spec ({MODEL_SPEC_HELP}) or an ONNX file")
    p.add_argument("--budget", default="top1-agreement>=0.99",
                   help="fidelity to keep against fp32 on held-out inputs: top1-agreement>=N, top5-overlap>=N, "
                        "accuracy-drop<=POINTS, kl<=N or max-abs-error<=N (default top1-agreement>=0.99)")
    p.add_argument("--objective", choices=("latency", "throughput"), default="latency",
                   help="latency: median ms per call; throughput: items/s with requests in flight")
    p.add_argument("--batch", type=int, default=1, help="batch size to deploy at (default 1)")
    p.add_argument("--backends", default="onnxruntime,openvino,tensorrt", help="engines to consider")
    p.add_argument("--precisions", default="fp32,bf16,fp16,int8", help="precisions to consider")
    p.add_argument("--time-budget", default="180s", help="time for the whole search, e.g. 180s or 3m; candidates "
                   "that do not fit are reported as not measured (cheapest are built first)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for tune.json, pareto.png and the winner's artifact (default: tune_MODEL in the "
                        "current folder)")
    p.add_argument("--checkpoint", type=Path, default=None, help="state dict for a model spec (.pth/.pt)")
    p.add_argument("--views", type=int, default=None,
                   help="held-out photo views to judge on (default 320; digits models use the whole test split)")
    p.add_argument("--calib-data", type=Path, default=None, metavar="DIR_OR_NPZ",
                   help="int8 calibration inputs: .npy/.npz of preprocessed samples or an image folder (default: "
                        "the built-in set for the input shape)")
    p.add_argument("--allow-unjudged", action="store_true",
                   help="when the fp32 model gives one class for every held-out input (seeded weights), choose by "
                        "speed alone instead of choosing nothing")
    p.set_defaults(func=_cmd_tune)
