"""Numbers that say how close two model outputs are, and a verdict against tolerances.

The tolerance test is numpy's ``allclose`` rule, element by element:
``|candidate - reference| <= atol + rtol * |reference|``. Top-1 agreement is reported
for outputs shaped (batch, classes); for a classifier it is what a user notices first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deploylab.errors import DeployLabError


@dataclass
class ArrayComparison:
    """How ``candidate`` differs from ``reference`` for one output tensor."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
        if self.topk_agreement is not None:
            top1 += f", top-{self.topk} overlap {self.topk_agreement:.1%}"
        return (
            f"{verdict} {self.name} {'x'.join(map(str, self.shape))}: max abs {self.max_abs_error:.3g}, "
            f"max rel {self.max_rel_error:.3g}, mean abs {self.mean_abs_error:.3g}, "
            f"cosine {self.cosine_similarity:.6f}{top1} (atol {self.atol:g}, rtol {self.rtol:g})"
        )


def compare_arrays(
    reference: np.ndarray,
    candidate: np.ndarray,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    name: str = "output",
    topk: int = 5,
) -> ArrayComparison:
    """Compare two arrays of the same shape; raises if the shapes differ.

    For (batch, classes) outputs also reports top-1 agreement (fraction of rows with the
    same argmax) and top-k overlap (mean fraction of the reference's k best classes that
    are among the candidate's k best).
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
    denom = np.linalg.norm(ref) * np.linalg.norm(cand)
    cosine = float(np.dot(ref.ravel(), cand.ravel()) / denom) if denom > 0 else float(
        np.array_equal(ref, cand)
    )
    top1 = topk_overlap = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        top1 = float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())
        if ref.shape[1] > topk:
            best_ref = np.argsort(-ref, axis=1)[:, :topk]
            best_cand = np.argsort(-cand, axis=1)[:, :topk]
            topk_overlap = float(np.mean([len(set(a) & set(b)) / topk for a, b in zip(best_ref, best_cand)]))
    passed = finite and bool(np.all(diff <= atol + rtol * np.abs(ref)))
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
        passed=passed,
        topk=topk,
        topk_agreement=topk_overlap,
    )


# ---------------------------------------------------------------- runners
@dataclass
class RunnerComparison:
    """Two runners on the same inputs: one :class:`ArrayComparison` per output and input set."""

    reference: str
    candidate: str
    comparisons: list[ArrayComparison]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    def worst(self) -> ArrayComparison:
        return max(self.comparisons, key=lambda c: (not c.passed, c.max_abs_error))

    def format(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"{self.candidate} vs {self.reference}: {verdict}"]
        lines += [f"  {c.format()}" for c in self.comparisons]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "passed": self.passed,
                "comparisons": [c.to_dict() for c in self.comparisons]}


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
    bundle; an engine after the graph).
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
            comparisons.append(compare_arrays(ref_out[ref_name], cand_out[cand_name], atol, rtol,
                                              name=cand_name, topk=topk))
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
            tensors.append((name, node, compare_arrays(ref_out[name], cand_out[name], atol, rtol, name=name)))
        else:
            skipped.append(name)
    if not tensors:
        raise DeployLabError(
            f"{reference.name} and {candidate.name} share no tensor names ({', '.join(map(repr, skipped[:5]))} "
            "are missing from the candidate); layer-wise comparison needs the same graph, e.g. one .onnx "
            "file under two backends or optimization levels"
        )
    return LayerwiseReport(reference.name, candidate.name, tensors, skipped)
