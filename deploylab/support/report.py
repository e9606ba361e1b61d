"""One ONNX file checked against the matrix, NVIDIA's table and a real load in each engine.

:func:`check_support` looks every operator of the file up in the measured matrix
(:mod:`deploylab.support.matrix`) and in TensorRT's documented table
(:mod:`deploylab.support.nvidia`), and also *tries* to load the file in each engine, so a
verdict never rests on the table alone. For QuantizeLinear/DequantizeLinear it reads the
file's own nodes too: TensorRT's parser refuses zero points and types its table does not
show (:func:`deploylab.backends.tensorrt.qdq.tensorrt_qdq_problems`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.backends.tensorrt.qdq import tensorrt_qdq_problems
from deploylab.backends.tensorrt.settings import TENSORRT_INT8_COMMAND
from deploylab.errors import DeployLabError, EngineError
from deploylab.support.cases import domain_name, opset_for
from deploylab.support.matrix import MATRIX_PATH, MEASURED_BACKENDS, MatrixStatus, SupportMatrix, load_support_matrix
from deploylab.support.nvidia import tensorrt_documented, tensorrt_op_table
from deploylab.text import engine_error_summary

TENSORRT_RECIPE_HINT = f"quantize with the TensorRT recipe ({TENSORRT_INT8_COMMAND})"
#: Characters of an engine's load error kept in a report.
LOAD_ERROR_CHARS = 400


@dataclass
class OpSupport:
    """One operator of a model: how many nodes use it and what each backend makes of it."""

    domain: str
    op_type: str
    opset: int
    nodes: int
    matrix: dict[str, MatrixStatus]
    tensorrt_doc: str
    failed_load: set[str] = field(default_factory=set)  # backends whose load error names this op
    # backends whose engine accepted this op: the model loaded, or its load error blamed only other ops
    accepted_by: set[str] = field(default_factory=set)
    # why TensorRT cannot take this op *in this file*, beyond its documentation (Q/DQ zero points and types)
    tensorrt_model_problem: str = ""

    @property
    def key(self) -> str:
        return f"{self.domain}::{self.op_type}"

    def verdict(self, backend: str) -> str:
        """pass / partial / fail / unknown for ``backend``.

        Evidence is combined: a load error naming the op -> fail; a matrix "fail" for
        an op the engine accepted in *this* model -> partial (the conformance cases
        exercise variants - non-constant inputs, sequences, other op versions - this
        model may not use); otherwise the matrix verdict. TensorRT: its documentation (a custom-domain op
        needs a plugin: fail), and for QuantizeLinear/DequantizeLinear the file's own nodes: a zero
        point or quantized type TensorRT's parser does not take fails.
        """
        if backend == "tensorrt":
            if self.tensorrt_model_problem:
                return "fail"
            if self.tensorrt_doc == "unknown":
                return "unknown"
            return "fail" if self.tensorrt_doc in ("N", "plugin") else "pass"
        if backend in self.failed_load:
            return "fail"
        status = self.matrix.get(backend)
        verdict = status.status if status else "unknown"
        if verdict == "fail" and backend in self.accepted_by:
            return "partial"
        return verdict

    def tensorrt_text(self) -> str:
        """The TensorRT cell: the file's own problem if it has one, else the documented support."""
        if self.tensorrt_model_problem:
            return f"FAIL here: {self.tensorrt_model_problem}"
        return f"doc: {self.tensorrt_doc}"

    def cell(self, backend: str) -> str:
        if backend == "tensorrt":
            return self.tensorrt_text()
        status = self.matrix.get(backend, MatrixStatus("unknown"))
        text = status.text()
        if backend in self.failed_load:
            text = f"FAIL (load); {text}"
        elif status.status == "fail" and backend in self.accepted_by:
            text = f"accepted here; cases {text}"
        return text


@dataclass
class LoadResult:
    backend: str
    loaded: bool | None  # None: not tried
    error: str = ""


