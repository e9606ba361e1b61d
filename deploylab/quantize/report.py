"""Comparing quantized candidates: many int8 variants from one calibration, one fidelity table.

Three questions a quantization study asks, each answered by one function here:

- *What do the options do?* :func:`quantize_variants` builds several ONNX Runtime int8
  variants (per-tensor or per-channel weights, calibration methods, Q/DQ formats) from one
  pre-processing and one calibration pass per method, so that a grid of variants costs one
  calibration per method instead of one per variant, and the variants differ only in
  what they were asked to differ in.
- *Is each candidate still the same model?* :func:`evaluate_candidates` runs every
  (precision, engine) candidate on the evaluation views and the labelled photos and
  returns its fidelity to the fp32 reference, the :func:`~deploylab.quantize.evaluate.check_fidelity`
  verdict and its labelled accuracy, as a :class:`CandidateTable` that prints as one table.
- *Why does per-tensor int8 hurt this model?* :func:`per_tensor_weight_levels` counts the
  int8 levels each output channel of a convolution keeps under one per-tensor scale;
  :func:`zero_range_tensors` explains calibration ranges of exactly (0, 0).

:func:`deploylab.plots.plot_quality_speed` draws the quality/latency/size trade-off with a legend instead of
point labels (labels of nearby points overlap) and a quality axis fitted to the data.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.backends.tensorrt.qdq import (  # noqa: F401  (re-exported: notebooks and tests import them here)
    TENSORRT_QUANTIZED_TYPES,
    TensorRTQdqProblem,
    summarize_tensorrt_problems,
    tensorrt_qdq_problems,
)
from deploylab.errors import DeployLabError
from deploylab.onnx_qdq import model_of, nonzero, qdq_nodes
from deploylab.quantize._common import QuantizationReport
from deploylab.quantize.int8 import (
    collect_tensors_data,
    prepare_for_quantization,
    quantize_int8_from_ranges,
    split_int8_options,
)
from deploylab.quantize.evaluate import (
    Fidelity,
    FidelityBudget,
    FidelityVerdict,
    LabelledAccuracy,
    check_fidelity,
    fidelity,
    labelled_accuracy,
    predict,
)

def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# ---------------------------------------------------------------- many variants, one calibration
def quantize_variants(
    onnx_in: str | Path,
    calibration: np.ndarray,
    variants: Mapping[str, Mapping],
    out_dir: str | Path,
    stem: str | None = None,
    preprocess: bool = True,
    progress: bool | None = False,
) -> dict[str, QuantizationReport]:
    """int8 variants of ``onnx_in``, ``{name: options}`` -> ``{name: report}``.

    ``options`` are keyword arguments of
    :func:`~deploylab.quantize.int8.quantize_int8_onnxruntime` (``method``, ``per_channel``,
    ``activation_type``, ``extra_options``, ...). The model is pre-processed once and
    calibrated once per distinct (method, calibrator options) on ``calibration``; every
    variant is then quantized from those ranges, written to
    ``out_dir / f"{stem}_{name}.onnx"`` (name lower-cased, non-alphanumerics as ``_``).
    Each report's ``seconds`` is its own quantization time; the shared calibration time
    is in its notes.
    """
    from deploylab.onnx_tools import load_onnx

    onnx_in, out_dir = Path(onnx_in), Path(out_dir)
    if not variants:
        raise DeployLabError("no variants to build; give {name: quantize_int8_onnxruntime options}")
    split = {}
    for name, options in variants.items():
        if not isinstance(options, Mapping):
            raise DeployLabError(f"variant {name!r}: options must be a dict of quantize_int8_onnxruntime "
                                 f"arguments, got {type(options).__name__}")
        fixed = {"preprocess", "progress", "onnx_in", "onnx_out", "calibration"} & set(options)
        if fixed:
            raise DeployLabError(f"variant {name!r} sets {', '.join(sorted(fixed))}, which quantize_variants "
                                 "decides for all variants")
        split[name] = split_int8_options(options)
    stem = stem or onnx_in.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    reports: dict[str, QuantizationReport] = {}
    with tempfile.TemporaryDirectory(prefix="deploylab-variants-") as tmp:
        source, pre_notes = (prepare_for_quantization(onnx_in, Path(tmp) / "prep.onnx") if preprocess
                             else (onnx_in, []))
        source_model = load_onnx(source)
        preprocessed = preprocess and source != onnx_in
        calibrated: dict[tuple, tuple[object, float]] = {}
        for name, (calibration_options, qdq) in split.items():
            method = calibration_options.get("method", "minmax")
            key = (method, repr(sorted((calibration_options.get("calibrator_options") or {}).items())),
                   calibration_options.get("batch_size"))
            if key not in calibrated:
                start = time.perf_counter()
                tensors = collect_tensors_data(source, calibration, method, calibration_options.get("batch_size"),
                                               calibration_options.get("calibrator_options"), progress=progress,
                                               model=source_model)
                calibrated[key] = (tensors, time.perf_counter() - start)
            tensors, calibration_seconds = calibrated[key]
            report = quantize_int8_from_ranges(source, out_dir / f"{stem}_{_slug(name)}.onnx", tensors, qdq,
                                               method, len(calibration), source_model=source_model)
            reports[name] = dataclasses.replace(
                report, source=str(onnx_in),
                settings={**report.settings, "preprocessed": preprocessed},
                notes=pre_notes + report.notes + [f"calibration ({method}, {len(calibration)} samples, "
                                                  f"{calibration_seconds:.1f} s) shared by the variants using it"],
            )
    return reports


# ---------------------------------------------------------------- candidates on views and photos
@dataclass(frozen=True)
class CandidateResult:
    """One (precision, engine) candidate: fidelity to the fp32 reference, verdict, labelled accuracy."""

    label: str
    engine: str
    fidelity: Fidelity
    verdict: FidelityVerdict
    views: LabelledAccuracy  # accuracy on the evaluation views (accepted label set of each view's photo)
    photos: LabelledAccuracy  # accuracy on the labelled photos themselves

    def to_dict(self) -> dict:
        return {"label": self.label, "engine": self.engine, "fidelity": self.fidelity.to_dict(),
                "verdict": self.verdict.verdict, "reasons": list(self.verdict.reasons),
                "views_top1": self.views.top1, "views_top5": self.views.top5,
                "photos_top1": self.photos.top1, "photos_top5": self.photos.top5,
                "photos_correct": list(self.photos.correct_top1)}


@dataclass
class CandidateTable:
    """Every candidate's :class:`CandidateResult` (the reference first) and its outputs on the views."""

    reference: tuple[str, str]
    results: list[CandidateResult]
    outputs: dict[tuple[str, str], np.ndarray]  # every candidate's outputs on the views (N, C)

    @property
    def reference_outputs(self) -> np.ndarray:
        return self.outputs[self.reference]

    def __getitem__(self, key: tuple[str, str]) -> CandidateResult:
        for r in self.results:
            if (r.label, r.engine) == tuple(key):
                return r
        known = ", ".join(f"{r.label!r}/{r.engine!r}" for r in self.results)
        raise KeyError(f"no candidate {key!r}; the table has {known}")

    def __iter__(self):
        return iter(self.results)

    def to_dict(self) -> dict:
        return {"reference": list(self.reference), "candidates": [r.to_dict() for r in self.results]}

    def format(self) -> str:
        """One row per candidate: fidelity on the views, accuracy, verdict."""
        width = max(len("candidate"), *(len(r.label) for r in self.results))
        engine = max(len("engine"), *(len(r.engine) for r in self.results))
        header = (f"{'candidate':<{width}} {'engine':<{engine}} {'top-1 agr':>9} {'top-5 ovl':>9} {'mean KL':>9} "
                  f"{'max|dlogit|':>11} {'views top-1':>11} {'photos':>6}  verdict")
        lines = [header, "-" * len(header)]
        for r in self.results:
            f = r.fidelity
            verdict = "reference" if (r.label, r.engine) == self.reference else r.verdict.verdict
            lines.append(f"{r.label:<{width}} {r.engine:<{engine}} {f.top1_agreement:9.2%} {f.top5_overlap or 0:9.2%} "
                         f"{f.mean_kl or 0:9.2e} {f.max_abs_error:11.3g} {r.views.top1:11.1%} "
                         f"{f'{sum(r.photos.correct_top1)}/{r.photos.samples}':>6}  {verdict}")
        return "\n".join(lines)

    def format_photos(self) -> str:
        """Labelled-photo top-1 per precision (rows) and engine (columns); '-' where it did not run."""
        engines = list(dict.fromkeys(r.engine for r in self.results))
        labels = list(dict.fromkeys(r.label for r in self.results))
        cell = {(r.label, r.engine): f"{sum(r.photos.correct_top1)}/{r.photos.samples} ({r.photos.top1:.0%})"
                for r in self.results}
        width = max(len(x) for x in labels) + 2
        lines = [f"{'photos top-1':<{width}}" + "".join(f"{e:>16}" for e in engines)]
        lines += [f"{label:<{width}}" + "".join(f"{cell.get((label, e), '-'):>16}" for e in engines)
                  for label in labels]
        return "\n".join(lines)


