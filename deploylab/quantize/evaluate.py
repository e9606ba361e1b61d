"""How good is a converted model: accuracy with labels, fidelity to the fp32 model without.

Accuracy needs labels (the digits test split). For ResNet-18 on the shipped photos there
are no labels, so the question becomes *fidelity*: does the converted model give the same
answer as the fp32 one? Top-1 agreement is what a user sees; the mean cosine between
output rows and the max absolute error show smaller drifts before they flip a decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deploylab.batching import predict
from deploylab.errors import DeployLabError


def accuracy_onnx(runner_or_path, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> float:
    """Fraction of ``images`` whose argmax output equals ``labels`` (any runner or .onnx/.xml path)."""
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise DeployLabError(f"{len(images)} images but {len(labels)} labels; give one label per image")
    logits = predict(runner_or_path, images, batch_size)
    return float((logits.reshape(len(labels), -1).argmax(axis=1) == labels).mean())


@dataclass(frozen=True)
class Fidelity:
    """A candidate's outputs against the reference's on the same inputs."""

    top1_agreement: float  # fraction of rows with the same argmax
    mean_cosine: float  # mean over rows of the cosine similarity of output vectors
    max_abs_error: float
    samples: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        return (f"top-1 agreement {self.top1_agreement:.2%}, mean cosine {self.mean_cosine:.6f}, "
                f"max abs error {self.max_abs_error:.4g} ({self.samples} samples)")


def fidelity(reference_outputs: np.ndarray, candidate_outputs: np.ndarray) -> Fidelity:
    """Top-1 agreement, mean row cosine and max abs error of ``candidate`` against ``reference`` (N, C)."""
    ref = np.asarray(reference_outputs, dtype=np.float64)
    cand = np.asarray(candidate_outputs, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim < 1 or ref.shape[0] == 0:
        raise DeployLabError(
            f"outputs of shape {cand.shape} cannot be compared with reference outputs of shape {ref.shape}; "
            "run both models on the same non-empty inputs"
        )
    ref, cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = np.einsum("ij,ij->i", ref, cand)
    both_zero = norms == 0
    cosine = np.where(both_zero, np.all(ref == cand, axis=1).astype(float), dots / np.where(both_zero, 1, norms))
    return Fidelity(
        top1_agreement=float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean()),
        mean_cosine=float(cosine.mean()),
        max_abs_error=float(np.abs(ref - cand).max()),
        samples=len(ref),
    )
