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
   file instead of calibrating again. The per-layer sensitivity analysis reuses the same
   cache for every variant.

:func:`quantize_int8_for_tensorrt` runs the same route with :data:`TENSORRT_INT8_RECIPE` (signed,
symmetric, float biases), the only Q/DQ format TensorRT's ONNX parser takes, and checks the result.

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
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.log import info
from deploylab.paths import replace_when_done
from deploylab.quantize._common import (
    QuantizationReport,
    check_onnx_valid,
    file_bytes,
    op_histogram,
    quiet_tools,
    single_input,
    weight_bytes,
)

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
OPENVINO_PRESETS = ("performance", "mixed")
CALIBRATION_BATCH = 8  # samples per calibration run when the model's batch dim is free
_ORT_LOGGERS = ("onnxruntime", "onnxruntime.quantization")


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise DeployLabError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    _check_choice("method", method, METHODS)
    return getattr(CalibrationMethod, METHODS[method])


def cpu_saturates_int8() -> bool:
    """True on an x86 CPU without VNNI/AMX int8, where u8 x s8 kernels can saturate (use 7-bit weights)."""
    from deploylab.env import cpu_has_vnni

    machine = platform.machine().lower()
    return machine in ("x86_64", "amd64", "i386", "i686", "x86") and not cpu_has_vnni()


# ---------------------------------------------------------------- step 1: pre-processing
def prepare_for_quantization(onnx_in: str | Path, onnx_out: str | Path) -> tuple[Path, list[str]]:
    """``quant_pre_process`` into ``onnx_out``; on failure fall back, returning (model to use, notes).

    Tries the full pre-processing, then without symbolic shape inference (the step that
    fails on data-dependent shapes), then gives up and returns ``onnx_in`` unchanged.
    """
    from onnxruntime.quantization import quant_pre_process

    notes = []
    attempts = ({}, {"skip_symbolic_shape": True})
    for options in attempts:
        try:
            with quiet_tools(*_ORT_LOGGERS):
                quant_pre_process(str(onnx_in), str(onnx_out), **options)
            if options:
                notes.append("quant_pre_process succeeded only without symbolic shape inference")
            return Path(onnx_out), notes
        except Exception as exc:  # ORT raises plain Exception for incomplete shape inference
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            notes.append(f"quant_pre_process{' (skip_symbolic_shape)' if options else ''} failed: {first}")
    notes.append("quantizing the model without pre-processing (expect less speed-up: fewer fused ops)")
    for note in notes:
        info(note)
    return Path(onnx_in), notes


# ---------------------------------------------------------------- step 2: calibration
class _OneBatch:
    """A reader that yields one feed, so that each ``collect_data`` call sees one batch."""

    def __init__(self, feed):
        self.feed = feed

    def get_next(self):
        feed, self.feed = self.feed, None
        return feed


def _batch_size(model_path: Path, requested: int | None) -> int:
    spec = single_input(model_path)
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
):
    """Run ORT's calibrator on ``calibration``; return its ``TensorsData`` (tensor -> TensorData).

    ``calibrator_options`` go to ``create_calibrator`` (e.g. ``{"percentile": 99.99}``,
    ``{"symmetric": False}``, ``{"num_bins": 4096}``).
    """
    from onnxruntime.quantization import create_calibrator

    from deploylab.data.calibration import CalibrationReader, check_calibration_array

    model_path = Path(model_path)
    spec = single_input(model_path)
    calibration = check_calibration_array(calibration, spec.shape)
    batch = _batch_size(model_path, batch_size)
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
    with tempfile.TemporaryDirectory(prefix="deploylab-calib-") as tmp, quiet_tools(*_ORT_LOGGERS):
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
        del calibrator  # its session holds the augmented model open
    return tensors


def _plain_ranges(tensors) -> dict[str, tuple[float, float]]:
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
    return _plain_ranges(collect_tensors_data(onnx_path, calibration, method, batch_size, progress=progress))


