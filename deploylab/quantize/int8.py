"""int8 post-training quantization with calibration: ONNX Runtime (Q/DQ) and OpenVINO (NNCF).

ONNX Runtime route, in three steps that deploylab keeps visible:

1. ``quant_pre_process`` (symbolic shape inference + ORT's basic graph optimizations, e.g.
   BatchNorm folded into Conv), so that fewer, larger ops are quantized. It fails on some
   models; deploylab then retries without symbolic shape inference, then quantizes the
   model as given, and says so in the report.
2. Calibration: ORT's calibrator (``create_calibrator`` -> ``collect_data`` ->
   ``compute_data``) runs the model on the calibration samples and returns a
   ``TensorsData`` mapping each activation tensor to a ``TensorData`` whose
   ``range_value`` is (min, max): MinMax takes the extremes, Entropy the range that
   minimises the KL divergence of the int8 histogram, Percentile cuts the tails (and is
   symmetric by default). deploylab collects one batch per ``collect_data`` call (the
   histogram collectors cannot stack batches of different sizes, and memory stays bounded).
3. ``quantize_static`` in Q/DQ format, reading those ranges from a calibration cache
   file instead of calibrating again, with the options of a :class:`QdqOptions` (as ORT's
   ``StaticQuantConfig``). The per-layer sensitivity analysis and the variant grid reuse the
   same ranges for every variant.

Each step is a public function (:func:`prepare_for_quantization`, :func:`collect_tensors_data`,
:func:`quantize_int8_from_ranges`); :func:`quantize_int8_onnxruntime` chains them, reading the
model file once and passing the loaded model on. The TensorRT recipe is in
:mod:`deploylab.quantize.tensorrt_int8`, the OpenVINO (NNCF) route in
:mod:`deploylab.quantize.openvino_int8`.

The defaults follow what was measured (notebook 06 and ``benchmarks/bench_quantization.py``
measure them again on your CPU): pre-processed, unsigned int8
activations (``uint8``), signed per-channel weights. On an x86 CPU without VNNI, ORT's
integer kernels multiply uint8 x int8 pairs with AVX2 ``vpmaddubsw``, whose int16 sum
saturates when weights use all 8 bits; ``reduce_range=None`` therefore picks 7-bit weights
on such a CPU (on LeNet, with its sigmoid activations and [0, 1] inputs, full-range weights
gave a max logit error of 3.1 in ORT's fused int8 kernels against 0.17 when the same Q/DQ
graph is evaluated in float). The OpenVINO documentation describes the same "saturation
issue" for non-VNNI CPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploylab.backends.onnxruntime import quiet_default_logger
from deploylab.errors import DeployLabError, EngineError
from deploylab.log import info
from deploylab.paths import WRITE_ERRNOS, cannot_write, replace_when_done
from deploylab.quantize._common import (
    QuantizationReport,
    check_onnx_valid,
    file_bytes,
    onnx_report,
    quiet_tools,
    single_input,
    weight_bytes,
)
from deploylab.text import first_line

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
CALIBRATION_BATCH = 8  # samples per calibration run when the model's batch dim is free
#: Options of quantize_int8_onnxruntime that change the calibration itself (one pass each); all the
#: others (the fields of QdqOptions) only change how the calibrated ranges become Q/DQ nodes.
CALIBRATION_KEYS = ("method", "calibrator_options", "batch_size")
ORT_LOGGERS = ("onnxruntime", "onnxruntime.quantization")
PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear's axis attribute (per-channel scales) arrived in opset 13


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else a :class:`DeployLabError` naming both."""
    if value not in choices:
        raise DeployLabError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    check_choice("method", method, METHODS)
    return getattr(CalibrationMethod, METHODS[method])


def cpu_saturates_int8() -> bool:
    """True on an x86 CPU without VNNI/AMX int8, where u8 x s8 kernels can saturate (use 7-bit weights)."""
    from deploylab.env import cpu_has_vnni

    machine = platform.machine().lower()
    return machine in ("x86_64", "amd64", "i386", "i686", "x86") and not cpu_has_vnni()


