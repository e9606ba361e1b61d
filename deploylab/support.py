"""Which ONNX operators each engine really runs, measured rather than assumed.

Engines differ in ONNX support (the third of the notes' common problems). Two sources tell
how much:

- **Measured here**: the ONNX conformance *node* tests (one small model per operator
  variant, with reference inputs and outputs) run through ONNX Runtime and OpenVINO
  with the settings deploylab's runners use (CPU, default graph optimizations; OpenVINO
  with f32 inference precision). Each case ends as ``pass``, ``wrong`` (ran, but the
  outputs differ beyond ``rtol=1e-3, atol=1e-5`` or have another shape/dtype),
  ``load_error`` (the engine refused the model), ``run_error`` (it loaded but failed to
  run), or ``skipped`` (the case feeds a dtype numpy/the engines' Python APIs cannot
  carry, such as bfloat16 or float8; that says nothing about the engine).
  :func:`build_support_matrix` aggregates the cases per operator and opset and writes
  ``data/support_matrix.json`` together with the versions measured.
- **Documented**: TensorRT cannot be installed on a machine without an NVIDIA GPU, so
  its column comes from NVIDIA's ONNX-TensorRT operator table
  (:data:`TENSORRT_DOC_URL`), for the operators this course's models and demos use.

:func:`check_support` applies both to one ONNX file and also *tries* to load the file
in each engine, so a verdict never rests on the table alone.

Where the test cases come from: the onnx wheel may ship them as files
(``onnx/backend/test/data/node/*/model.onnx`` + ``test_data_set_0/*.pb``); when it
does not (onnx 1.23 as installed here ships only the generator scripts), they are
generated in memory by ``onnx.backend.test.case.node``, the same code that writes those
files. Function-expansion variants (``*_expanded``) test a decomposition into other
operators, not the operator itself, and are left out.
"""

from __future__ import annotations

import importlib
import io
import json
import platform
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploylab.backends.tensorrt.settings import TENSORRT_INT8_COMMAND
from deploylab.text import engine_error_summary  # noqa: F401 (re-exported)
from deploylab.errors import DeployLabError
from deploylab.paths import DATA_DIR

MATRIX_PATH = DATA_DIR / "support_matrix.json"
MATRIX_FORMAT = 1
MEASURED_BACKENDS = ("onnxruntime", "openvino")
CASE_STATUSES = ("pass", "wrong", "load_error", "run_error", "skipped")
#: Statuses that count against an engine ("skipped" cases were never run).
FAILING_STATUSES = ("wrong", "load_error", "run_error")
RTOL, ATOL = 1e-3, 1e-5
_DETAIL_CHARS = 160

# ---------------------------------------------------------------- TensorRT, as documented
TENSORRT_DOC_URL = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md"
TENSORRT_DOC_VERSION = "TensorRT 10.15 (operators.md: opset 9 to 24)"
#: ONNX-TensorRT's operator table, for the operators the course's models and notebook 07
#: use, and those the support matrix shows failing somewhere. (supported, restriction).
TENSORRT_OPS: dict[str, tuple[bool, str]] = {
    "Abs": (True, ""), "Add": (True, ""), "ArgMax": (True, ""),
    "AveragePool": (True, "2D or 3D pooling only; dilations empty or all ones"),
    "BatchNormalization": (True, ""), "BitShift": (False, ""), "BitwiseAnd": (False, ""),
    "Cast": (True, ""), "Ceil": (True, ""), "Clip": (True, ""), "Col2Im": (False, ""),
    "Concat": (True, ""), "Constant": (True, "sparse_value and string values unsupported"),
    "ConstantOfShape": (True, ""), "Conv": (True, ""), "CumSum": (True, "axis must be a build-time constant"),
    "DFT": (False, ""), "DequantizeLinear": (True, "x_zero_point must be zero"), "Det": (False, ""),
    "Div": (True, ""), "Einsum": (True, ""), "Equal": (True, ""), "Erf": (True, ""), "Exp": (True, ""),
    "Expand": (True, ""), "Flatten": (True, ""), "Gather": (True, ""), "Gelu": (True, ""), "Gemm": (True, ""),
    "GlobalAveragePool": (True, ""), "Greater": (True, ""), "GridSample": (True, "input must be 4D"),
    "GroupNormalization": (True, ""), "HardSwish": (True, ""), "Identity": (True, ""),
    "If": (True, "both branches' outputs must have the same rank and different names"),
    "LayerNormalization": (True, "only the first output Y"), "Less": (True, ""), "Log": (True, ""),
    "Loop": (True, "scan output length cannot be dynamic; loop-carried shapes must stay the same"),
    "MatMul": (True, ""), "Max": (True, ""), "MaxPool": (True, "2D or 3D only; Indices output unsupported"),
    "Mish": (True, ""), "Mod": (True, ""), "Mul": (True, ""), "NonZero": (True, ""), "Not": (True, ""),
    "Pad": (True, ""), "Pow": (True, ""), "QuantizeLinear": (True, "y_zero_point must be 0"),
    "Range": (True, ""), "Reciprocal": (True, ""), "ReduceMax": (True, "axes must be an initializer"),
    "ReduceMean": (True, "axes must be an initializer"), "ReduceSum": (True, "axes must be an initializer"),
    "Relu": (True, ""), "Reshape": (True, ""),
    "Resize": (True, "modes nearest/linear only; no antialiasing"), "ScatterElements": (True, ""),
    "ScatterND": (True, "reduction other than none unsupported"), "Shape": (True, ""), "Sigmoid": (True, ""),
    "Slice": (True, ""), "Softmax": (True, ""), "Split": (True, ""), "Sqrt": (True, ""),
    "Squeeze": (True, "axes must be resolvable to a constant"), "STFT": (True, "frame_step and window must be initializers"),
    "Sub": (True, ""), "Tanh": (True, ""), "Tile": (True, ""),
    "TopK": (True, "sorted must be 1; K < 3840"), "Transpose": (True, ""), "Trilu": (True, ""),
    "Unique": (False, ""), "Unsqueeze": (True, "axes must be resolvable to a constant"), "Where": (True, ""),
}


