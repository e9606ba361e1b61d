"""Argument checks every bench function shares: counts of calls, rounds or requests, and time budgets."""

from __future__ import annotations

import numpy as np

from deploylab.errors import DeployLabError


def positive_int(value, what: str) -> int:
    """``value`` as an int if it is a positive integer (not a bool), else a DeployLabError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DeployLabError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def positive_seconds(value, what: str = "seconds") -> float | None:
    """A time budget in seconds: None stays None (no budget), else a positive finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise DeployLabError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)
