"""modAL-style active learners: :class:`ActiveLearner` and :class:`Committee`.

They keep modAL's interface (``query`` returns ``(indices, X_pool[indices])``, ``teach``
adds labels and retrains; strategies are ``strategy(learner, X_pool, n_instances)``)
and add what modAL lacks: scikit-learn's estimator contract (``get_params``, ``clone``),
training data that grow in place instead of being re-stacked on every ``teach``, clear
errors on bad input, and state left untouched by any call that fails.
"""

import copy

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score

from . import finetune
from .data.pool import is_dataset, materialize, pool_length, take
from .exceptions import NotFittedError, SkalTypeError, SkalValueError
from .query.base import predicts_label_sets
from .query.disagreement import vote_entropy_sampling
from .query.synthesis import Synthesized
from .query.uncertainty import uncertainty_sampling
from .utils.buffer import GrowableArray
from .utils.validation import (check_consistent_length, check_finite, check_images,
                               check_n_instances)

__all__ = ["ActiveLearner", "Committee"]

_POOL_NDIMS = (2, 3, 4)


def _split_query_result(result):
    """Accept ``indices``, ``(indices, scores)`` or a :class:`~skal.query.Synthesized`
    (returned as is, with its scores) from a strategy."""
    if isinstance(result, Synthesized):
        return result, result.scores
    if isinstance(result, tuple) and len(result) == 2 and (
            result[1] is None or np.ndim(result[0]) >= 1):
        return result[0], result[1]
    return result, None


def _check_query_indices(indices, n_pool, n_instances, strategy):
    name = getattr(strategy, "__name__", type(strategy).__name__)
    indices = np.atleast_1d(np.asarray(indices))
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise SkalValueError(
            f"The query strategy {name} returned {indices!r}; a strategy must return a "
            "1-d array of integer pool indices (or (indices, scores))."
        )
    if indices.size == 0 or indices.size > n_instances:
        raise SkalValueError(
            f"The query strategy {name} returned {indices.size} indices for "
            f"n_instances={n_instances}."
        )
    if indices.min() < 0 or indices.max() >= n_pool:
        raise SkalValueError(
            f"The query strategy {name} returned indices outside the pool "
            f"[0, {n_pool}): {indices[(indices < 0) | (indices >= n_pool)][:5].tolist()}."
        )
    if len(np.unique(indices)) != len(indices):
        raise SkalValueError(f"The query strategy {name} returned duplicate indices.")
    return indices.astype(np.intp)


class _QueryMixin:
    """``query`` shared by learners and committees."""

    def query(self, X_pool, n_instances=1, *query_args, return_metrics=False,
              return_labels=False, **query_kwargs):
        """Ask the query strategy which pool samples to label next (or, for a query
        synthesis strategy, which new samples to label).

        Parameters
        ----------
        X_pool : array of shape (n, ...), np.memmap or torch Dataset
            The unlabelled pool; it is scored batch by batch.
        n_instances : int, default=1
            How many samples to select.
        return_metrics : bool, default=False
            Also return the strategy's scores of the selected samples.
        return_labels : bool, default=False
            Also return labels that came with the query: those of a synthesis
            strategy's labelling tool, else ``None`` (pool samples are unlabelled).
        **query_kwargs
            Passed to the strategy (e.g. ``random_state=0`` for seeded tie-breaking).

        Returns
        -------
        indices : ndarray of int, or None
            Positions of the selected samples in ``X_pool``; ``None`` when the strategy
            synthesized new samples (it returned a :class:`skal.query.Synthesized`).
        X_query : ndarray or torch Subset
            ``X_pool[indices]``, or the synthesized samples.
        y_query : ndarray or None
            Only with ``return_labels=True``: the synthesized samples' labels from the
            strategy's labelling tool, or ``None``.
        metrics : ndarray or None
            Only with ``return_metrics=True`` (last, after ``y_query``).

        Notes
        -----
        Query synthesis (e.g. :class:`skal.query.LatentHardSampling` with
        ``mode="synthesize"``): the strategy returns ``Synthesized(X, y, scores)`` with
        at most ``n_instances`` samples; label them (or take ``y_query``) and
        ``teach(X_query, y)``.
        """
        if not callable(self.query_strategy):
            raise SkalTypeError(
                f"query_strategy must be callable as strategy(learner, X_pool, n_instances); "
                f"got {self.query_strategy!r}."
            )
        self._ensure_fitted()
        X_pool = check_images(X_pool, name="X_pool", ndims=_POOL_NDIMS, check_values=False)
        n_pool = pool_length(X_pool)
        n_instances = check_n_instances(n_instances, n_pool)
        result = self.query_strategy(self, X_pool, *query_args, n_instances=n_instances,
                                     **query_kwargs)
        indices, metrics = _split_query_result(result)
        if isinstance(indices, Synthesized):
            if len(indices) > n_instances:
                raise SkalValueError(
                    f"The query strategy synthesized {len(indices)} samples for "
                    f"n_instances={n_instances}."
                )
            indices, X_query, y_query = None, indices.X, indices.y
        else:
            indices = _check_query_indices(indices, n_pool, n_instances,
                                           self.query_strategy)
            X_query, y_query = take(X_pool, indices), None
        out = (indices, X_query)
        if return_labels:
            out += (y_query,)
        if return_metrics:
            out += (metrics,)
        return out

    def _check_X(self, X, name="X"):
        return check_images(X, name=name, ndims=_POOL_NDIMS, check_values=False)