def tensorrt_documented(domain: str, op_type: str) -> str:
    """``"Y"``, ``"Y (restriction)"``, ``"N"`` or ``"unknown"`` from :data:`TENSORRT_OPS`.

    Operators outside the default ONNX domain are TensorRT *plugins* (the ONNX parser
    looks up a registered plugin creator named like the op): ``"plugin"``.
    """
    if domain not in ("", "ai.onnx"):
        return "plugin"
    entry = TENSORRT_OPS.get(op_type)
    if entry is None:
        return "unknown"
    supported, restriction = entry
    if not supported:
        return "N"
    return f"Y ({restriction})" if restriction else "Y"


# ---------------------------------------------------------------- conformance cases
@dataclass
class ConformanceCase:
    """One node test: the model, its reference inputs and outputs."""

    name: str
    model: object  # onnx.ModelProto
    inputs: list
    outputs: list

    @property
    def node(self):
        return self.model.graph.node[0]

    @property
    def domain(self) -> str:
        return _domain_name(self.node.domain)

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def opset(self) -> int:
        """Version the model imports for the tested op's domain."""
        return _opset_for(self.model, self.node.domain)


def _domain_name(domain: str) -> str:
    return "ai.onnx" if domain in ("", "ai.onnx") else domain


def _opset_for(model, domain: str) -> int:
    wanted = _domain_name(domain)
    for entry in model.opset_import:
        if _domain_name(entry.domain) == wanted:
            return int(entry.version)
    return 0


def node_test_dir() -> Path:
    """Where an onnx wheel keeps the node tests as files (may not exist)."""
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def iter_conformance_cases(limit: int | None = None, directory: str | Path | None = None) -> Iterator[ConformanceCase]:
    """The ONNX node conformance tests, ``*_expanded`` variants left out, in name order.

    Read from ``directory`` (default: :func:`node_test_dir`) when it holds test
    folders, else generated by ``onnx.backend.test.case.node``. ``limit`` stops after
    that many cases (and, when generating, imports only the generator modules needed).
    """
    folder = Path(directory) if directory is not None else node_test_dir()
    if folder.is_dir() and any(folder.glob("*/model.onnx")):
        yield from _cases_from_files(folder, limit)
    else:
        yield from _generated_cases(limit)


def case_source(directory: str | Path | None = None) -> str:
    folder = Path(directory) if directory is not None else node_test_dir()
    if folder.is_dir() and any(folder.glob("*/model.onnx")):
        return f"files in {folder}"
    return "generated in memory by onnx.backend.test.case.node (the onnx wheel ships no node test files)"


