"""Problem 4: engines lag behind new operators - a custom operator end to end.

The machinery lives in :mod:`deploylab.custom_ops`; this module shows it: the export
failing without a symbolic / translation, succeeding with one (a ``SoftClip`` node in
domain ``ai.deploylab``), plain ONNX Runtime refusing the file, and ONNX Runtime with
the onnxruntime-extensions PyOp computing what PyTorch computes, at two batch sizes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from deploylab.compare import max_abs_error
from deploylab.custom_ops import (
    TENSORRT_PLUGIN_NOTES,
    SoftClipNet,
    custom_op_export_settings,
    retarget_domain,
    run_custom_op_model,
)
from deploylab.errors import DeployLabError
from deploylab.problems._common import (
    Attempt,
    Check,
    ExportOutcome,
    ProblemReport,
    eager,
    export_outcome,
    ort_session,
)

CHECK_BATCHES = (3, 5)


def _x(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 8, generator=torch.Generator().manual_seed(seed))


def export_with_custom_op(model: torch.nn.Module, example: torch.Tensor, path: str | Path,
                          exporter: str = "dynamo", with_translation: bool = True) -> ExportOutcome:
    """Export ``model`` containing ``deploylab::soft_clip`` (batch dim dynamic).

    ``with_translation=False`` shows what happens without the symbolic / translation
    table (the export fails).
    """
    options, context = custom_op_export_settings(exporter, with_translation)
    with context:
        return export_outcome(model, (example,), path, exporter, dynamic_dims={0: "batch"}, **options)


def attempt(exporter: str, with_translation: bool, workdir: str | Path | None = None) -> Attempt:
    """Export SoftClipNet; when it exports, run it in plain ORT (expected to fail) and with the PyOp."""
    model = SoftClipNet().eval()
    route = f"{exporter} {'with' if with_translation else 'without'} " + (
        "custom_translation_table" if exporter == "dynamo" else "register_custom_op_symbolic")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(workdir or tmp)
        path = folder / f"softclip_{exporter}{'' if with_translation else '_plain'}.onnx"
        outcome = export_with_custom_op(model, _x(2, 0), path, exporter, with_translation)
        checks, notes = [], []
        if outcome.ok:
            try:
                ort_session(outcome.path)
                notes.append("plain ONNX Runtime loaded it")
            except DeployLabError as exc:
                notes.append(f"plain ONNX Runtime refuses it: {str(exc)[:200]}")
            contrib = retarget_domain(outcome.path, folder / f"{path.stem}_contrib.onnx")
            for i, batch in enumerate(CHECK_BATCHES):
                x = _x(batch, i + 1)
                got = run_custom_op_model(contrib, x.numpy())
                checks.append(Check(f"ORT + extensions PyOp, batch {batch}", max_abs_error(eager(model, x), got),
                                    tolerance=1e-5))
    return Attempt("SoftClipNet", route, outcome, checks, notes)


def demonstrate(workdir: str | Path | None = None) -> ProblemReport:
    attempts = [attempt(exporter, translated, workdir)
                for exporter in ("torchscript", "dynamo") for translated in (False, True)]
    lesson = (
        "A torch.library custom op with register_fake traces, but no exporter knows its ONNX form. A "
        "TorchScript symbolic (register_custom_op_symbolic, active only while exporting) or a dynamo "
        "custom_translation_table entry (onnxscript, with the op's schema registered) emits "
        "ai.deploylab::SoftClip. Plain ONNX Runtime cannot load it; with onnxruntime-extensions' library "
        "and a PyOp (domain ai.onnx.contrib, so the node is retargeted) it matches PyTorch.\n\n"
        + TENSORRT_PLUGIN_NOTES
    )
    return ProblemReport("Problem 4: custom operators", attempts, lesson)