def tensorrt_cache_from_ranges(
    ranges: Mapping[str, tuple[float, float]],
    path: str | Path,
    version: str,
    algorithm: str = "EntropyCalibration2",
) -> Path:
    """Write ``ranges`` as a TensorRT calibration cache for TensorRT ``version`` (major.minor.patch, e.g. "10.13.3").

    Each scale is TensorRT's symmetric int8 scale ``max(|min|, |max|) / 127`` as float32.
    The header names the calibrator that will *read* the cache (TensorRT ignores a cache
    whose header does not match its version and calibrator), not how the ranges were
    found. Tensors whose range is exactly (0, 0) cannot get a scale and are left out.
    """
    from deploylab.backends.tensorrt import calibration_header, scales_from_ranges, write_calibration_cache

    if not ranges:
        raise DeployLabError("no tensor ranges to write; calibrate first (calibration_ranges)")
    usable = {n: r for n, r in ranges.items() if max(abs(r[0]), abs(r[1])) > 0}
    skipped = sorted(set(ranges) - set(usable))
    if skipped:
        info(f"TensorRT cache: {len(skipped)} tensor(s) with range (0, 0) left out: {', '.join(skipped[:5])}")
    scales = scales_from_ranges(usable)
    return write_calibration_cache(path, scales, version_tag=calibration_header(version, algorithm))


DIGITS_INPUT, IMAGENET_INPUT = (1, 32, 32), (3, 224, 224)
DEFAULT_SAMPLES = {DIGITS_INPUT: 300, IMAGENET_INPUT: 64}


def calibration_for_model(
    onnx_path: str | Path, data: str | Path | None = None, num_samples: int | None = None, seed: int = 0
) -> tuple[np.ndarray, str]:
    """Calibration samples for ``onnx_path`` and a line saying where they come from.

    With ``data`` (an .npy/.npz file or an image folder) they are loaded and checked
    against the model input. Without it, a 1x32x32 input gets digits from the train split
    (300 by default) and an image input augmented views of the shipped photos (64 by
    default), preprocessed as the file's deploylab metadata says (else the mmcls pipeline,
    3x224x224 only); any other input needs ``data``.
    """
    from deploylab.onnx_tools import preprocessing_for_artifact
    from deploylab.data.calibration import (
        digits_calibration,
        image_calibration,
        load_calibration_data,
    )

    spec = single_input(onnx_path)
    if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                    or num_samples < 1):
        raise DeployLabError(f"number of calibration samples {num_samples!r} must be a positive integer")
    prep, _ = preprocessing_for_artifact(onnx_path)
    if data is not None:
        samples = load_calibration_data(data, spec.shape, limit=num_samples, preprocessing=prep)
        return samples, f"{len(samples)} samples from {data}"
    sample_shape = tuple(spec.shape[1:])
    if sample_shape == DIGITS_INPUT:
        count = num_samples or DEFAULT_SAMPLES[DIGITS_INPUT]
        return digits_calibration(count, seed), f"{count} digits from the train split (seed {seed})"
    if prep is not None and sample_shape == prep.input_shape:
        count = num_samples or DEFAULT_SAMPLES[IMAGENET_INPUT]
        return (image_calibration(count, seed, preprocessing=prep),
                f"{count} augmented views of the shipped photos, {prep.name} (seed {seed})")
    if sample_shape == IMAGENET_INPUT:
        count = num_samples or DEFAULT_SAMPLES[IMAGENET_INPUT]
        return image_calibration(count, seed), f"{count} augmented views of the shipped photos (seed {seed})"
    raise DeployLabError(
        f"no built-in calibration set for input {spec.name!r} of shape {spec.shape_text()} (built in: "
        "Nx1x32x32 digits, Nx3x224x224 photos); give representative inputs with --calib-data DIR_OR_NPZ"
    )


PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear's axis attribute (per-channel scales) arrived in opset 13


