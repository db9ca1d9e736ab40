"""Bootstrap bagging (Breiman, "Bagging predictors", Machine Learning 1996) for
ensemble members: each fit sees its own resample of the training set."""

import numpy as np
from sklearn.base import BaseEstimator, clone

from .utils.seeding import resolve_seed

__all__ = ["Bootstrapped", "bootstrap_indices"]


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