class ActiveLearner(_QueryMixin, BaseEstimator):
    """Pool-based active learner around any scikit-learn-compatible classifier.

    Parameters
    ----------
    estimator : estimator
        The model to train, e.g. :class:`skal.CNNClassifier`. It is not modified: each
        (re)training works on a clone, available as ``estimator_``.
    query_strategy : callable, default=uncertainty_sampling
        ``strategy(learner, X_pool, n_instances=1, **kw) -> indices`` or
        ``(indices, scores)``: skal's and modAL's strategies both work.
    X_training, y_training : array-like, optional
        Initial labelled data. The model is fitted on them on first use (``query``,
        ``predict``, ...), so ``__init__`` only stores parameters.
    finetune_from : {None, "start", "current"}, default=None
        Continual fine-tuning (Zhou et al., ACFT, MedIA 2021; :mod:`skal.finetune`):
        each ``teach`` retrains from the start weights (a fresh clone: scratch, or the
        pre-trained weights the estimator starts from) or continues from the current
        weights. ``None``: as before (continue only with ``warm_start`` / ``only_new``).
    finetune_on : {"all", "new", "hq"}, default="all"
        Train on all labelled data, on the new samples only, or on the new samples plus
        the labelled samples the current model misclassifies (ACFT's "HQ").
    finetune_epochs : int or None, default=None
        Epochs per round (skorch / skal nets); ``None``: the estimator's own.
    **fit_kwargs
        Extra keyword arguments for ``estimator.fit``.

    Attributes
    ----------
    estimator_ : estimator
        The fitted model.
    X_training_, y_training_ : ndarray
        All labelled data so far (views of buffers that grow in place).

    Notes
    -----
    ``teach`` refits a fresh clone of ``estimator`` on all labelled data. If the estimator
    has ``warm_start=True`` (skorch nets), training continues from the current weights
    instead; with ``only_new=True`` it continues on the new samples only
    (``partial_fit`` when the estimator has it).
    """

    def __init__(self, estimator, query_strategy=uncertainty_sampling, X_training=None,
                 y_training=None, *, finetune_from=None, finetune_on="all",
                 finetune_epochs=None, **fit_kwargs):
        self.estimator = estimator
        self.query_strategy = query_strategy
        self.X_training = X_training
        self.y_training = y_training
        self.finetune_from = finetune_from
        self.finetune_on = finetune_on
        self.finetune_epochs = finetune_epochs
        self.fit_kwargs = fit_kwargs

    # --------------------------------------------------- scikit-learn params
    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update(self.fit_kwargs)
        return params

    def set_params(self, **params):
        fit_updates = {k: params.pop(k) for k in list(params) if k in self.fit_kwargs}
        self.fit_kwargs = {**self.fit_kwargs, **fit_updates}
        return super().set_params(**params) if params else self

    # ---------------------------------------------------------------- state
    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimator_")

    @property
    def X_training_(self):
        """All labelled images so far."""
        self._ensure_fitted()
        return self._X_buffer.view

    @property
    def y_training_(self):
        """All labels so far."""
        self._ensure_fitted()
        return self._y_buffer.view

    def _snapshot(self):
        return (getattr(self, "estimator_", None), getattr(self, "_X_buffer", None),
                getattr(self, "_y_buffer", None),
                len(self._X_buffer) if hasattr(self, "_X_buffer") else 0)

    def _restore(self, snapshot):
        estimator, X_buffer, y_buffer, n = snapshot
        if estimator is None:
            for name in ("estimator_", "_X_buffer", "_y_buffer"):
                self.__dict__.pop(name, None)
            return
        X_buffer.truncate(n)
        y_buffer.truncate(n)
        self.estimator_, self._X_buffer, self._y_buffer = estimator, X_buffer, y_buffer

    def _ensure_fitted(self):
        if hasattr(self, "estimator_"):
            return
        if self.X_training is None and self.y_training is None:
            raise NotFittedError(
                "This ActiveLearner has no fitted model yet: pass X_training and "
                "y_training, or call fit(X, y) or teach(X, y) first."
            )
        if self.X_training is None or self.y_training is None:
            raise SkalValueError("Pass both X_training and y_training, or neither.")
        self.fit(self.X_training, self.y_training)

    # ------------------------------------------------------------ validation
    def _validate_training(self, X, y, reset):
        X = check_images(X, ndims=_POOL_NDIMS, check_values=False)
        if is_dataset(X):
            X = materialize(X)
        X = np.asarray(X)
        check_finite(X, "X")
        if y is None:
            raise SkalValueError("y is None; teach needs one label per sample.")
        y = np.asarray(y)
        if y.ndim == 0 or y.ndim > 2:
            raise SkalValueError(f"y has shape {y.shape}; expected (n,) or (n, n_labels).")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise SkalValueError("y contains NaN or infinite labels.")
        check_consistent_length(X, y)
        if not reset:
            self._X_buffer.check_compatible(X, "X")
            self._y_buffer.check_compatible(y, "y")
            stored = self._X_buffer.view.dtype
            if (X.dtype == np.uint8) != (stored == np.uint8):
                # uint8 images mean 0..255 (scaled by 1/255 by skal's nets); mixing them
                # with float images in one buffer would silently upcast the stored rows
                # to float without scaling them.
                raise SkalValueError(
                    f"X has dtype {X.dtype} but the training data have dtype {stored}; "
                    "uint8 images (0-255) and float images cannot be mixed. Convert the "
                    "new images to the training data's dtype and scale."
                )
            stored_y = self._y_buffer.view.dtype
            if (y.dtype.kind in "biuf") != (stored_y.kind in "biuf"):
                # numpy would silently turn the stored numeric labels into strings
                # (0 -> '0'), changing every class label the model predicts.
                raise SkalValueError(
                    f"y has dtype {y.dtype} but the training labels have dtype {stored_y}; "
                    "numeric and string labels cannot be mixed."
                )
        return X, y

    def _check_new_classes(self, y, only_new):
        estimator = self.estimator_
        classes = getattr(estimator, "classes_", None)
        if classes is None or y.ndim != 1 or predicts_label_sets(estimator):
            return
        fixed = getattr(estimator, "classes", None) is not None
        continuing = only_new or getattr(estimator, "warm_start", False)
        if fixed or continuing:
            unseen = np.setdiff1d(np.unique(y), classes)
            if unseen.size:
                how = ("the estimator's classes are fixed by its `classes` parameter" if fixed
                       else "training continues from the current model (warm_start or "
                            "only_new), whose output layer cannot grow")
                raise SkalValueError(
                    f"teach received labels {unseen.tolist()} never seen before, but {how}. "
                    "Declare every class up front with classes=[...], or retrain from "
                    "scratch (only_new=False, warm_start=False)."
                )

    # --------------------------------------------------------------- training
    def _fit_kwargs(self, extra):
        return {**self.fit_kwargs, **extra}

    def fit(self, X, y, **fit_kwargs):
        """Fit a clone of ``estimator`` on ``(X, y)``, which become the training data
        (any previous training data are dropped)."""
        X, y = self._validate_training(X, y, reset=True)
        estimator = clone(self.estimator, safe=False)
        estimator.fit(X, y, **self._fit_kwargs(fit_kwargs))
        self._X_buffer, self._y_buffer = GrowableArray(X), GrowableArray(y)
        self.estimator_ = estimator
        return self

    def teach(self, X, y, only_new=False, **fit_kwargs):
        """Add labelled samples and retrain.

        Parameters
        ----------
        X : array-like or torch Dataset
            The newly labelled samples (e.g. ``X_pool[indices]`` from ``query``).
        y : array-like
            Their labels.
        only_new : bool, default=False
            Continue training on the new samples only (``partial_fit`` if available)
            instead of retraining on everything labelled so far.
        """
        if not hasattr(self, "estimator_") and self.X_training is not None:
            self._ensure_fitted()
        if not hasattr(self, "estimator_"):
            return self.fit(X, y, **fit_kwargs)
        X, y = self._validate_training(X, y, reset=False)
        self._check_new_classes(y, only_new)
        snapshot = self._snapshot()
        try:
            self._X_buffer.append(X)
            self._y_buffer.append(y)
            self.estimator_ = self._retrain(X, y, only_new, self._fit_kwargs(fit_kwargs))
        except BaseException:
            self._restore(snapshot)
            raise
        return self

    def _retrain(self, X_new, y_new, only_new, fit_kwargs):
        if (self.finetune_from, self.finetune_on, self.finetune_epochs) != (None, "all", None):
            return finetune.retrain(self, X_new, y_new, only_new, fit_kwargs)
        if only_new:
            estimator = copy.deepcopy(self.estimator_)
            if hasattr(estimator, "partial_fit"):
                return estimator.partial_fit(X_new, y_new, **fit_kwargs)
            return estimator.fit(X_new, y_new, **fit_kwargs)
        if getattr(self.estimator_, "warm_start", False):
            estimator = copy.deepcopy(self.estimator_)
        else:
            estimator = clone(self.estimator, safe=False)
        return estimator.fit(self._X_buffer.view, self._y_buffer.view, **fit_kwargs)

    # -------------------------------------------------------------- inference
    def predict(self, X, **predict_kwargs):
        """Predictions of the current model."""
        self._ensure_fitted()
        return self.estimator_.predict(self._check_X(X), **predict_kwargs)

    def predict_proba(self, X, **predict_proba_kwargs):
        """Class (or per-label) probabilities of the current model."""
        self._ensure_fitted()
        return self.estimator_.predict_proba(self._check_X(X), **predict_proba_kwargs)

    def score(self, X, y, **score_kwargs):
        """The current model's ``score`` (accuracy for classifiers)."""
        self._ensure_fitted()
        return self.estimator_.score(self._check_X(X), y, **score_kwargs)


