"""Problem 3: engines differ in ONNX support - a backend adapter per engine.

Measured here (``data/support_matrix.json``, ONNX's conformance tests): ONNX Runtime
runs ``Det``, OpenVINO 2026.4 has no conversion rule for it ("No conversion rule found
for operations: Det-22"), and NVIDIA documents it as unsupported in TensorRT's ONNX
parser. ``torch.linalg.det`` exports to exactly that node with both exporters, so a
model that normalises homographies by their determinant loads in ONNX Runtime and
nowhere else.

The adapter: while exporting *for* OpenVINO or TensorRT, a rewrite replaces
``torch.linalg.det`` with its cofactor expansion for 2x2 and 3x3 matrices (Mul/Sub on
slices, which every engine runs); for ONNX Runtime the single ``Det`` node stays.
The choice is made at export time by :func:`deploylab.rewrite.rewriting` with
``backend=...``, so one model source serves every engine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploylab.compare import max_abs_error
from deploylab.errors import DeployLabError
from deploylab.problems._common import (
    Attempt,
    Check,
    ExportOutcome,
    ProblemReport,
    eager,
    export_outcome,
)
from deploylab.rewrite import RewriteRegistry, rewriting

#: Adapters chosen per backend at export time.
BACKEND_ADAPTERS = RewriteRegistry("backend adapters")


@BACKEND_ADAPTERS.register_function(torch.linalg, "det", backend=("openvino", "tensorrt"))
def det_by_cofactors(ctx, A, *, out=None):
    """``det`` of 2x2 / 3x3 matrices as products of entries (Det is missing in OpenVINO and TensorRT)."""
    if out is not None or A.dim() < 2 or tuple(A.shape[-2:]) not in ((2, 2), (3, 3)):
        return ctx.original(A) if out is None else ctx.original(A, out=out)
    if A.shape[-1] == 2:
        return A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
    a, b, c = A[..., 0, 0], A[..., 0, 1], A[..., 0, 2]
    d, e, f = A[..., 1, 0], A[..., 1, 1], A[..., 1, 2]
    g, h, i = A[..., 2, 0], A[..., 2, 1], A[..., 2, 2]
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


class NormalizeHomography(nn.Module):
    """Scales each 3x3 homography (batch, 3, 3) to |det| = 1, keeping its sign.

    Uses ``torch.linalg.det``, which exports to ONNX ``Det``.
    """

    def forward(self, h):
        det = torch.linalg.det(h)
        return h / det.abs().pow(1.0 / 3.0)[..., None, None]


def homographies(batch: int, seed: int = 0) -> torch.Tensor:
    """Well-conditioned random homographies: identity plus seeded noise."""
    generator = torch.Generator().manual_seed(seed)
    return torch.eye(3) + 0.3 * torch.randn(batch, 3, 3, generator=generator)


def export_for_backend(module: nn.Module, example: torch.Tensor, path: str | Path, backend: str | None,
                       exporter: str = "dynamo") -> ExportOutcome:
    """Export with :data:`BACKEND_ADAPTERS` active for ``backend`` (None: no adapter)."""
    with rewriting(backend=backend, registry=BACKEND_ADAPTERS):
        return export_outcome(module, (example,), path, exporter, input_names=("h",), dynamic_dims={0: "batch"})


def run_in_backend(path: Path, backend: str, h: np.ndarray) -> np.ndarray:
    """Run the file with deploylab's runner for ``backend``; DeployLabError if it cannot load."""
    from deploylab.backends.registry import make_runner

    with make_runner(backend, path) as runner:
        return runner.infer({runner.input_names[0]: h})[runner.output_names[0]]


def attempt(backend: str, adapt_for: str | None, exporter: str = "dynamo",
            workdir: str | Path | None = None) -> Attempt:
    """Export (with the adapter of ``adapt_for``) and run in ``backend`` at two batch sizes."""
    from deploylab.text import engine_error_summary

    module = NormalizeHomography()
    route = f"{exporter}, adapters for {adapt_for or 'none'} -> {backend}"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(workdir or tmp) / f"homography_{adapt_for or 'plain'}_{exporter}.onnx"
        outcome = export_for_backend(module, homographies(4), path, adapt_for, exporter)
        checks = []
        if outcome.ok:
            for batch, seed in ((4, 1), (7, 2)):
                h = homographies(batch, seed)
                try:
                    got = run_in_backend(outcome.path, backend, h.numpy())
                except DeployLabError as exc:
                    reason = engine_error_summary(str(exc.__cause__)) if exc.__cause__ else str(exc)
                    checks.append(Check(f"batch {batch}", float("inf"), f"{backend} cannot load it: {reason}",
                                        1e-4))
                    continue
                checks.append(Check(f"batch {batch}", max_abs_error(eager(module, h), got), tolerance=1e-4))
    return Attempt("NormalizeHomography", route, outcome, checks)


def demonstrate(exporter: str = "dynamo", workdir: str | Path | None = None) -> ProblemReport:
    """The plain export in both engines, then the file adapted for OpenVINO, and for ONNX Runtime."""
    attempts = [
        attempt("onnxruntime", None, exporter, workdir),
        attempt("openvino", None, exporter, workdir),
        attempt("openvino", "openvino", exporter, workdir),
        attempt("onnxruntime", "onnxruntime", exporter, workdir),
    ]
    lesson = (
        "ONNX Runtime runs Det; OpenVINO has no conversion rule for it and TensorRT's parser documents it "
        "as unsupported. A rewrite registered for backend=('openvino', 'tensorrt') exports the 3x3 "
        "determinant as its cofactor expansion; the ONNX Runtime export keeps the single Det node. "
        "Check a file against every target with `deploylab check-support FILE.onnx`."
    )
    return ProblemReport("Problem 3: engines differ in ONNX support (backend adapters)", attempts, lesson)