def _per_channel_opset(model_path: Path, upgraded_path: Path) -> tuple[Path, str | None]:
    """Upgrade a model below opset 13 so that per-channel Q/DQ nodes are valid in it.

    quantize_static writes DequantizeLinear with an ``axis`` attribute whatever the
    model's opset; in an opset 11 model (the notes' export call) the result is invalid and
    ONNX Runtime itself refuses to load it ("Unrecognized attribute: axis").
    """
    import onnx

    from deploylab.onnx_tools import default_opset, load_onnx

    model = load_onnx(model_path)
    opset = default_opset(model)
    if opset >= PER_CHANNEL_MIN_OPSET:
        return model_path, None
    try:
        upgraded = onnx.version_converter.convert_version(model, PER_CHANNEL_MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError/ConvertError for ops it cannot adapt
        raise DeployLabError(
            f"per-channel int8 needs opset >= {PER_CHANNEL_MIN_OPSET} (DequantizeLinear's axis), the model has "
            f"opset {opset} and the ONNX version converter failed ({str(exc).splitlines()[0][:200]}); re-export "
            f"with opset >= {PER_CHANNEL_MIN_OPSET} or pass per_channel=False"
        ) from exc
    onnx.save(upgraded, str(upgraded_path))
    return upgraded_path, (f"opset {opset} upgraded to {PER_CHANNEL_MIN_OPSET}: per-channel DequantizeLinear "
                           "needs its axis attribute")


# ---------------------------------------------------------------- step 3: quantize (ORT)
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
    _tensors=None,
) -> QuantizationReport:
    """Static int8 quantization in Q/DQ format with ONNX Runtime; returns a report.

    ``calibration``: float32 samples (N, ...) shaped like the model input, never the
    evaluation data. ``method``: minmax, entropy or percentile. ``activation_type`` /
    ``weight_type``: uint8 or int8. ``nodes_to_exclude``: node names kept in float (after
    pre-processing; see :func:`prepare_for_quantization`). ``reduce_range``: 7-bit
    weights; None = on when this CPU lacks VNNI (see the module docstring).
    ``extra_options`` go to ``quantize_static`` unchanged.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from deploylab.onnx_tools import load_onnx

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    _check_choice("method", method, METHODS)
    _check_choice("activation_type", activation_type, QUANT_TYPES)
    _check_choice("weight_type", weight_type, QUANT_TYPES)
    if nodes_to_exclude is not None and (isinstance(nodes_to_exclude, str)
                                         or not all(isinstance(n, str) for n in nodes_to_exclude)):
        raise DeployLabError(f"nodes_to_exclude={nodes_to_exclude!r} must be a list of node names")
    model = load_onnx(onnx_in)
    spec = single_input(model)
    from deploylab.data.calibration import check_calibration_array

    calibration = check_calibration_array(calibration, spec.shape)
    notes: list[str] = []
    if reduce_range is None:
        reduce_range = cpu_saturates_int8()
        if reduce_range:
            notes.append("reduce_range: 7-bit weights, because this x86 CPU has no VNNI and ORT's u8 x s8 "
                         "kernels would saturate int16 sums with 8-bit weights")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploylab-int8-") as tmp:
        tmp = Path(tmp)
        source = onnx_in
        if preprocess:
            source, pre_notes = prepare_for_quantization(onnx_in, tmp / "preprocessed.onnx")
            notes += pre_notes
        if per_channel:
            source, opset_note = _per_channel_opset(source, tmp / "opset13.onnx")
            notes += [opset_note] if opset_note else []
        excluded = list(nodes_to_exclude or [])
        if excluded:
            names = {n.name for n in load_onnx(source, load_external_data=False).graph.node}
            unknown = [n for n in excluded if n not in names]
            if unknown:
                raise DeployLabError(
                    f"nodes_to_exclude names {', '.join(map(repr, unknown))}, which the "
                    f"{'pre-processed ' if preprocess else ''}model does not have; list its Conv/Gemm/MatMul "
                    "nodes with deploylab.quantize.quantizable_nodes"
                )
        tensors = _tensors if _tensors is not None else collect_tensors_data(
            source, calibration, method, batch_size, calibrator_options, progress)
        cache = tmp / "ranges.json"
        save_tensors_data(tensors, cache)
        onnx_out.parent.mkdir(parents=True, exist_ok=True)
        with quiet_tools(*_ORT_LOGGERS) as messages:
            quantize_static(
                str(source),
                str(onnx_out),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=getattr(QuantType, QUANT_TYPES[activation_type]),
                weight_type=getattr(QuantType, QUANT_TYPES[weight_type]),
                nodes_to_exclude=excluded,
                calibrate_method=_calibration_method(method),
                extra_options=dict(extra_options or {}),
                calibration_cache_path=str(cache),
            )
        notes += [m for m in messages if "pre-process" not in m and "pre_process" not in m][:5]
        preprocessed = preprocess and not any("without pre-processing" in n for n in notes)
    seconds = time.perf_counter() - start
    check_onnx_valid(onnx_out)
    return QuantizationReport(
        mode="int8",
        tool="onnxruntime.quantization (Q/DQ)",
        source=str(onnx_in),
        output=str(onnx_out),
        seconds=seconds,
        file_bytes_before=file_bytes(onnx_in),
        file_bytes_after=file_bytes(onnx_out),
        weight_bytes_before=weight_bytes(model),
        weight_bytes_after=weight_bytes(onnx_out),
        settings={"preprocessed": preprocessed, "per_channel": per_channel, "reduce_range": reduce_range,
                  "activations": activation_type, "weights": weight_type,
                  "excluded": excluded or "none"},
        method=method,
        num_samples=len(calibration),
        ranges=_plain_ranges(tensors),
        op_histogram=op_histogram(onnx_out),
        notes=notes,
    )


# ---------------------------------------------------------------- the TensorRT recipe
#: quantize_int8_onnxruntime options for the Q/DQ model TensorRT 11 builds strongly typed (it has no int8
#: calibrators: the Q/DQ nodes *are* the int8 model). TensorRT's ONNX parser takes signed int8 with zero
#: points of 0 only (see :func:`deploylab.quantize.report.tensorrt_qdq_problems`), hence int8 activations
#: and weights, both symmetric. Per-channel weights: TensorRT takes one scale per output channel for
#: weights (per-tensor for activations, which ORT's activations are). QuantizeBias=False keeps biases
#: float: ORT would store them as int32 behind a DequantizeLinear, which TensorRT's DequantizeLayer
#: refuses ("only activation types allowed as input to this layer", microsoft/onnxruntime#14229), and
#: TensorRT adds a float bias inside its int8 convolution/GEMM kernels itself, so nothing is lost.
#: reduce_range=False: 7-bit weights only work around the int16 saturation of ORT's u8 x s8 kernels on
#: x86 CPUs without VNNI; on TensorRT they would only throw a bit of every weight away.
TENSORRT_INT8_RECIPE = {
    "activation_type": "int8",
    "weight_type": "int8",
    "per_channel": True,
    "reduce_range": False,
    "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
}
# Why each option the recipe fixes cannot be overridden (the others, e.g. per_channel, can).
_TENSORRT_FIXED = {
    "activation_type": "TensorRT quantizes activations to signed int8 only; its parser rejects uint8 or reads it "
                       "as int8",
    "weight_type": "TensorRT's parser rejects uint8 weights",
    "ActivationSymmetric": "TensorRT rejects non-zero zero points",
    "WeightSymmetric": "TensorRT rejects non-zero zero points",
    "QuantizeBias": "TensorRT's DequantizeLayer refuses the int32 biases it makes",
}


def _tensorrt_options(overrides: Mapping) -> dict:
    """The recipe with ``overrides`` applied; refuses unknown options and those that break the format."""
    import inspect

    known = set(inspect.signature(quantize_int8_onnxruntime).parameters) - {
        "onnx_in", "onnx_out", "calibration", "method", "_tensors"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DeployLabError(f"{', '.join(unknown)}: not an option of quantize_int8_onnxruntime; the TensorRT "
                             f"recipe takes {', '.join(sorted(known))}")
    extra = dict(overrides.get("extra_options") or {})
    changed = [(key, overrides[key]) for key in ("activation_type", "weight_type")
               if key in overrides and overrides[key] != TENSORRT_INT8_RECIPE[key]]
    changed += [(key, extra[key]) for key, value in TENSORRT_INT8_RECIPE["extra_options"].items()
                if key in extra and extra[key] != value]
    if changed:
        key, value = changed[0]
        raise DeployLabError(f"{key}={value!r} breaks the TensorRT recipe ({_TENSORRT_FIXED[key]}); drop it, or "
                             "call quantize_int8_onnxruntime for a model meant for ONNX Runtime")
    options = {**TENSORRT_INT8_RECIPE, **overrides}
    options["extra_options"] = {**extra, **TENSORRT_INT8_RECIPE["extra_options"]}
    return options


def quantize_int8_for_tensorrt(
    onnx_in: str | Path,
    onnx_out: str | Path,
    calibration: np.ndarray,
    method: str = "minmax",
    **overrides,
) -> QuantizationReport:
    """int8 Q/DQ model for TensorRT: :func:`quantize_int8_onnxruntime` with :data:`TENSORRT_INT8_RECIPE`.

    Signed int8 activations and per-channel weights, zero points 0, float biases: the format
    TensorRT 11 builds strongly typed (``trtexec --stronglyTyped``, ``deploylab build --strongly-typed``).
    ``overrides`` are other :func:`quantize_int8_onnxruntime` arguments (``nodes_to_exclude``,
    ``per_channel``, ``calibrator_options``, ...); one that would break the format (e.g.
    ``activation_type="uint8"``) is refused. The result is checked with
    :func:`~deploylab.quantize.report.tensorrt_qdq_problems` before it is moved to ``onnx_out``: a
    model TensorRT would not take raises :class:`DeployLabError` naming the nodes and is not written.
    """
    from deploylab.quantize.report import qdq_format, summarize_tensorrt_problems, tensorrt_qdq_problems

    options = _tensorrt_options(overrides)
    onnx_out = Path(onnx_out)
    if onnx_out.suffix != ".onnx":
        raise DeployLabError(f"output {str(onnx_out)!r} must end in .onnx")
    # Same folder, so the rename is atomic; the checked model replaces onnx_out, a failed check writes nothing.
    with replace_when_done(onnx_out, suffix=".onnx") as staged:
        report = quantize_int8_onnxruntime(onnx_in, staged, calibration, method=method, **options)
        problems = tensorrt_qdq_problems(staged)
        if problems:
            raise DeployLabError(f"the TensorRT recipe gave a model TensorRT's ONNX parser would not take: "
                                 f"{summarize_tensorrt_problems(problems)}")
        fmt = qdq_format(staged)
    return dataclasses.replace(
        report,
        output=str(onnx_out),
        settings={"recipe": "tensorrt", **report.settings, "symmetric": True, "biases": "float"},
        notes=report.notes + [f"TensorRT check passed: {fmt.format()}"],
    )


# ---------------------------------------------------------------- OpenVINO / NNCF
@contextlib.contextmanager
def _no_cuda_notice():
    """Hide torch's "No CUDA runtime is found" warning, which nncf triggers on a CPU machine."""
    import logging

    import torch  # noqa: F401  (first: importing torch would reset the level set below)

    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        cpp_logger.setLevel(level)


