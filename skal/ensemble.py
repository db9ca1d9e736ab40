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
from sklearn.base import clone

from .bagging import Bootstrapped
from .exceptions import SkalTypeError, SkalValueError
from .learner import ActiveLearner, Committee
from .query.disagreement import vote_entropy_sampling
from .utils.seeding import resolve_seed

__all__ = ["Bootstrapped", "EnsembleCommittee", "committee_from_estimator"]


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

    def __init__(self, learner_list, query_strategy=vote_entropy_sampling,
                 on_transformed=False, n_jobs=None):
        super().__init__(learner_list, query_strategy, on_transformed=on_transformed)
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
