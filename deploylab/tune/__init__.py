"""``deploylab tune``: the fastest deployment of a model on this machine that keeps its accuracy.

- :mod:`.budget`: the fidelity a deployment must keep (``top1-agreement>=0.99``);
- :mod:`.candidates`: engines x precisions x int8 recipes x threads x hints, with the reason
  for every candidate that cannot run here;
- :mod:`.heldout`: the inputs fidelity is judged on, disjoint from calibration;
- :mod:`.artifacts`: each candidate's artifact and runner, and the commands that reproduce them;
- :mod:`.search`: :func:`tune` builds, judges, times by blocks and chooses;
- :mod:`.report`: the ranked table, the Pareto plot, ``tune.json``.
"""

from deploylab.tune.budget import Budget, parse_budget
from deploylab.tune.candidates import Candidate, plan_candidates
from deploylab.tune.report import TuneReport
from deploylab.tune.search import parse_time_budget, tune

__all__ = ["Budget", "Candidate", "TuneReport", "parse_budget", "parse_time_budget", "plan_candidates", "tune"]