def quantize_int8_openvino(
    onnx_or_xml: str | Path,
    out_xml: str | Path,
    calibration: np.ndarray,
    subset_size: int | None = None,
    preset: str = "performance",
    ignored_scope: Sequence[str] | None = None,
    fast_bias_correction: bool = True,
) -> QuantizationReport:
    """int8 post-training quantization of an ONNX file or OpenVINO IR with NNCF; saves an IR.

    ``calibration``: float32 samples (N, ...) for the single input; ``subset_size``: how
    many NNCF uses (default: all). ``preset``: ``performance`` (symmetric activations and
    weights) or ``mixed`` (asymmetric activations, for non-ReLU models). ``ignored_scope``:
    OpenVINO operation names left in float. The IR gets FakeQuantize operations that the
    CPU plugin turns into int8 kernels; weights are stored as int8.
    """
    from deploylab.backends.openvino import _ov
    from deploylab.data.calibration import check_calibration_array
    from deploylab.onnx_tools import load_onnx

    ov = _ov()
    onnx_or_xml, out_xml = Path(onnx_or_xml), Path(out_xml)
    if out_xml.suffix != ".xml":
        raise DeployLabError(f"OpenVINO IR path {str(out_xml)!r} must end in .xml (the .bin is written beside it)")
    _check_choice("preset", preset, OPENVINO_PRESETS)
    if onnx_or_xml.suffix == ".onnx":
        load_onnx(onnx_or_xml, load_external_data=False)
    elif onnx_or_xml.suffix != ".xml" or not onnx_or_xml.is_file():
        raise DeployLabError(f"{str(onnx_or_xml)!r} is not an existing .onnx file or OpenVINO .xml IR")
    from deploylab.errors import require

    with _no_cuda_notice():
        nncf = require("nncf", "nncf", "int8 quantization for OpenVINO")
    core = ov.Core()
    model = ov.convert_model(str(onnx_or_xml)) if onnx_or_xml.suffix == ".onnx" else core.read_model(str(onnx_or_xml))
    if len(model.inputs) != 1:
        raise DeployLabError(f"NNCF calibration here feeds one input; {onnx_or_xml.name} has {len(model.inputs)}")
    port = model.inputs[0]
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    calibration = check_calibration_array(calibration, shape)
    batch = shape[0] if isinstance(shape[0], int) else 1
    if len(calibration) < batch:
        raise DeployLabError(f"the model's batch dim is fixed at {batch}; give at least {batch} calibration samples")
    items = [calibration[i : i + batch] for i in range(0, len(calibration) - batch + 1, batch)]
    if subset_size is not None and (isinstance(subset_size, bool) or not isinstance(subset_size, int)
                                    or subset_size < 1):
        raise DeployLabError(f"subset_size={subset_size!r} must be a positive integer")
    subset = min(subset_size or len(items), len(items))
    scope = None
    if ignored_scope:
        if isinstance(ignored_scope, str):
            raise DeployLabError(f"ignored_scope={ignored_scope!r} must be a list of operation names")
        scope = nncf.IgnoredScope(names=list(ignored_scope))
    start = time.perf_counter()
    try:
        with quiet_tools("nncf") as messages, _no_cuda_notice():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                preset=getattr(nncf.QuantizationPreset, preset.upper()),
                subset_size=subset,
                ignored_scope=scope,
                fast_bias_correction=fast_bias_correction,
            )
    except nncf.ValidationError as exc:  # e.g. ignored_scope names that are not in the model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise DeployLabError(f"NNCF refused the settings: {first}") from exc
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    seconds = time.perf_counter() - start
    source_weights = (onnx_or_xml.with_suffix(".bin").stat().st_size if onnx_or_xml.suffix == ".xml"
                      else weight_bytes(onnx_or_xml))
    histogram: dict[str, int] = {}
    for op in quantized.get_ops():
        histogram[op.get_type_name()] = histogram.get(op.get_type_name(), 0) + 1
    return QuantizationReport(
        mode="int8",
        tool=f"nncf {nncf.__version__} -> OpenVINO IR",
        source=str(onnx_or_xml),
        output=str(out_xml),
        seconds=seconds,
        file_bytes_before=file_bytes(onnx_or_xml),
        file_bytes_after=file_bytes(out_xml),
        weight_bytes_before=source_weights,
        weight_bytes_after=out_xml.with_suffix(".bin").stat().st_size,
        settings={"preset": preset, "fast_bias_correction": fast_bias_correction,
                  "ignored": list(ignored_scope or []) or "none"},
        method="nncf (min/max statistics, bias correction)",
        num_samples=subset * batch,
        op_histogram=dict(sorted(histogram.items(), key=lambda kv: -kv[1])),
        notes=messages[:5],
    )
