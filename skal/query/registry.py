"""Strategies by name, for the command line and for reports."""

import copy
import functools

from ..exceptions import SkalValueError
from .diversity import badge_sampling, coreset_sampling
from .gradnorm import entropy_gradnorm, expected_gradnorm
from .probcover import ProbCover
from .random import random_sampling
from .schedule import TypiclustThenMargin
from .tdgf import TDGF
from .typiclust import TypiClust
from .uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

__all__ = ["STRATEGIES", "get_strategy", "strategy_name"]

STRATEGIES = {
    "random": random_sampling,
    "uncertainty": uncertainty_sampling,
    "least_confidence": uncertainty_sampling,
    "margin": margin_sampling,
    "entropy": entropy_sampling,
    "tdgf": TDGF(),
    "expected_gradnorm": expected_gradnorm,
    "expected_gradnorm_last": functools.partial(expected_gradnorm, scope="last"),
    "expected_gradnorm_all": functools.partial(expected_gradnorm, scope="all"),
    "entropy_gradnorm": entropy_gradnorm,
    "entropy_gradnorm_last": functools.partial(entropy_gradnorm, scope="last"),
    "entropy_gradnorm_all": functools.partial(entropy_gradnorm, scope="all"),
    "badge": badge_sampling,
    "coreset": coreset_sampling,
    "typiclust": TypiClust(),
    "probcover": ProbCover(),
    "typiclust_then_margin": TypiclustThenMargin(),
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
        if _same_partial(value, strategy):
            return key
    if isinstance(strategy, functools.partial):
        arguments = [repr(a) for a in strategy.args]
        arguments += [f"{k}={v!r}" for k, v in strategy.keywords.items()]
        return f"{strategy_name(strategy.func)}({', '.join(arguments)})"
    return getattr(strategy, "__name__", type(strategy).__name__)


def _same_partial(a, b):
    """Two ``functools.partial`` objects binding the same function and arguments."""
    return (isinstance(a, functools.partial) and isinstance(b, functools.partial)
            and a.func is b.func and a.args == b.args and a.keywords == b.keywords)
