"""PyTorch -> ONNX with either exporter, and a report of what was really produced.

Two exporters live behind ``torch.onnx.export``:

- ``"dynamo"`` (the default since PyTorch 2.9): captures the model with
  ``torch.export`` and translates the graph with onnxscript. Its lowest opset is 18: a
  request for an older opset gives an 18 model and a logged conversion failure. Dynamic
  dimensions are declared with ``dynamic_shapes`` and ``torch.export.Dim``.
- ``"torchscript"`` (``dynamo=False``, deprecated): traces the model with TorchScript,
  honours old opsets such as the notes' 11, declares dynamic dims with ``dynamic_axes``.

Exporters are chatty (progress lines, warnings, tracebacks from the version converter).
By default that text is captured into the report instead of the screen, and anything a
user must know (such as an opset that differs from the request) is raised as a
:class:`ExportWarning`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploylab.compare import ArrayComparison, ComparisonVerdicts, compare_arrays
from deploylab.errors import DeployLabError
from deploylab.log import native_output
from deploylab.onnx_tools import OnnxSummary, summarize_onnx
from deploylab.paths import WRITE_ERRNOS, cannot_write, replace_with_siblings_when_done
from deploylab.text import first_line

EXPORTERS = ("dynamo", "torchscript")
DYNAMO_MIN_OPSET = 18
BATCH_DIM_NAME = "batch"
# A single protobuf cannot exceed 2 GiB; below this the weights stay inside the .onnx file.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000
_CHATTY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")


class ExportWarning(UserWarning):
    """Something about an export the user should know (e.g. the opset differs from the request)."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` produced: the exporter's settings plus a summary of the file."""

    exporter: str
    requested_opset: int | None
    seconds: float
    summary: OnnxSummary
    dynamic_batch: bool
    warnings: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def path(self) -> Path:
        return Path(self.summary.path)

    @property
    def opset(self) -> int:
        return self.summary.opset

    def format(self) -> str:
        asked = "exporter default" if self.requested_opset is None else str(self.requested_opset)
        head = (
            f"exporter:    {self.exporter} ({self.seconds:.2f} s)\n"
            f"opset asked: {asked}, opset in file: {self.opset}\n"
        )
        return head + self.summary.format()


class _CapturingHandler(logging.Handler):
    def __init__(self, sink: io.StringIO):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.write(self.format(record) + "\n")


@contextlib.contextmanager
def _captured_output(enabled: bool):
    """Send stdout, stderr and the exporters' loggers to one buffer while ``enabled``."""
    sink = io.StringIO()
    if not enabled:
        yield sink
        return
    handler = _CapturingHandler(sink)
    saved = []
    for name in _CHATTY_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.propagate))
        lg.handlers, lg.propagate = [handler], False
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield sink
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate


def _check_exporter(exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise DeployLabError(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}")


def _parameter_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def _as_args(example_args) -> tuple:
    return tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)


@dataclass
class ExporterRun:
    """One call of ``torch.onnx.export`` as :func:`run_exporter` made it: what it raised (None:
    the file is written), warned, logged and printed from C++."""

    exporter: str
    path: Path
    error: Exception | None
    caught: list[warnings.WarningMessage]
    log: str
    native_log: str
    seconds: float

    @property
    def warnings(self) -> list[str]:
        """The warnings as ``"Category: message"``, each once, in the order they came."""
        return _dedupe(f"{w.category.__name__}: {w.message}" for w in self.caught)


def run_exporter(
    model: nn.Module,
    example_args,
    path: str | Path,
    *,
    exporter: str = "dynamo",
    opset: int | None = None,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
    dynamic_dims: Mapping[int, str] | None = None,
    dynamic_outputs: bool = False,
    capture: bool = True,
    capture_native: bool = False,
    **options,
) -> ExporterRun:
    """Call ``torch.onnx.export`` once (eval mode, no_grad); never raises for an exporter failure.

    The one place deploylab runs an exporter: :func:`export_onnx` raises and reports on top
    of it, :func:`deploylab.problems.export_outcome` shows failures as lessons.
    ``dynamic_dims`` maps axes of the first input to names (``{0: "batch", 2: "length"}``):
    ``torch.export.Dim`` in ``dynamic_shapes`` for dynamo, ``dynamic_axes`` for TorchScript,
    which also marks them on every output when ``dynamic_outputs`` (dynamo infers outputs).
    ``capture`` keeps stdout, stderr and the exporters' loggers in ``log`` instead of the screen;
    ``capture_native`` also keeps what C++ code prints to the process's descriptors 1 and 2
    (the TorchScript exporter's own warnings). ``options`` go to ``torch.onnx.export`` as they
    are (``custom_translation_table``, ``custom_opsets``, ``external_data``, ...).
    """
    _check_exporter(exporter)
    args = _as_args(example_args)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    input_names, output_names = list(input_names), list(output_names)
    kwargs: dict = dict(input_names=input_names, output_names=output_names, **options)
    if opset is not None:
        kwargs["opset_version"] = int(opset)
    if exporter == "dynamo":
        # Always let torch print its progress: with capture it goes into the log.
        kwargs.update(dynamo=True, verbose=True)
        if dynamic_dims:
            dims = {axis: torch.export.Dim(name.replace(" ", "_"), min=1) for axis, name in dynamic_dims.items()}
            kwargs["dynamic_shapes"] = tuple(dims if i == 0 else None for i in range(len(args)))
    else:
        kwargs.update(dynamo=False)
        if dynamic_dims:
            marked = input_names[:1] + (output_names if dynamic_outputs else [])
            kwargs["dynamic_axes"] = {name: dict(dynamic_dims) for name in marked}
    if isinstance(model, nn.Module):
        model.eval()
    error = None
    start = time.perf_counter()
    with (warnings.catch_warnings(record=True) as caught, _captured_output(capture) as log,
          native_output(capture_native) as native):
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                torch.onnx.export(model, args, str(path), **kwargs)
        except Exception as exc:  # exporters raise many types; callers word the message
            interrupt = _interrupt_in(exc)
            if interrupt is not None:  # torch.export wraps a Ctrl-C or SIGTERM in its own error
                raise interrupt from None
            error = exc
    return ExporterRun(exporter, path, error, list(caught), log.getvalue(), "".join(native),
                       time.perf_counter() - start)


