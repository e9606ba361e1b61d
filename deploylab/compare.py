"""Numbers that say how close two model outputs are, and a verdict against tolerances.

The verdict is PASS, FAIL or DEGENERATE. With ``s`` the reference's scale (its max abs
value) and ``atol``, ``rtol`` the tolerances, PASS needs all of:

1. every value finite, and the reference not degenerate (below);
2. every element within ``a + rtol * |reference|``, where the absolute part
   ``a = min(atol, max(rtol, 1%) * s)``: numpy's ``allclose`` rule, except that ``atol`` may
   not exceed 1% (or ``rtol``, if larger) of the output's own size. A floor for errors near
   zero must stay small next to the output, or a reference of 1e-9 passes any candidate
   below 1e-4, including one that is 100% off;
3. cosine similarity at least 0.995 (an error orthogonal to the reference of at most ~10% of
   its norm), whatever the tolerances;
4. for (batch, classes) outputs, the same top-1 class in every row, except where the
   reference itself has a tie: its two classes closer than the tolerance and than 1% of ``s``.

Checks 3 and 4 are backstops: with tight tolerances check 2 all but implies them, but no
loose ``atol`` or ``rtol`` can make a PASS of outputs whose cosine or top-1 class differ.

A reference is DEGENERATE when the check cannot judge a candidate against it: its max abs
is below 1e-6 (near-zero outputs, as torchvision's plain seeded init gives for
mobilenet_v3_small or vit_b_16), every row is constant (the output does not depend on the
class), or, when there is more than one row and the rows' inputs differ, every row is the same
(the output does not depend on the input). "Constant" and "the same" mean within the
tolerance and within 0.1% of ``s``, so that a loose tolerance never blames the reference. A
degenerate comparison is not a pass: ``passed`` is False and ``degenerate`` True. Rows that
merely predict the same class are not degenerate: a trained LeNet calls every seeded noise
image a 0, but its scores still depend on the input.

The metrics themselves (max abs error, the whole-array cosine and the mean per-row cosine, top-1
agreement, top-k overlap, mean KL, an ``isclose`` mismatch line) are plain functions here, used by
this verdict, by the fidelity study of :mod:`deploylab.quantize.evaluate` and by the support and
problem checks, so that each number means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deploylab.errors import DeployLabError

#: ``atol`` counts only up to this fraction of the reference's max abs (or ``rtol``, if larger).
SCALE_ATOL_FRACTION = 1e-2
#: PASS needs at least this cosine similarity, whatever the tolerances.
COSINE_MIN = 0.995
#: A row's top-1 class may differ only where the reference's two classes are this close (x scale).
TIE_FRACTION = 1e-2
#: A reference whose max abs is below this is near zero: degenerate.
NEAR_ZERO_SCALE = 1e-6
#: Values closer than this (x scale, and within the tolerance) count as the same for "constant".
CONSTANT_FRACTION = 1e-3


@dataclass
class ArrayComparison:
    """How ``candidate`` differs from ``reference`` for one output tensor.

    ``reference_scale`` is the reference's max abs value and ``effective_atol`` the absolute
    tolerance actually applied (``atol`` capped by the scale, see the module docstring).
    ``reason`` says what failed, or why a degenerate reference cannot judge.
    """

    name: str
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    mean_abs_error: float
    cosine_similarity: float
    top1_agreement: float | None
    atol: float
    rtol: float
    passed: bool
    topk: int = 5
    topk_agreement: float | None = None
    reference_scale: float = 0.0
    effective_atol: float = 0.0
    degenerate: bool = False
    reason: str = ""

    @property
    def verdict(self) -> str:
        """``"PASS"``, ``"FAIL"`` or ``"DEGENERATE"`` (the reference cannot judge)."""
        return "DEGENERATE" if self.degenerate else ("PASS" if self.passed else "FAIL")

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def format(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
        if self.topk_agreement is not None:
            top1 += f", top-{self.topk} overlap {self.topk_agreement:.1%}"
        scale = self.reference_scale
        of_scale = f" ({self.max_abs_error / scale:.2g} of it)" if scale > 0 else ""
        atol = f"atol {self.atol:g}"
        if self.effective_atol < self.atol:
            atol = f"atol {self.effective_atol:.3g} (the given {self.atol:g}, capped by the scale)"
        text = (
            f"{self.verdict} {self.name} {'x'.join(map(str, self.shape))}: reference max abs {scale:.3g}, "
            f"max abs error {self.max_abs_error:.3g}{of_scale}, max rel {self.max_rel_error:.3g}, "
            f"mean abs {self.mean_abs_error:.3g}, cosine {self.cosine_similarity:.6f}{top1} "
            f"({atol}, rtol {self.rtol:g})"
        )
        if self.reason:
            text += f"; {'cannot judge' if self.degenerate else 'failed'}: {self.reason}"
        return text


# ---------------------------------------------------------------- metrics
# Every "how close" number in deploylab comes from here. Two cosines, on purpose: the whole-array
# cosine (one number for the flattened tensors, what compare_arrays judges) and the mean per-row
# cosine (each sample's output vector on its own, averaged: what a fidelity study over many inputs
# reports). They agree for one row and differ when rows have different norms.
def max_abs_error(reference, candidate) -> float:
    """max |reference - candidate| in float64; ``inf`` when the shapes differ, 0 for empty arrays."""
    ref, cand = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        return float("inf")
    return float(np.abs(ref - cand).max()) if ref.size else 0.0


def whole_array_cosine(reference, candidate) -> float:
    """Cosine similarity of the two arrays flattened to one vector each.

    1.0 when both are all zeros (equal), 0.0 when only one is.
    """
    ref, cand = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    denom = np.linalg.norm(ref) * np.linalg.norm(cand)
    return float(np.dot(ref.ravel(), cand.ravel()) / denom) if denom > 0 else float(np.array_equal(ref, cand))


def row_cosines(reference, candidate) -> np.ndarray:
    """Cosine similarity of each row (dim 0) of two same-shape arrays, rows flattened; (N,) float64.

    A row pair that is all zeros counts 1.0 when equal, 0.0 otherwise.
    """
    ref, cand = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    ref, cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = np.einsum("ij,ij->i", ref, cand)
    both_zero = norms == 0
    return np.where(both_zero, np.all(ref == cand, axis=1).astype(float), dots / np.where(both_zero, 1, norms))


def mean_row_cosine(reference, candidate) -> float:
    """Mean over rows of :func:`row_cosines`: the per-sample cosine of a fidelity study."""
    return float(row_cosines(reference, candidate).mean())


def top1_agreement(reference, candidate) -> float:
    """Fraction of rows (N, C) whose argmax class is the same in both."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    ref, cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    return float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())


