"""What every problem demo needs: export quietly but keep what the exporter said, run in ORT.

The demos export small modules with settings :func:`deploylab.export.export_onnx` does
not expose (a dynamic dimension other than the batch, scripted modules, custom
translation tables) and must show a failed export instead of raising, so they call the
exporter core :func:`deploylab.export.run_exporter` and keep its warnings, its log and
the native (C++) messages the TorchScript exporter prints straight to the process's stderr.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deploylab.compare import max_abs_error
from deploylab.errors import DeployLabError, EngineError
from deploylab.export import run_exporter
from deploylab.text import first_line

_NOISE = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)

#: The dynamo exporter's three steps, as its errors number them ("This is step N/3" in
#: torch/onnx/_internal/exporter/_core.py, torch 2.14). With ``verify=True`` it then runs
#: the ONNX checker, ONNX Runtime and an output comparison.
DYNAMO_STEPS = {
    1: "capture: torch.export.export turns the module into an ExportedProgram",
    2: "decomposition: the program is lowered to the ATen ops the ONNX translator knows",
    3: "translation: each ATen op becomes ONNX through the registry (torchlib, custom_translation_table)",
}


@dataclass
class ExportOutcome:
    """One export attempt: the file (or the error), the warnings, the exporter's log."""

    exporter: str
    path: Path | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    log: str = ""
    native_log: str = ""
    ops: list[str] = field(default_factory=list)  # op types of the main graph, in order
    input_shapes: dict[str, list] = field(default_factory=dict)  # ints, or names for symbolic dims

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failed_step(self) -> int | None:
        """Which of :data:`DYNAMO_STEPS` failed, read from the dynamo exporter's error; None otherwise."""
        import re

        match = re.search(r"This is step (\d)/3", self.error or "")
        return int(match.group(1)) if match else None

    @property
    def tracer_warnings(self) -> list[str]:
        return [w for w in self.warnings if w.startswith("TracerWarning")]

    def format(self) -> str:
        if not self.ok:
            return f"{self.exporter}: export FAILED: {self.error}"
        lines = [f"{self.exporter}: {self.path.name}, inputs {self.input_shapes}, ops {' '.join(self.ops)}"]
        lines += [f"  warning: {w[:160]}" for w in self.warnings]
        lines += [f"  native: {ln}" for ln in self.native_log.splitlines() if ln.strip()]
        return "\n".join(lines)


def export_outcome(
    module: torch.nn.Module,
    args: Sequence,
    path: str | Path,
    exporter: str = "dynamo",
    *,
    dynamic_dims: Mapping[int, str] | None = None,
    opset: int | None = None,
    input_names: Sequence[str] = ("x",),
    output_names: Sequence[str] = ("y",),
    **options,
) -> ExportOutcome:
    """Export ``module(*args)`` to ``path`` with :func:`deploylab.export.run_exporter`; never
    raises for an exporter failure (the outcome carries its message, warnings and logs).

    ``dynamic_dims`` maps axes of the first input to names (e.g. ``{0: "batch", 2:
    "length"}``). ``opset`` None means 17 for TorchScript (an opset of that exporter's era,
    If/Loop well supported) and the default (>= 18) for dynamo. ``options`` go to
    ``torch.onnx.export`` as they are (``custom_translation_table``, ``custom_opsets``, ...).
    """
    if exporter == "torchscript" and opset is None:
        opset = 17
    run = run_exporter(module, args, path, exporter=exporter, opset=opset, input_names=input_names,
                       output_names=output_names, dynamic_dims=dynamic_dims, capture=True, capture_native=True,
                       **options)
    error = None if run.error is None else _first_lines(run.error)
    messages = [w for w in run.warnings if not any(n in w for n in _NOISE)]
    outcome = ExportOutcome(exporter, None if error else run.path, error, messages, run.log, run.native_log)
    if error is None:
        outcome.ops, outcome.input_shapes = read_graph(run.path)
    return outcome


def read_graph(path: str | Path) -> tuple[list[str], dict[str, list]]:
    """Op types of the main graph (``domain::Op`` outside ONNX) and the input dims of a file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = [n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in model.graph.node]
    init = {i.name for i in model.graph.initializer}
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in model.graph.input if v.name not in init}
    return ops, shapes


def _first_lines(exc: BaseException) -> str:
    """The first line of an exporter error plus the most specific cause, ANSI colours removed."""
    import re

    def clean(error: BaseException) -> str:
        return first_line(re.sub(r"\x1b\[[0-9;]*m", "", str(error)), limit=480)

    head = clean(exc) or type(exc).__name__
    cause = exc.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not None:
        cause_line = clean(cause)
        if cause_line and cause_line != head:
            head = f"{head} [cause: {type(cause).__name__}: {first_line(cause_line, limit=240)}]"
    return f"{type(exc).__name__}: {head[:480]}"


def ort_session(path: str | Path, options=None):
    """A CPU ONNX Runtime session; errors become DeployLabError with the engine's reason."""
    from deploylab.backends.onnxruntime import new_session

    try:
        return new_session(path, options, providers=["CPUExecutionProvider"])
    except EngineError as exc:
        raise DeployLabError(f"ONNX Runtime cannot load {Path(path).name}: {exc.engine_text.strip()[:300]}") from exc


