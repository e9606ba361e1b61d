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

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
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
) -> ArrayComparison:
    """Compare two arrays of the same shape; raises if the shapes differ."""
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
    top1 = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        top1 = float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())
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
    )
