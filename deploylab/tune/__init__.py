"""``deploylab tune``: the fastest deployment of a model on this machine that keeps its accuracy.

First step (issue 16): the fidelity budget (:mod:`.budget`) and the candidate plan
(:mod:`.candidates`); measuring and choosing come next.
"""

from deploylab.tune.budget import Budget, parse_budget
from deploylab.tune.candidates import Candidate, plan_candidates

__all__ = ["Budget", "Candidate", "parse_budget", "plan_candidates"]
