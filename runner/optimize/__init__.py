"""OPTIMIZE: walk-forward Bayesian search over a strategy's parameters, gated against overfitting.

`optimize()` runs what is due (a task, the open recommendations, or a named component);
`join()` adds workers to a study another machine started.
"""

from runner.optimize.dispatch import optimize
from runner.optimize.search import Outcome, SearchOptions, join
from runner.optimize.targets import Target

__all__ = ["Outcome", "SearchOptions", "Target", "join", "optimize"]
