"""Strategies by name, for the command line and for reports."""

import functools

from sklearn.base import clone
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from ..exceptions import SkalValueError
from .aift import AIFT
from .bayesian import bald_sampling, max_entropy_mc, variation_ratios
from .deep_ensemble import DeepEnsemble
from .diversity import badge_sampling, coreset_sampling
from .gradnorm import entropy_gradnorm, expected_gradnorm
from .probcover import ProbCover
from .random import random_sampling
from .schedule import TypiclustThenMargin
from .tdgf import TDGF
from .typiclust import TypiClust
from .uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

__all__ = ["STRATEGIES", "get_strategy", "strategy_name", "fresh_copy"]

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
    "aift": AIFT(),
    "bald": bald_sampling,
    "max_entropy_mc": max_entropy_mc,
    "variation_ratios": variation_ratios,
    "ensemble_vote_entropy": DeepEnsemble(measure="vote_entropy"),
    "ensemble_bald": DeepEnsemble(measure="bald"),
}


def get_strategy(name):
    """The strategy registered under ``name`` (see ``STRATEGIES``)."""
    try:
        strategy = STRATEGIES[name]
    except KeyError:
        raise SkalValueError(
            f"Unknown strategy {name!r}; choose from {sorted(STRATEGIES)}."
        ) from None
    return fresh_copy(strategy)


def _is_prefitted(value):
    if isinstance(value, type) or not hasattr(value, "get_params") or not hasattr(value, "fit"):
        return False
    try:
        check_is_fitted(value)
    except (_SklearnNotFittedError, TypeError):
        return False
    return True


def fresh_copy(strategy):
    """A copy of a stateful strategy with fresh state: skal's one copy policy.

    Strategy objects (``TDGF``, ``LatentHardSampling``, ``ProbCover`` ...) keep state
    between queries (proxies, fitted generators, cached embeddings), so every campaign,
    registry look-up and meta-estimator fit works on its own copy. The copy is
    scikit-learn's ``clone`` (parameters copied, fitted state dropped), except that a
    parameter holding a *fitted* estimator (a pre-trained VAE or embedder) is kept as
    is, as ``clone`` keeps an estimator wrapped in ``sklearn.frozen.FrozenEstimator``:
    pre-fitted parts are an input, never refitted by the strategy. Functions and other
    objects without ``get_params`` are stateless and returned unchanged.

    Parameters
    ----------
    strategy : callable

    Returns
    -------
    callable
    """
    if isinstance(strategy, type) or not hasattr(strategy, "get_params"):
        return strategy
    kept = {name: value for name, value in strategy.get_params(deep=False).items()
            if _is_prefitted(value)}
    fresh = clone(strategy)
    return fresh.set_params(**kept) if kept else fresh


def strategy_name(strategy):
    """A readable name: the registry key, the function name, or the class name."""
    if isinstance(strategy, str):
        return strategy
    same_class = None
    for key, value in STRATEGIES.items():
        if value is strategy and key != "least_confidence":
            return key
        if hasattr(value, "get_params") and type(value) is type(strategy):
            if value.get_params() == strategy.get_params():
                return key
            same_class = same_class or key
        if _same_partial(value, strategy):
            return key
    if same_class is not None:
        return same_class
    if isinstance(strategy, functools.partial):
        arguments = [repr(a) for a in strategy.args]
        arguments += [f"{k}={v!r}" for k, v in strategy.keywords.items()]
        return f"{strategy_name(strategy.func)}({', '.join(arguments)})"
    return getattr(strategy, "__name__", type(strategy).__name__)


def _same_partial(a, b):
    """Two ``functools.partial`` objects binding the same function and arguments."""
    return (isinstance(a, functools.partial) and isinstance(b, functools.partial)
            and a.func is b.func and a.args == b.args and a.keywords == b.keywords)
