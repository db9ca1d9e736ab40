"""Deep-ensemble query for a single-model learner: the learner's model plus
``n_members - 1`` clones trained with other seeds each query, scored by a committee
measure (Beluch, Genewein, Nurnberger and Kohler, "The power of ensembles for active
learning in image classification", CVPR 2018).

This is the ensemble baseline as a *strategy* (so it runs wherever a strategy name
does, e.g. ``skal simulate`` and the label-efficiency benchmark); the model being built
stays the learner's own. To build the whole model as an ensemble, use
:meth:`skal.Committee.from_estimator` with the committee strategies.
"""

import numbers

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone

from ..bagging import Bootstrapped
from ..exceptions import SkalTypeError, SkalValueError
from ..utils.seeding import resolve_seed
from .base import fitted_estimator, labelled_data, multi_argmax
from .bayesian import committee_bald
from .disagreement import KL_max_disagreement, consensus_entropy, vote_entropy

__all__ = ["DeepEnsemble"]

_MEASURES = {"vote_entropy": vote_entropy, "consensus_entropy": consensus_entropy,
             "max_disagreement": KL_max_disagreement, "bald": committee_bald}


class _Members:
    """Fitted models seen as a committee by the measures of
    :mod:`skal.query.disagreement` (all trained on the same labels, so their
    ``classes_`` agree)."""

    def __init__(self, models):
        self.learner_list = models
        self.classes_ = getattr(models[0], "classes_", None)

    def vote(self, X):
        return np.stack([m.predict(X) for m in self.learner_list], axis=1)

    def vote_proba(self, X):
        return np.stack([m.predict_proba(X) for m in self.learner_list], axis=1)

    def predict_proba(self, X):
        return self.vote_proba(X).mean(axis=1)


def _fit_member(model, X, y):
    return model.fit(X, y)


class DeepEnsemble(BaseEstimator):
    """Query by a deep ensemble around the learner's model (a callable strategy).

    Parameters
    ----------
    n_members : int, default=5
        Ensemble size, the learner's own model included.
    measure : {"vote_entropy", "consensus_entropy", "max_disagreement", "bald"}
    bootstrap : bool, default=False
        Train the extra members on bootstrap resamples (:class:`skal.bagging.Bootstrapped`).
    n_jobs : int or None
        Train the extra members in joblib workers.
    random_state : int or None
        Seeds of the extra members (``random_state + k``; ``None``: the query's
        ``random_state``, else the model's ``random_state`` + 1000).
    batch_size : int or None
        Batch size of the scoring loop.

    Attributes
    ----------
    members_ : list of the fitted models of the last query (the learner's first)
    last_scores_ : ndarray
    """

    def __init__(self, n_members=5, measure="vote_entropy", bootstrap=False, n_jobs=None,
                 random_state=None, batch_size=None):
        self.n_members = n_members
        self.measure = measure
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.batch_size = batch_size

    def _base_seed(self, model, random_state):
        for source in (self.random_state, random_state):
            if source is not None:
                return resolve_seed(source)
        own = resolve_seed(getattr(model, "random_state", None))
        return 1000 if own is None else own + 1000

    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None, **_):
        """Select ``n_instances`` pool samples; returns ``(indices, scores)``."""
        if (isinstance(self.n_members, bool) or not isinstance(self.n_members, numbers.Integral)
                or self.n_members < 2):
            raise SkalValueError(f"n_members must be an integer >= 2; got {self.n_members!r}.")
        if self.measure not in _MEASURES:
            raise SkalValueError(
                f"measure must be one of {sorted(_MEASURES)}; got {self.measure!r}.")
        model = fitted_estimator(learner)
        if "random_state" not in model.get_params(deep=False) and not self.bootstrap:
            raise SkalTypeError(
                f"{type(model).__name__} has no random_state, so the members would be "
                "identical; use bootstrap=True.")
        X, y = labelled_data(learner)
        base = self._base_seed(model, random_state)
        extra = []
        for k in range(1, self.n_members):
            member = clone(model)
            if "random_state" in member.get_params(deep=False):
                member.set_params(random_state=base + k)
            extra.append(Bootstrapped(member, random_state=base + k) if self.bootstrap
                         else member)
        fitted = Parallel(n_jobs=self.n_jobs)(delayed(_fit_member)(m, X, y) for m in extra)
        members = _Members([model] + list(fitted))
        scores = _MEASURES[self.measure](members, X_pool, batch_size=self.batch_size)
        self.members_, self.last_scores_ = members.learner_list, scores
        return multi_argmax(scores, n_instances, random_state)
