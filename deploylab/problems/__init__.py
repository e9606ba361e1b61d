"""The five common deployment problems of the notes this course follows (*MMDeploy notes 1:
deployment basics*), each as a broken module and its fix.

- (a) numpy / Python scalars in ``forward`` -> :mod:`.scalars`:
  ``ScaleByNumpy`` (also ``ScaleByPythonFloat``, ``ScaleByMath``) -> ``ScaleByTensor``;
- (b) in-place ops on ``tensor.shape`` values -> :mod:`.inplace`:
  ``PadSequenceInPlace`` -> ``PadSequence``;
- (c) engines differ in ONNX support -> :mod:`.adapters`: ``NormalizeHomography``
  (ONNX ``Det``) plus ``BACKEND_ADAPTERS``, a rewrite active for OpenVINO/TensorRT only;
- (d) engines lag behind new operators -> :mod:`.custom` over :mod:`deploylab.custom_ops`:
  ``SoftClipNet`` with a torch.library op, symbolic / translation table, PyOp kernel;
- (e) dynamic control flow -> :mod:`.control_flow`: ``SignBranch``, ``HalveUntilSmall``
  -> ``torch.cond`` / ``torch.while_loop``, ``torch.jit.script``, ``torch.where`` / closed form.

Each module has a ``demonstrate()`` that exports the broken and the fixed versions with
both exporters, runs the files in ONNX Runtime (or OpenVINO) on inputs chosen to hit
the problem, and returns a :class:`ProblemReport` whose attempts say *right* or
*broken* with the measured error. Exports go to a temporary folder unless ``workdir``
is given.
"""

from deploylab.problems._common import DYNAMO_STEPS, Attempt, Check, ExportOutcome, ProblemReport, export_outcome
from deploylab.problems.scalars import SizeCheck, check_export_at_sizes

export_module = export_outcome  # the name before deploylab.export.run_exporter became the one exporter core

__all__ = [
    "DYNAMO_STEPS",
    "Attempt",
    "Check",
    "ExportOutcome",
    "ProblemReport",
    "SizeCheck",
    "check_export_at_sizes",
    "demonstrate_all",
    "export_module",
    "export_outcome",
]


def demonstrate_all(workdir=None) -> list[ProblemReport]:
    """All five problems (six reports: control flow has a branch and a loop), ~1 minute on 2 cores."""
    from deploylab.problems import adapters, control_flow, custom, inplace, scalars

    return [scalars.demonstrate(workdir=workdir), inplace.demonstrate(workdir), adapters.demonstrate(workdir=workdir),
            custom.demonstrate(workdir), *control_flow.demonstrate(workdir)]