def _cases_from_files(folder: Path, limit: int | None) -> Iterator[ConformanceCase]:
    import onnx

    count = 0
    for case_dir in sorted(p for p in folder.iterdir() if (p / "model.onnx").is_file()):
        if "_expanded" in case_dir.name:
            continue
        if limit is not None and count >= limit:
            return
        model = onnx.load(str(case_dir / "model.onnx"))
        data = case_dir / "test_data_set_0"
        inputs = [_read_value(data / f"input_{i}.pb", v.type) for i, v in enumerate(model.graph.input)
                  if (data / f"input_{i}.pb").is_file()]
        outputs = [_read_value(data / f"output_{i}.pb", v.type) for i, v in enumerate(model.graph.output)
                   if (data / f"output_{i}.pb").is_file()]
        count += 1
        yield ConformanceCase(case_dir.name, model, inputs, outputs)


def _read_value(path: Path, type_proto):
    """A tensor / sequence / optional stored as protobuf, as numpy values (or a list, or None)."""
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        proto = onnx.SequenceProto()
        proto.ParseFromString(data)
        return numpy_helper.to_list(proto)
    if type_proto.HasField("optional_type"):
        proto = onnx.OptionalProto()
        proto.ParseFromString(data)
        return numpy_helper.to_optional(proto)
    if type_proto.HasField("map_type"):
        proto = onnx.MapProto()
        proto.ParseFromString(data)
        return numpy_helper.to_dict(proto)
    proto = onnx.TensorProto()
    proto.ParseFromString(data)
    return proto  # converted like a generated case (see _as_feed)


def _generated_cases(limit: int | None) -> Iterator[ConformanceCase]:
    import warnings

    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        # The generators compute reference outputs with numpy, including deliberate
        # overflows and divisions by zero; their RuntimeWarnings are not news.
        warnings.simplefilter("ignore")
        # Importing a generator module runs its cases once per process and appends them to
        # the package's list; importing only the first modules is what makes `limit` cheap.
        if limit is None:
            cases = node_cases.collect_testcases()
        else:
            cases = _import_generators_until(node_cases, limit)
    chosen = sorted((c for c in cases if c.kind == "node" and "_expanded" not in c.name), key=lambda c: c.name)
    for case in chosen[:limit]:
        inputs, outputs = case.data_sets[0]
        yield ConformanceCase(case.name, case.model, list(inputs), list(outputs))


def _import_generators_until(node_cases, limit: int) -> list:
    """Import generator modules in name order until ``limit`` (non-expanded) cases exist."""
    import pkgutil

    for info in sorted(pkgutil.iter_modules(node_cases.__path__), key=lambda m: m.name):
        if info.ispkg or info.name.startswith("_"):
            continue
        importlib.import_module(f"{node_cases.__name__}.{info.name}")
        if sum("_expanded" not in c.name for c in node_cases._NodeTestCases) >= limit:
            break
    return list(node_cases._NodeTestCases)


# ---------------------------------------------------------------- running one case
class _Unfeedable(Exception):
    """A value the engines' Python APIs cannot carry (bfloat16, float8, int4, ...)."""


_STANDARD_KINDS = "biufcOUS"


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


#: Operators whose outputs are random: only the shapes and dtypes can match the reference.
RANDOM_OPS = frozenset({"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
                        "RandomUniformLike"})


def _is_random(case: ConformanceCase) -> bool:
    if case.op_type in RANDOM_OPS:
        return True
    # Dropout in training mode with a non-zero ratio drops a random subset.
    return case.op_type == "Dropout" and case.name.startswith("test_training_dropout") and "zero_ratio" not in case.name


def _outputs_match(expected: list, got: list, values: bool = True) -> str | None:
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
            reason = _outputs_match(ref, list(out), values)
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
        if ref.dtype.kind == "b" or ref.dtype.kind in "iu":
            if not np.array_equal(ref, out):
                wrong = int(np.sum(ref != out))
                return f"output {index}: {wrong} of {ref.size} values differ"
            continue
        ref64, out64 = ref.astype(np.complex128 if ref.dtype.kind == "c" else np.float64), out.astype(
            np.complex128 if out.dtype.kind == "c" else np.float64)
        close = np.isclose(out64, ref64, rtol=RTOL, atol=ATOL, equal_nan=True)
        if not close.all():
            diff = np.abs(out64 - ref64)
            off = ~close
            finite = off & np.isfinite(diff)
            if finite.any():
                worst = f"max abs error {diff[finite].max():.3g}"
            else:
                worst = "all at NaN/inf positions"
            return f"output {index}: {int(off.sum())} of {ref.size} values off, {worst}"
    return None


def _first_line(exc: BaseException) -> str:
    return engine_error_summary(str(exc), limit=_DETAIL_CHARS) or type(exc).__name__


