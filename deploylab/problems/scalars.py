"""Problem 1: numpy or Python scalars inside ``forward`` become constants.

An exporter records tensor operations. A number computed *outside* torch (``np.sqrt``
of a shape, ``float(x.size(2))``, ``math.sqrt``) is just a Python value at trace time:
it is written into the graph as the constant it happened to be for the example input.

- TorchScript exporter: the tracer notices the tensor-to-Python conversion and says so
  with a ``TracerWarning``, then freezes the value. With ``dynamic_axes`` the input
  *accepts* other sizes, and silently computes with the old constant: wrong numbers.
- dynamo exporter: ``torch.export`` sees the dimension become a constant and rejects
  the dynamic dimension; ``torch.onnx.export`` then quietly re-exports with that
  dimension fixed (it refines ``dynamic_shapes`` from torch.export's suggested fix, see
  ``TorchExportNonStrictStrategy`` in torch/onnx/_internal/exporter/_capture_strategies.py).
  The file's input is static and ONNX Runtime refuses any other size.

The fix keeps the arithmetic in torch: ``torch.scalar_tensor(x.shape[-1]).sqrt()`` is
traced as Shape -> Gather -> Cast -> Sqrt and follows the input.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from deploylab.errors import DeployLabError
from deploylab.problems._common import Attempt, ProblemReport, export_outcome, run_checks

DEFAULT_SHAPE = (2, 4, None)  # (batch, tokens, features); None: the size that varies
DEFAULT_SIZES = (16, 64)


class ScaleByNumpy(nn.Module):
    """BROKEN: attention-style scaling ``x / sqrt(d)`` with ``d`` through numpy."""

    def forward(self, x):
        return x / np.sqrt(x.shape[-1])


class ScaleByPythonFloat(nn.Module):
    """BROKEN: the same with ``float(x.size(-1)) ** 0.5`` (a Python float)."""

    def forward(self, x):
        return x / float(x.size(-1)) ** 0.5


class ScaleByMath(nn.Module):
    """BROKEN: the same with ``math.sqrt`` on the shape."""

    def forward(self, x):
        return x / math.sqrt(x.shape[-1])


class ScaleByTensor(nn.Module):
    """FIXED: the size becomes a tensor first, so the square root is a graph op."""

    def forward(self, x):
        d = torch.scalar_tensor(x.shape[-1], dtype=x.dtype, device=x.device)
        return x / d.sqrt()


BROKEN_MODULES = (ScaleByNumpy, ScaleByPythonFloat, ScaleByMath)
FIXED_MODULE = ScaleByTensor


class SizeCheck(NamedTuple):
    """Error of the exported model at one size of the varying dimension."""

    size: int
    max_abs_error: float  # inf when ONNX Runtime refuses that size


def _input(shape: tuple, size: int, seed: int) -> torch.Tensor:
    dims = tuple(size if d is None else d for d in shape)
    return torch.rand(dims, generator=torch.Generator().manual_seed(seed)) + 0.5


def _varying_axis(shape: tuple) -> int:
    axes = [i for i, d in enumerate(shape) if d is None]
    if len(axes) != 1:
        raise DeployLabError(f"shape {shape!r} must have exactly one None (the dimension that varies)")
    return axes[0]


def export_at_size(module: nn.Module, size: int, exporter: str, path: str | Path,
                   shape: tuple = DEFAULT_SHAPE):
    """Export ``module`` with the varying dim at ``size`` and declared dynamic."""
    axis = _varying_axis(shape)
    return export_outcome(module, (_input(shape, size, 0),), path, exporter, dynamic_dims={axis: "length"})


def attempt_at_sizes(module: nn.Module, sizes=DEFAULT_SIZES, exporter: str = "dynamo",
                     shape: tuple = DEFAULT_SHAPE, workdir: str | Path | None = None) -> Attempt:
    """Export at ``sizes[0]``, run ONNX Runtime at every size, compare with eager."""
    if not sizes:
        raise DeployLabError("sizes must list at least one size; the first is the export size")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(workdir or tmp) / f"{type(module).__name__}_{exporter}.onnx"
        outcome = export_at_size(module, sizes[0], exporter, path, shape)
        checks = []
        if outcome.ok:
            inputs = [(f"size {s}" + (" (export size)" if i == 0 else ""), (_input(shape, s, 1 + i),))
                      for i, s in enumerate(sizes)]
            checks = run_checks(outcome.path, module, inputs)
        attempt = Attempt(type(module).__name__, exporter, outcome, checks)
    return attempt


def check_export_at_sizes(module: nn.Module, sizes=DEFAULT_SIZES, exporter: str = "dynamo",
                          shape: tuple = DEFAULT_SHAPE, workdir: str | Path | None = None) -> list[SizeCheck]:
    """Export ``module`` at ``sizes[0]`` (that dim dynamic), run ORT at each size, compare to eager.

    Returns ``[(size, max_abs_err), ...]``; ``inf`` where ONNX Runtime refuses the
    size (the exporter fixed the dim) or the output shape differs. Raises
    DeployLabError when the export itself fails.
    """
    attempt = attempt_at_sizes(module, sizes, exporter, shape, workdir)
    if not attempt.export.ok:
        raise DeployLabError(f"{type(module).__name__} did not export with {exporter}: {attempt.export.error}")
    return [SizeCheck(size, check.max_abs_error) for size, check in zip(sizes, attempt.checks)]


def demonstrate(sizes=DEFAULT_SIZES, workdir: str | Path | None = None) -> ProblemReport:
    """Every broken variant and the fix, with both exporters, checked at each size."""
    attempts = []
    for cls in (*BROKEN_MODULES, FIXED_MODULE):
        for exporter in ("torchscript", "dynamo"):
            attempts.append(attempt_at_sizes(cls(), sizes, exporter, workdir=workdir))
    lesson = (
        "Numbers computed with numpy, math or float() are constants to an exporter. TorchScript warns "
        "(TracerWarning) and keeps the dim dynamic, so other sizes run and are silently wrong; dynamo fixes "
        "the dim instead, so other sizes are refused. Keep shape arithmetic in torch ops "
        "(torch.scalar_tensor(x.shape[-1]).sqrt()) and both exporters follow the input."
    )
    return ProblemReport("Problem 1: numpy / Python scalars in forward", attempts, lesson)
