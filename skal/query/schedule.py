"""Strategy schedules: one strategy while the budget is small, another later.

Low-budget strategies (TypiClust, ProbCover) beat uncertainty sampling while the model
is weak, and lose to it once the model is good (Hacohen et al., ICML 2022, "Active
Learning on a Budget"; the TCM schedule of Doucet et al. 2023, TypiClust then margin).
A :class:`StrategySchedule` runs a list of strategies in turn; each step says when
the schedule moves on:

* an ``int`` ``n``: this step is used while the learner has fewer than ``n`` labels.
  A batch that crosses ``n`` is split (``split_batches=True``): this step picks exactly
  ``n - labels`` samples, the next steps the rest, so the switch happens exactly at
  ``n`` labels;
* a rule ``rule(learner, X_pool) -> bool`` (e.g. :class:`ModelQualityAbove`): the step
  is used until the rule returns True before a query (whole batches);
* ``None``: the last step, used to the end.

The schedule only moves forward: once a step is left it is never used again by this
schedule object (use a fresh copy, ``sklearn.base.clone``, for a new campaign).
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError as AnyNotFittedError
from sklearn.model_selection import cross_val_score

from ..data.pool import pool_length, take
from ..exceptions import SkalTypeError, SkalValueError
from ..utils.validation import check_n_instances
from .base import _seed_of, fitted_estimator, labelled_data, predict_proba_pool
from .embeddings import labelled_images
from .typiclust import TypiClust
from .uncertainty import margin_sampling

__all__ = ["StrategySchedule", "ModelQualityAbove", "TypiclustThenMargin", "n_labelled"]


def n_labelled(learner):
    """Labels the learner holds (0 at a cold start)."""
    X = labelled_images(learner)
    return 0 if X is None else pool_length(X)


def _split_result(result):
    """``(indices, scores)`` from a strategy's return value (scores NaN when absent)."""
    if isinstance(result, tuple) and len(result) == 2:
        indices, scores = result
    else:
        indices, scores = result, None
    indices = np.asarray(indices).ravel()
    scores = np.full(len(indices), np.nan) if scores is None else np.asarray(scores).ravel()
    return indices, scores


def _strategy_name(strategy):
    return getattr(strategy, "__name__", type(strategy).__name__)