@dataclass(frozen=True)
class QdqOptions:
    """How calibrated ranges become Q/DQ nodes: the ``quantize_static`` settings (ORT's ``StaticQuantConfig``).

    ``activation_type`` / ``weight_type``: uint8 or int8. ``nodes_to_exclude``: node names kept
    in float (after pre-processing; see :func:`prepare_for_quantization`). ``reduce_range``: 7-bit
    weights; None = on when this CPU lacks VNNI (see the module docstring; :meth:`resolved`).
    ``extra_options`` go to ``quantize_static`` unchanged.
    """

    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    nodes_to_exclude: Sequence[str] | None = None
    reduce_range: bool | None = None
    extra_options: Mapping | None = field(default=None)

    def __post_init__(self):
        check_choice("activation_type", self.activation_type, QUANT_TYPES)
        check_choice("weight_type", self.weight_type, QUANT_TYPES)
        excluded = self.nodes_to_exclude
        if excluded is not None and (isinstance(excluded, str) or not all(isinstance(n, str) for n in excluded)):
            raise DeployLabError(f"nodes_to_exclude={excluded!r} must be a list of node names")

    @property
    def excluded(self) -> list[str]:
        return list(self.nodes_to_exclude or [])

    def resolved(self) -> tuple[QdqOptions, list[str]]:
        """These options with ``reduce_range=None`` decided for this CPU, and the note saying why."""
        if self.reduce_range is not None:
            return self, []
        if not cpu_saturates_int8():
            return dataclasses.replace(self, reduce_range=False), []
        return dataclasses.replace(self, reduce_range=True), [
            "reduce_range: 7-bit weights, because this x86 CPU has no VNNI and ORT's u8 x s8 "
            "kernels would saturate int16 sums with 8-bit weights"]

    def settings(self, preprocessed: bool) -> dict:
        """The report's settings line."""
        return {"preprocessed": preprocessed, "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "activations": self.activation_type, "weights": self.weight_type,
                "excluded": self.excluded or "none"}


def split_int8_options(options: Mapping) -> tuple[dict, QdqOptions]:
    """``quantize_int8_onnxruntime``-style keyword options -> (calibration ones, :class:`QdqOptions`)."""
    calibration = {k: v for k, v in options.items() if k in CALIBRATION_KEYS}
    qdq_fields = {f.name for f in dataclasses.fields(QdqOptions)}
    unknown = sorted(set(options) - set(CALIBRATION_KEYS) - qdq_fields)
    if unknown:
        raise DeployLabError(f"{', '.join(unknown)}: not an option of quantize_int8_onnxruntime; give "
                             f"{', '.join(sorted(set(CALIBRATION_KEYS) | qdq_fields))}")
    return calibration, QdqOptions(**{k: v for k, v in options.items() if k in qdq_fields})


# ---------------------------------------------------------------- step 1: pre-processing
def prepare_for_quantization(onnx_in: str | Path, onnx_out: str | Path) -> tuple[Path, list[str]]:
    """``quant_pre_process`` into ``onnx_out``; on failure fall back, returning (model to use, notes).

    Tries the full pre-processing, then without symbolic shape inference (the step that
    fails on data-dependent shapes), then gives up and returns ``onnx_in`` unchanged.
    """
    from onnxruntime.quantization import quant_pre_process

    notes = []
    attempts = ({}, {"skip_symbolic_shape": True})
    onnx_in, onnx_out = Path(onnx_in).resolve(), Path(onnx_out).resolve()
    for options in attempts:
        try:
            # in a folder of its own: ORT's symbolic shape inference drops "sym_shape_infer_temp.onnx"
            # into the working directory when it gives up
            with quiet_tools(*ORT_LOGGERS), tempfile.TemporaryDirectory(prefix="deploylab-prep-") as cwd, \
                    working_directory(cwd):
                quant_pre_process(str(onnx_in), str(onnx_out), **options)
            if options:
                notes.append("quant_pre_process succeeded only without symbolic shape inference")
            return Path(onnx_out), notes
        except Exception as exc:  # ORT raises plain Exception for incomplete shape inference
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:  # a full disk: no fallback helps
                raise cannot_write(exc.filename or onnx_out, exc) from None
            first = first_line(exc, limit=200)
            notes.append(f"quant_pre_process{' (skip_symbolic_shape)' if options else ''} failed: {first}")
    notes.append("quantizing the model without pre-processing (expect less speed-up: fewer fused ops)")
    for note in notes:
        info(note)
    if not _has_external_data(onnx_in):
        # ORT's calibrator writes "<model>-inferred.onnx" beside the model it is given (and leaves it
        # when it fails): give it a copy in onnx_out's (temporary) folder, never the user's file.
        shutil.copyfile(onnx_in, onnx_out)
        return Path(onnx_out), notes
    return Path(onnx_in), notes


