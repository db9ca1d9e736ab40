"""Random sampling: the baseline every active-learning report compares against."""

import numpy as np

from ..data.pool import pool_length
from ..utils.seeding import resolve_seed
from ..utils.validation import check_n_instances

__all__ = ["random_sampling"]


def random_sampling(classifier, X_pool, n_instances=1, *, random_state=None):
    """Query ``n_instances`` distinct pool samples uniformly at random.

    The model is not consulted. ``random_state`` (int) makes the choice repeatable.

    Returns
    -------
    indices : ndarray of int
    scores : None
    """
    n_pool = pool_length(X_pool)
    n_instances = check_n_instances(n_instances, n_pool)
    rng = np.random.default_rng(resolve_seed(random_state))
    return rng.choice(n_pool, size=n_instances, replace=False), None