class StrategySchedule(BaseEstimator):
    """Run query strategies in turn, switching by label count or by a model signal.

    ``StrategySchedule([(TypiClust(), 50), (margin_sampling, None)])`` selects typical
    samples until the learner has 50 labels, then the samples of smallest margin.
    ``StrategySchedule([(TypiClust(), ModelQualityAbove(0.9)), (margin_sampling, None)])``
    switches once the model's mean top-class probability on the pool reaches 0.9. See
    the module docstring for the rules.

    Parameters
    ----------
    steps : list of (strategy, until) pairs
        ``strategy(learner, X_pool, n_instances=..., **kw)``; ``until`` an int (labels),
        a rule ``rule(learner, X_pool) -> bool``, or None for the last step (only).
    split_batches : bool, default=True
        Split a batch that crosses a label-count switch, so the switch happens at
        exactly that count. False: the step active before the query picks the whole
        batch.

    Attributes
    ----------
    step_ : int
        The step the last query ended on.
    history_ : list of dict
        One record per strategy call: ``step``, ``strategy`` (name), ``n_labels`` (the
        labels at that point, counting earlier picks of a split batch) and ``n_picked``.

    Notes
    -----
    A later step of a split batch is asked for its share plus the picks made before it
    on the whole pool and keeps the first of its picks that are new, so no pool is
    copied (memmaps and Datasets stay lazy). The scores returned are each step's own
    (different strategies' scores are not comparable).
    """

    def __init__(self, steps, split_batches=True):
        self.steps = steps
        self.split_batches = split_batches

    def _resolved_steps(self):
        """The validated ``[(strategy, until), ...]`` list."""
        steps = self.steps
        if not isinstance(steps, (list, tuple)) or not steps:
            raise SkalValueError(
                "steps must be a non-empty list of (strategy, until) pairs, e.g. "
                "[(TypiClust(), 50), (margin_sampling, None)].")
        out = []
        for position, step in enumerate(steps):
            if not isinstance(step, (list, tuple)) or len(step) != 2:
                raise SkalValueError(
                    f"steps[{position}] must be a (strategy, until) pair; got {step!r}.")
            strategy, until = step
            if not callable(strategy):
                raise SkalTypeError(
                    f"steps[{position}]: the strategy must be callable as "
                    f"strategy(learner, X_pool, n_instances); got {strategy!r}.")
            last = position == len(steps) - 1
            if last and until is not None:
                raise SkalValueError(
                    "The last step runs to the end: its until must be None; got "
                    f"{until!r}.")
            if not last:
                if until is None:
                    raise SkalValueError(
                        f"steps[{position}] has until=None but is not the last step; give "
                        "a label count or a rule(learner, X_pool) -> bool.")
                if isinstance(until, bool) or not (isinstance(until, numbers.Integral)
                                                   or callable(until)):
                    raise SkalTypeError(
                        f"steps[{position}]: until must be a label count (int), a "
                        f"rule(learner, X_pool) -> bool, or None; got {until!r}.")
                if isinstance(until, numbers.Integral) and until < 0:
                    raise SkalValueError(
                        f"steps[{position}]: a label count must be >= 0; got {until}.")
            out.append((strategy, until))
        return out

    @staticmethod
    def _done(until, learner, X_pool, n_labels):
        if until is None:
            return False
        if isinstance(until, numbers.Integral):
            return n_labels >= until
        return bool(until(learner, X_pool))

    def __call__(self, learner, X_pool, n_instances=1, **kwargs):
        """Select ``n_instances`` distinct pool positions; returns ``(indices, scores)``."""
        steps = self._resolved_steps()
        if not isinstance(self.split_batches, (bool, np.bool_)):
            raise SkalTypeError(f"split_batches must be True or False; got {self.split_batches!r}.")
        n_pool = pool_length(X_pool)
        n_instances = check_n_instances(n_instances, n_pool)
        n_labels = n_labelled(learner)
        step = min(getattr(self, "step_", 0), len(steps) - 1)
        picked, scores, history = [], [], []
        while len(picked) < n_instances:
            labels_now = n_labels + len(picked)
            while step < len(steps) - 1 and self._done(steps[step][1], learner, X_pool,
                                                      labels_now):
                step += 1
            strategy, until = steps[step]
            share = n_instances - len(picked)
            if self.split_batches and isinstance(until, numbers.Integral):
                share = min(share, until - labels_now)
            indices, values = self._call_step(strategy, learner, X_pool, share, picked,
                                              n_pool, kwargs)
            picked.extend(indices.tolist())
            scores.extend(values.tolist())
            history.append({"step": step, "strategy": _strategy_name(strategy),
                            "n_labels": labels_now, "n_picked": len(indices)})
        self.step_ = step
        self.history_ = getattr(self, "history_", []) + history
        return np.asarray(picked, dtype=np.intp), np.asarray(scores, dtype=np.float64)

    @staticmethod
    def _call_step(strategy, learner, X_pool, share, picked, n_pool, kwargs):
        """``share`` new picks of one strategy, skipping positions already ``picked``."""
        ask = share + len(picked)
        indices, values = _split_result(strategy(learner, X_pool, n_instances=ask, **kwargs))
        name = _strategy_name(strategy)
        if len(indices) != ask or len(np.unique(indices)) != len(indices):
            raise SkalValueError(
                f"The schedule's strategy {name} returned {len(indices)} indices "
                f"(distinct: {len(np.unique(indices))}) for n_instances={ask}.")
        if len(indices) and (indices.min() < 0 or indices.max() >= n_pool):
            raise SkalValueError(f"The schedule's strategy {name} returned positions "
                                 f"outside the pool of {n_pool} samples.")
        new = ~np.isin(indices, np.asarray(picked, dtype=np.intp))
        return indices[new][:share].astype(np.intp), values[new][:share]


