"""The fidelity a deployment must keep: ``top1-agreement>=0.99``, ``accuracy-drop<=0.5`` ...

A candidate outside its budget is never chosen, whatever its speed, so the budget is parsed
strictly: a known metric, the comparison that metric allows, a bound in its range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from deploylab.errors import DeployLabError
from deploylab.quantize.evaluate import Fidelity

# metric -> (comparison, lowest bound, highest bound, what it measures)
METRICS = {
    "top1-agreement": (">=", 0.0, 1.0, "fraction of inputs whose top-1 class equals the fp32 reference's"),
    "top5-overlap": (">=", 0.0, 1.0, "mean fraction of the reference's top-5 classes found in the candidate's"),
    "accuracy-drop": ("<=", 0.0, 100.0, "labelled accuracy lost against fp32, in percentage points"),
    "kl": ("<=", 0.0, math.inf, "mean KL divergence of the candidate's softmax from the reference's"),
    "max-abs-error": ("<=", 0.0, math.inf, "largest absolute difference of any output value"),
}
_FIDELITY_FIELDS = {"top1-agreement": "top1_agreement", "top5-overlap": "top5_overlap", "kl": "mean_kl",
                    "max-abs-error": "max_abs_error"}
_SYNTAX = re.compile(r"\s*([a-z0-9-]+)\s*(>=|<=|>|<|=)\s*([^\s]+)\s*")


@dataclass(frozen=True)
class Budget:
    """``metric op bound``; :meth:`met` says whether a measured value keeps it."""

    metric: str
    op: str
    bound: float

    def met(self, value: float | None) -> bool:
        """True when ``value`` keeps the budget; an unmeasured (None) or NaN value never does."""
        if value is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.op == ">=" else value <= self.bound

    @property
    def counts_classes(self) -> bool:
        """True for the metrics that compare decisions (top-1, top-5, accuracy), which a reference
        giving one class for every input cannot judge."""
        return self.metric in ("top1-agreement", "top5-overlap", "accuracy-drop")

    def value_in(self, measured: Fidelity, accuracy_drop: float | None = None) -> float | None:
        """The budget's metric in a :class:`~deploylab.quantize.evaluate.Fidelity` (accuracy-drop,
        which needs labels, is passed in); None when it was not measured."""
        if self.metric == "accuracy-drop":
            return accuracy_drop
        return getattr(measured, _FIDELITY_FIELDS[self.metric])

    def keeps(self, measured: Fidelity, accuracy_drop: float | None = None) -> bool:
        """True when ``measured`` keeps the budget (never when its metric was not measured)."""
        return self.met(self.value_in(measured, accuracy_drop))

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def parse_budget(text: str) -> Budget:
    """``"top1-agreement>=0.99"`` -> Budget; one-line errors name the text and what is allowed."""
    known = ", ".join(f"{name}{op}N" for name, (op, *_rest) in METRICS.items())
    match = _SYNTAX.fullmatch(str(text).lower())
    if not match:
        raise DeployLabError(f"--budget {text!r} is not METRIC>=N or METRIC<=N; use one of {known}, "
                             "e.g. top1-agreement>=0.99")
    metric, op, number = match.groups()
    if metric not in METRICS:
        raise DeployLabError(f"--budget {text!r}: unknown metric {metric!r}; use one of {known}")
    wanted, low, high, meaning = METRICS[metric]
    if op != wanted:
        raise DeployLabError(f"--budget {text!r}: {metric} ({meaning}) is bounded with {wanted}, "
                             f"e.g. {metric}{wanted}{'0.99' if wanted == '>=' else '0.5'}")
    try:
        bound = float(number)
    except ValueError:
        bound = math.nan
    if not (math.isfinite(bound) and low <= bound <= high):
        span = f"from {low:g} to {high:g}" if math.isfinite(high) else f"of at least {low:g}"
        raise DeployLabError(f"--budget {text!r}: the bound of {metric} must be a number {span}")
    return Budget(metric, op, bound)