def run_onnx(path: str | Path, *inputs: np.ndarray, options=None) -> list[np.ndarray]:
    """Run an ONNX file in ONNX Runtime (CPU) on positional inputs."""
    session = ort_session(path, options)
    feed = {i.name: np.ascontiguousarray(x) for i, x in zip(session.get_inputs(), inputs)}
    return session.run(None, feed)


def eager(module: torch.nn.Module, *inputs) -> np.ndarray:
    """``module(*inputs)`` under no_grad on copies of the inputs (some broken modules mutate them)."""
    with torch.no_grad():
        out = module(*[x.clone() if isinstance(x, torch.Tensor) else x for x in inputs])
    return out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


# ---------------------------------------------------------------- reporting
@dataclass
class Check:
    """One input the exported model was run on: how far it landed from eager PyTorch."""

    label: str
    max_abs_error: float  # inf: the engine refused the input, or the output shape differs
    note: str = ""
    tolerance: float = 1e-5

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance

    def format(self) -> str:
        verdict = "right" if self.passed else "WRONG"
        err = "n/a" if self.max_abs_error == float("inf") else f"{self.max_abs_error:.3g}"
        return f"{self.label}: {verdict} (max abs error {err}){' - ' + self.note if self.note else ''}"


@dataclass
class Attempt:
    """One module exported one way, and how its ONNX file behaved on each check input."""

    module: str
    route: str  # the exporter, or e.g. "torchscript (torch.jit.script)"
    export: ExportOutcome
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what else was observed (e.g. a plain engine refusing it)

    @property
    def right(self) -> bool:
        """Exported, and right on every check input."""
        return self.export.ok and bool(self.checks) and all(c.passed for c in self.checks)

    def format(self) -> str:
        head = f"{self.module} via {self.route}: {'RIGHT' if self.right else 'BROKEN'}"
        lines = [head]
        if not self.export.ok:
            lines.append(f"  export failed: {self.export.error}")
        else:
            lines.append(f"  graph: {' '.join(self.export.ops)}; inputs {self.export.input_shapes}")
            lines += [f"  {w[:200]}" for w in self.export.tracer_warnings[:2]]
            lines += [f"  exporter printed: {ln.strip()[:200]}" for ln in self.export.native_log.splitlines()
                      if ln.strip()][:2]
        lines += [f"  {c.format()}" for c in self.checks]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class ProblemReport:
    """A problem reproduced and fixed: every attempt, plus what it teaches."""

    title: str
    attempts: list[Attempt]
    lesson: str

    def attempt(self, module: str, route: str) -> Attempt:
        for a in self.attempts:
            if a.module == module and a.route == route:
                return a
        known = ", ".join(f"{a.module}/{a.route}" for a in self.attempts)
        raise DeployLabError(f"no attempt {module}/{route} in {self.title!r}; have: {known}")

    def format(self) -> str:
        return "\n".join([self.title, "=" * len(self.title)] + [a.format() for a in self.attempts]
                         + ["", self.lesson])


def run_checks(path: Path, module: torch.nn.Module, inputs: Sequence[tuple[str, tuple]],
               tolerance: float = 1e-5, options=None) -> list[Check]:
    """Run the ONNX file and eager ``module`` on each ``(label, args)``; one Check each."""
    checks = []
    session = ort_session(path, options)
    for label, args in inputs:
        reference = eager(module, *args)
        feed = {i.name: np.ascontiguousarray(a.numpy()) for i, a in zip(session.get_inputs(), args)}
        try:
            got = session.run(None, feed)[0]
        except Exception as exc:  # ORT rejects an input the exported graph fixed
            # ORT puts the offending indices on the lines after the first: keep them, on one line
            text = " ".join(ln.strip() for ln in str(exc).strip().splitlines() if ln.strip())
            checks.append(Check(label, float("inf"), f"ONNX Runtime refused it: {text[:300] or type(exc).__name__}",
                                tolerance))
            continue
        error = max_abs_error(reference, got)
        note = "" if np.shape(got) == reference.shape else (
            f"output shape {tuple(np.shape(got))}, eager gives {tuple(reference.shape)}")
        checks.append(Check(label, error, note, tolerance))
    return checks
