"""Strategies by name, for the command line and for reports."""

import copy

from ..exceptions import SkalValueError
from .random import random_sampling
from .tdgf import TDGF
from .uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

__all__ = ["STRATEGIES", "get_strategy", "strategy_name"]

STRATEGIES = {
    "random": random_sampling,
    "uncertainty": uncertainty_sampling,
    "least_confidence": uncertainty_sampling,
    "margin": margin_sampling,
    "entropy": entropy_sampling,
    "tdgf": TDGF(),
}


def get_strategy(name):
    """The strategy registered under ``name`` (see ``STRATEGIES``)."""
    try:
        strategy = STRATEGIES[name]
    except KeyError:
        raise SkalValueError(
            f"Unknown strategy {name!r}; choose from {sorted(STRATEGIES)}."
        ) from None
    # strategy objects keep state between queries: hand out a fresh copy
    return copy.deepcopy(strategy) if hasattr(strategy, "get_params") else strategy


def strategy_name(strategy):
    """A readable name: the registry key, the function name, or the class name."""
    if isinstance(strategy, str):
        return strategy
    for key, value in STRATEGIES.items():
        if value is strategy and key != "least_confidence":
            return key
        if hasattr(value, "get_params") and type(value) is type(strategy):
            return key
    return getattr(strategy, "__name__", type(strategy).__name__)
