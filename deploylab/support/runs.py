"""One conformance case run in one engine, through deploylab's own runner, and judged.

Each case runs in the runner the backend declares for the support matrix
(``BackendSpec.conformance_runner``: ONNX Runtime with all graph optimizations and one
intra-op thread; OpenVINO on CPU with f32 inference precision, the latency hint, one
thread), so the matrix measures what the course runs. Conformance cases feed values the
runner contract does not carry (sequences, strings, optionals), so after ``activate()`` the
case goes to the engine session the runner made.

A case ends as ``pass``, ``wrong`` (ran, but the outputs differ beyond ``rtol=1e-3,
atol=1e-5`` or have another shape/dtype), ``load_error`` (the engine refused the model),
``run_error`` (it loaded but failed to run), or ``skipped`` (the case feeds a dtype
numpy/the engines' Python APIs cannot carry, such as bfloat16 or float8; that says nothing
about the engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deploylab.backends.registry import SPECS
from deploylab.compare import values_mismatch
from deploylab.errors import DeployLabError, EngineError
from deploylab.support.cases import ConformanceCase, conformance_case
from deploylab.text import engine_error_summary

CASE_STATUSES = ("pass", "wrong", "load_error", "run_error", "skipped")
#: Statuses that count against an engine ("skipped" cases were never run).
FAILING_STATUSES = ("wrong", "load_error", "run_error")
RTOL, ATOL = 1e-3, 1e-5
#: Characters of an engine's message kept as a case's detail.
DETAIL_CHARS = 160
#: Operators whose outputs are random: only the shapes and dtypes can match the reference.
RANDOM_OPS = frozenset({"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
                        "RandomUniformLike"})
_STANDARD_KINDS = "biufcOUS"


class _Unfeedable(Exception):
    """A value the engines' Python APIs cannot carry (bfloat16, float8, int4, ...)."""


class _LoadError(Exception):
    """The engine refused the model; the message is the case's detail."""


# ---------------------------------------------------------------- values in and out
def _as_feed(value):
    """Reference value -> what an engine's Python API takes; raises _Unfeedable otherwise."""
    import onnx
    from onnx import numpy_helper

    if value is None:
        return None
    if isinstance(value, onnx.TensorProto):
        value = numpy_helper.to_array(value)
    if isinstance(value, (list, tuple)):
        return [_as_feed(v) for v in value]
    if isinstance(value, dict):
        raise _Unfeedable("map values")
    array = np.asarray(value)
    if array.dtype.kind not in _STANDARD_KINDS or (array.dtype.kind == "f" and array.dtype.itemsize < 2):
        raise _Unfeedable(f"dtype {array.dtype}")  # ml_dtypes' bfloat16/float8/int4 are kind "V"
    return array


def _normalise_output(value):
    if value is None or isinstance(value, (list, tuple)):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in _STANDARD_KINDS:
        raise _Unfeedable(f"dtype {array.dtype}")
    return array


def is_random(case: ConformanceCase) -> bool:
    """True when the case's outputs are random, so only their shapes and dtypes are compared."""
    if case.op_type in RANDOM_OPS:
        return True
    # Dropout in training mode with a non-zero ratio drops a random subset.
    return case.op_type == "Dropout" and case.name.startswith("test_training_dropout") and "zero_ratio" not in case.name


def _values_off(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Boolean mask of the values of ``got`` off the reference: integers and booleans must be
    equal; floats and complex numbers by :func:`deploylab.compare.values_mismatch`'s rule with the
    matrix's tolerance (``rtol=1e-3, atol=1e-5``, NaN equal to NaN). Shapes must agree."""
    if expected.dtype.kind in "biu":
        return expected != got
    wide = lambda a: a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)  # noqa: E731
    return ~np.isclose(wide(got), wide(expected), rtol=RTOL, atol=ATOL, equal_nan=True)