def evaluate_candidates(
    candidates: Mapping[tuple[str, str], object],
    views,
    photos: tuple[np.ndarray, list],
    reference: tuple[str, str] | None = None,
    budget: FidelityBudget | None = None,
    batch_size: int = 32,
) -> CandidateTable:
    """Run each ``{(label, engine): runner or model path}`` on ``views`` and ``photos``.

    ``views``: a :class:`~deploylab.data.calibration.LabelledViews`; ``photos``: (images,
    accepted label sets), e.g. the first two items of
    :func:`~deploylab.quantize.evaluate.labelled_photo_batch`. ``reference``: the key of the
    fp32 candidate every other one is compared with (default: the first). Each candidate
    runs once over the views (fidelity and view accuracy come from the same outputs) and
    once over the photos.
    """
    images, accepted = photos[0], photos[1]
    keys = [tuple(k) for k in candidates]
    reference = tuple(reference) if reference is not None else keys[0] if keys else None
    if reference not in keys:
        raise DeployLabError(f"reference {reference!r} is not one of the candidates {keys}")
    budget = budget or FidelityBudget()
    outputs = {reference: predict(candidates[reference], views.images, batch_size=batch_size)}
    results = []
    for key in [reference] + [k for k in keys if k != reference]:
        if key not in outputs:
            outputs[key] = predict(candidates[key], views.images, batch_size=batch_size)
        out = outputs[key]
        f = fidelity(outputs[reference], out)
        results.append(CandidateResult(key[0], key[1], f, check_fidelity(f, budget),
                                       labelled_accuracy(out, views.accepted),
                                       labelled_accuracy(predict(candidates[key], images, batch_size=batch_size),
                                                         accepted)))
    return CandidateTable(reference, results, outputs)