def _interrupt_in(exc: BaseException) -> BaseException | None:
    """A KeyboardInterrupt (or any non-Exception, such as the CLI's SIGTERM) among ``exc``'s causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if not isinstance(exc, Exception):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def export_onnx(
    model: nn.Module,
    example_args,
    path: str | Path,
    *,
    exporter: str = "dynamo",
    opset: int | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_batch: bool = False,
    verbose: bool = False,
    metadata: dict[str, str] | None = None,
) -> ExportReport:
    """Export ``model`` called as ``model(*example_args)`` to ``path`` and report the result.

    ``exporter`` is ``"dynamo"`` or ``"torchscript"``; ``opset=None`` takes the exporter's
    default. ``dynamic_batch`` makes dim 0 of the first input (and of every output)
    symbolic, named ``batch``. The file is self-contained unless the weights approach
    the 2 GiB protobuf limit. With ``verbose=False`` the exporter's own messages are kept
    in ``report.log``; an opset other than the requested one raises an ExportWarning.
    ``metadata`` (str -> str) is written into the file's ``metadata_props``.
    """
    _check_exporter(exporter)
    if opset is not None and not (7 <= int(opset) <= 30):
        raise DeployLabError(f"opset {opset!r} is out of range; ONNX opsets run from 7 to the low 20s")
    args = _as_args(example_args)
    if not args or not isinstance(args[0], torch.Tensor):
        raise DeployLabError("example_args must start with an input tensor, e.g. (torch.rand(1, 3, 224, 224),)")
    path = Path(path)
    options = {"external_data": _parameter_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES} if exporter == "dynamo" else {}
    # Exported into a temporary folder beside path, moved into place only when complete: a full
    # disk or a failed export leaves the file that was there (and its external data) as it was.
    with replace_with_siblings_when_done(path) as staged:
        run = run_exporter(model, args, staged, exporter=exporter, opset=opset, input_names=input_names or ["input"],
                           output_names=output_names or ["output"],
                           dynamic_dims={0: BATCH_DIM_NAME} if dynamic_batch else None, dynamic_outputs=True,
                           capture=not verbose, **options)
        if isinstance(run.error, OSError) and run.error.errno in WRITE_ERRNOS:
            raise cannot_write(path, run.error) from None
        if run.error is not None:
            raise _export_error(run.error, exporter) from run.error
        _finish_file(staged, dynamic_batch, metadata or {})
    if verbose:
        for w in run.caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    summary = summarize_onnx(path)
    report = ExportReport(exporter, opset, run.seconds, summary, dynamic_batch, run.warnings, run.log)
    if dynamic_batch and summary.inputs and not isinstance(summary.inputs[0].shape[0], str):
        note = (
            f"asked for a dynamic batch, but {path.name}'s input {summary.inputs[0].name!r} has a fixed "
            f"batch of {summary.inputs[0].shape[0]}: something in forward specialises on the batch size "
            "(a Python number computed from x.shape, see notebook 07); keep that arithmetic in torch ops"
        )
        report.warnings.insert(0, note)
        warnings.warn(note, ExportWarning, stacklevel=2)
    if opset is not None and summary.opset != int(opset):
        note = (
            f"asked for opset {opset}, but {path.name} has opset {summary.opset}: the {exporter} "
            f"exporter cannot produce opset {opset}"
            + (f" (its lowest is {DYNAMO_MIN_OPSET}; use exporter='torchscript' for older opsets)"
               if exporter == "dynamo" else "")
        )
        report.warnings.insert(0, note)
        warnings.warn(note, ExportWarning, stacklevel=2)
    return report


def _finish_file(path: Path, dynamic_batch: bool, metadata: dict[str, str]) -> None:
    """Name the batch dim and write ``metadata``, in one rewrite of the file (none if nothing changes)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    changed = _name_batch_dim(model) if dynamic_batch else False
    if metadata:
        from deploylab.onnx_tools import set_metadata

        set_metadata(model, metadata)
        changed = True
    if changed:  # path is export_onnx's staged copy: a failed save here never reaches the user's file
        onnx.save(model, str(path))


