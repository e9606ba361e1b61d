"""Problem 2: in-place operations on values taken from ``tensor.shape``.

In TorchScript tracing mode the sizes read from ``tensor.shape`` are traced as
tensors, and two names bound to the same size *share that tensor*. ``padded = length;
padded += 2`` is harmless in Python (ints are immutable, ``+=`` rebinds), but traced it
becomes an in-place ``aten::add_`` on the tensor behind ``length`` too - the PyTorch
docs' "Avoid inplace operations when using tensor.shape in tracing mode". Here that
turns a pad of two rows into a pad of ``padded - length = 0`` rows: the exported graph
returns the input unpadded, at every size, without an error. The exporter only prints
a native line to stderr (``In-place op on output of tensor.shape``), which a notebook
or a log file easily loses.

The dynamo exporter traces with symbolic ints (SymInt), which are immutable like
Python ints: the same module exports right. The fix for both is the out-of-place
``padded = length + 2``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from deploylab.problems._common import Attempt, ProblemReport, export_outcome, run_checks

PAD = 2


class PadSequenceInPlace(nn.Module):
    """BROKEN under tracing: appends PAD zero rows to (batch, length, channels), via ``+=``."""

    def forward(self, x):
        length = x.shape[1]
        padded = length
        padded += PAD  # traced: add_ on the size tensor that `length` also names
        pad = x.new_zeros(x.shape[0], padded - length, x.shape[2])
        return torch.cat([x, pad], dim=1)


class PadSequence(nn.Module):
    """FIXED: the same padding with an out-of-place add."""

    def forward(self, x):
        length = x.shape[1]
        padded = length + PAD
        pad = x.new_zeros(x.shape[0], padded - length, x.shape[2])
        return torch.cat([x, pad], dim=1)


def _input(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, length, 3, generator=torch.Generator().manual_seed(seed))


CHECK_SHAPES = ((2, 5), (3, 9))  # (batch, length): the export shape, then another one


def attempt(module: nn.Module, exporter: str, workdir: str | Path | None = None) -> Attempt:
    """Export with dynamic batch and length at (2, 5); check at (2, 5) and (3, 9)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(workdir or tmp) / f"{type(module).__name__}_{exporter}.onnx"
        outcome = export_outcome(module, (_input(*CHECK_SHAPES[0], 0),), path, exporter,
                                 dynamic_dims={0: "batch", 1: "length"})
        checks = []
        if outcome.ok:
            inputs = [(f"batch {b}, length {n}", (_input(b, n, i + 1),)) for i, (b, n) in enumerate(CHECK_SHAPES)]
            checks = run_checks(outcome.path, module, inputs)
    return Attempt(type(module).__name__, exporter, outcome, checks)


def demonstrate(workdir: str | Path | None = None) -> ProblemReport:
    """The in-place pad and its fix, with both exporters."""
    attempts = [attempt(cls(), exporter, workdir)
                for cls in (PadSequenceInPlace, PadSequence) for exporter in ("torchscript", "dynamo")]
    lesson = (
        "TorchScript traces shape values as tensors that aliases share, so `padded += 2` also moved "
        "`length` and the exported pad has 0 rows (output shape wrong at every size, only a native "
        "stderr line as warning). The dynamo exporter's SymInts are immutable and export it right. "
        "Write shape arithmetic out of place (`padded = length + 2`)."
    )
    return ProblemReport("Problem 2: in-place operations on tensor.shape values", attempts, lesson)