class TypiclustThenMargin(StrategySchedule):
    """TypiClust while the budget is small, then margin sampling (the TCM schedule,
    Doucet et al. 2023; TypiClust: Hacohen et al., ICML 2022).

    Registered as ``typiclust_then_margin``. A :class:`StrategySchedule` with steps
    ``[(TypiClust(embedder, random_state=...), switch_at), (margin_sampling, None)]``.

    Parameters
    ----------
    switch_at : int or rule, default=50
        Labels from which margin sampling takes over, or a rule
        ``rule(learner, X_pool) -> bool`` such as :class:`ModelQualityAbove`.
        TypiClust's gains are largest at 1-10 labels per class and vanish at larger
        budgets (Hacohen et al.); measure it for your data.
    embedder : fitted object with ``transform(X)`` or ``embed(X)``, or None
        TypiClust's embeddings (see :class:`skal.query.TypiClust`).
    random_state : int, RandomState or None
        Seeds TypiClust's k-means.
    split_batches : bool, default=True
    """

    def __init__(self, switch_at=50, embedder=None, random_state=None, split_batches=True):
        self.switch_at = switch_at
        self.embedder = embedder
        self.random_state = random_state
        self.split_batches = split_batches

    @property
    def steps(self):
        """The schedule's steps, built from the parameters."""
        return [(TypiClust(embedder=self.embedder, random_state=self.random_state),
                 self.switch_at), (margin_sampling, None)]


class ModelQualityAbove(BaseEstimator):
    """Switch rule: True once a model-quality signal reaches ``threshold``.

    ``rule(learner, X_pool) -> bool`` for :class:`StrategySchedule`. False while the
    learner has no fitted model (a cold start).

    Parameters
    ----------
    threshold : float
    signal : {"pool_confidence", "cv_accuracy"} or callable, default="pool_confidence"
        ``"pool_confidence"``: the model's mean top-class probability on (a seeded
        sample of) the pool: a weak model is unsure on most of the pool.
        ``"cv_accuracy"``: the mean ``cv``-fold cross-validated accuracy of a clone of
        the model on the labelled data (refits the model ``cv`` times: costly for CNNs);
        False while a class has fewer than ``cv`` labels. A callable:
        ``signal(learner, X_pool) -> float``.
    sample_size : int or None, default=1000
        Pool samples for ``"pool_confidence"``; None: the whole pool.
    cv : int, default=3
    random_state : int, RandomState or None
        Seeds the pool sample.

    Attributes
    ----------
    last_value_ : float
        The signal at the last evaluation (NaN when it could not be computed).
    """

    def __init__(self, threshold, signal="pool_confidence", sample_size=1000, cv=3,
                 random_state=None):
        self.threshold = threshold
        self.signal = signal
        self.sample_size = sample_size
        self.cv = cv
        self.random_state = random_state

    def _value(self, learner, X_pool):
        if callable(self.signal):
            return float(self.signal(learner, X_pool))
        if self.signal == "pool_confidence":
            return self._pool_confidence(learner, X_pool)
        if self.signal == "cv_accuracy":
            return self._cv_accuracy(learner)
        raise SkalValueError(
            f"signal must be 'pool_confidence', 'cv_accuracy' or a callable "
            f"signal(learner, X_pool) -> float; got {self.signal!r}.")

    def _pool_confidence(self, learner, X_pool):
        model = fitted_estimator(learner)
        n = pool_length(X_pool)
        if self.sample_size is not None and self.sample_size < n:
            rng = np.random.default_rng(_seed_of(self.random_state))
            X_pool = take(X_pool, np.sort(rng.choice(n, int(self.sample_size), replace=False)))
        try:
            proba = predict_proba_pool(model, X_pool)
        except AnyNotFittedError:
            return np.nan
        return float(np.mean(proba.max(axis=1)))

    def _cv_accuracy(self, learner):
        try:
            X, y = labelled_data(learner)
        except (AnyNotFittedError, SkalValueError, AttributeError):
            return np.nan
        y = np.asarray(y)
        if y.ndim != 1 or not len(y) or np.unique(y, return_counts=True)[1].min() < self.cv:
            return np.nan
        model = getattr(learner, "estimator", fitted_estimator(learner))
        return float(np.mean(cross_val_score(clone(model), np.asarray(X), y, cv=self.cv)))

    def __call__(self, learner, X_pool):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real):
            raise SkalTypeError(f"threshold must be a number; got {self.threshold!r}.")
        value = self._value(learner, X_pool)
        self.last_value_ = value
        return bool(np.isfinite(value) and value >= self.threshold)