@dataclass
class SupportReport:
    """What :func:`check_support` found for one ONNX file."""

    path: str
    backends: list[str]
    ops: list[OpSupport]
    loads: dict[str, LoadResult]
    matrix_versions: dict
    tensorrt_source: str = field(default_factory=lambda: tensorrt_op_table().provenance)

    def unsupported(self, backend: str) -> list[str]:
        """Ops (``domain::op_type``) that ``backend`` does not run: measured fail or named in its load error."""
        return [op.key for op in self.ops if op.verdict(backend) == "fail"]

    def supported(self, backend: str) -> bool:
        """True when the model loaded in ``backend`` (where tried) and no op is unsupported there."""
        load = self.loads.get(backend)
        return not self.unsupported(backend) and not (load is not None and load.loaded is False)

    @property
    def all_supported(self) -> bool:
        return all(self.supported(b) for b in self.backends)

    def format(self) -> str:
        headers = ["operator", "opset", "nodes"] + list(self.backends)
        if "tensorrt" not in self.backends:
            headers.append("tensorrt (doc)")
        rows = []
        for op in self.ops:
            name = op.op_type if op.domain == "ai.onnx" else f"{op.domain}::{op.op_type}"
            cells = [name, str(op.opset), str(op.nodes)] + [op.cell(b) for b in self.backends]
            if "tensorrt" not in self.backends:
                cells.append(op.tensorrt_text().removeprefix("doc: "))
            rows.append(cells)
        widths = [min(max(len(h), *(len(r[i]) for r in rows)) if rows else len(h), 64)
                  for i, h in enumerate(headers)]
        line = lambda cells: "  ".join(c[:w].ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [f"operator support for {self.path}", line(headers), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        out.append("")
        for backend in self.backends:
            load = self.loads.get(backend)
            if load is None or load.loaded is None:
                how = load.error if load else "not tried"
            else:
                how = "loads" if load.loaded else f"cannot load: {load.error}"
            missing = self.unsupported(backend)
            verdict = "SUPPORTED" if self.supported(backend) else "UNSUPPORTED"
            extra = f" (unsupported: {', '.join(missing)})" if missing else ""
            out.append(f"{backend}: {verdict}{extra}; model {how}")
        flagged = [op for op in self.ops if op.tensorrt_model_problem]
        if flagged:  # the table cuts cells at 64 characters; the reason is the point
            out.append("tensorrt, checked in this file (onnx-tensorrt's Q/DQ rules):")
            out += [f"  {op.op_type}: {op.tensorrt_model_problem}" for op in flagged]
        versions = ", ".join(f"{k} {v}" for k, v in self.matrix_versions.items() if k not in ("python", "platform"))
        out.append(f"matrix measured with {versions}; TensorRT column: {self.tensorrt_source}")
        return "\n".join(out)


def model_operators(model) -> Counter:
    """(domain, op_type, opset) -> node count, subgraphs (If/Loop/Scan bodies) included."""
    import onnx

    counts: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            domain = domain_name(node.domain)
            counts[(domain, node.op_type, opset_for(model, node.domain))] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        walk(g)

    walk(model.graph)
    return counts


def try_load(onnx_path: str | Path, backend: str) -> LoadResult:
    """Create ``backend``'s runner on the file and activate it; the error text if it cannot."""
    from deploylab.backends.registry import make_runner

    if backend == "tensorrt":
        return LoadResult(backend, None, "not tried: TensorRT's ONNX parser needs the full TensorRT and a GPU; "
                                         "verdicts come from the documentation and, for Q/DQ nodes, the file")
    try:
        runner = make_runner(backend, onnx_path)
        runner.activate()
        runner.deactivate()
    except EngineError as exc:
        # The runner's message keeps one line; the engine's own text names the operators
        # it could not convert, which is what this report needs.
        return LoadResult(backend, False, engine_error_summary(exc.engine_text, limit=LOAD_ERROR_CHARS) or str(exc))
    except DeployLabError as exc:
        return LoadResult(backend, False, str(exc))
    return LoadResult(backend, True)


def check_support(onnx_path: str | Path, backends: Sequence[str] = MEASURED_BACKENDS,
                  matrix: SupportMatrix | str | Path | None = None) -> SupportReport:
    """Every operator in ``onnx_path`` looked up in the measured matrix and TensorRT's table,
    plus a real load attempt in each backend (its error message kept).

    ``backends`` are names from :data:`deploylab.backends.registry.BACKENDS`; ``matrix``
    a :class:`SupportMatrix`, a path to one, or None for the shipped one.
    """
    from deploylab.backends.registry import parse_backends
    from deploylab.onnx_tools import load_onnx

    backends = parse_backends(",".join(backends)) if not isinstance(backends, str) else parse_backends(backends)
    if matrix is None or isinstance(matrix, (str, Path)):
        matrix = load_support_matrix(matrix if matrix is not None else MATRIX_PATH)
    model = load_onnx(onnx_path, load_external_data=False)
    loads = {b: try_load(onnx_path, b) for b in backends}
    operators = sorted(model_operators(model).items())
    # An engine that names the ops it could not convert has converted all the others.
    blamed = {b: {op for (_, op, _), _ in operators if load.loaded is False and _names_op(load.error, op)}
              for b, load in loads.items()}
    ops = []
    for (domain, op_type, opset), nodes in operators:
        statuses = {b: matrix.status(domain, op_type, opset, b) for b in backends if b != "tensorrt"}
        op = OpSupport(domain, op_type, opset, nodes, statuses, tensorrt_documented(domain, op_type))
        for backend, load in loads.items():
            if op_type in blamed[backend]:
                op.failed_load.add(backend)
            elif load.loaded or blamed[backend]:
                op.accepted_by.add(backend)
        ops.append(op)
    _check_tensorrt_qdq(onnx_path, ops)
    return SupportReport(str(onnx_path), list(backends), ops, loads, matrix.versions)



def _check_tensorrt_qdq(onnx_path: str | Path, ops: list[OpSupport]) -> None:
    """Mark the Q/DQ rows whose nodes TensorRT's ONNX parser rejects or reads differently.

    NVIDIA's table says "Y (zero point must be 0)"; whether *this* file keeps that rule is in
    its nodes (:func:`deploylab.backends.tensorrt.qdq.tensorrt_qdq_problems`).
    """
    rows = {op.op_type: op for op in ops
            if op.domain == "ai.onnx" and op.op_type in ("QuantizeLinear", "DequantizeLinear")}
    if not rows:
        return
    by_op: dict[str, list] = defaultdict(list)
    for problem in tensorrt_qdq_problems(onnx_path):
        by_op[problem.op_type].append(problem)
    for op_type, problems in by_op.items():
        op = rows.get(op_type)
        if op is None:
            continue
        issues = Counter(p.issue for p in problems)
        # zero points first: the reason an ONNX Runtime model most often fails TensorRT
        ordered = sorted(issues.items(), key=lambda kv: (kv[0] != "non-zero zero point", -kv[1]))
        counted = ", ".join(f"{'non-zero zero points' if issue == 'non-zero zero point' else issue} x{n}"
                            for issue, n in ordered)
        nodes = len({p.node for p in problems})
        op.tensorrt_model_problem = f"{nodes} of {op.nodes} nodes ({counted}); {TENSORRT_RECIPE_HINT}"


def _names_op(message: str, op_type: str) -> bool:
    """Does an engine's load error name ``op_type`` (as a whole word)?"""
    return re.search(rf"(?<![A-Za-z]){re.escape(op_type)}(?![A-Za-z])", message or "") is not None
