"""The one round engine: the initial set, the budget, the classes of a task, one query
round, and the loop of rounds.

:func:`skal.simulate.simulate`, :class:`skal.ActiveLearningClassifier` and
:class:`skal.Campaign` all run their rounds through these functions. A simulation is a
campaign whose labels come from known data (:func:`run_rounds` reveals ``y_pool``);
a real campaign stops after :func:`query_round` and waits for an annotator, querying
through a :class:`CampaignLearner` around its latest checkpoint.
"""

import inspect
import time

import numpy as np
from sklearn.base import clone

from ..data.pool import pool_length, take
from ..exceptions import QueryResultError, SkalValueError
from ..learner import BaseLearner
from ..utils.seeding import resolve_seed

__all__ = ["initial_indices", "stratified_indices", "initial_set", "check_budget",
           "task_of", "round_seed", "accepts_keyword", "with_seed", "query_round",
           "run_rounds", "CampaignLearner", "INITIAL_METHODS"]

INITIAL_METHODS = ("stratified", "balanced", "random")


def initial_indices(y, n_initial, random_state, balanced=True):
    """Indices of the initial labelled set.

    ``balanced=True`` takes (as nearly as possible) the same number from each class, in
    random order; multi-label ``y`` (2-d) falls back to a random draw.
    """
    rng = np.random.RandomState(resolve_seed(random_state))
    y = np.asarray(y)
    n = len(y)
    if not 0 < n_initial <= n:
        raise SkalValueError(f"n_initial must be in [1, {n}]; got {n_initial}.")
    if not balanced or y.ndim != 1:
        return rng.choice(n, n_initial, replace=False)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = [rng.permutation(len(by_class))]
    picked = []
    depth = 0
    while len(picked) < n_initial:
        for c in order[0]:
            if depth < len(by_class[c]) and len(picked) < n_initial:
                picked.append(by_class[c][depth])
        depth += 1
    return np.asarray(picked)


def stratified_indices(y, n_initial, random_state=None):
    """A random initial set whose class proportions follow ``y``.

    Every class gets at least one sample when ``n_initial`` allows it (the classes
    drawn by frequency otherwise); the rest is shared in proportion to the class sizes
    (largest remainders), drawn at random within each class.
    """
    rng = np.random.RandomState(resolve_seed(random_state))
    y = np.asarray(y)
    n = len(y)
    if not 0 < n_initial <= n:
        raise SkalValueError(f"n_initial must be in [1, {n}]; got {n_initial}.")
    classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    if n_initial < len(classes):
        quota = np.zeros(len(classes), dtype=int)
        quota[rng.choice(len(classes), n_initial, replace=False, p=counts / n)] = 1
    else:
        rest = counts - 1
        share = (n_initial - len(classes)) * rest / max(rest.sum(), 1)
        quota = np.floor(share).astype(int)
        left = n_initial - len(classes) - quota.sum()
        quota[np.argsort(-(share - quota), kind="stable")[:left]] += 1
        quota += 1
    picked = [rng.choice(np.flatnonzero(y_idx == c), q, replace=False)
              for c, q in enumerate(quota) if q]
    return rng.permutation(np.concatenate(picked))


def initial_set(y, n_initial, random_state, method="balanced"):
    """The initial labelled set drawn by ``method`` (one of :data:`INITIAL_METHODS`);
    multi-label ``y`` is always drawn at random."""
    if method not in INITIAL_METHODS:
        raise SkalValueError(f"initial must be one of {INITIAL_METHODS}; got {method!r}.")
    y = np.asarray(y)
    multilabel = y.ndim == 2 and y.shape[1] > 1
    if multilabel or method == "random":
        return initial_indices(y, n_initial, random_state, balanced=False)
    if method == "balanced":
        return initial_indices(y, n_initial, random_state, balanced=True)
    return stratified_indices(y, n_initial, random_state)


def check_budget(n_pool, n_initial, n_rounds, batch_size, *, names=("n_initial",
                 "n_rounds", "batch_size"), where="the pool", hint=""):
    """Raise unless ``n_initial + n_rounds * batch_size`` labels fit in ``n_pool``."""
    budget = n_initial + n_rounds * batch_size
    if budget > n_pool:
        raise SkalValueError(
            f"The campaign needs {budget} labels ({names[0]}={n_initial} + {names[1]}="
            f"{n_rounds} x {names[2]}={batch_size}) but {where} has only {n_pool} "
            f"samples.{(' ' + hint) if hint else ''}"
        )
    return budget


def task_of(*ys):
    """``(classes, multilabel)`` of a task from its label arrays: multi-label targets
    (2-d with more than one column) have no class list (``None``); single-label ones
    have every class that occurs in any of ``ys``."""
    ys = [np.asarray(y) for y in ys]
    multilabel = ys[0].ndim == 2 and ys[0].shape[1] > 1
    if multilabel:
        return None, True
    return np.unique(np.concatenate(ys)), False


def round_seed(seed, r):
    """The strategy's ``random_state`` in round ``r`` of a campaign seeded ``seed``."""
    return seed * 100_003 + r