@contextlib.contextmanager
def working_directory(path: str | Path):
    """Run the block in ``path`` as the current directory (restored after, also on error)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _has_external_data(path: str | Path) -> bool:
    from onnx.external_data_helper import uses_external_data

    from deploylab.onnx_tools import load_onnx

    model = load_onnx(path, load_external_data=False)
    return any(uses_external_data(t) for t in model.graph.initializer)


def upgrade_for_per_channel(model_path: Path, model, upgraded_path: Path) -> tuple[Path, object, str | None]:
    """Upgrade a model below opset 13 so that per-channel Q/DQ nodes are valid in it.

    ``model`` is ``model_path`` loaded. Returns (path to quantize, its model, note or None).
    quantize_static writes DequantizeLinear with an ``axis`` attribute whatever the
    model's opset; in an opset 11 model (the notes' export call) the result is invalid and
    ONNX Runtime itself refuses to load it ("Unrecognized attribute: axis").
    """
    import onnx

    from deploylab.onnx_tools import default_opset

    opset = default_opset(model)
    if opset >= PER_CHANNEL_MIN_OPSET:
        return model_path, model, None
    try:
        upgraded = onnx.version_converter.convert_version(model, PER_CHANNEL_MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError/ConvertError for ops it cannot adapt
        raise DeployLabError(
            f"per-channel int8 needs opset >= {PER_CHANNEL_MIN_OPSET} (DequantizeLinear's axis), the model has "
            f"opset {opset} and the ONNX version converter failed ({first_line(exc, limit=200)}); re-export "
            f"with opset >= {PER_CHANNEL_MIN_OPSET} or pass per_channel=False"
        ) from exc
    onnx.save(upgraded, str(upgraded_path))
    return upgraded_path, upgraded, (f"opset {opset} upgraded to {PER_CHANNEL_MIN_OPSET}: per-channel "
                                     "DequantizeLinear needs its axis attribute")


def check_nodes_to_exclude(model, excluded: Sequence[str], preprocessed: bool) -> None:
    """Raise unless every name in ``excluded`` is a node of ``model`` (the model that will be quantized)."""
    names = {n.name for n in model.graph.node}
    unknown = [n for n in excluded if n not in names]
    if unknown:
        raise DeployLabError(
            f"nodes_to_exclude names {', '.join(map(repr, unknown))}, which the "
            f"{'pre-processed ' if preprocessed else ''}model does not have; list its Conv/Gemm/MatMul "
            "nodes with deploylab.quantize.quantizable_nodes"
        )


# ---------------------------------------------------------------- step 2: calibration
class _OneBatch:
    """A reader that yields one feed, so that each ``collect_data`` call sees one batch."""

    def __init__(self, feed):
        self.feed = feed

    def get_next(self):
        feed, self.feed = self.feed, None
        return feed


def _batch_size(spec, requested: int | None) -> int:
    fixed = spec.shape[0] if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None
    if fixed is not None:
        if requested is not None and requested != fixed:
            raise DeployLabError(f"the model's batch dim is fixed at {fixed}; batch_size={requested} cannot be fed")
        return fixed
    return requested or CALIBRATION_BATCH


def _op_types_to_quantize() -> list[str]:
    # quantize_static calibrates the inputs/outputs of every op type it can quantize;
    # calibrating the same set gives a cache it accepts.
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def collect_tensors_data(
    model_path: str | Path,
    calibration: np.ndarray,
    method: str = "minmax",
    batch_size: int | None = None,
    calibrator_options: Mapping | None = None,
    progress: bool | None = None,
    model=None,
):
    """Run ORT's calibrator on ``calibration``; return its ``TensorsData`` (tensor -> TensorData).

    ``calibrator_options`` go to ``create_calibrator`` (e.g. ``{"percentile": 99.99}``,
    ``{"symmetric": False}``, ``{"num_bins": 4096}``). ``model``: ``model_path`` already
    loaded, to read its input without loading the file again.
    """
    from onnxruntime.quantization import create_calibrator

    from deploylab.data.calibration import CalibrationReader, check_calibration_array

    model_path = Path(model_path)
    spec = single_input(model if model is not None else model_path)
    calibration = check_calibration_array(calibration, spec.shape)
    batch = _batch_size(spec, batch_size)
    fixed = isinstance(spec.shape[0], int) and spec.shape[0] > 0
    usable = len(calibration) - len(calibration) % batch if fixed else len(calibration)
    if usable == 0:
        raise DeployLabError(
            f"the model's batch dim is fixed at {batch} but only {len(calibration)} calibration samples were given"
        )
    if usable < len(calibration):
        info(f"calibration: the model takes batches of exactly {batch}; the last "
             f"{len(calibration) - usable} samples are left out")
    reader = CalibrationReader(calibration[:usable], spec.name, batch, progress=progress,
                               desc=f"calibrating ({method})")
    with tempfile.TemporaryDirectory(prefix="deploylab-calib-") as tmp, quiet_tools(*ORT_LOGGERS), \
            quiet_default_logger():
        try:
            calibrator = create_calibrator(
                model_path,
                _op_types_to_quantize(),
                augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=_calibration_method(method),
                extra_options=dict(calibrator_options or {}),
            )
            for feed in reader:
                calibrator.collect_data(_OneBatch(feed))
            tensors = calibrator.compute_data()
        except DeployLabError:
            raise
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS:
                raise cannot_write(exc.filename or tmp, exc) from None
            raise
        except Exception as exc:  # noqa: BLE001 - ORT's calibrator loads and runs the model: its errors are the engine's
            raise EngineError(f"ONNX Runtime's calibrator failed on {str(model_path)!r}: {first_line(exc, limit=240)}; "
                              "check that the model runs (`deploylab run`), or re-export it",
                              engine_text=str(exc)) from exc
        del calibrator  # its session holds the augmented model open
    return tensors


def plain_ranges(tensors) -> dict[str, tuple[float, float]]:
    """ORT's ``TensorsData`` as ``{tensor name: (min, max)}`` floats."""
    return {name: (float(np.min(data.range_value[0])), float(np.max(data.range_value[1])))
            for name, data in tensors.items()}


