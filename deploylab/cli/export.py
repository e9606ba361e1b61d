"""deploylab export, inspect: arguments and handlers."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from deploylab.cli._base import EXIT_CHECK_FAILED, EXIT_OK, cannot_judge, tolerance
from deploylab.models import MODEL_SPEC_HELP
from deploylab.text import shape_text
from deploylab.paths import refuse_overwriting_inputs


def _cmd_export(args) -> int:
    from deploylab.export import export_bundle, verify_export
    from deploylab.models import resolve_model

    refuse_overwriting_inputs(args.output, args.checkpoint)
    bundle = resolve_model(args.model, checkpoint=args.checkpoint, input_shape=args.input_shape,
                           init=args.reference_init)
    print(f"model: {bundle.name} ({bundle.weights}), input {shape_text(bundle.input_shape)}")
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
        print(f"deploylab export: {cannot_judge(parity.reason)}", file=sys.stderr)
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


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX and check it against PyTorch")
    p.add_argument("model", help=f"model spec: {MODEL_SPEC_HELP}")
    p.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=None, help="opset to request (default: exporter's)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension symbolic")
    p.add_argument("--checkpoint", type=Path, default=None, help="state dict to load (.pth/.pt)")
    p.add_argument("--input-shape", default=None, help="example input shape, e.g. 1x3x224x224")
    p.add_argument("--atol", type=tolerance, default=1e-4, help="parity absolute tolerance")
    p.add_argument("--rtol", type=tolerance, default=1e-3, help="parity relative tolerance")
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
