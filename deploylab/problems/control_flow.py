"""Problem 5: data-dependent branches and loops.

``if x.sum() > 0`` and ``while x.abs().max() > 1`` decide *on values*. Tracing runs
the model once, so:

- TorchScript exporter (tracing): records the path the example took, warns
  ``TracerWarning: Converting a tensor to a Python boolean``, and exports a graph that
  always takes that path: right for inputs like the example, wrong for the others.
- dynamo exporter: ``torch.export`` refuses to guess and the export fails
  (a data-dependent guard it cannot resolve).

Three fixes, each checked on both paths in ONNX Runtime:

1. **control-flow operators from torch**: ``torch.cond(pred, true_fn, false_fn, ops)``
   and ``torch.while_loop(cond_fn, body_fn, carried)`` are captured by ``torch.export``
   and the dynamo exporter writes ONNX ``If`` / ``Loop``;
2. **scripting** with the old exporter: ``torch.jit.script(module)`` compiles the Python
   ``if``/``while`` and ``torch.onnx.export(..., dynamo=False)`` writes ``If``/``Loop``;
3. **no control flow at all**: compute both branches and select with ``torch.where``,
   or find a closed form for the loop (here the number of halvings is
   ``ceil(log2(max|x|))``). Engines like this best: TensorRT documents restrictions on
   ``If`` and ``Loop`` (see NVIDIA's table in ``data/tensorrt_onnx_ops.json``, read by :func:`deploylab.support.nvidia.tensorrt_op_table`), none on ``Where``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from deploylab.problems._common import Attempt, ProblemReport, export_outcome, run_checks


# ---------------------------------------------------------------- a branch
class SignBranch(nn.Module):
    """BROKEN when traced: doubles x if its sum is positive, else subtracts 1."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class SignBranchCond(nn.Module):
    """FIXED for dynamo: the branch as ``torch.cond`` -> ONNX If."""

    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: t * 2, lambda t: t - 1, (x,))


class SignBranchWhere(nn.Module):
    """FIXED for both exporters: both branches computed, ``torch.where`` selects."""

    def forward(self, x):
        return torch.where(x.sum() > 0, x * 2, x - 1)


# ---------------------------------------------------------------- a loop
class HalveUntilSmall(nn.Module):
    """BROKEN when traced: halves x until max|x| <= 1 (data-dependent trip count)."""

    def forward(self, x):
        while x.abs().max() > 1:
            x = x / 2
        return x


class HalveWhileLoop(nn.Module):
    """FIXED for dynamo: the loop as ``torch.while_loop`` -> ONNX Loop."""

    def forward(self, x):
        return torch.while_loop(lambda t: t.abs().max() > 1, lambda t: (t / 2,), (x,))[0]


class HalveClosedForm(nn.Module):
    """FIXED for both exporters: k = ceil(log2(max|x|)) halvings at once, no loop."""

    def forward(self, x):
        k = torch.ceil(torch.log2(x.abs().max())).clamp(min=0)
        return x / torch.pow(2.0, k)


def _seeded(shape, scale: float, offset: float, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * scale + offset


BRANCH_EXAMPLE = _seeded((2, 3), 1.0, 0.5, 0)  # sum > 0: the "true" path
BRANCH_CHECKS = (
    ("sum > 0 (path of the example)", (_seeded((2, 3), 1.0, 0.5, 1),)),
    ("sum <= 0 (the other path)", (_seeded((2, 3), 1.0, -1.5, 2),)),
)
LOOP_EXAMPLE = _seeded((2, 3), 1.0, 2.0, 0)  # max|x| in (2, 3): two halvings
LOOP_CHECKS = (
    ("max|x| in (2, 3): 2 halvings, like the example", (_seeded((2, 3), 1.0, 2.0, 1),)),
    ("max|x| < 1: no halving", (_seeded((2, 3), 0.5, 0.0, 2),)),
    ("max|x| in (40, 50): 6 halvings", (_seeded((2, 3), 10.0, 40.0, 3),)),
)


SCRIPTED = "torchscript (torch.jit.script)"


def attempt(module: nn.Module, route: str, example: torch.Tensor, checks,
            workdir: str | Path | None = None) -> Attempt:
    """``route``: "torchscript" (tracing), "dynamo", or "torchscript (torch.jit.script)"."""
    name = type(module).__name__
    scripted = route == SCRIPTED
    notes = []
    exported = module
    if scripted:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exported = torch.jit.script(module)  # deprecated since torch 2.9 (FutureWarning), still works
        notes = [f"{w.category.__name__}: {w.message}" for w in caught]
    exporter = "dynamo" if route == "dynamo" else "torchscript"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(workdir or tmp) / f"{name}_{exporter}{'_scripted' if scripted else ''}.onnx"
        outcome = export_outcome(exported, (example,), path, exporter)
        outcome.warnings[:0] = notes
        results = run_checks(outcome.path, module, checks) if outcome.ok else []
    return Attempt(name, route, outcome, results)



def demonstrate_branch(workdir: str | Path | None = None) -> ProblemReport:
    attempts = [
        attempt(SignBranch(), "torchscript", BRANCH_EXAMPLE, BRANCH_CHECKS, workdir),
        attempt(SignBranch(), "dynamo", BRANCH_EXAMPLE, BRANCH_CHECKS, workdir),
        attempt(SignBranchCond(), "dynamo", BRANCH_EXAMPLE, BRANCH_CHECKS, workdir),
        attempt(SignBranch(), SCRIPTED, BRANCH_EXAMPLE, BRANCH_CHECKS, workdir),
        attempt(SignBranchWhere(), "dynamo", BRANCH_EXAMPLE, BRANCH_CHECKS, workdir),
        attempt(SignBranchWhere(), "torchscript", BRANCH_EXAMPLE, BRANCH_CHECKS, workdir),
    ]
    lesson = (
        "Tracing bakes the branch the example took (TracerWarning, wrong on the other path); torch.export "
        "refuses the data-dependent `if`. torch.cond (dynamo) and torch.jit.script (TorchScript) export an "
        "ONNX If; torch.where needs no control flow at all."
    )
    return ProblemReport("Problem 5a: a data-dependent branch", attempts, lesson)


def demonstrate_loop(workdir: str | Path | None = None) -> ProblemReport:
    attempts = [
        attempt(HalveUntilSmall(), "torchscript", LOOP_EXAMPLE, LOOP_CHECKS, workdir),
        attempt(HalveUntilSmall(), "dynamo", LOOP_EXAMPLE, LOOP_CHECKS, workdir),
        attempt(HalveWhileLoop(), "dynamo", LOOP_EXAMPLE, LOOP_CHECKS, workdir),
        attempt(HalveUntilSmall(), SCRIPTED, LOOP_EXAMPLE, LOOP_CHECKS, workdir),
        attempt(HalveClosedForm(), "dynamo", LOOP_EXAMPLE, LOOP_CHECKS, workdir),
        attempt(HalveClosedForm(), "torchscript", LOOP_EXAMPLE, LOOP_CHECKS, workdir),
    ]
    lesson = (
        "Tracing unrolls the loop as often as the example needed (2 halvings), wrong for any other count; "
        "torch.export refuses the data-dependent `while`. torch.while_loop (dynamo) and torch.jit.script "
        "(TorchScript) export an ONNX Loop; the closed form ceil(log2(max|x|)) needs no loop."
    )
    return ProblemReport("Problem 5b: a loop with a data-dependent trip count", attempts, lesson)


def demonstrate(workdir: str | Path | None = None) -> list[ProblemReport]:
    return [demonstrate_branch(workdir), demonstrate_loop(workdir)]