def topk_overlap(reference, candidate, k: int = 5, stable: bool = True) -> float:
    """Mean fraction of the reference's ``k`` best classes (per row of (N, C)) among the candidate's ``k`` best.

    ``stable``: ties broken by class index (a stable sort); False uses numpy's default sort.
    """
    ref, cand = np.asarray(reference), np.asarray(candidate)
    ref, cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    kind = "stable" if stable else None
    best_ref = np.argsort(-ref, axis=1, kind=kind)[:, :k]
    best_cand = np.argsort(-cand, axis=1, kind=kind)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(best_ref, best_cand)]))


def mean_kl_divergence(reference_probabilities, candidate_probabilities) -> float:
    """Mean over rows of KL(p || q) in nats, for rows (N, C) that are probability vectors.

    Zeros are clamped to the smallest float64, so a class the candidate rules out costs a
    large but finite amount.
    """
    p = np.asarray(reference_probabilities, dtype=np.float64)
    q = np.asarray(candidate_probabilities, dtype=np.float64)
    p, q = p.reshape(len(p), -1), q.reshape(len(q), -1)
    tiny = np.finfo(np.float64).tiny
    return float(np.mean(np.sum(p * (np.log(np.maximum(p, tiny)) - np.log(np.maximum(q, tiny))), axis=1)))