def accepts_keyword(function, name):
    """Whether ``function`` takes keyword ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def with_seed(estimator, seed, classes):
    """A clone of ``estimator`` with ``random_state=seed`` (unless ``seed`` is None) and
    ``classes`` filled in, where the estimator has those parameters."""
    estimator = clone(estimator)
    params = estimator.get_params(deep=False)
    updates = {}
    if seed is not None and "random_state" in params:
        updates["random_state"] = seed
    if classes is not None and "classes" in params and params["classes"] is None:
        updates["classes"] = classes
    return estimator.set_params(**updates) if updates else estimator


def query_round(learner, X_pool, unlabelled, n_instances, *, seed=None, r=1,
                query_kwargs=None, seeded=None):
    """One query: ask ``learner`` for ``n_instances`` of the ``unlabelled`` pool positions.

    With an int ``seed`` a strategy that accepts ``random_state`` gets
    :func:`round_seed` ``(seed, r)`` unless ``query_kwargs`` sets it.

    Returns
    -------
    chosen : ndarray of int
        Pool positions, in the strategy's order.
    scores : ndarray or None
        The strategy's scores of the chosen samples, when it returns them.
    seconds : float
    """
    unlabelled = np.asarray(unlabelled, dtype=np.intp)
    kwargs = dict(query_kwargs or {})
    if seeded is None:
        seeded = seed is not None and accepts_keyword(learner.query_strategy, "random_state")
    if seeded:
        kwargs.setdefault("random_state", round_seed(seed, r))
    t0 = time.perf_counter()
    try:
        picked, _, scores = learner.query(take(X_pool, unlabelled), n_instances,
                                          return_metrics=True, **kwargs)
    except QueryResultError as exc:
        raise QueryResultError(
            f"{exc} In round {r} the strategy was given the {len(unlabelled)} samples "
            "not labelled yet: its indices must be distinct positions in that pool "
            "(already labelled samples are not in it and cannot be queried again)."
        ) from exc
    return unlabelled[picked], scores, time.perf_counter() - t0


def run_rounds(learner, X_pool, y_pool, start_idx, *, batch_size, n_rounds, seed=None,
               query_kwargs=None, on_round=None):
    """The pool-based campaign loop with known labels, shared by
    :func:`skal.simulate.simulate` and :class:`skal.ActiveLearningClassifier`.

    Fits ``learner`` on ``start_idx``, then runs ``n_rounds`` rounds of query (on the
    samples not labelled yet, :func:`query_round`), reveal (``y_pool`` of the chosen
    samples) and teach.

    Parameters
    ----------
    learner : ActiveLearner
        Not fitted yet; fitted in place.
    X_pool, y_pool : the pool and its labels, revealed only when queried
    start_idx : array of int
        The initial labelled set.
    batch_size, n_rounds : int
    seed : int or None
        With an int, strategies that accept ``random_state`` get
        ``seed * 100_003 + round`` (unless ``query_kwargs`` sets it), so a campaign is
        repeatable and paired across strategies.
    query_kwargs : dict, optional
        Extra keyword arguments for every query.
    on_round : callable, optional
        ``on_round(r, learner, labelled)`` after the fit of round ``r`` (0 is the
        initial fit); ``labelled`` is the boolean mask of labelled pool samples.

    Returns
    -------
    dict with ``fit_time``, ``query_time`` (``n_rounds + 1`` seconds each, no query
    before round 0), ``queried`` (``(n_rounds, batch_size)`` pool indices, -1 where a
    strategy returned fewer) and ``order`` (every labelled index, in labelling order).
    """
    n_pool = pool_length(X_pool)
    n_points = n_rounds + 1
    fit_time, query_time = np.zeros(n_points), np.zeros(n_points)
    queried = np.full((n_rounds, batch_size), -1, dtype=np.int64)
    start_idx = np.asarray(start_idx, dtype=np.intp)
    order = [start_idx]
    labelled = np.zeros(n_pool, dtype=bool)
    labelled[start_idx] = True
    seeded = seed is not None and accepts_keyword(learner.query_strategy, "random_state")

    t0 = time.perf_counter()
    learner.fit(take(X_pool, start_idx), y_pool[start_idx])
    fit_time[0] = time.perf_counter() - t0
    if on_round is not None:
        on_round(0, learner, labelled)
    for r in range(1, n_points):
        chosen, _, query_time[r] = query_round(
            learner, X_pool, np.flatnonzero(~labelled), batch_size, seed=seed, r=r,
            query_kwargs=query_kwargs, seeded=seeded)
        labelled[chosen] = True
        queried[r - 1, :len(chosen)] = chosen
        order.append(chosen)
        t0 = time.perf_counter()
        learner.teach(take(X_pool, chosen), y_pool[chosen])
        fit_time[r] = time.perf_counter() - t0
        if on_round is not None:
            on_round(r, learner, labelled)
    return {"fit_time": fit_time, "query_time": query_time, "queried": queried,
            "order": np.concatenate(order)}


class CampaignLearner(BaseLearner):
    """A learner around a model that is already trained (a campaign checkpoint), so
    strategies can query without refitting. Strategies see the model as
    ``estimator_`` and the labelled data as ``X_training`` / ``y_training`` (read on
    first access)."""

    def __init__(self, estimator_, query_strategy, labelled_data):
        self.estimator_ = estimator_
        self.query_strategy = query_strategy
        self._labelled_data = labelled_data
        self._cache = None

    on_transformed = False

    def _prepare(self, required=True):
        """The model is the checkpoint's: nothing to fit (the learner protocol's hook)."""
        return self.estimator_

    @property
    def estimator(self):
        """The trained model (modAL's name, as :class:`skal.ActiveLearner` serves it)."""
        return self.estimator_

    def _data(self):
        if self._cache is None:
            self._cache = self._labelled_data()
        return self._cache

    @property
    def X_training(self):
        return self._data()[0]

    @property
    def y_training(self):
        return self._data()[1]

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        return self.estimator_.predict(X)