def outputs_match(expected: list, got: list, values: bool = True) -> str | None:
    """None when ``got`` matches the reference; otherwise why not (one short line).

    ``values=False`` compares only structure, shapes and dtypes (random outputs).
    """
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for index, (ref, out) in enumerate(zip(expected, got)):
        if ref is None or out is None:
            if (ref is None) != (out is None):
                return f"output {index}: optional presence differs"
            continue
        if isinstance(ref, list):
            if not isinstance(out, (list, tuple)) or len(out) != len(ref):
                return f"output {index}: sequence of {len(ref)} expected"
            reason = outputs_match(ref, list(out), values)
            if reason:
                return f"output {index}: {reason}"
            continue
        ref, out = np.asarray(ref), np.asarray(out)
        if ref.shape != out.shape:
            return f"output {index}: shape {out.shape}, expected {ref.shape}"
        if not values:
            if ref.dtype.kind not in "OUS" and ref.dtype != out.dtype:
                return f"output {index}: dtype {out.dtype}, expected {ref.dtype}"
            continue
        if ref.dtype.kind in "OUS":
            if not np.array_equal(ref.astype(str), out.astype(str)):
                return f"output {index}: strings differ"
            continue
        if ref.dtype != out.dtype:
            return f"output {index}: dtype {out.dtype}, expected {ref.dtype}"
        if ref.dtype.kind in "biu":
            if not np.array_equal(ref, out):
                return f"output {index}: {int(np.sum(ref != out))} of {ref.size} values differ"
            continue
        reason = values_mismatch(ref, out, rtol=RTOL, atol=ATOL)
        if reason:
            return f"output {index}: {reason}"
    return None


def _first_line(exc: BaseException) -> str:
    return engine_error_summary(str(exc), limit=DETAIL_CHARS) or type(exc).__name__


# ---------------------------------------------------------------- the engines' sessions
def _onnxruntime_outputs(runner, feeds: dict) -> list:
    session = runner.session
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: feeds[n] for n in names if n in feeds})


def _openvino_outputs(runner, feeds: dict) -> list:
    inputs = {}
    for port in runner.compiled.inputs:
        name = port.get_any_name()
        value = feeds.get(name)
        if isinstance(value, list) or value is None:
            raise _Unfeedable("sequence or optional input")
        inputs[name] = value.astype(str) if value.dtype.kind == "O" else value
    result = runner.request.infer(inputs)
    return [np.array(result[port], copy=True) for port in runner.compiled.outputs]


def _quiet_onnxruntime() -> None:
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # failures are recorded, not printed


#: How a case reaches the session each backend's runner made:
#: (outputs, whether the engine loaded the model, a step once before the first case).
_SESSION_CALLS = {
    "onnxruntime": (_onnxruntime_outputs, lambda runner: runner.session is not None, _quiet_onnxruntime),
    "openvino": (_openvino_outputs, lambda runner: runner.request is not None, lambda: None),
}
#: Backends whose conformance cases can be run here, in the registry's order.
CONFORMANCE_BACKENDS = tuple(spec.name for spec in SPECS
                             if spec.conformance_runner is not None and spec.name in _SESSION_CALLS)


class CaseRunner:
    """Runs conformance models in ``backend``'s real runner (``BackendSpec.conformance_runner``)."""

    def __init__(self, backend: str):
        if backend not in CONFORMANCE_BACKENDS:
            raise DeployLabError(f"cannot run conformance cases in {backend!r}; use one of "
                                 f"{', '.join(CONFORMANCE_BACKENDS)}")
        self.name = backend
        self._make_runner = next(s.conformance_runner for s in SPECS if s.name == backend)
        self._outputs, self._loaded, prepare = _SESSION_CALLS[backend]
        prepare()

    def run(self, model_bytes: bytes, feeds: dict) -> list:
        """The engine's outputs for ``feeds``; raises _LoadError when it refuses the model."""
        runner = self._make_runner(model_bytes)
        try:
            runner.activate()
        except EngineError as exc:
            raise _LoadError(engine_error_summary(exc.engine_text, limit=DETAIL_CHARS) or type(exc).__name__) from exc
        except Exception as exc:
            if not self._loaded(runner):  # an engine exception the runner did not wrap
                raise _LoadError(_first_line(exc)) from exc
            # Loaded: the runner contract describes only tensors (its description failed), and
            # conformance cases also carry sequences, strings and optionals; the session runs them.
        try:
            return self._outputs(runner, feeds)
        finally:
            runner.deactivate()