def calibration_ranges(
    onnx_path: str | Path,
    calibration: np.ndarray,
    method: str = "minmax",
    batch_size: int | None = None,
    progress: bool | None = None,
) -> dict[str, tuple[float, float]]:
    """``{tensor name: (min, max)}`` that ORT's ``method`` calibrator finds on ``calibration``.

    The model is used as given (no pre-processing), so the names are those of the ONNX
    file another engine (e.g. TensorRT) will parse.
    """
    return plain_ranges(collect_tensors_data(onnx_path, calibration, method, batch_size, progress=progress))


# ---------------------------------------------------------------- step 3: write the Q/DQ model
def quantize_int8_from_ranges(
    source: str | Path,
    onnx_out: str | Path,
    tensors,
    options: QdqOptions,
    method: str = "minmax",
    num_samples: int | None = None,
    *,
    source_model=None,
    preprocessed: bool = False,
) -> QuantizationReport:
    """Write the int8 Q/DQ model of ``source`` from calibrated ``tensors`` (:func:`collect_tensors_data`).

    ``quantize_static`` reads the ranges from a calibration cache instead of calibrating
    again, so several variants (options) cost one calibration. ``source`` is quantized as
    it is (pre-process it first: :func:`prepare_for_quantization`); below opset 13 a
    per-channel model is upgraded first. ``source_model``: ``source`` already loaded.
    ``method`` and ``num_samples`` describe the calibration, for the report.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from deploylab.onnx_tools import load_onnx

    source, onnx_out = Path(source), Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    options, notes = options.resolved()
    model = source_model if source_model is not None else load_onnx(source)
    given = model  # its weights are the "before" of the report, whatever the opset upgrade adds
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploylab-int8-") as tmp:
        tmp = Path(tmp)
        path = source
        if options.per_channel:
            path, model, opset_note = upgrade_for_per_channel(source, model, tmp / "opset13.onnx")
            notes += [opset_note] if opset_note else []
        check_nodes_to_exclude(model, options.excluded, preprocessed)
        cache = tmp / "ranges.json"
        save_tensors_data(tensors, cache)
        with replace_when_done(onnx_out, suffix=".onnx") as staged, quiet_tools(*ORT_LOGGERS) as messages:
            quantize_static(
                str(path),
                str(staged),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=getattr(QuantType, QUANT_TYPES[options.activation_type]),
                weight_type=getattr(QuantType, QUANT_TYPES[options.weight_type]),
                nodes_to_exclude=options.excluded,
                calibrate_method=_calibration_method(method),
                extra_options=dict(options.extra_options or {}),
                calibration_cache_path=str(cache),
            )
            check_onnx_valid(staged, onnx_out)  # before it replaces anything at onnx_out
        notes += [m for m in messages if "pre-process" not in m and "pre_process" not in m][:5]
    seconds = time.perf_counter() - start
    return onnx_report(
        "int8", "onnxruntime.quantization (Q/DQ)", source, onnx_out, seconds, given,
        load_onnx(onnx_out, load_external_data=False),
        settings=options.settings(preprocessed), method=method, num_samples=num_samples,
        ranges=plain_ranges(tensors), notes=notes,
    )


# ---------------------------------------------------------------- the three steps in one call
def quantize_int8_onnxruntime(
    onnx_in: str | Path,
    onnx_out: str | Path,
    calibration: np.ndarray,
    method: str = "minmax",
    per_channel: bool = True,
    preprocess: bool = True,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    nodes_to_exclude: Sequence[str] | None = None,
    reduce_range: bool | None = None,
    batch_size: int | None = None,
    calibrator_options: Mapping | None = None,
    extra_options: Mapping | None = None,
    progress: bool | None = None,
) -> QuantizationReport:
    """Static int8 quantization in Q/DQ format with ONNX Runtime; returns a report.

    ``calibration``: float32 samples (N, ...) shaped like the model input, never the
    evaluation data. ``method``: minmax, entropy or percentile. The other options are
    those of :class:`QdqOptions` (how ranges become Q/DQ nodes) and of
    :func:`collect_tensors_data` (``batch_size``, ``calibrator_options``). Runs the three
    steps of the module docstring, the model file read once.
    """
    from deploylab.data.calibration import check_calibration_array
    from deploylab.onnx_tools import load_onnx

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    check_choice("method", method, METHODS)
    options = QdqOptions(per_channel, activation_type, weight_type, nodes_to_exclude, reduce_range, extra_options)
    model = load_onnx(onnx_in)
    calibration = check_calibration_array(calibration, single_input(model).shape)
    options, notes = options.resolved()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploylab-int8-") as tmp:
        tmp = Path(tmp)
        source, source_model = onnx_in, model
        if preprocess:
            source, pre_notes = prepare_for_quantization(onnx_in, tmp / "preprocessed.onnx")
            notes += pre_notes
            source_model = model if source == onnx_in else load_onnx(source)
        if per_channel:  # before calibrating, so that the ranges are those of the graph quantized
            source, source_model, opset_note = upgrade_for_per_channel(source, source_model, tmp / "opset13.onnx")
            notes += [opset_note] if opset_note else []
        check_nodes_to_exclude(source_model, options.excluded, preprocess)
        tensors = collect_tensors_data(source, calibration, method, batch_size, calibrator_options, progress,
                                       model=source_model)
        preprocessed = preprocess and not any("without pre-processing" in n for n in notes)
        report = quantize_int8_from_ranges(source, onnx_out, tensors, options, method, len(calibration),
                                           source_model=source_model, preprocessed=preprocessed)
    return dataclasses.replace(
        report, source=str(onnx_in), seconds=time.perf_counter() - start,
        file_bytes_before=file_bytes(onnx_in), weight_bytes_before=weight_bytes(model),
        notes=notes + report.notes,
    )