class _OrtCaseRunner:
    """ONNX Runtime as OnnxRuntimeRunner sets it up: CPU provider, all graph optimizations."""

    name = "onnxruntime"

    def __init__(self):
        import onnxruntime as ort

        self.ort = ort
        ort.set_default_logger_severity(4)  # failures are recorded, not printed
        self.options = ort.SessionOptions()
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.options.intra_op_num_threads = 1  # tiny models: thread pools cost more than they give
        self.options.log_severity_level = 4

    def run(self, model_bytes: bytes, feeds: dict) -> list:
        try:
            session = self.ort.InferenceSession(model_bytes, self.options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise _LoadError(_first_line(exc)) from exc
        names = [i.name for i in session.get_inputs()]
        return session.run(None, {n: feeds[n] for n in names if n in feeds})


class _OpenVinoCaseRunner:
    """OpenVINO as OpenVinoRunner sets it up: CPU, f32 inference precision, latency hint."""

    name = "openvino"

    def __init__(self):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        self.config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": 1}

    def run(self, model_bytes: bytes, feeds: dict) -> list:
        try:
            model = self.core.read_model(io.BytesIO(model_bytes))
            compiled = self.core.compile_model(model, "CPU", self.config)
        except Exception as exc:
            raise _LoadError(_first_line(exc)) from exc
        request = compiled.create_infer_request()
        inputs = {}
        for port in compiled.inputs:
            name = port.get_any_name()
            value = feeds.get(name)
            if isinstance(value, list) or value is None:
                raise _Unfeedable("sequence or optional input")
            inputs[name] = value.astype(str) if value.dtype.kind == "O" else value
        result = request.infer(inputs)
        return [np.array(result[port], copy=True) for port in compiled.outputs]


class _LoadError(Exception):
    pass


_CASE_RUNNERS = {"onnxruntime": _OrtCaseRunner, "openvino": _OpenVinoCaseRunner}


def run_case(case: ConformanceCase, runner) -> tuple[str, str]:
    """Run one conformance case in one engine: (status, detail)."""
    run = _run_case(case, runner)
    return run.status, run.detail


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
        if ref.dtype.kind in "biu":
            off = ref != out
        else:
            off = ~np.isclose(out.astype(np.complex128 if out.dtype.kind == "c" else np.float64),
                              ref.astype(np.complex128 if ref.dtype.kind == "c" else np.float64),
                              rtol=RTOL, atol=ATOL, equal_nan=True)
        first = np.asarray(self.inputs[0]) if self.inputs and self.inputs[0] is not None else None
        same = first is not None and not isinstance(self.inputs[0], list) and first.shape == ref.shape
        rows = []
        for index in np.flatnonzero(off.ravel())[:limit]:
            value = first.ravel()[index].item() if same else None
            rows.append((int(index), value, ref.ravel()[index].item(), out.ravel()[index].item()))
        return rows


def _run_case(case: ConformanceCase, runner) -> CaseRun:
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
        reason = _outputs_match(expected, got, values=not _is_random(case))
    except _Unfeedable as exc:
        return CaseRun(name, backend, "skipped", f"harness cannot compare {exc}", inputs, expected)
    if reason is None:
        return CaseRun(name, backend, "pass", "", inputs, expected, got)
    return CaseRun(name, backend, "wrong", reason, inputs, expected, got)


def conformance_case(name: str, directory: str | Path | None = None) -> ConformanceCase:
    """One ONNX node test by name, e.g. ``"test_cast_FLOAT_to_DOUBLE"`` (as in the matrix's failures).

    Read from the wheel's test files when it ships them; otherwise only the generator
    module the name points to is imported (``test_cast_...`` -> ``cast``), a fraction of a
    second, with the full generation (seconds) as the fallback.
    """
    folder = Path(directory) if directory is not None else node_test_dir()
    if folder.is_dir() and (folder / name / "model.onnx").is_file():
        for case in _cases_from_files(folder, None):
            if case.name == name:
                return case
    import pkgutil
    import warnings

    import onnx.backend.test.case.node as node_cases

    def found():
        for case in node_cases._NodeTestCases:
            if case.kind == "node" and case.name == name:
                inputs, outputs = case.data_sets[0]
                return ConformanceCase(case.name, case.model, list(inputs), list(outputs))
        return None

    modules = {m.name for m in pkgutil.iter_modules(node_cases.__path__) if not m.ispkg}
    tokens = name.removeprefix("test_").split("_")
    guesses = []
    for k in range(len(tokens), 0, -1):
        for joined in ("_".join(tokens[:k]).lower(), "".join(tokens[:k]).lower()):
            for module in (joined, f"{joined}_"):
                if module in modules and module not in guesses:
                    guesses.append(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators overflow on purpose (see _generated_cases)
        case = found()
        for module in guesses:
            if case is not None:
                break
            importlib.import_module(f"{node_cases.__name__}.{module}")
            case = found()
        if case is None:
            node_cases.collect_testcases()
            case = found()
    if case is None:
        raise DeployLabError(f"no ONNX node test named {name!r} in onnx {_onnx_version()}; names look like "
                             "'test_cast_FLOAT_to_DOUBLE' (see SupportMatrix.failures())")
    return case


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def rerun_case(name: str, backend: str) -> CaseRun:
    """Run one conformance case again in ``backend`` (``"onnxruntime"`` or ``"openvino"``), with
    the settings the matrix used, and keep the values, so that a "wrong" verdict can be looked at."""
    if backend not in _CASE_RUNNERS:
        raise DeployLabError(f"cannot run conformance cases in {backend!r}; use one of {', '.join(_CASE_RUNNERS)}")
    return _run_case(conformance_case(name), _CASE_RUNNERS[backend]())


def _normalise_output(value):
    if value is None or isinstance(value, (list, tuple)):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in _STANDARD_KINDS:
        raise _Unfeedable(f"dtype {array.dtype}")
    return array


# ---------------------------------------------------------------- the matrix
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
    unknown = [b for b in backends if b not in _CASE_RUNNERS]
    if unknown or not backends:
        raise DeployLabError(
            f"cannot measure backend(s) {', '.join(map(repr, unknown or backends))}; the support matrix "
            f"is measured for {', '.join(_CASE_RUNNERS)}"
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DeployLabError(f"limit must be a positive number of cases or None, got {limit!r}")
    out_path = Path(out_path)
    current = versions(backends)
    if out_path.is_file() and not rebuild:
        try:
            existing = json.loads(out_path.read_text())
        except json.JSONDecodeError:
            existing = {}
        if (existing.get("backends") == list(backends) and existing.get("limit") == limit
                and all(existing.get("versions", {}).get(k) == current[k] for k in ("onnx", *backends))):
            return existing
    runners = [_CASE_RUNNERS[b]() for b in backends]
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
                                 "status": status, "detail": detail[:_DETAIL_CHARS]})
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
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(_compact_json(matrix))
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


# ---------------------------------------------------------------- reading the matrix
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
        key = f"{_domain_name(domain)}::{op_type}"
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
    if not path.is_file():
        raise DeployLabError(
            f"support matrix {str(path)!r} does not exist; build it once with "
            "`python -c 'from deploylab.support import build_support_matrix; build_support_matrix()'` "
            "(a few minutes)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DeployLabError(f"{str(path)!r} is not a support matrix (invalid JSON: {exc}); rebuild it") from exc
    if data.get("format") != MATRIX_FORMAT or "ops" not in data:
        raise DeployLabError(f"{str(path)!r} is not a deploylab support matrix (format {data.get('format')!r})")
    return SupportMatrix(data, str(path))


# ---------------------------------------------------------------- one model
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
    tensorrt_source: str = f"{TENSORRT_DOC_VERSION}, {TENSORRT_DOC_URL}"

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
            domain = _domain_name(node.domain)
            counts[(domain, node.op_type, _opset_for(model, node.domain))] += 1
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
    except DeployLabError as exc:
        # The runner's message keeps one line; the engine's own text (its __cause__)
        # names the operators it could not convert, which is what this report needs.
        cause = exc.__cause__
        detail = engine_error_summary(str(cause), limit=400) if cause is not None else str(exc)
        return LoadResult(backend, False, detail or str(exc))
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


TENSORRT_RECIPE_HINT = f"quantize with the TensorRT recipe ({TENSORRT_INT8_COMMAND})"


def _check_tensorrt_qdq(onnx_path: str | Path, ops: list[OpSupport]) -> None:
    """Mark the Q/DQ rows whose nodes TensorRT's ONNX parser rejects or reads differently.

    NVIDIA's table says "Y (zero point must be 0)"; whether *this* file keeps that rule is in
    its nodes (:func:`deploylab.quantize.report.tensorrt_qdq_problems`).
    """
    rows = {op.op_type: op for op in ops
            if op.domain == "ai.onnx" and op.op_type in ("QuantizeLinear", "DequantizeLinear")}
    if not rows:
        return
    from deploylab.quantize.report import tensorrt_qdq_problems

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
