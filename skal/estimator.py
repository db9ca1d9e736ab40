"""``ActiveLearningClassifier``: a scikit-learn meta-estimator whose ``fit`` runs a
simulated pool-based active-learning campaign.

It makes the query strategy a hyper-parameter like any other, so the usual scikit-learn
tools choose it: ``GridSearchCV`` over strategies and their parameters, ``Pipeline``,
``cross_validate``, joblib or Dask parallelism::

    search = GridSearchCV(
        ActiveLearningClassifier(CNNClassifier(), n_initial=20, n_queries=5, batch_size=20,
                                 random_state=0),
        {"query_strategy": ["random", uncertainty_sampling, margin_sampling, TDGF()],
         "estimator__max_epochs": [10, 30]},
        cv=3, n_jobs=2)
    search.fit(X, y)

The score of a candidate is the score of the model left at the end of its campaign on
the held-out fold: "which strategy gives the best model for this labelling budget".
"""

import math
import numbers
import warnings
from copy import deepcopy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin
from sklearn.metrics import check_scoring
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import available_if

from .data.pool import is_dataset, pool_length, take
from .exceptions import NotFittedError, SkalTypeError, SkalValueError
from .learner import ActiveLearner
from .nets.classifier import task_classes
from .query.registry import fresh_copy, get_strategy
from .query.uncertainty import uncertainty_sampling
from .campaign.engine import check_budget, initial_set, run_rounds, stratified_indices
from .campaign.engine import with_seed
from .utils.seeding import resolve_seed
from .utils.validation import check_consistent_length, check_images, check_labels

__all__ = ["ActiveLearningClassifier", "stratified_indices"]

def _default_estimator():
    from .nets import CNNClassifier
    return CNNClassifier()


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self._base_estimator(), attr)
    return check


class ActiveLearningClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Classifier trained by a simulated pool-based active-learning campaign.

    ``fit(X, y)`` treats ``(X, y)`` as a pool whose labels are hidden until queried: a
    clone of ``estimator`` is fitted on an initial labelled set, then for ``n_queries``
    rounds ``query_strategy`` picks ``batch_size`` samples among those not labelled yet,
    their labels are revealed and the model is retrained (one :class:`skal.ActiveLearner`
    runs the loop shared with :func:`skal.simulate.simulate`). ``predict``,
    ``predict_proba``, ``decision_function`` and ``score`` use the final model, so in
    ``GridSearchCV`` / ``cross_validate`` each candidate is judged by the model its
    strategy leads to under the same labelling budget.

    Parameters
    ----------
    estimator : classifier or None, default=None
        The model to train (cloned, never modified). ``None`` means
        ``skal.CNNClassifier()``. Its parameters are searchable as
        ``estimator__<name>``. When it has a ``classes`` parameter left at ``None`` it
        is set to every class of ``y``, so early models already output all classes.
    query_strategy : callable or str, default=uncertainty_sampling
        ``strategy(learner, X_pool, n_instances, **kw) -> indices`` or ``(indices,
        scores)``: a plain function (a value like any other in a grid), a callable
        object with ``get_params`` (cloned for every fit; its parameters are searchable
        as ``query_strategy__<name>``, e.g. ``query_strategy__lag``), or the name of a
        strategy in :data:`skal.query.registry.STRATEGIES` (``"random"``,
        ``"margin"``, ...). The strategy sees only the samples not labelled yet.
    n_initial : int or float, default=0.1
        Size of the initial labelled set: a count, or a fraction of ``len(X)`` in
        (0, 1) (rounded down, at least 2).
    n_queries : int, default=3
        Number of query rounds.
    batch_size : int or float, default=0.1
        Samples labelled per round: a count, or a fraction of ``len(X)`` in (0, 1)
        (rounded down, at least 1).
    initial : {"stratified", "balanced", "random"}, default="stratified"
        How the initial set is drawn: class proportions of ``y`` with at least one
        sample per class (``"stratified"``), as many per class as possible
        (``"balanced"``, as :func:`skal.simulate.simulate` does) or uniformly at random.
        Multi-label targets are always drawn at random.
    random_state : int, RandomState or None, default=None
        Seeds the initial set, the strategy's ``random_state`` (per round) and the
        estimator's ``random_state`` (when it has one), so one seed gives one campaign
        and every candidate of a grid search starts from the same labelled set and
        weights. ``None`` leaves the estimator's own ``random_state`` alone.
    query_kwargs : dict or None, default=None
        Extra keyword arguments for every query (e.g. ``{"batch_size": 512}``).
    scoring : None, str or callable, default=None
        Metric of the learning curve: ``None`` is the estimator's ``score`` (accuracy),
        otherwise a scikit-learn scorer name or ``scorer(estimator, X, y)``.
    record_scores : bool, default=True
        Score every round for :attr:`learning_curve_` (one prediction pass over ``X``
        per round). ``False`` records labels and times only.

    Attributes
    ----------
    estimator_ : estimator
        The model fitted on every label of the campaign.
    learner_ : ActiveLearner
        The learner that ran the campaign (its strategy and labelled data).
    classes_ : ndarray
        Classes of ``y`` (label indices for multi-label ``y``).
    labeled_indices_ : ndarray of int
        Positions in ``X`` of every labelled sample, in labelling order (initial set
        first, then each round's batch).
    learning_curve_ : dict of ndarray
        One entry per round (0 is the initial fit): ``"n_labels"``, ``"fit_time"``,
        ``"query_time"`` (seconds) and, with ``record_scores``, ``"train_score"``
        (``scoring`` on the samples labelled so far) and ``"pool_score"`` (on the
        samples of ``X`` not labelled yet, whose labels the simulation knows but the
        learner has not seen; NaN once none is left). The pool score is optimistic
        compared with held-out data (strategies take the hard samples out of the
        pool): use it to compare rounds and strategies, and a held-out fold (the
        score in ``GridSearchCV``) for the final figure.
    n_initial_, batch_size_, n_queries_ : int
        The budget actually used.
    n_features_in_ : int
        Number of features, for tabular ``(n_samples, n_features)`` input only.

    Notes
    -----
    Budgets larger than the data raise a :class:`skal.SkalValueError` when given as
    counts. Fractions are meant to scale with the data: when rounding up to at least
    one sample makes them exceed a tiny ``X``, the number of rounds is reduced with a
    warning instead.

    Query strategies must be picklable (module-level functions or objects, not
    lambdas) to run under ``n_jobs > 1`` with the process-based joblib backends.
    """

    def __init__(self, estimator=None, query_strategy=uncertainty_sampling, n_initial=0.1,
                 n_queries=3, batch_size=0.1, initial="stratified", random_state=None,
                 query_kwargs=None, scoring=None, record_scores=True):
        self.estimator = estimator
        self.query_strategy = query_strategy
        self.n_initial = n_initial
        self.n_queries = n_queries
        self.batch_size = batch_size
        self.initial = initial
        self.random_state = random_state
        self.query_kwargs = query_kwargs
        self.scoring = scoring
        self.record_scores = record_scores

    # ------------------------------------------------------------------ helpers
    def _base_estimator(self):
        return _default_estimator() if self.estimator is None else self.estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self._base_estimator())
        tags.input_tags = deepcopy(inner.input_tags)
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.target_tags.single_output = inner.target_tags.single_output
        if inner.classifier_tags is not None:
            tags.classifier_tags = deepcopy(inner.classifier_tags)
        tags.non_deterministic = inner.non_deterministic
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimator_")

    def _check_fitted(self):
        if not hasattr(self, "estimator_"):
            raise NotFittedError(
                "This ActiveLearningClassifier is not fitted yet; call fit(X, y) first."
            )

    def _resolve_strategy(self):
        strategy = self.query_strategy
        if isinstance(strategy, str):
            return get_strategy(strategy)
        if not callable(strategy):
            raise SkalTypeError(
                "query_strategy must be callable as strategy(learner, X_pool, n_instances) "
                f"or the name of a registered strategy; got {strategy!r}."
            )
        if hasattr(strategy, "get_params") and not isinstance(strategy, type):
            return fresh_copy(strategy)  # stateful strategy: fresh state for every fit
        return strategy

    @staticmethod
    def _count(value, name, n, minimum=1, allow_fraction=True):
        """``(count, from_fraction)`` for an int count or a float fraction of ``n``."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise SkalTypeError(
                f"{name} must be an int{' or a float in (0, 1)' if allow_fraction else ''}; "
                f"got {value!r}."
            )
        if isinstance(value, numbers.Integral):
            if value < minimum:
                raise SkalValueError(f"{name} must be at least {minimum}; got {value}.")
            return int(value), False
        if not allow_fraction:
            raise SkalTypeError(f"{name} must be an int; got {value!r}.")
        if not 0 < value < 1:
            raise SkalValueError(
                f"{name}={value!r}: a float is a fraction of the samples and must lie in "
                "(0, 1); pass an int for a count."
            )
        return max(1, int(math.floor(value * n + 1e-9))), True

    def _budget(self, n):
        n_initial, frac_initial = self._count(self.n_initial, "n_initial", n)
        if frac_initial:
            n_initial = max(n_initial, min(2, n))     # a model needs two samples to train
        batch_size, frac_batch = self._count(self.batch_size, "batch_size", n)
        n_queries, _ = self._count(self.n_queries, "n_queries", n, minimum=0,
                                   allow_fraction=False)
        budget = n_initial + n_queries * batch_size
        if budget <= n:
            return n_initial, batch_size, n_queries
        nominal = ((self.n_initial * n if frac_initial else n_initial)
                   + n_queries * (self.batch_size * n if frac_batch else batch_size))
        if (frac_initial or frac_batch) and nominal <= n + 1e-9 and n_initial <= n:
            fitted = (n - n_initial) // batch_size
            warnings.warn(
                f"With {n} samples the budget n_initial={n_initial} + n_queries={n_queries} "
                f"x batch_size={batch_size} (fractions rounded up to at least one sample) "
                f"exceeds the data; running {fitted} query round(s) instead.",
                UserWarning, stacklevel=3,
            )
            return n_initial, batch_size, fitted
        check_budget(n, n_initial, n_queries, batch_size,
                     names=("n_initial", "n_queries", "batch_size"), where="X",
                     hint="Lower n_queries or batch_size, or give n_initial and batch_size "
                          "as fractions of the data (e.g. 0.1).")

    def _validate_data(self, X, y):
        X = check_images(X, ndims=(2, 3, 4))
        if y is None:
            raise SkalValueError(
                "y is None: ActiveLearningClassifier requires y to be passed, but the "
                "target y is None. The simulation reveals these labels when queried."
            )
        y_arr = np.asarray(y)
        multilabel = y_arr.ndim == 2 and y_arr.shape[1] > 1
        y = check_labels(y, multilabel=multilabel)
        check_consistent_length(X, y)
        n = pool_length(X)
        if n < 2:
            raise SkalValueError(
                f"X has n_samples={n}; an active-learning campaign needs at least 2 "
                "samples (an initial set and a pool)."
            )
        if multilabel:
            classes = np.arange(y.shape[1])
        else:
            classes = task_classes(y)
        return X, y, classes, multilabel

    def _initial_set(self, y, n_initial, seed, multilabel):
        return initial_set(y, n_initial, seed, self.initial)

    def _scorer(self, estimator):
        if self.scoring is None:
            return lambda est, X, y: est.score(X, y)
        return check_scoring(estimator, scoring=self.scoring)

    # ---------------------------------------------------------------------- fit
    def fit(self, X, y, **fit_params):
        """Run the simulated campaign on ``(X, y)`` and keep its final model.

        Parameters
        ----------
        X : array of shape (n, H, W), (n, C, H, W) or (n, n_features), or a torch Dataset
            The pool.
        y : array of shape (n,) or (n, n_labels)
            Its labels, revealed to the learner only for the samples it queries.
        **fit_params
            Passed to every ``estimator.fit`` of the campaign.
        """
        if "sample_weight" in fit_params:
            raise SkalTypeError(
                "ActiveLearningClassifier does not support sample_weight: the campaign "
                "decides which samples are labelled."
            )
        X, y, classes, multilabel = self._validate_data(X, y)
        n = pool_length(X)
        strategy = self._resolve_strategy()
        if self.query_kwargs is not None and not isinstance(self.query_kwargs, dict):
            raise SkalTypeError(f"query_kwargs must be a dict or None; got {self.query_kwargs!r}.")
        n_initial, batch_size, n_queries = self._budget(n)
        seed = resolve_seed(self.random_state)
        start_idx = self._initial_set(y, n_initial, seed, multilabel)
        estimator = with_seed(self._base_estimator(), seed,
                               None if multilabel else classes)
        learner = ActiveLearner(estimator, strategy, **fit_params)

        n_points = n_queries + 1
        curve = {"n_labels": np.zeros(n_points, dtype=np.int64)}
        if self.record_scores:
            scorer = self._scorer(estimator)
            curve["train_score"] = np.full(n_points, np.nan)
            curve["pool_score"] = np.full(n_points, np.nan)

        def record(r, learner, labelled):
            curve["n_labels"][r] = labelled.sum()
            if not self.record_scores:
                return
            for key, idx in (("train_score", np.flatnonzero(labelled)),
                             ("pool_score", np.flatnonzero(~labelled))):
                if idx.size:
                    try:
                        curve[key][r] = scorer(learner.estimator_, take(X, idx), y[idx])
                    except ValueError:       # e.g. AUROC of a single-class remainder
                        curve[key][r] = np.nan

        run = run_rounds(learner, X, y, start_idx, batch_size=batch_size,
                         n_rounds=n_queries, seed=seed, query_kwargs=self.query_kwargs,
                         on_round=record)
        curve["fit_time"] = run["fit_time"]
        curve["query_time"] = run["query_time"]

        self.learner_ = learner
        self.estimator_ = learner.estimator_
        self.classes_ = classes
        self.labeled_indices_ = run["order"]
        self.learning_curve_ = curve
        self.n_initial_, self.batch_size_, self.n_queries_ = n_initial, batch_size, n_queries
        if not is_dataset(X) and X.ndim == 2:
            self.n_features_in_ = int(X.shape[1])
        else:
            self.__dict__.pop("n_features_in_", None)
        return self

    # ---------------------------------------------------------------- inference
    def predict(self, X):
        """Predictions of the final model."""
        self._check_fitted()
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Probabilities of the final model."""
        self._check_fitted()
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the final model."""
        self._check_fitted()
        return self.estimator_.decision_function(X)

    def score(self, X, y, sample_weight=None):
        """The final model's ``score`` (accuracy for classifiers)."""
        self._check_fitted()
        if sample_weight is not None:
            return super().score(X, y, sample_weight=sample_weight)
        return self.estimator_.score(X, y)