# ---------------------------------------------------------------- one case
@dataclass
class CaseRun:
    """One conformance case run in one engine, with the values: what :func:`rerun_case` returns."""

    case: str
    backend: str
    status: str  # one of CASE_STATUSES
    detail: str
    inputs: list = field(default_factory=list)
    expected: list = field(default_factory=list)
    got: list | None = None  # None: the engine did not produce outputs

    def mismatches(self, output: int = 0, limit: int = 5) -> list[tuple]:
        """``(flat index, input value, expected, got)`` where output ``output`` is off, first ``limit``.

        "Off" uses the matrix's tolerance (``rtol=1e-3, atol=1e-5``, NaN equal to NaN); the
        input value is the first input's at the same index when the shapes agree, else None.
        """
        if self.got is None or output >= min(len(self.got), len(self.expected)):
            return []
        ref, out = np.asarray(self.expected[output]), np.asarray(self.got[output])
        if ref.shape != out.shape or ref.dtype.kind not in "biufc":
            return []
        off = _values_off(ref, out)
        first = np.asarray(self.inputs[0]) if self.inputs and self.inputs[0] is not None else None
        same = first is not None and not isinstance(self.inputs[0], list) and first.shape == ref.shape
        rows = []
        for index in np.flatnonzero(off.ravel())[:limit]:
            value = first.ravel()[index].item() if same else None
            rows.append((int(index), value, ref.ravel()[index].item(), out.ravel()[index].item()))
        return rows


def run_case_values(case: ConformanceCase, runner: CaseRunner) -> CaseRun:
    """Run one conformance case in one engine and keep the values (:class:`CaseRun`)."""
    name, backend = case.name, getattr(runner, "name", "?")
    try:
        feeds = {v.name: _as_feed(x) for v, x in zip(case.model.graph.input, case.inputs)}
        expected = [_as_feed(x) for x in case.outputs]
    except _Unfeedable as exc:
        return CaseRun(name, backend, "skipped", f"harness cannot feed {exc}")
    inputs = list(feeds.values())
    try:
        got = runner.run(case.model.SerializeToString(), feeds)
    except _Unfeedable as exc:
        return CaseRun(name, backend, "skipped", f"harness cannot feed {exc}", inputs, expected)
    except _LoadError as exc:
        return CaseRun(name, backend, "load_error", str(exc), inputs, expected)
    except Exception as exc:  # the engines raise their own exception types
        return CaseRun(name, backend, "run_error", _first_line(exc), inputs, expected)
    try:
        got = [_normalise_output(o) for o in got]
        reason = outputs_match(expected, got, values=not is_random(case))
    except _Unfeedable as exc:
        return CaseRun(name, backend, "skipped", f"harness cannot compare {exc}", inputs, expected)
    if reason is None:
        return CaseRun(name, backend, "pass", "", inputs, expected, got)
    return CaseRun(name, backend, "wrong", reason, inputs, expected, got)


def run_case(case: ConformanceCase, runner: CaseRunner) -> tuple[str, str]:
    """Run one conformance case in one engine: (status, detail)."""
    run = run_case_values(case, runner)
    return run.status, run.detail


def rerun_case(name: str, backend: str) -> CaseRun:
    """Run one conformance case again in ``backend`` (``"onnxruntime"`` or ``"openvino"``), with
    the settings the matrix used, and keep the values, so that a "wrong" verdict can be looked at."""
    runner = CaseRunner(backend)  # before finding the case: an unknown backend fails at once
    return run_case_values(conformance_case(name), runner)