# ---------------------------------------------------------------- why per-tensor hurts
@dataclass(frozen=True)
class WeightLevels:
    """How many int8 levels the output channels of one Conv keep under a single per-tensor scale.

    With one symmetric scale ``max|w| / 127`` for the whole tensor, an output channel whose
    largest weight is ``a`` uses only ``127 * a / max|w|`` of the 127 positive levels;
    per-channel scales give every channel all 127.
    """

    node: str
    group: int  # 1 for a full convolution; equal to the channel count for a depthwise one
    channels: int
    median_levels: float  # median over output channels of the levels kept, of 127
    min_levels: float

    @property
    def depthwise(self) -> bool:
        return self.group > 1 and self.group == self.channels


def per_tensor_weight_levels(onnx_path: str | Path) -> list[WeightLevels]:
    """:class:`WeightLevels` of every Conv with a constant weight, fewest median levels first."""
    import onnx
    from onnx import numpy_helper

    from deploylab.onnx_tools import load_onnx

    model = load_onnx(onnx_path)
    weights = {t.name: t for t in model.graph.initializer}
    weights.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"})
    rows = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
        per_channel = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        top = per_channel.max()
        levels = 127 * per_channel / top if top > 0 else np.zeros_like(per_channel)
        group = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        rows.append(WeightLevels(node.name, int(group), int(w.shape[0]), float(np.median(levels)),
                                 float(levels.min())))
    if not rows:
        raise DeployLabError(f"{Path(onnx_path).name} has no Conv with a constant weight")
    return sorted(rows, key=lambda r: r.median_levels)


def zero_range_tensors(onnx_path: str | Path, ranges: Mapping[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """The calibrated tensors whose range is exactly (0, 0), each with what reads it.

    Returns ``(tensor, "Conv input 2 (bias)")``-style pairs, from the graph of ``onnx_path``
    (the file the ranges were collected on). A tensor that is identically zero on every
    calibration input is almost always a constant: a bias that is all zeros.
    """
    from deploylab.onnx_tools import load_onnx

    graph = load_onnx(onnx_path, load_external_data=False).graph
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            role = " (bias)" if node.op_type in ("Conv", "Gemm") and index == 2 else ""
            readers.setdefault(name, []).append(f"{node.op_type} input {index}{role}")
    return [(name, ", ".join(readers.get(name, ["a graph output"])))
            for name, (low, high) in ranges.items() if low == 0 and high == 0]


# ---------------------------------------------------------------- the Q/DQ format of a model
# The Q/DQ reader is deploylab.onnx_qdq; TensorRT's parser rules are deploylab.backends.tensorrt.qdq
# (re-exported here: notebooks and tests import them from deploylab.quantize.report).
@dataclass(frozen=True)
class QdqFormat:
    """The integer types and zero points of a Q/DQ model's QuantizeLinear/DequantizeLinear nodes."""

    nodes: int
    types: dict[str, int]  # quantized element type -> node count
    nonzero_zero_points: int  # nodes whose zero point is not all zeros (asymmetric)

    @property
    def symmetric_signed(self) -> bool:
        """Signed int8 only, every zero point 0: the int8 format TensorRT's ONNX parser builds."""
        return self.nodes > 0 and set(self.types) == {"int8"} and self.nonzero_zero_points == 0

    def format(self) -> str:
        kinds = ", ".join(f"{t} x{n}" for t, n in self.types.items()) or "none"
        return (f"{self.nodes} Q/DQ nodes ({kinds}), {self.nonzero_zero_points} with a non-zero zero point: "
                f"{'symmetric signed' if self.symmetric_signed else 'not symmetric signed int8'}")


def qdq_format(onnx_path) -> QdqFormat:
    """Count a Q/DQ model's quantized types and asymmetric (non-zero zero point) nodes.

    ``onnx_path``: an ONNX file or a loaded ``onnx.ModelProto``.
    """
    nodes = qdq_nodes(model_of(onnx_path))
    types: dict[str, int] = {}
    for n in nodes:
        types[n.quantized_type] = types.get(n.quantized_type, 0) + 1
    return QdqFormat(len(nodes), dict(sorted(types.items())), sum(nonzero(n.zero_point) for n in nodes))
