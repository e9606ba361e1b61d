"""The seed's five common deployment problems, each as a broken module and its fix.

=====================================================  ==========================  ===========================
problem (seed item 9)                                  broken                      fixed
=====================================================  ==========================  ===========================
(a) numpy / Python scalars in ``forward``              ``scalars.ScaleByNumpy``    ``scalars.ScaleByTensor``
(b) in-place ops on ``tensor.shape`` values            ``inplace.PadSequenceInPlace``  ``inplace.PadSequence``
(c) engines differ in ONNX support                     ``adapters.NormalizeHomography`` + ``BACKEND_ADAPTERS``
(d) engines lag behind new operators                   ``custom_ops.SoftClipNet`` + symbolic / translation + PyOp
(e) dynamic control flow                               ``control_flow.SignBranch``, ``HalveUntilSmall``
                                                       -> ``torch.cond``/``torch.while_loop``, scripting, ``torch.where``
=====================================================  ==========================  ===========================

Each module has a ``demonstrate()`` that exports the broken and the fixed versions with
both exporters, runs the files in ONNX Runtime (or OpenVINO) on inputs chosen to hit
the problem, and returns a :class:`ProblemReport` whose attempts say *right* or
*broken* with the measured error. Exports go to a temporary folder unless ``workdir``
is given.
"""

from deploylab.problems._common import Attempt, Check, ExportOutcome, ProblemReport, export_module
from deploylab.problems.scalars import SizeCheck, check_export_at_sizes

__all__ = [
    "Attempt",
    "Check",
    "ExportOutcome",
    "ProblemReport",
    "SizeCheck",
    "check_export_at_sizes",
    "demonstrate_all",
    "export_module",
]


def demonstrate_all(workdir=None) -> list[ProblemReport]:
    """All five problems (six reports: control flow has a branch and a loop), ~1 minute on 2 cores."""
    from deploylab.problems import adapters, control_flow, custom, inplace, scalars

    return [scalars.demonstrate(workdir=workdir), inplace.demonstrate(workdir), adapters.demonstrate(workdir=workdir),
            custom.demonstrate(workdir), *control_flow.demonstrate(workdir)]
