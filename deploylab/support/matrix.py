"""The support matrix: every conformance case run in each engine, counted per operator and opset.

:func:`build_support_matrix` runs the cases (:mod:`deploylab.support.runs`) and writes
``data/support_matrix.json`` together with the versions measured; :func:`load_support_matrix`
reads it back as a :class:`SupportMatrix`, looked up per operator, opset and backend.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.errors import DeployLabError
from deploylab.paths import DATA_DIR, read_json_object, write_atomically
from deploylab.support.cases import case_source, domain_name, iter_conformance_cases
from deploylab.support.runs import (
    ATOL,
    CASE_STATUSES,
    CONFORMANCE_BACKENDS,
    DETAIL_CHARS,
    FAILING_STATUSES,
    RANDOM_OPS,
    RTOL,
    CaseRunner,
    run_case,
)

MATRIX_PATH = DATA_DIR / "support_matrix.json"
MATRIX_FORMAT = 1
MEASURED_BACKENDS = ("onnxruntime", "openvino")


# ---------------------------------------------------------------- building
def versions(backends: Sequence[str] = MEASURED_BACKENDS) -> dict[str, str]:
    """Versions of onnx and of the measured engines (and Python/platform)."""
    import onnx

    found = {"onnx": onnx.__version__}
    for backend in backends:
        module = importlib.import_module(backend)
        found[backend] = getattr(module, "__version__", "unknown")
    found["python"] = platform.python_version()
    found["platform"] = f"{platform.system()} {platform.machine()}"
    return found


def build_support_matrix(
    out_path: str | Path = MATRIX_PATH,
    backends: Sequence[str] = MEASURED_BACKENDS,
    progress: bool = True,
    limit: int | None = None,
    rebuild: bool = False,
    directory: str | Path | None = None,
) -> dict:
    """Run the ONNX node conformance tests in each backend and write the JSON matrix.

    Takes a few minutes for all ~1,400 cases (measured: see ``seconds`` in the file).
    When ``out_path`` already holds a matrix for the same backends, case limit and
    versions, it is returned as is unless ``rebuild``. Returns the written dict.
    """
    backends = tuple(backends)
    unknown = [b for b in backends if b not in CONFORMANCE_BACKENDS]
    if unknown or not backends:
        raise DeployLabError(
            f"cannot measure backend(s) {', '.join(map(repr, unknown or backends))}; the support matrix "
            f"is measured for {', '.join(CONFORMANCE_BACKENDS)}"
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DeployLabError(f"limit must be a positive number of cases or None, got {limit!r}")
    out_path = Path(out_path)
    current = versions(backends)
    if out_path.is_file() and not rebuild:
        try:
            existing = read_json_object(out_path, "support matrix", "rebuilding it")
        except DeployLabError:
            existing = {}  # damaged or foreign: measured again and replaced
        if (existing.get("backends") == list(backends) and existing.get("limit") == limit
                and all(existing.get("versions", {}).get(k) == current[k] for k in ("onnx", *backends))):
            return existing
    runners = [CaseRunner(b) for b in backends]
    start = time.perf_counter()
    seconds = dict.fromkeys(backends, 0.0)
    ops: dict[str, dict[str, dict]] = defaultdict(dict)
    failures = []
    totals = {b: Counter() for b in backends}
    cases = list(iter_conformance_cases(limit=limit, directory=directory))
    generated = time.perf_counter() - start
    bar = _progress(len(cases), progress)
    for case in cases:
        key = f"{case.domain}::{case.op_type}"
        entry = ops[key].setdefault(str(case.opset), {"cases": 0, **{b: {} for b in backends}})
        entry["cases"] += 1
        for runner in runners:
            t0 = time.perf_counter()
            status, detail = run_case(case, runner)
            seconds[runner.name] += time.perf_counter() - t0
            entry[runner.name][status] = entry[runner.name].get(status, 0) + 1
            totals[runner.name][status] += 1
            if status != "pass":
                failures.append({"case": case.name, "op": key, "opset": case.opset, "backend": runner.name,
                                 "status": status, "detail": detail[:DETAIL_CHARS]})
        bar.update(1)
    bar.close()
    matrix = {
        "format": MATRIX_FORMAT,
        "what": "ONNX node conformance tests run through each engine; counts per operator and model opset",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": {"total": round(time.perf_counter() - start, 1), "collect_cases": round(generated, 1),
                    **{b: round(s, 1) for b, s in seconds.items()}},
        "versions": current,
        "backends": list(backends),
        "settings": {
            "onnxruntime": "CPUExecutionProvider, ORT_ENABLE_ALL, 1 intra-op thread",
            "openvino": "CPU, INFERENCE_PRECISION_HINT f32, LATENCY hint, 1 thread",
            "tolerance": {"rtol": RTOL, "atol": ATOL},
            "random_outputs": f"{', '.join(sorted(RANDOM_OPS))} and training-mode Dropout: shapes and dtypes "
                              "compared, not values",
        },
        "statuses": {
            "pass": "outputs match the reference",
            "wrong": "ran, outputs differ (values beyond tolerance, shape or dtype)",
            "load_error": "the engine refused to load/compile the model",
            "run_error": "loaded, failed while running",
            "skipped": "the case feeds a dtype the Python APIs cannot carry (bfloat16, float8, int4, ...)",
        },
        "source": case_source(directory),
        "limit": limit,
        "cases": len(cases),
        "totals": {b: dict(sorted(c.items())) for b, c in totals.items()},
        "ops": {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in sorted(ops.items())},
        "failures": failures,
    }
    write_atomically(out_path, _compact_json(matrix).encode())  # an interrupted run keeps the old matrix
    return matrix
def _compact_json(matrix: dict) -> str:
    """One line per operator and per failing case: readable diffs, small file."""
    lines = ["{"]
    keys = list(matrix)
    for index, key in enumerate(keys):
        comma = "," if index < len(keys) - 1 else ""
        value = matrix[key]
        if key == "ops":
            lines.append('  "ops": {')
            items = list(value.items())
            for j, (op, entry) in enumerate(items):
                lines.append(f"    {json.dumps(op)}: {json.dumps(entry, separators=(',', ':'))}"
                             + ("," if j < len(items) - 1 else ""))
            lines.append("  }" + comma)
        elif key == "failures":
            lines.append('  "failures": [')
            for j, item in enumerate(value):
                lines.append("    " + json.dumps(item, separators=(",", ":"), ensure_ascii=False)
                             + ("," if j < len(value) - 1 else ""))
            lines.append("  ]" + comma)
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="conformance cases", unit="case", file=sys.stderr)


# ---------------------------------------------------------------- reading
@dataclass
class MatrixStatus:
    """One backend's verdict on one (domain, op, opset): pass / partial / fail / unknown.

    Counted over the cases that ran (skipped ones left out): ``pass`` all of them passed,
    ``partial`` some did, ``fail`` none did, ``unknown`` no case ran. ``partial`` is about
    the op's *variants* (dtypes, attributes, inputs given as tensors rather than
    constants): a model that uses only passing variants runs; :meth:`SupportMatrix.breakdown`
    names the failing ones.
    """

    status: str
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def text(self) -> str:
        tested = sum(v for k, v in self.counts.items() if k != "skipped")
        passed = self.counts.get("pass", 0)
        base = self.status if self.status == "unknown" else f"{self.status} {passed}/{tested}"
        return f"{base} {self.note}".strip()


@dataclass
class CaseBreakdown:
    """One operator's conformance cases in one backend: counts per status and the reasons."""

    op: str
    backend: str
    opsets: list[int]
    counts: dict[str, int]
    groups: dict[tuple[str, str], list[str]]  # (status, recorded detail) -> case names

    @property
    def failing(self) -> int:
        """Cases that ran (or tried to) and did not pass; skipped ones are not counted."""
        return sum(self.counts.get(s, 0) for s in FAILING_STATUSES)

    @property
    def tested(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "skipped")

    def cases(self, status: str) -> list[str]:
        return sorted(c for (st, _), names in self.groups.items() if st == status for c in names)

    def format(self, names: int = 3) -> str:
        order = [s for s in CASE_STATUSES if self.counts.get(s)]
        total = sum(self.counts.values())
        lines = [f"{self.op} in {self.backend} (model opset {', '.join(map(str, self.opsets))}): {total} cases: "
                 + ", ".join(f"{self.counts[s]} {s}" for s in order)]
        skipped = Counter()
        for (status, detail), cases in sorted(self.groups.items()):
            if status == "skipped":  # never run: one line, the reasons counted
                skipped[detail.removeprefix("harness cannot feed ")] += len(cases)
                continue
            shown = ", ".join(c.removeprefix("test_") for c in cases[:names]) + (", ..." if len(cases) > names else "")
            lines.append(f"  {status} x{len(cases)}: {detail or '(no detail)'} [{shown}]")
        if skipped:
            reasons = ", ".join(f"{reason} x{n}" for reason, n in skipped.most_common())
            lines.append(f"  skipped x{sum(skipped.values())} (not run, the harness cannot feed them): {reasons}")
        return "\n".join(lines)