def values_mismatch(reference, candidate, rtol: float, atol: float) -> str | None:
    """None when every value is within ``np.isclose(candidate, reference, rtol, atol, equal_nan=True)``;
    else one line: ``"3 of 10 values off, max abs error 0.5"`` (or ``"all at NaN/inf positions"``).

    Same shapes assumed; complex values are compared as complex.
    """
    ref, out = np.asarray(reference), np.asarray(candidate)
    ref64 = ref.astype(np.complex128 if ref.dtype.kind == "c" else np.float64)
    out64 = out.astype(np.complex128 if out.dtype.kind == "c" else np.float64)
    close = np.isclose(out64, ref64, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    diff = np.abs(out64 - ref64)
    off = ~close
    finite = off & np.isfinite(diff)
    worst = f"max abs error {diff[finite].max():.3g}" if finite.any() else "all at NaN/inf positions"
    return f"{int(off.sum())} of {ref.size} values off, {worst}"


def _degenerate_reason(ref: np.ndarray, allowed_abs: float, rtol: float, distinct_inputs: bool) -> str:
    """Why ``ref`` cannot judge a candidate, or "" when it can (see the module docstring)."""
    scale = float(np.abs(ref).max())
    rows = ref.reshape(1, -1) if ref.ndim < 2 else ref.reshape(ref.shape[0], -1)

    def within_tolerance(values, target):  # and within CONSTANT_FRACTION of the scale: loose tolerances
        limit = np.minimum(allowed_abs + rtol * np.abs(target), CONSTANT_FRACTION * scale)  # blame no reference
        return bool(np.all(np.abs(values - target) <= limit))

    if scale < NEAR_ZERO_SCALE:
        why = (f"reference output max abs {scale:.2g} is near zero (below {NEAR_ZERO_SCALE:g}; seeded "
               "weights whose activations vanish give such outputs)")
    elif rows.shape[1] > 1 and within_tolerance(rows, rows.mean(axis=1, keepdims=True)):
        why = (f"every reference row is constant (reference max abs {scale:.3g}): "
               "the output does not depend on the class")
    elif rows.shape[0] > 1 and distinct_inputs and within_tolerance(rows, rows[:1]):
        why = (f"all {rows.shape[0]} reference rows are the same although their "
               "inputs differ: the output does not depend on the input")
    else:
        return ""
    if ref.ndim == 2 and ref.shape[0] > 1 and ref.shape[1] > 1:
        classes = np.unique(ref.argmax(axis=1))
        if len(classes) == 1:
            why += f"; all {ref.shape[0]} rows predict class {classes[0]}"
    return why + ("; the check cannot tell a right candidate from a wrong one: use real weights, "
                  "or an initialisation whose outputs vary with the input and the class")


def compare_arrays(
    reference: np.ndarray,
    candidate: np.ndarray,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    name: str = "output",
    topk: int = 5,
    *,
    distinct_inputs: bool = True,
    check_degenerate: bool = True,
) -> ArrayComparison:
    """Compare two arrays of the same shape; raises if the shapes differ.

    The verdict follows the rule in the module docstring. For (batch, classes) outputs also
    reports top-1 agreement (fraction of rows with the same argmax) and top-k overlap (mean
    fraction of the reference's k best classes that are among the candidate's k best).
    ``distinct_inputs`` says whether the rows (dim 0) come from different inputs: only then
    are identical reference rows degenerate. ``check_degenerate=False`` judges the values
    only (layer-wise comparisons: an intermediate tensor may well be zero or constant).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise DeployLabError(
            f"output {name!r} has shape {cand.shape} but the reference has {ref.shape}; "
            "compare models with the same outputs and batch size"
        )
    diff = np.abs(cand - ref)
    finite = bool(np.isfinite(cand).all() and np.isfinite(ref).all())
    rel = diff / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
    cosine = whole_array_cosine(ref, cand)
    scale = float(np.abs(ref).max()) if ref.size and finite else 0.0
    allowed_abs = min(atol, max(rtol, SCALE_ATOL_FRACTION) * scale)
    allowed = allowed_abs + rtol * np.abs(ref)
    failures = []
    if not finite:
        failures.append("non-finite values")
    elif not np.all(diff <= allowed):
        failures.append(f"{int((diff > allowed).sum())} of {diff.size} values outside atol + rtol * |reference|")
    if finite and cosine < COSINE_MIN:
        failures.append(f"cosine {cosine:.4f} < {COSINE_MIN}")
    top1 = overlap = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        ref_best, cand_best = ref.argmax(axis=1), cand.argmax(axis=1)
        top1 = float((ref_best == cand_best).mean())
        rows = np.arange(len(ref))
        margin = ref[rows, ref_best] - ref[rows, cand_best]
        tie = np.minimum(allowed[rows, ref_best] + allowed[rows, cand_best], TIE_FRACTION * scale)
        changed = int(((ref_best != cand_best) & (margin > tie)).sum())
        if finite and changed:
            failures.append(f"top-1 class differs in {changed} of {len(ref)} rows (no tie in the reference)")
        if ref.shape[1] > topk:
            overlap = topk_overlap(ref, cand, topk, stable=False)
    why_degenerate = ""
    if check_degenerate and finite and ref.size:
        why_degenerate = _degenerate_reason(ref, allowed_abs, rtol, distinct_inputs)
    return ArrayComparison(
        name=name,
        shape=tuple(ref.shape),
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        max_rel_error=float(rel.max()) if rel.size else 0.0,
        mean_abs_error=float(diff.mean()) if diff.size else 0.0,
        cosine_similarity=cosine,
        top1_agreement=top1,
        atol=atol,
        rtol=rtol,
        passed=not failures and not why_degenerate,
        topk=topk,
        topk_agreement=overlap,
        reference_scale=scale,
        effective_atol=allowed_abs,
        degenerate=bool(why_degenerate),
        reason=why_degenerate or "; ".join(failures),
    )


def overall_verdict(comparisons: list[ArrayComparison]) -> tuple[str, str]:
    """``(verdict, reason)`` of several comparisons: FAIL if any failed, else DEGENERATE if any
    could not be judged, else PASS; the reason is that of the first comparison behind it."""
    verdict = next((v for v in ("FAIL", "DEGENERATE") if any(c.verdict == v for c in comparisons)), "PASS")
    return verdict, next((c.reason for c in comparisons if c.verdict == verdict and c.reason), "")


# ---------------------------------------------------------------- runners
class ComparisonVerdicts:
    """The verdict of a list of :class:`ArrayComparison` (``self.comparisons``), for reports that hold one."""

    comparisons: list[ArrayComparison]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def degenerate(self) -> bool:
        """True when some comparison could not be judged (its reference is degenerate)."""
        return any(c.degenerate for c in self.comparisons)

    @property
    def verdict(self) -> str:
        """FAIL if any comparison failed, else DEGENERATE if any could not be judged, else PASS."""
        return overall_verdict(self.comparisons)[0]

    @property
    def reason(self) -> str:
        """What failed, or why the reference cannot judge, in the comparison behind the verdict."""
        return overall_verdict(self.comparisons)[1]


@dataclass
class RunnerComparison(ComparisonVerdicts):
    """Two runners on the same inputs: one :class:`ArrayComparison` per output and input set."""

    reference: str
    candidate: str
    comparisons: list[ArrayComparison]

    def worst(self) -> ArrayComparison:
        return max(self.comparisons, key=lambda c: (c.verdict == "FAIL", not c.passed, c.max_abs_error))

    def format(self) -> str:
        lines = [f"{self.candidate} vs {self.reference}: {self.verdict}"]
        lines += [f"  {c.format()}" for c in self.comparisons]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "passed": self.passed,
                "verdict": self.verdict, "degenerate": self.degenerate,
                "comparisons": [c.to_dict() for c in self.comparisons]}


def _rows_from_distinct_inputs(feed: dict[str, np.ndarray], output: np.ndarray) -> bool:
    """Whether the output's rows (dim 0) come from samples of ``feed`` that differ from each other."""
    if np.ndim(output) < 1 or np.shape(output)[0] < 2:
        return False
    rows = np.shape(output)[0]
    samples = [np.asarray(v) for v in feed.values() if np.ndim(v) >= 1 and np.shape(v)[0] == rows]
    return any(not (a == a[:1]).all() for a in samples)


def compare_runners(
    reference,
    candidate,
    feeds: list[dict[str, np.ndarray]] | None = None,
    *,
    batch_sizes: tuple[int, ...] = (1,),
    seed: int = 0,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    topk: int = 5,
) -> RunnerComparison:
    """Run ``reference`` and ``candidate`` on the same inputs and compare every shared output.

    Without ``feeds``, one seeded feed per batch size is made from the reference's input
    description (symbolic dims other than the batch take 1). Outputs are matched by name,
    or by position when the names differ (a PyTorch reference names its output after the
    bundle; an engine after the graph). The verdict, including DEGENERATE for a reference
    that cannot judge, is :func:`compare_arrays`'s.
    """
    from deploylab.backends.base import seeded_feed

    if feeds is None:
        feeds = []
        for i, batch in enumerate(batch_sizes):
            dims = {d: batch for s in reference.inputs for d in s.shape[:1] if isinstance(d, str)}
            feeds.append(seeded_feed(reference.inputs, dims, seed=seed + i))
    comparisons = []
    for feed in feeds:
        ref_out = reference.infer(feed)
        cand_out = candidate.infer(feed)
        pairs = [(n, n) for n in ref_out if n in cand_out]
        if not pairs:
            pairs = list(zip(ref_out, cand_out))
        for ref_name, cand_name in pairs:
            distinct = _rows_from_distinct_inputs(feed, ref_out[ref_name])
            comparisons.append(compare_arrays(ref_out[ref_name], cand_out[cand_name], atol, rtol,
                                              name=cand_name, topk=topk, distinct_inputs=distinct))
    return RunnerComparison(reference.name, candidate.name, comparisons)


# ---------------------------------------------------------------- layer-wise
@dataclass
class LayerwiseReport:
    """Every intermediate tensor compared in graph order; ``first_failure`` localises an error."""

    reference: str
    candidate: str
    tensors: list[tuple[str, str, ArrayComparison]]  # (tensor name, producing node, comparison)
    skipped: list[str]

    @property
    def first_failure(self) -> tuple[str, str, ArrayComparison] | None:
        return next((t for t in self.tensors if not t[2].passed), None)

    @property
    def passed(self) -> bool:
        return self.first_failure is None

    def format(self, limit: int = 12) -> str:
        lines = [f"layer-wise {self.candidate} vs {self.reference}: {len(self.tensors)} tensors compared"]
        failure = self.first_failure
        if failure is None:
            worst = max(self.tensors, key=lambda t: t[2].max_abs_error)
            lines.append(f"  all within tolerance; largest max abs error {worst[2].max_abs_error:.3g} at {worst[0]!r}")
        else:
            name, node, comp = failure
            lines.append(f"  first out of tolerance: {name!r} (output of {node}): {comp.format()}")
            start = self.tensors.index(failure)
            for name, node, comp in self.tensors[start + 1 : start + limit]:
                lines.append(f"    then {name!r} ({node}): max abs {comp.max_abs_error:.3g} "
                             f"{'PASS' if comp.passed else 'FAIL'}")
        return "\n".join(lines)


def mark_all_outputs(model_path, output_path) -> list[tuple[str, str]]:
    """Copy an ONNX model with every node output also declared as a graph output.

    Returns ``(tensor name, "OpType node_name")`` in graph (topological) order. Tensors
    whose element type shape inference cannot find are left out (engines need the type).
    """
    import onnx

    from deploylab.onnx_tools import load_onnx

    model = load_onnx(model_path)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    infos = {v.name: v for v in inferred.graph.value_info}
    types = {n: v.type.tensor_type.elem_type for n, v in infos.items()}
    existing = {o.name for o in model.graph.output}
    order = []
    for node in model.graph.node:
        for out in node.output:
            if not out or out in existing:
                continue
            order.append((out, f"{node.op_type} {node.name}".strip()))
            if types.get(out):
                model.graph.output.append(infos[out])  # type and inferred shape: checker-valid
    onnx.save(model, str(output_path))
    return [(name, node) for name, node in order if types.get(name)]


def compare_layerwise(
    reference,
    candidate,
    feed: dict[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    workdir=None,
) -> LayerwiseReport:
    """Compare two ONNX-file runners tensor by tensor (Polygraphy's ``--onnx-outputs mark all``).

    Both models get every intermediate tensor marked as an output and run with their
    own settings (``runner.with_model``); tensors present in both are compared in the
    reference graph's order. The first one out of tolerance is where the two diverge.
    Tensors are judged on their values only: an intermediate tensor may be zero or constant.
    """
    import tempfile
    from pathlib import Path

    from deploylab.backends.base import OnnxFileRunner, seeded_feed

    for runner in (reference, candidate):
        if not isinstance(runner, OnnxFileRunner):
            raise DeployLabError(
                f"layer-wise comparison needs two ONNX-based runners; {runner.name} ({runner.backend}) "
                "is not one. Compare outputs only, or pick an ONNX backend as the reference"
            )
        if Path(runner.model_path).suffix.lower() != ".onnx":
            raise DeployLabError(
                f"layer-wise comparison marks tensors in ONNX graphs, but {runner.name} runs "
                f"{str(runner.model_path)!r}; run that backend on the .onnx file instead "
                "(e.g. `deploylab compare model.onnx --backends openvino --layerwise`)"
            )
    feed = feed if feed is not None else seeded_feed(reference.inputs, seed=seed)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ref_path, cand_path = Path(tmp) / "reference.onnx", Path(tmp) / "candidate.onnx"
        order = mark_all_outputs(reference.model_path, ref_path)
        mark_all_outputs(candidate.model_path, cand_path)
        ref_out = reference.with_model(ref_path).infer(feed)
        cand_out = candidate.with_model(cand_path).infer(feed)
    tensors, skipped, seen = [], [], set()
    for name, node in order + [(o, "graph output") for o in reference.output_names]:
        if name in seen:
            continue
        seen.add(name)
        if name in ref_out and name in cand_out:
            tensors.append((name, node, compare_arrays(ref_out[name], cand_out[name], atol, rtol, name=name,
                                                       check_degenerate=False)))
        else:
            skipped.append(name)
    if not tensors:
        raise DeployLabError(
            f"{reference.name} and {candidate.name} share no tensor names ({', '.join(map(repr, skipped[:5]))} "
            "are missing from the candidate); layer-wise comparison needs the same graph, e.g. one .onnx "
            "file under two backends or optimization levels"
        )
    return LayerwiseReport(reference.name, candidate.name, tensors, skipped)