class Committee(_QueryMixin, BaseEstimator):
    """A committee of :class:`ActiveLearner` members for query by committee.

    Members usually share the estimator class and differ in ``random_state`` (an
    ensemble, Beluch et al. CVPR 2018) or in architecture. ``teach`` teaches every
    member; if any member fails, every member is restored.

    Parameters
    ----------
    learner_list : list of ActiveLearner
    query_strategy : callable, default=vote_entropy_sampling
        A committee strategy (``vote_entropy_sampling``, ``consensus_entropy_sampling``,
        ``max_disagreement_sampling``) or any ``strategy(committee, X_pool, n)``.
    """

    def __init__(self, learner_list, query_strategy=vote_entropy_sampling):
        self.learner_list = learner_list
        self.query_strategy = query_strategy

    @classmethod
    def from_estimator(cls, estimator, n_members=5, *, bootstrap=False, n_jobs=None,
                       random_state=None, query_strategy=vote_entropy_sampling,
                       X_training=None, y_training=None, **fit_kwargs):
        """A deep ensemble (Beluch et al. CVPR 2018) of ``n_members`` clones of
        ``estimator`` with seeds ``random_state + k``; ``bootstrap=True`` also trains
        each on its own (class-stratified) bootstrap resample of the labelled data
        (:class:`skal.ensemble.Bootstrapped`). Members are trained in ``n_jobs`` joblib
        workers (:class:`skal.ensemble.EnsembleCommittee`, a Committee); when
        ``X_training`` / ``y_training`` are given they are fitted at once. ``fit_kwargs``
        go to every member's ``fit``."""
        from .ensemble import committee_from_estimator
        return committee_from_estimator(
            estimator, n_members, bootstrap=bootstrap, n_jobs=n_jobs,
            random_state=random_state, query_strategy=query_strategy,
            X_training=X_training, y_training=y_training, **fit_kwargs)

    def _check_members(self):
        if not isinstance(self.learner_list, (list, tuple)) or not self.learner_list:
            raise SkalValueError("learner_list must be a non-empty list of ActiveLearner.")
        for member in self.learner_list:
            if not isinstance(member, ActiveLearner):
                raise SkalTypeError(
                    f"Committee members must be ActiveLearner instances; got "
                    f"{type(member).__name__}."
                )

    def __len__(self):
        return len(self.learner_list)

    def __sklearn_is_fitted__(self):
        return all(hasattr(m, "estimator_") for m in self.learner_list)

    def _ensure_fitted(self):
        self._check_members()
        for member in self.learner_list:
            member._ensure_fitted()

    @property
    def _multilabel(self):
        # members predicting label sets (multi-hot); one-vs-rest members fitted on 1-d
        # labels vote and average classes as single-label members do
        return predicts_label_sets(self.learner_list[0])

    @property
    def classes_(self):
        """Union of the members' classes (label indices for multi-label members)."""
        self._ensure_fitted()
        if self._multilabel:
            return self.learner_list[0].estimator_.classes_
        return np.unique(np.concatenate([m.estimator_.classes_ for m in self.learner_list]))

    def _all_members(self, method):
        snapshots = [m._snapshot() for m in self.learner_list]
        try:
            for member in self.learner_list:
                method(member)
        except BaseException:
            for member, snapshot in zip(self.learner_list, snapshots):
                member._restore(snapshot)
            raise
        return self

    def fit(self, X, y, **fit_kwargs):
        """Fit every member on ``(X, y)``."""
        self._check_members()
        return self._all_members(lambda m: m.fit(X, y, **fit_kwargs))

    def teach(self, X, y, only_new=False, **fit_kwargs):
        """Teach every member the new samples (all or none are changed)."""
        self._ensure_fitted()
        return self._all_members(lambda m: m.teach(X, y, only_new=only_new, **fit_kwargs))

    def vote(self, X):
        """Each member's prediction: ``(n, n_members)`` (``(n, n_members, n_labels)``
        for multi-label members)."""
        self._ensure_fitted()
        X = self._check_X(X)
        return np.stack([m.predict(X) for m in self.learner_list], axis=1)

    def vote_proba(self, X):
        """Each member's probabilities aligned to ``classes_``: ``(n, n_members, C)``."""
        self._ensure_fitted()
        X = self._check_X(X)
        if self._multilabel:
            return np.stack([m.predict_proba(X) for m in self.learner_list], axis=1)
        classes = self.classes_
        out = np.zeros((pool_length(X), len(self.learner_list), len(classes)))
        for j, member in enumerate(self.learner_list):
            columns = np.searchsorted(classes, member.estimator_.classes_)
            out[:, j, columns] = member.predict_proba(X)
        return out

    def predict_proba(self, X):
        """Consensus probabilities: the members' mean."""
        return self.vote_proba(X).mean(axis=1)

    def predict(self, X):
        """Consensus prediction: the most probable class of the mean probabilities, or
        for multi-label members the labels whose mean probability reaches the members'
        mean ``threshold`` (0.5 for members without one)."""
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba >= self._consensus_threshold(proba.shape[1])).astype(np.int64)
        return self.classes_[proba.argmax(axis=1)]

    def _consensus_threshold(self, n_labels):
        thresholds = []
        for member in self.learner_list:
            t = np.asarray(getattr(member.estimator_, "threshold", 0.5), dtype=float)
            if t.ndim > 1 or (t.ndim == 1 and len(t) != n_labels):
                raise SkalValueError(
                    f"A member's threshold has shape {t.shape}; expected a float or one "
                    f"value per label ({n_labels}).")
            thresholds.append(np.broadcast_to(t, (n_labels,)))
        return np.mean(thresholds, axis=0)

    def score(self, X, y):
        """Accuracy of the consensus prediction."""
        return accuracy_score(np.asarray(y), self.predict(X))
