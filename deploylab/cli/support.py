"""deploylab check-support: arguments and handlers."""

from __future__ import annotations

from pathlib import Path

from deploylab.cli._base import EXIT_CHECK_FAILED, EXIT_OK


def _cmd_check_support(args) -> int:
    from deploylab.backends.registry import parse_backends
    from deploylab.support import check_support

    backends = parse_backends(args.backends)
    report = check_support(args.file, backends, matrix=args.matrix)
    print(report.format())
    return EXIT_OK if report.all_supported else EXIT_CHECK_FAILED


def register(sub) -> None:
    p = sub.add_parser("check-support", help="which backends run every operator of an ONNX file; exit 1 if one does not")
    p.add_argument("file", type=Path, help="ONNX file")
    p.add_argument("--backends", default="onnxruntime,openvino",
                   help="comma-separated backends (default: onnxruntime,openvino; tensorrt: from NVIDIA's table)")
    p.add_argument("--matrix", type=Path, default=None, help="support matrix JSON (default: data/support_matrix.json)")
    p.set_defaults(func=_cmd_check_support)