def _name_batch_dim(model) -> bool:
    """Call the symbolic batch dim ``batch`` everywhere in ``model``; True if anything changed.

    The dynamo exporter names it after ``Dim`` only when every positional argument is a
    tensor; with the notes' ``(x, False)`` it keeps an internal name such as ``s45``.
    """
    first = model.graph.input[0].type.tensor_type.shape.dim
    old = first[0].dim_param if len(first) else ""
    if not old or old == BATCH_DIM_NAME:
        return False
    for info in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param == old:
                dim.dim_param = BATCH_DIM_NAME
    return True


def _dedupe(messages) -> list[str]:
    seen: dict[str, None] = {}
    for m in messages:
        seen.setdefault(m.strip(), None)
    return list(seen)


def _export_error(exc: Exception, exporter: str) -> DeployLabError:
    other = "torchscript" if exporter == "dynamo" else "dynamo"
    return DeployLabError(
        f"the {exporter} exporter failed: {first_line(exc, limit=300)}. Try exporter={other!r}, or rewrite the "
        "unsupported part of the model (notebook 07 shows how)"
    )


def bundle_metadata(bundle) -> dict[str, str]:
    """What a file exported from ``bundle`` should carry: model, weights, output kind, labels,
    preprocessing (JSON), under ``deploylab.*`` keys of the ONNX ``metadata_props``."""
    import json

    from deploylab.onnx_tools import METADATA_PREFIX

    data = {"model": bundle.name, "weights": bundle.weights, "output_kind": bundle.output_kind}
    if getattr(bundle, "labels", None):
        data["labels"] = bundle.labels
    if getattr(bundle, "preprocessing", None) is not None:
        data["preprocessing"] = json.dumps(bundle.preprocessing.to_dict())
    return {METADATA_PREFIX + key: value for key, value in data.items()}


def export_bundle(bundle, path: str | Path, **kwargs) -> ExportReport:
    """:func:`export_onnx` for a :class:`deploylab.models.ModelBundle` (its args, names and
    metadata: see :func:`bundle_metadata`)."""
    kwargs.setdefault("input_names", bundle.input_names)
    kwargs.setdefault("output_names", bundle.output_names)
    kwargs.setdefault("metadata", bundle_metadata(bundle))
    return export_onnx(bundle.model, bundle.example_args, path, **kwargs)


# ---------------------------------------------------------------- parity
@dataclass
class ParityReport(ComparisonVerdicts):
    """ONNX Runtime against PyTorch on seeded inputs, one comparison per batch size."""

    onnx_path: str
    comparisons: list[ArrayComparison]
    batch_sizes: list[int]

    @property
    def max_abs_error(self) -> float:
        return max(c.max_abs_error for c in self.comparisons)

    def format(self) -> str:
        lines = [f"parity ONNX Runtime vs PyTorch: {self.verdict}"]
        lines += [f"  batch {b}: {c.format()}" for b, c in zip(self.batch_sizes, self.comparisons)]
        return "\n".join(lines)


def verify_export(
    bundle,
    onnx_path: str | Path,
    batch_sizes: tuple[int, ...] | None = None,
    seed: int = 0,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ParityReport:
    """Run ``onnx_path`` in ONNX Runtime (CPU) and ``bundle.reference`` on the same seeded inputs.

    Inputs are uniform in [0, 1) with the bundle's example shape; ``batch_sizes``
    defaults to the example batch, plus batch 3 when the ONNX input has a symbolic batch
    dim (so a dynamic export is proven at a size it was not traced at). Each batch gets
    :func:`deploylab.compare.compare_arrays`'s verdict: PASS, FAIL or DEGENERATE (the PyTorch
    output cannot judge, e.g. near zero from seeded weights).
    """
    from deploylab.backends.onnxruntime import create_session

    session = create_session(onnx_path)
    ort_input = session.get_inputs()[0]
    example_shape = tuple(bundle.input_shape)
    if batch_sizes is None:
        batch_sizes = (example_shape[0],)
        if isinstance(ort_input.shape[0], str) or ort_input.shape[0] is None:
            batch_sizes += (3,)
    comparisons = []
    generator = torch.Generator().manual_seed(seed)
    for batch in batch_sizes:
        x = torch.rand((batch,) + example_shape[1:], generator=generator)
        expected = bundle.reference(x)
        got = session.run(None, {ort_input.name: x.numpy()})[0]
        comparisons.append(compare_arrays(expected, np.asarray(got), atol=atol, rtol=rtol,
                                          name=session.get_outputs()[0].name))
    return ParityReport(str(onnx_path), comparisons, list(batch_sizes))
