"""Deep ensembles for query by committee: members built from one estimator with
different seeds, optionally bagged, trained in parallel with joblib.

Beluch, Genewein, Nurnberger and Kohler, "The power of ensembles for active learning in
image classification", CVPR 2018: a committee of networks that differ only in their
random initialisation (and data order) estimates uncertainty better than MC dropout;
bootstrap bagging (Breiman 1996) is the classical way to add data diversity. Built by
:meth:`skal.Committee.from_estimator`.
"""

import numbers

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone

from .exceptions import SkalTypeError, SkalValueError
from .learner import ActiveLearner, Committee
from .query.disagreement import vote_entropy_sampling
from .utils.seeding import resolve_seed

__all__ = ["Bootstrapped", "EnsembleCommittee", "committee_from_estimator",
           "bootstrap_indices"]


def bootstrap_indices(y, rng):
    """A bootstrap resample (with replacement, same size) of the training set; for 1-d
    labels it is stratified (each class resampled within itself), so every member sees
    every class it was given and keeps the class proportions."""
    y = np.asarray(y)
    n = len(y)
    if y.ndim != 1:
        return rng.integers(0, n, size=n)
    parts = [rng.choice(np.flatnonzero(y == label), size=int(np.sum(y == label)))
             for label in np.unique(y)]
    return np.sort(np.concatenate(parts))


class Bootstrapped(BaseEstimator):
    """Train ``estimator`` on a bootstrap resample of each training set (bagging).

    Every ``fit`` draws a new resample, seeded by ``random_state`` and the size of the
    training set, so an active-learning round gives the same resample on every run.
    Everything else (``predict``, ``predict_proba``, ``classes_``, ``threshold``,
    ``iter_head_outputs``, ...) is the fitted estimator's.

    Parameters
    ----------
    estimator : classifier
    random_state : int, RandomState or None

    Attributes
    ----------
    estimator_ : the fitted classifier
    sample_indices_ : ndarray, positions of the last training set it was fitted on
    """

    def __init__(self, estimator, random_state=None):
        self.estimator = estimator
        self.random_state = random_state

    def _resample(self, X, y):
        seed = resolve_seed(self.random_state)
        rng = np.random.default_rng(None if seed is None else [seed, len(y)])
        indices = bootstrap_indices(y, rng)
        return indices, X[indices], np.asarray(y)[indices]

    def fit(self, X, y, **fit_params):
        """Fit on a bootstrap resample (continuing the current model when the
        estimator has ``warm_start=True``)."""
        indices, X_boot, y_boot = self._resample(np.asarray(X), y)
        continuing = hasattr(self, "estimator_") and getattr(self.estimator, "warm_start",
                                                             False)
        model = self.estimator_ if continuing else clone(self.estimator)
        self.estimator_ = model.fit(X_boot, y_boot, **fit_params)
        self.sample_indices_ = indices
        return self

    def partial_fit(self, X, y, **fit_params):
        """Continue training the current model on a bootstrap resample of ``(X, y)``."""
        if not hasattr(self, "estimator_"):
            return self.fit(X, y, **fit_params)
        indices, X_boot, y_boot = self._resample(np.asarray(X), y)
        self.estimator_.partial_fit(X_boot, y_boot, **fit_params)
        self.sample_indices_ = indices
        return self

    def __getattr__(self, name):
        # only reached when normal lookup fails: delegate to the fitted estimator
        if name.startswith("__") or "estimator_" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["estimator_"], name)

    def predict(self, X):
        return self.estimator_.predict(X)

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def score(self, X, y):
        return self.estimator_.score(X, y)


def _apply(method, member):
    method(member)
    return member


class EnsembleCommittee(Committee):
    """A :class:`skal.Committee` whose members are trained in ``n_jobs`` joblib workers.

    ``fit`` and ``teach`` run every member in parallel (``loky`` processes by default,
    or the active joblib backend); the members come back trained, and only when all
    succeeded are they updated (a failure changes no member). ``n_jobs=None`` trains
    them one after the other, as :class:`skal.Committee` does. Each member's model is
    seeded, so the result does not depend on ``n_jobs``.

    Parameters
    ----------
    learner_list : list of ActiveLearner
    query_strategy : callable, default=vote_entropy_sampling
    n_jobs : int or None
    """

    def __init__(self, learner_list, query_strategy=vote_entropy_sampling, n_jobs=None):
        super().__init__(learner_list, query_strategy)
        self.n_jobs = n_jobs

    def _all_members(self, method):
        if self.n_jobs in (None, 1) or len(self.learner_list) < 2:
            return super()._all_members(method)
        trained = Parallel(n_jobs=self.n_jobs)(
            delayed(_apply)(method, member) for member in self.learner_list)
        for member, new in zip(self.learner_list, trained):
            if new is not member:           # process workers return trained copies
                member.__dict__.clear()
                member.__dict__.update(new.__dict__)
        return self


def committee_from_estimator(estimator, n_members=5, *, bootstrap=False, n_jobs=None,
                             random_state=None, query_strategy=vote_entropy_sampling,
                             X_training=None, y_training=None, **fit_kwargs):
    """Build a deep ensemble (see :meth:`skal.Committee.from_estimator`)."""
    if (isinstance(n_members, bool) or not isinstance(n_members, numbers.Integral)
            or n_members < 2):
        raise SkalValueError(f"n_members must be an integer >= 2; got {n_members!r}.")
    if not hasattr(estimator, "get_params"):
        raise SkalTypeError(
            f"estimator must be a scikit-learn estimator; got {type(estimator).__name__}.")
    seeded = "random_state" in estimator.get_params(deep=False)
    if not seeded and not bootstrap:
        raise SkalValueError(
            f"{type(estimator).__name__} has no random_state parameter, so the members "
            "would be identical; use bootstrap=True or an estimator with random_state.")
    base = resolve_seed(random_state)
    if base is None:
        base = int(np.random.default_rng().integers(0, 2**31 - 1))
    members = []
    for k in range(n_members):
        model = clone(estimator)
        if seeded:
            model.set_params(random_state=base + k)
        if bootstrap:
            model = Bootstrapped(model, random_state=base + 7919 * (k + 1))
        members.append(ActiveLearner(model, **fit_kwargs))
    committee = EnsembleCommittee(members, query_strategy, n_jobs=n_jobs)
    if X_training is not None or y_training is not None:
        if X_training is None or y_training is None:
            raise SkalValueError("Pass both X_training and y_training, or neither.")
        committee.fit(X_training, y_training)
    return committee