class SupportMatrix:
    """The measured matrix (:func:`load_support_matrix`), looked up per op and opset.

    A model at opset N uses the op version ``since_version`` that ONNX assigns at N; the
    lookup takes the matrix entries with that same op version, and when the
    conformance tests only cover another version of the op, the nearest tested one
    (noted as such).
    """

    def __init__(self, data: dict, path: str | None = None):
        self.data = data
        self.path = path
        self.ops: dict = data.get("ops", {})

    @property
    def versions(self) -> dict:
        return self.data.get("versions", {})

    @property
    def backends(self) -> list[str]:
        return list(self.data.get("backends", []))

    def failures(self, op: str | None = None, backend: str | None = None,
                 statuses: Sequence[str] | None = FAILING_STATUSES) -> list[dict]:
        """The recorded non-passing cases, filtered by ``op`` (``"ai.onnx::Cast"``) and ``backend``.

        By default only real failures (``wrong``, ``load_error``, ``run_error``): a
        ``skipped`` case was never run (the harness cannot feed its dtype), so it says
        nothing about the engine. ``statuses=None`` returns every non-passing record.
        """
        wanted = None if statuses is None else set(statuses)
        return [f for f in self.data.get("failures", [])
                if (op is None or f["op"] == op) and (backend is None or f["backend"] == backend)
                and (wanted is None or f["status"] in wanted)]

    def breakdown(self, op: str, backend: str) -> CaseBreakdown:
        """How the cases of ``op`` (``"ai.onnx::Cast"``, or a bare ``"Cast"``) ended in ``backend``,
        with the non-passing ones grouped by their recorded reason."""
        key = op if "::" in op else f"ai.onnx::{op}"
        entries = self.ops.get(key)
        if not entries:
            raise DeployLabError(f"{key!r} is not in the support matrix (no conformance test covers it); "
                                 f"known ops look like {', '.join(list(self.ops)[:3])}")
        if backend not in self.backends:
            raise DeployLabError(f"the matrix has no {backend!r} column; it has {', '.join(self.backends)}")
        counts: Counter = Counter()
        for entry in entries.values():
            counts.update(entry.get(backend, {}))
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for f in self.failures(op=key, backend=backend, statuses=None):
            groups[(f["status"], f["detail"])].append(f["case"])
        return CaseBreakdown(key, backend, sorted(int(v) for v in entries), dict(counts),
                             {k: sorted(v) for k, v in groups.items()})

    def status(self, domain: str, op_type: str, opset: int, backend: str) -> MatrixStatus:
        key = f"{domain_name(domain)}::{op_type}"
        entries = self.ops.get(key)
        if not entries or backend not in self.backends:
            return MatrixStatus("unknown", {}, "(not in the conformance tests)" if backend in self.backends else "")
        wanted = _since_version(domain, op_type, opset)
        by_version = defaultdict(Counter)
        for model_opset, entry in entries.items():
            version = _since_version(domain, op_type, int(model_opset)) or int(model_opset)
            by_version[version].update(entry.get(backend, {}))
        note = ""
        if wanted in by_version:
            counts = by_version[wanted]
        else:
            nearest = min(by_version, key=lambda v: (abs(v - (wanted or opset)), -v))
            counts = by_version[nearest]
            note = f"(v{nearest} tested, model uses v{wanted or '?'})"
        tested = sum(v for k, v in counts.items() if k != "skipped")
        passed = counts.get("pass", 0)
        if tested == 0:
            verdict = "unknown"
        elif passed == tested:
            verdict = "pass"
        elif passed == 0:
            verdict = "fail"
        else:
            verdict = "partial"
        return MatrixStatus(verdict, dict(counts), note)


