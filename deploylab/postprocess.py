"""From a classifier's output row to ranked classes with probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One ranked class: index, name (or "class N"), score as output and its probability."""

    index: int
    label: str
    score: float
    probability: float


def is_probability(scores: np.ndarray, atol: float = 1e-3) -> bool:
    """True when every row is non-negative and sums to 1 (e.g. an mmcls export ending in Softmax)."""
    scores = np.asarray(scores)
    return bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=-1), 1.0, atol=atol))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    z = np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, k: int = 5, classes: list[str] | None = None) -> list[list[Prediction]]:
    """The ``k`` best classes of each row of a (batch, classes) output.

    Probabilities are the scores themselves when they already are probabilities,
    otherwise their softmax (the scores are then logits).
    """
    scores = np.atleast_2d(np.asarray(scores))
    probs = scores.astype(np.float64) if is_probability(scores) else softmax(scores)
    result = []
    for s_row, p_row in zip(scores, probs):
        order = np.argsort(-s_row, kind="stable")[:k]
        result.append([
            Prediction(int(i), classes[i] if classes and i < len(classes) else f"class {i}",
                       float(s_row[i]), float(p_row[i]))
            for i in order
        ])
    return result