def _since_version(domain: str, op_type: str, opset: int) -> int | None:
    import onnx

    try:
        schema = onnx.defs.get_schema(op_type, int(opset), "" if domain in ("", "ai.onnx") else domain)
    except Exception:  # onnx.defs.SchemaError: unknown op or opset below its first version
        return None
    return int(schema.since_version)


def load_support_matrix(path: str | Path = MATRIX_PATH) -> SupportMatrix:
    """Read a matrix written by :func:`build_support_matrix`."""
    path = Path(path)
    data = read_json_object(path, "support matrix", "build it again with "
                            "`python -c 'from deploylab.support import build_support_matrix; build_support_matrix()'` "
                            "(a few minutes)")
    if data.get("format") != MATRIX_FORMAT or not isinstance(data.get("ops"), dict):
        raise DeployLabError(f"{str(path)!r} is not a deploylab support matrix (format {data.get('format')!r})")
    problem = _shape_problem(data)
    if problem:
        raise DeployLabError(f"support matrix {str(path)!r} is damaged ({problem}); rebuild it with "
                             "build_support_matrix(rebuild=True)")
    return SupportMatrix(data, str(path))


def _shape_problem(data: dict) -> str | None:
    """What in a matrix file does not have the shape :func:`build_support_matrix` writes (None: all fits)."""
    def counts_ok(counts) -> bool:  # {status: count} per backend, or the entry's case count
        if not isinstance(counts, dict):
            return type(counts) is int
        return all(isinstance(k, str) and type(n) is int for k, n in counts.items())

    backends = data.get("backends", [])
    if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
        return "'backends' is not a list of names"
    if not isinstance(data.get("versions", {}), dict):
        return "'versions' is not an object"
    for op, entries in data["ops"].items():
        if not isinstance(entries, dict) or not all(
                isinstance(v, str) and v.isdigit() and isinstance(e, dict) and all(map(counts_ok, e.values()))
                for v, e in entries.items()):
            return f"the entry of {op!r} is not {{op version: {{backend: {{status: count}}, 'cases': n}}}}"
    failures = data.get("failures", [])
    keys = ("op", "backend", "status", "detail", "case")
    if not isinstance(failures, list) or not all(
            isinstance(f, dict) and all(isinstance(f.get(k), str) for k in keys) for f in failures):
        return f"'failures' is not a list of records with {', '.join(keys)}"
    return None
